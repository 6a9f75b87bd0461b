//! What the device ledger costs a registration (`make bench-cost`, a few seconds after the
//! build): the calls each registration makes, per API, with and without the ledger, and its
//! duration when every IoT call takes 15 ms and every DynamoDB call 5 ms (typical in-region
//! latencies; the in-process work is microseconds, see `make bench`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::ledger::{Ledger, MemoryLedger, NoLedger};
use jitr_domain::registry::{MemoryRegistry, RegistryErrorKind};
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::interpose::{Hook, Interposed};
use jitr_testkit::pki::{Ca, DeviceSpec, registered_event};
use time::OffsetDateTime;

const ACCOUNT: &str = "123456789012";
const RUNS: usize = 20;
const IOT_LATENCY: Duration = Duration::from_millis(15);
const LEDGER_LATENCY: Duration = Duration::from_millis(5);
const LEDGER_CALLS: [&str; 4] = ["GetItem", "UpdateItem", "PutItem", "Query"];

/// Counts every call by API name and gives it its modeled round trip.
#[derive(Debug, Clone, Default)]
struct Tally(Arc<Mutex<BTreeMap<&'static str, usize>>>);

impl Tally {
    fn take(&self) -> BTreeMap<&'static str, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Hook for Tally {
    async fn before(&self, operation: &'static str) -> Result<(), RegistryErrorKind> {
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
        let latency = if LEDGER_CALLS.contains(&operation) {
            LEDGER_LATENCY
        } else {
            IOT_LATENCY
        };
        tokio::time::sleep(latency).await;
        Ok(())
    }
}

struct Scenario {
    label: &'static str,
    calls: BTreeMap<&'static str, usize>,
    median: Duration,
}

/// `RUNS` registrations of `certificates_per_device` certificates each (the last one measured);
/// `ledger` gets the tally to put in front of its calls (or not: no ledger, no calls).
async fn run<L: Ledger>(
    label: &'static str,
    ledger: impl Fn(Tally) -> L,
    certificates_per_device: usize,
) -> Scenario {
    let tally = Tally::default();
    let registry = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
    let ca = Ca::new("Cost CA", "Acme").unwrap();
    let ca_id = registry.register_ca(&ca.pem, true).unwrap();
    registry.create_policy("jitr-device");
    let registrar = Registrar::new(
        Interposed::new(Arc::clone(&registry), tally.clone()),
        Config::with_policy("jitr-device"),
        SourceFetcher::without_s3(),
    )
    .with_ledger(ledger(tally.clone()));
    let mut durations = Vec::new();
    let mut calls = BTreeMap::new();
    for run in 0..RUNS {
        let name = format!("meter-{run:04}");
        for n in 0..certificates_per_device {
            let spec = DeviceSpec {
                // Each certificate newer than the one before: a rotation, not a stale one.
                not_before: OffsetDateTime::now_utc()
                    - time::Duration::days(30 - i64::try_from(n).unwrap()),
                ..DeviceSpec::named(&name)
            };
            let device = ca.issue(&spec).unwrap();
            let id = registry.register_pending(&device.cert_pem, &ca_id).unwrap();
            let event = registered_event(&id, &ca_id, ACCOUNT);
            tally.take();
            let started = Instant::now();
            let report = registrar.handle(&event, ACCOUNT).await.unwrap();
            let elapsed = started.elapsed();
            assert_eq!(report.outcome, Outcome::Activated, "{label}");
            if n + 1 == certificates_per_device {
                durations.push(elapsed);
                calls = tally.take();
            }
        }
    }
    durations.sort();
    Scenario {
        label,
        calls,
        median: durations[durations.len() / 2],
    }
}

fn show(s: &Scenario) {
    let (ledger, iot): (Vec<_>, Vec<_>) = s
        .calls
        .iter()
        .partition(|(op, _)| LEDGER_CALLS.contains(op));
    let list = |calls: &[(&&str, &usize)]| {
        calls
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{:<46} median {:>6.1} ms | IoT: {} | ledger: {}",
        s.label,
        s.median.as_secs_f64() * 1000.0,
        list(&iot),
        if ledger.is_empty() {
            "-".to_owned()
        } else {
            list(&ledger)
        }
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!(
        "registration cost per certificate ({RUNS} devices each; IoT call {} ms, DynamoDB call {} ms)",
        IOT_LATENCY.as_millis(),
        LEDGER_LATENCY.as_millis()
    );
    let tallied = |tally| Interposed::new(MemoryLedger::new(), tally);
    let without = run("new device, no ledger", |_| NoLedger, 1).await;
    let with = run("new device, with the device ledger", tallied, 1).await;
    let rotated = run("second certificate (rotation), with the ledger", tallied, 2).await;
    for scenario in [&without, &with, &rotated] {
        show(scenario);
    }
    let reads = with.calls.get("GetItem").copied().unwrap_or(0);
    let writes: usize = ["UpdateItem", "PutItem"]
        .iter()
        .map(|op| with.calls.get(op).copied().unwrap_or(0))
        .sum();
    println!(
        "the ledger adds {reads} point reads (GetItem) and {writes} writes per registration, \
         {:+.1} ms on the critical path",
        (with.median.as_secs_f64() - without.median.as_secs_f64()) * 1000.0
    );
}
