//! The function-level figures of `make bench` (issue 11, items 5 to 7), measured on the emulator:
//!
//! - **critical path**: one warm registration (CA description and CRL cached, the device ledger
//!   on) with 50 ms added to every AWS call (IoT, S3, DynamoDB) by the quota and fault model; it
//!   lists the calls as they ran and counts the sequential round trips;
//! - **cold start**: process start to the first Runtime API poll, for both functions and a
//!   hello-world `lambda_runtime` binary built in the same run, behind a local Runtime API;
//!   and the first event's duration beside a warm one's, so cost is not just moved from init
//!   to the first invocation;
//! - **memory**: the registration binary's peak RSS after admitting a device against a
//!   1,000,000-entry CRL.
//!
//! `cold-start-no-pie` (`make bench-no-pie`, not in the table) times the functions beside
//! variants linked without PIE, which is what PIE's start-up relocations cost
//! (docs/cold-start.md).
//!
//! Every figure is printed; with `BENCH_ROWS=<file>` each is also appended there as a row of the
//! `make bench` table. Release binaries are expected beside this one (`make bench` builds them).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_aws::source::S3Fetcher;
use jitr_domain::config::Config;
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::fault_model::{Call, FaultModel, Faults};
use jitr_testkit::pki::DeviceSpec;
use jitr_tests::fleet::{Fleet, POLICY};
use jitr_tests::ministack::workspace_binary;
use jitr_tests::runtime_api::{Seen, function_command, serve_observed};
use time::{Duration as Span, OffsetDateTime};
use tokio::process::Command;

/// Added to every AWS call on the critical path.
const CALL_LATENCY: Duration = Duration::from_millis(50);
/// The budget: six sequential round trips and 25 ms of our own.
const ROUND_TRIP_BUDGET: usize = 6;
const OWN_TIME_BUDGET: Duration = Duration::from_millis(25);
/// Cold starts per binary (medians are reported).
const COLD_STARTS: usize = 40;
const COLD_START_RATIO: f64 = 1.5;
/// Entries in the fleet-sized CRL, and the memory the template gives the function.
const CRL_ENTRIES: usize = 1_000_000;
const RSS_BUDGET_MB: f64 = 100.0;

#[path = "../../../crates/domain/benches/support/rows.rs"]
mod rows;
use rows::Rows;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut rows = Rows::default();
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    if wanted("critical-path") {
        critical_path(&mut rows).await;
    }
    if wanted("cold-start") {
        let fleet = Fleet::new().await;
        cold_start(&mut rows, &fleet, &["registration", "lifecycle"]).await;
        first_event(&mut rows, &fleet).await;
    }
    // Not in the table: `make bench-no-pie` builds these variants first.
    if only.iter().any(|o| o == "cold-start-no-pie") {
        let functions = [
            "registration",
            "lifecycle",
            "registration-no-pie",
            "lifecycle-no-pie",
        ];
        cold_start(&mut rows, &Fleet::new().await, &functions).await;
    }
    if wanted("memory") {
        memory(&mut rows).await;
    }
    rows.save();
}

// ------------------------------------------------------------------ critical path (item 5)

