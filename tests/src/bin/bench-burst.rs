//! `make bench-burst`: a factory line or a fleet-wide reconnect. N devices (default 1,000;
//! `--devices 10000`) connect at once and register through the real handler and the real AWS
//! adapters, against the emulator behind the quota model (IoT's default per-API quotas,
//! `tests/src/fault_model.rs`), with Lambda's concurrency (`--concurrency`, the template's
//! reserved concurrency: that many containers, each with its own caches, one event at a time),
//! Lambda's async retries (3 attempts, one and then two minutes apart, then the dead letters),
//! and devices that keep reconnecting with exponential backoff while refused, each reconnect
//! publishing the registered event again as IoT Core does for a pending certificate.
//!
//! `--sqs` takes the burst-buffer path instead (rule → SQS → Lambda, as the template deploys it
//! with `BurstBuffer`): `--concurrency` pollers (the mapping's MaximumConcurrency) each take
//! batches of up to 10 messages; a failed message reappears after the queue's visibility
//! timeout (180 s) and is dead-lettered at its 5th receive.
//!
//! Prints completion time, registrations per second against the quota-bound rate, throttles,
//! retries, dead letters and an audit of the registry; writes the registrations per second as CSV
//! and an SVG chart (achieved rate against the quota line) into `--out` (default `docs/`). The
//! last line: `burst: <n> devices, <a> active, <l> lost, <r> registrations/s, <p>% of the
//! quota-bound rate`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_iot::config::retry::RetryPartition;
use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_domain::registry::{CertificateStatus, Registry};
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::fault_model::{DEFAULT_IOT_QUOTAS, FaultModel, Faults};
use jitr_testkit::pki::{Device, DeviceSpec};
use jitr_tests::fleet::Fleet;
use jitr_tests::ministack::workspace_root;
use serde_json::Value;

/// The registrations per second IoT's default quotas allow: one registration makes at most one
/// call against each 10/s quota (`tests/tests/fault_matrix.rs` counts them).
const QUOTA_BOUND_RATE: f64 = 10.0;

/// Lambda's asynchronous invocation: the first attempt and two retries, after about one and two
/// minutes.
const LAMBDA_ATTEMPTS: u32 = 3;
const LAMBDA_RETRY_DELAYS: [f64; 2] = [60.0, 120.0];
/// The burst buffer as the template deploys it.
const SQS_BATCH: usize = 10;
const SQS_MAX_RECEIVES: u32 = 5;
const SQS_VISIBILITY_TIMEOUT: f64 = 360.0;
/// Devices' reconnect backoff while refused: 1 s doubling to 32 s, with jitter.
const FIRST_RECONNECT: Duration = Duration::from_secs(1);
const LAST_RECONNECT: Duration = Duration::from_secs(32);

#[derive(Debug)]
struct Args {
    devices: usize,
    concurrency: usize,
    out: PathBuf,
    /// `--no-quotas`: the same run without the quota model, to see what the emulator and this
    /// machine allow on their own.
    quotas: bool,
    /// `--sqs`: through the burst buffer instead of async invokes.
    sqs: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        devices: 1_000,
        concurrency: 5,
        out: workspace_root().join("docs"),
        quotas: true,
        sqs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--devices" => {
                args.devices = value()?.parse().map_err(|e| format!("--devices: {e}"))?
            }
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?;
            }
            "--out" => args.out = PathBuf::from(value()?),
            "--no-quotas" => args.quotas = false,
            "--sqs" => args.sqs = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// One event in Lambda's queue for the function (or one message of the burst queue).
#[derive(Debug, Clone)]
struct Queued {
    device: usize,
    /// The attempt (async invoke) or the receive (SQS) this delivery is.
    attempt: u32,
    /// Seconds since the start before which it is not delivered (a retry's delay).
    due: f64,
}