async fn critical_path(rows: &mut Rows) {
    println!("critical path: one warm registration, {CALL_LATENCY:?} added to every AWS call");
    let fleet = Fleet::new().await;
    let model = FaultModel::new(
        &[],
        Faults {
            latency: CALL_LATENCY,
            ..Faults::default()
        },
        1,
    );
    let sdk = model.sdk_config(&fleet.account.sdk);
    let bucket = format!("crl-{}", fleet.account.id);
    let now = OffsetDateTime::now_utc();
    let crl = fleet
        .ca
        .crl(&[vec![0x7f; 20]], now - Span::hours(1), now + Span::days(1))
        .unwrap();
    S3Fetcher::from_sdk_config(&fleet.account.sdk)
        .publish(&bucket, "ca.crl", crl.into_bytes())
        .await
        .unwrap();
    fleet.ledger().await;
    let variables = HashMap::from([
        ("DEVICE_POLICY_NAME", POLICY.to_owned()),
        ("REVOCATION_LIST", format!("s3://{bucket}/ca.crl")),
        ("DEVICE_LEDGER_TABLE", "jitr-ledger".to_owned()),
    ]);
    let config = Config::from_lookup(|name| variables.get(name).cloned()).unwrap();
    let ledger = DynamoLedger::from_settings(&sdk, config.device_ledger.as_ref().unwrap());
    let fetcher = SourceFetcher::from_sdk_config(&sdk, config.address_policy());
    let registrar =
        Registrar::new(IotRegistry::from_sdk_config(&sdk), config, fetcher).with_ledger(ledger);

    // The first registration fills the container's caches (CA description, CRL).
    let first = fleet.pending_device(DeviceSpec::named("warm-0001")).await;
    let report = registrar
        .handle(&fleet.event(&first), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    let mut best: Option<(Duration, Vec<Call>)> = None;
    for n in 2..=4 {
        let device = fleet
            .pending_device(DeviceSpec::named(&format!("warm-{n:04}")))
            .await;
        model.take_timeline();
        let started = Instant::now();
        let report = registrar
            .handle(&fleet.event(&device), &fleet.account.id)
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::Activated);
        let calls = model.take_timeline();
        if best.as_ref().is_none_or(|(t, _)| took < *t) {
            best = Some((took, calls));
        }
    }
    let (took, calls) = best.unwrap();
    let trips = round_trips(&calls);
    println!("  sequence of the fastest of 3 (ms from the first call):");
    let origin = calls.first().map_or(Duration::ZERO, |c| c.start);
    for call in &calls {
        let line = format!(
            "{:>5.0} → {:>5.0} ms  {}",
            (call.start - origin).as_secs_f64() * 1e3,
            (call.end - origin).as_secs_f64() * 1e3,
            call.api
        );
        println!("    {line}");
        rows.note(&line);
    }
    // Time with no call in flight is the handler's own; the rest of the time in calls beyond
    // the added latency is the emulator serving them, which AWS's 50 ms would include.
    let in_calls = busy(&calls);
    let own = took.saturating_sub(in_calls);
    let emulator = in_calls.saturating_sub(CALL_LATENCY * trips as u32);
    let modeled = CALL_LATENCY * trips as u32 + own;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {:.1} ms measured: {trips} round trips of {CALL_LATENCY:?}, {:.1} ms of the emulator serving them, {:.1} ms in the handler",
        ms(took),
        ms(emulator),
        ms(own)
    );
    let budget = CALL_LATENCY * ROUND_TRIP_BUDGET as u32 + OWN_TIME_BUDGET;
    rows.add(
        "Warm registration, 50 ms per AWS call: sequential round trips",
        &format!("<= {ROUND_TRIP_BUDGET}"),
        format!("{trips} ({} calls)", calls.len()),
        trips <= ROUND_TRIP_BUDGET,
    );
    rows.add(
        "Warm registration, 50 ms per AWS call: duration (without the emulator's service time)",
        &format!("<= {} ms", budget.as_millis()),
        format!(
            "{:.0} ms ({:.0} ms measured, {:.0} ms of it the emulator's)",
            ms(modeled),
            ms(took),
            ms(emulator)
        ),
        modeled <= budget,
    );
}

/// How long at least one call was in flight.
fn busy(calls: &[Call]) -> Duration {
    let mut total = Duration::ZERO;
    let mut current: Option<(Duration, Duration)> = None;
    for call in calls {
        current = match current {
            Some((start, end)) if call.start <= end => Some((start, end.max(call.end))),
            Some((start, end)) => {
                total += end - start;
                Some((call.start, call.end))
            }
            None => Some((call.start, call.end)),
        };
    }
    total + current.map_or(Duration::ZERO, |(start, end)| end - start)
}