impl Run {
    /// Takes up to `n` deliveries that are due at `now`, oldest first.
    fn take_due(&mut self, now: f64, n: usize) -> Vec<Queued> {
        let mut taken = Vec::new();
        let mut i = 0;
        while i < self.queue.len() && taken.len() < n {
            if self.queue[i].due <= now {
                taken.extend(self.queue.remove(i));
            } else {
                i += 1;
            }
        }
        taken
    }
}

/// Everything the containers share: the queue, what happened, when.
#[derive(Debug, Default)]
struct Run {
    queue: VecDeque<Queued>,
    /// Per device: the second (from the start) its certificate became ACTIVE.
    activated: BTreeMap<usize, f64>,
    /// Devices whose last dead-lettered event left them unadmitted, with its error.
    dead_letters: BTreeMap<usize, String>,
    /// Events that reached the dead letters (the on-failure destination, or the queue's DLQ).
    dead_letter_arrivals: u64,
    /// Per device: events published (the first connect and each reconnect while refused).
    published: BTreeMap<usize, u32>,
    lambda_retries: u64,
    outcomes: BTreeMap<&'static str, u64>,
}

fn lock(run: &Mutex<Run>) -> std::sync::MutexGuard<'_, Run> {
    run.lock().unwrap_or_else(|e| e.into_inner())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench-burst: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "burst of {} devices, {}, IoT default quotas (quota model)",
        args.devices,
        if args.sqs {
            format!("through the SQS burst buffer, {} pollers", args.concurrency)
        } else {
            format!("reserved concurrency {}", args.concurrency)
        }
    );
    let fleet = Arc::new(Fleet::new().await);
    fleet.ledger().await;

    // ------------------------------------------------------------ the devices connect
    let started = Instant::now();
    let mut devices: Vec<Device> = Vec::with_capacity(args.devices);
    let mut batch = Vec::new();
    for n in 0..args.devices {
        let fleet = Arc::clone(&fleet);
        batch.push(tokio::spawn(async move {
            fleet
                .pending_device(DeviceSpec::named(&format!("burst-{n:05}")))
                .await
        }));
        if batch.len() == 16 || n + 1 == args.devices {
            for task in batch.drain(..) {
                devices.push(task.await.expect("connect"));
            }
        }
    }
    println!(
        "  {} certificates PENDING_ACTIVATION after their first connect ({:.1} s)",
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let events: Arc<Vec<Value>> = Arc::new(devices.iter().map(|d| fleet.event(d)).collect());

    // ------------------------------------------------------------ the burst
    let quotas: &[(&str, f64)] = if args.quotas {
        &DEFAULT_IOT_QUOTAS
    } else {
        &[]
    };
    let model = FaultModel::new(quotas, Faults::default(), 0xb0_b0);
    let sdk = model.sdk_config(&fleet.account.sdk);
    let run = Arc::new(Mutex::new(Run::default()));
    {
        let mut run = lock(&run);
        for device in 0..devices.len() {
            run.queue.push_back(Queued {
                device,
                attempt: 1,
                due: 0.0,
            });
            run.published.insert(device, 1);
        }
    }
    let started = Instant::now();
    // Devices keep reconnecting until admitted; the run gives up at ten times the quota-bound time.
    let deadline = Duration::from_secs_f64(60.0 + 10.0 * devices.len() as f64 / QUOTA_BOUND_RATE);
    let mut containers = Vec::new();
    for container in 0..args.concurrency {
        // One process per Lambda container: each has its own SDK retry token bucket (the SDK
        // keeps one per retry partition and process), so each gets a partition of its own here.
        let partition = RetryPartition::new(format!("container-{container}"));
        let iot = aws_sdk_iot::Client::from_conf(
            aws_sdk_iot::config::Builder::from(&sdk)
                .retry_partition(partition.clone())
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .retry_partition(partition)
                .build(),
        );
        let registrar = Registrar::new(
            IotRegistry::new(iot),
            fleet.config(),
            SourceFetcher::without_s3(),
        )
        .with_ledger(DynamoLedger::new(dynamodb, "jitr-ledger"));
        let (run, events, account) = (
            Arc::clone(&run),
            Arc::clone(&events),
            fleet.account.id.clone(),
        );
        let (batch, sqs) = if args.sqs {
            (SQS_BATCH, true)
        } else {
            (1, false)
        };
        containers.push(tokio::spawn(async move {
            loop {
                let deliveries = {
                    let mut run = lock(&run);
                    if run.activated.len() == events.len() || started.elapsed() > deadline {
                        return;
                    }
                    run.take_due(started.elapsed().as_secs_f64(), batch)
                };
                if deliveries.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                // A batch's messages are handled one after another, as the entry point does.
                for item in deliveries {
                    let result = registrar.handle(&events[item.device], &account).await;
                    let at = started.elapsed().as_secs_f64();
                    let mut run = lock(&run);
                    match result {
                        Ok(report) => {
                            *run.outcomes.entry(report.outcome.as_str()).or_default() += 1;
                            if matches!(report.outcome, Outcome::Activated) {
                                run.activated.entry(item.device).or_insert(at);
                                run.dead_letters.remove(&item.device);
                            }
                        }
                        Err(e) => {
                            let (attempts, delay) = if sqs {
                                (SQS_MAX_RECEIVES, SQS_VISIBILITY_TIMEOUT)
                            } else {
                                let retry = (item.attempt as usize - 1).min(1);
                                (LAMBDA_ATTEMPTS, LAMBDA_RETRY_DELAYS[retry])
                            };
                            if item.attempt < attempts {
                                run.lambda_retries += 1;
                                run.queue.push_back(Queued {
                                    device: item.device,
                                    attempt: item.attempt + 1,
                                    due: at + delay,
                                });
                            } else {
                                run.dead_letter_arrivals += 1;
                                if !run.activated.contains_key(&item.device) {
                                    run.dead_letters.insert(item.device, e.error_type());
                                }
                            }
                        }
                    }
                }
            }
        }));
    }

    // ------------------------------------------------------------ devices reconnect
    let reconnects = {
        let run = Arc::clone(&run);
        let count = devices.len();
        tokio::spawn(async move {
            // Per device: when it next tries, and its current backoff.
            let mut next: Vec<(f64, Duration)> = (0..count)
                .map(|d| {
                    (
                        jitter(d, 0) * FIRST_RECONNECT.as_secs_f64(),
                        FIRST_RECONNECT,
                    )
                })
                .collect();
            let mut round = 1;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = started.elapsed().as_secs_f64();
                let mut run = lock(&run);
                if run.activated.len() == count || started.elapsed() > deadline {
                    return;
                }
                for (device, (at, backoff)) in next.iter_mut().enumerate() {
                    if now < *at || run.activated.contains_key(&device) {
                        continue;
                    }
                    // Refused again: the connect publishes the registered event again.
                    run.queue.push_back(Queued {
                        device,
                        attempt: 1,
                        due: now,
                    });
                    *run.published.entry(device).or_default() += 1;
                    *backoff = (*backoff * 2).min(LAST_RECONNECT);
                    *at = now + backoff.as_secs_f64() * (0.5 + jitter(device, round));
                }
                round += 1;
            }
        })
    };
    for container in containers {
        container.await.expect("container");
    }
    reconnects.await.expect("reconnects");
    let elapsed = started.elapsed().as_secs_f64();

    // ------------------------------------------------------------ report and audit
    let run = std::mem::take(&mut *lock(&run));
    let tally = model.total();
    let published: u32 = run.published.values().sum();
    let mut active = 0;
    let mut broken = Vec::new();
    for device in &devices {
        let certificate = fleet
            .iot()
            .describe_certificate(&device.id)
            .await
            .expect("audit");
        if certificate.status == CertificateStatus::Active {
            active += 1;
            let (things, policies) = fleet.attachments(device).await;
            if things.is_empty() || policies.is_empty() {
                broken.push(device.id.clone());
            }
        }
    }
    let lost = devices.len() - active;
    let rate = run.activated.len() as f64
        / run
            .activated
            .values()
            .copied()
            .fold(0.0, f64::max)
            .max(1e-9);
    let bound = QUOTA_BOUND_RATE;
    println!("  completed in {elapsed:.1} s");
    println!(
        "  events published {published} ({} duplicates from reconnects), outcomes {:?}",
        published as usize - devices.len(),
        run.outcomes
    );
    println!(
        "  IoT calls {}: {} throttled at the quotas, answered {}; {} {}; dead-letter arrivals {}, devices left there unadmitted {} (they reconnect)",
        tally.calls,
        tally.over_quota,
        tally.forwarded,
        if args.sqs {
            "redeliveries"
        } else {
            "Lambda retries"
        },
        run.lambda_retries,
        run.dead_letter_arrivals,
        run.dead_letters.len()
    );
    for (api, t) in model.tallies() {
        println!(
            "    {api:<22} {:>6} calls  {:>6} throttled",
            t.calls, t.over_quota
        );
    }
    println!(
        "  audit: {active} ACTIVE, every one with its Thing and policy: {}",
        if broken.is_empty() {
            "yes".to_owned()
        } else {
            format!("NO ({broken:?})")
        }
    );
    let per_second = per_second(&run.activated, elapsed);
    let stem = if args.sqs { "burst-sqs" } else { "burst" };
    if let Err(e) = write_outputs(&args.out, stem, &per_second, bound) {
        eprintln!("bench-burst: {e}");
    }
    println!(
        "burst: {} devices, {active} active, {lost} lost, {rate:.1} registrations/s, {:.0}% of the quota-bound rate",
        devices.len(),
        100.0 * rate / bound
    );
    if lost == 0 && broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A reproducible fraction in [0, 1) per device and round.