/// The longest chain of calls each starting after the one before it ended: the round trips
/// the registration waited for one after another.
fn round_trips(calls: &[Call]) -> usize {
    let mut chain = vec![0usize; calls.len()];
    for i in 0..calls.len() {
        chain[i] = 1
            + (0..i)
                .filter(|&j| calls[j].end <= calls[i].start)
                .map(|j| chain[j])
                .max()
                .unwrap_or(0);
    }
    chain.into_iter().max().unwrap_or(0)
}

// ------------------------------------------------------------------ cold start (item 7)

/// A function binary built beside this one, behind `runtime_api`, quiet.
fn function(binary: &str, fleet: &Fleet, runtime_api: &str) -> Command {
    let mut command = function_command(&workspace_binary(binary), binary, fleet, runtime_api);
    command
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("DEVICE_POLICY_NAME", POLICY)
        .env("WEBHOOK_SECRET", "bench-webhook-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Spawn to first poll, in milliseconds (no event is served). Configured as on AWS, without
/// the emulator's endpoint: no AWS call is made before the first poll, and a custom endpoint
/// would make the functions trust the platform's roots instead of Amazon's.
async fn time_to_first_poll(binary: &str, fleet: &Fleet) -> f64 {
    let (runtime_api, mut seen) = serve_observed(Vec::new(), String::new()).await;
    let mut command = function(binary, fleet, &runtime_api);
    command.env_remove("AWS_ENDPOINT_URL");
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let polled = tokio::time::timeout(Duration::from_secs(20), seen.recv()).await;
    child.kill().await.ok();
    match polled {
        Ok(Some(Seen::Polled { at, .. })) => (at - started).as_secs_f64() * 1e3,
        other => panic!("{binary} never polled: {other:?}"),
    }
}

/// Each binary's median time to its first poll against the hello-world function's.
async fn cold_start(rows: &mut Rows, fleet: &Fleet, functions: &[&str]) {
    println!("cold start: process start to the first Runtime API poll, {COLD_STARTS} runs each");
    let binaries: Vec<&str> = ["hello-lambda"].iter().chain(functions).copied().collect();
    let mut times: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..COLD_STARTS {
        // Interleaved, so a slow moment of the machine falls on all of them alike.
        for &binary in &binaries {
            let ms = time_to_first_poll(binary, fleet).await;
            times.entry(binary).or_default().push(ms);
        }
    }
    let hello = median(times["hello-lambda"].clone());
    println!("  hello-world lambda_runtime: median {hello:.1} ms");
    for &binary in &binaries {
        println!("  {binary}: {}", load_time_writes(binary));
    }
    for &binary in functions {
        let ms = median(times[binary].clone());
        let ratio = ms / hello;
        rows.add(
            &format!("Cold start to first poll, {binary} / hello-world (docs/cold-start.md)"),
            &format!("<= {COLD_START_RATIO}x"),
            format!("{ratio:.2}x ({ms:.1} / {hello:.1} ms)"),
            ratio <= COLD_START_RATIO,
        );
    }
}

/// What the dynamic loader writes before `main`: the binary's relative relocations and the pages
/// they fall in, each copied on write (most of what is left of a cold start: docs/cold-start.md).
/// Read with binutils' `readelf`, which comes with the linker Rust links with.
fn load_time_writes(binary: &str) -> String {
    let output = std::process::Command::new("readelf")
        .arg("-rW")
        .arg(workspace_binary(binary))
        .output();
    let Some(output) = output.ok().filter(|o| o.status.success()) else {
        return "relocations not counted (no readelf)".to_owned();
    };
    let (mut relative, mut pages) = (0, std::collections::HashSet::new());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut columns = line.split_whitespace();
        let (Some(offset), Some(_info), Some(kind)) =
            (columns.next(), columns.next(), columns.next())
        else {
            continue;
        };
        let Ok(offset) = u64::from_str_radix(offset, 16) else {
            continue;
        };
        if kind.starts_with("R_") {
            pages.insert(offset >> 12);
            relative += usize::from(kind.ends_with("_RELATIVE"));
        }
    }
    format!(
        "{relative} relative relocations, {} pages written at load",
        pages.len()
    )
}

/// The first event after a cold start against a warm one, in one container.
async fn first_event(rows: &mut Rows, fleet: &Fleet) {
    let devices = [
        fleet.pending_device(DeviceSpec::named("first-event")).await,
        fleet.pending_device(DeviceSpec::named("warm-event")).await,
    ];
    let events = devices.iter().map(|d| fleet.event(d)).collect();
    let arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:registration",
        fleet.account.id
    );
    let (runtime_api, mut seen) = serve_observed(events, arn).await;
    let mut child = function("registration", fleet, &runtime_api)
        .spawn()
        .unwrap();
    let mut durations = Vec::new();
    let mut delivered_at = None;
    while durations.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), seen.recv()).await {
            Ok(Some(Seen::Polled {
                at,
                delivered: true,
            })) => delivered_at = Some(at),
            Ok(Some(Seen::Answered { at, invocation })) => {
                let jitr_tests::runtime_api::Invocation::Response(response) = invocation else {
                    panic!("the registration failed: {invocation:?}");
                };
                assert_eq!(response["outcome"], "Activated", "{response}");
                durations.push((at - delivered_at.take().unwrap()).as_secs_f64() * 1e3);
            }
            Ok(Some(_)) => {}
            other => panic!("no answer: {other:?}"),
        }
    }
    child.kill().await.ok();
    let (first, warm) = (durations[0], durations[1]);
    rows.add(
        "First event after a cold start (emulator, no added latency)",
        "<= warm + 50 ms",
        format!("{first:.1} ms (warm {warm:.1} ms)"),
        first <= warm + 50.0,
    );
}

// ------------------------------------------------------------------ memory (item 6)

async fn memory(rows: &mut Rows) {
    println!(
        "memory: the registration binary admitting a device against a {CRL_ENTRIES}-entry CRL"
    );
    let fleet = Fleet::new().await;
    let dir = std::env::temp_dir().join(format!("jitr-bench-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let crl = dir.join("fleet.crl");
    let now = OffsetDateTime::now_utc();
    let serials: Vec<Vec<u8>> = (0..CRL_ENTRIES as u64)
        .map(|n| {
            let mut serial = vec![0x4a; 12];
            serial.extend_from_slice(&(n * 0x9e37_79b9).to_be_bytes());
            serial
        })
        .collect();
    let pem = fleet
        .ca
        .crl(&serials, now - Span::hours(1), now + Span::days(1))
        .unwrap();
    drop(serials);
    let der =
        jitr_domain::certificate::pem_to_der(&pem.replace("X509 CRL", "CERTIFICATE")).unwrap();
    std::fs::write(&crl, &der).unwrap();
    let size_mb = der.len() as f64 / 1e6;
    drop((pem, der));

    let device = fleet.pending_device(DeviceSpec::named("crl-scale")).await;
    let arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:registration",
        fleet.account.id
    );
    let (runtime_api, mut seen) = serve_observed(vec![fleet.event(&device)], arn).await;
    let mut command = function("registration", &fleet, &runtime_api);
    command.env("REVOCATION_LIST", format!("file://{}", crl.display()));
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    let answered = loop {
        match tokio::time::timeout(Duration::from_secs(60), seen.recv()).await {
            Ok(Some(Seen::Answered { invocation, .. })) => break invocation,
            Ok(Some(_)) => {}
            other => panic!("no answer: {other:?}"),
        }
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    child.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
    let jitr_tests::runtime_api::Invocation::Response(response) = &answered else {
        panic!("the registration failed: {answered:?}");
    };
    assert_eq!(response["outcome"], "Activated", "{response}");
    let peak_mb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
        * 1024.0
        / 1e6;
    rows.add(
        &format!("Peak RSS, registration with a 1M-entry CRL ({size_mb:.0} MB DER) loaded"),
        &format!("<= {RSS_BUDGET_MB:.0} MB"),
        format!("{peak_mb:.1} MB"),
        peak_mb <= RSS_BUDGET_MB,
    );
}