fn jitter(device: usize, round: u64) -> f64 {
    let mut x = (device as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ round.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Activations per whole second since the start.
fn per_second(activated: &BTreeMap<usize, f64>, elapsed: f64) -> Vec<u32> {
    let mut seconds = vec![0u32; elapsed.ceil() as usize + 1];
    for at in activated.values() {
        seconds[*at as usize] += 1;
    }
    seconds
}

fn write_outputs(
    dir: &std::path::Path,
    stem: &str,
    per_second: &[u32],
    bound: f64,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut csv = String::from("second,registrations\n");
    for (second, n) in per_second.iter().enumerate() {
        let _ = writeln!(csv, "{second},{n}");
    }
    let csv_path = dir.join(format!("{stem}.csv"));
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let svg_path = dir.join(format!("{stem}.svg"));
    std::fs::write(&svg_path, chart(per_second, bound))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!("  wrote {} and {}", csv_path.display(), svg_path.display());
    Ok(())
}

/// The achieved registrations per second against the quota-bound line.
fn chart(per_second: &[u32], bound: f64) -> String {
    let (w, h, pad) = (720.0, 320.0, 40.0);
    let max_y = per_second
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(bound.ceil() as u32 + 2) as f64;
    let max_x = per_second.len().max(2) as f64 - 1.0;
    let x = |s: f64| pad + s / max_x * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let points: Vec<String> = per_second
        .iter()
        .enumerate()
        .map(|(s, n)| format!("{:.1},{:.1}", x(s as f64), y(f64::from(*n))))
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<line x1="{pad}" y1="{q:.1}" x2="{r}" y2="{q:.1}" stroke="#c0392b" stroke-dasharray="6,4"/>
<text x="{r}" y="{ql:.1}" text-anchor="end" fill="#c0392b">quota-bound rate {bound:.1}/s</text>
<polyline fill="none" stroke="#2471a3" stroke-width="2" points="{points}"/>
<text x="{pad}" y="20">registrations per second (achieved), {n} s</text>
<text x="{r}" y="{xl}" text-anchor="end">seconds since the burst</text>
<text x="8" y="{t:.1}">{max_y:.0}</text>
</svg>
"##,
        b = h - pad,
        r = w - pad,
        q = y(bound),
        ql = y(bound) - 6.0,
        points = points.join(" "),
        n = per_second.len(),
        xl = h - 10.0,
        t = pad + 4.0,
    );
    svg
}
