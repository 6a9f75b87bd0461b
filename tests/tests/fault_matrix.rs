//! The fault matrix: registration and lifecycle under 30 % throttling, 5 % 5xx, dropped
//! connections and timeouts on every AWS call, plus IoT's default per-API quotas, through the
//! real adapters and their own retry configuration (`tests/src/fault_model.rs` sits between the
//! SDK and the emulator). Lambda's retry semantics are simulated around each handler: async
//! invoke (up to 3 attempts, then the on-failure destination, here a list), and the SQS burst
//! buffer (batches of 10 through the real entry point, only the reported failures redelivered,
//! the dead-letter queue after the queue's maxReceiveCount).
//!
//! What must hold: every registration ends ACTIVE or dead-lettered with a classified error (none
//! lost); an invariant checker sampling the registry throughout finds no ACTIVE certificate
//! without its Thing and policy and no INACTIVE or REVOKED certificate made ACTIVE; and every
//! decommission, retried under the same faults (and redriven from the dead letters), leaves no
//! orphan: no certificate, no Thing, no policy attachment of the device.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_domain::JitrError;
use jitr_domain::registry::{CertificateStatus, Registry, RegistryErrorKind};
use jitr_lifecycle::{Action, DeviceCommand, Lifecycle, LifecycleConfig};
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::fault_model::{DEFAULT_IOT_QUOTAS, FaultModel, Faults};
use jitr_testkit::pki::{Device, DeviceSpec};
use jitr_tests::failure_log::FailureLog;
use jitr_tests::fleet::Fleet;

/// Devices per run: small, so `make test` stays fast; `make bench-burst` is for fleets.
const DEVICES: usize = 12;

/// Lambda's asynchronous invocation: the first attempt and two retries.
const LAMBDA_ATTEMPTS: usize = 3;

fn matrix() -> Faults {
    Faults {
        throttle: 0.30,
        server_error: 0.05,
        drop: 0.01,
        timeout: 0.005,
        // Past the adapters' 3 s attempt timeout.
        hold: Duration::from_secs(4),
        latency: Duration::from_millis(2),
    }
}

/// Runs `attempt` as Lambda's async invoke does: retried on error, dead-lettered (with the
/// error type) after the last attempt.
async fn invoke_async<T, F, Fut>(mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, JitrError>>,
{
    let mut last = String::new();
    for _ in 0..LAMBDA_ATTEMPTS {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => last = e.error_type(),
        }
    }
    Err(last)
}

/// The burst buffer as the template deploys it: BatchSize and maxReceiveCount.
const SQS_BATCH: usize = 10;
const SQS_MAX_RECEIVES: u32 = 5;
/// The event source mapping's MaximumConcurrency (the template's default is 2).
const SQS_POLLERS: usize = 2;

/// Samples every certificate's status until stopped; returns what broke an invariant.
fn invariant_checker(
    iot: IotRegistry,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let mut samples = 0;
        let mut violations = Vec::new();
        let mut refused = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            for id in &ids {
                let certificate = match iot.describe_certificate(id).await {
                    Ok(c) => c,
                    Err(e) if e.kind() == RegistryErrorKind::NotFound => continue,
                    Err(e) => panic!("checker DescribeCertificate: {e}"),
                };
                match certificate.status {
                    CertificateStatus::Active => {
                        if refused.contains(id) {
                            violations.push(format!("{id}: INACTIVE or REVOKED, then ACTIVE"));
                        }
                        let things = iot.list_principal_things(&certificate.arn).await;
                        let policies = iot.list_attached_policies(&certificate.arn).await;
                        let bare = things.is_ok_and(|t| t.is_empty())
                            || policies.is_ok_and(|p| p.is_empty());
                        // A decommission may have set it INACTIVE and detached it between the
                        // reads: only a certificate still ACTIVE after them breaks the rule.
                        if bare
                            && iot
                                .describe_certificate(id)
                                .await
                                .is_ok_and(|c| c.status == CertificateStatus::Active)
                        {
                            violations.push(format!("{id}: ACTIVE without its Thing or policy"));
                        }
                    }
                    CertificateStatus::Inactive | CertificateStatus::Revoked => {
                        refused.insert(id.clone());
                    }
                    _ => {}
                }
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (samples, violations)
    })
}

fn print_tallies(what: &str, model: &FaultModel, elapsed: Duration) {
    let t = model.total();
    eprintln!(
        "{what}: {:.1} s, {} calls: {} over quota, {} throttled, {} 5xx, {} dropped, {} timed out, {} answered",
        elapsed.as_secs_f64(),
        t.calls,
        t.over_quota,
        t.throttled,
        t.server_errors,
        t.dropped,
        t.timed_out,
        t.forwarded
    );
    for (api, t) in model.tallies() {
        eprintln!(
            "  {api:<22} {:>4} calls, {:>3} answered",
            t.calls, t.forwarded
        );
    }
}

/// A fleet of `DEVICES` pending devices named `<prefix>-NN`, the invariant checker sampling them,
/// and the registration handler on the real adapters behind the matrix (`seed` for its draws).
struct Matrix {
    fleet: Fleet,
    devices: Vec<Device>,
    stop: Arc<AtomicBool>,
    checker: tokio::task::JoinHandle<(usize, Vec<String>)>,
    model: Arc<FaultModel>,
    registrar: Arc<Registrar<IotRegistry, SourceFetcher, DynamoLedger>>,
}

async fn matrix_of(prefix: &str, seed: u64) -> Matrix {
    let fleet = Fleet::new().await;
    fleet.ledger().await;
    let mut devices: Vec<Device> = Vec::new();
    for n in 0..DEVICES {
        let name = format!("{prefix}-{n:02}");
        devices.push(fleet.pending_device(DeviceSpec::named(&name)).await);
    }
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let checker = invariant_checker(fleet.iot().clone(), ids, Arc::clone(&stop));
    let model = FaultModel::new(&DEFAULT_IOT_QUOTAS, matrix(), seed);
    let sdk = model.sdk_config(&fleet.account.sdk);
    let registrar = Arc::new(
        Registrar::new(
            IotRegistry::from_sdk_config(&sdk),
            fleet.config(),
            SourceFetcher::without_s3(),
        )
        .with_ledger(DynamoLedger::from_sdk_config(&sdk, "jitr-ledger")),
    );
    Matrix {
        fleet,
        devices,
        stop,
        checker,
        model,
        registrar,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_decommission_hold_under_quotas_and_faults() {
    let Matrix {
        fleet,
        devices,
        stop,
        checker,
        model,
        registrar,
    } = matrix_of("matrix", 0x5eed_0001).await;
    let started = Instant::now();
    let runs: Vec<_> = devices
        .iter()
        .map(|device| {
            let (registrar, event) = (Arc::clone(&registrar), fleet.event(device));
            let account = fleet.account.id.clone();
            tokio::spawn(async move { invoke_async(|| registrar.handle(&event, &account)).await })
        })
        .collect();
    let mut dead_letters = BTreeMap::new();
    let mut active = Vec::new();
    for (device, run) in devices.iter().zip(runs) {
        match run.await.expect("registration task") {
            Ok(report) => {
                assert!(
                    matches!(report.outcome, Outcome::Activated | Outcome::AlreadyActive),
                    "{}: {report:?}",
                    device.id
                );
                active.push(device.clone());
            }
            Err(error_type) => {
                dead_letters.insert(device.id.clone(), error_type);
            }
        }
    }
    print_tallies("registration", &model, started.elapsed());
    eprintln!("dead letters: {dead_letters:?}");
    let t = model.total();
    // Throttling and 5xx at these rates are certain over a run's ~250 calls; the quotas may or
    // may not bind for 12 devices (their buckets are unit-tested, and bench-burst saturates them).
    assert!(
        t.throttled > 0 && t.server_errors > 0,
        "the matrix injected its faults: {t:?}"
    );
    assert_eq!(active.len() + dead_letters.len(), DEVICES, "none lost");
    for (id, error_type) in &dead_letters {
        assert!(
            is_classified(error_type),
            "{id}: dead-lettered with an unclassified error {error_type}"
        );
        // It may be ACTIVE all the same (a step after the activation failed every attempt):
        // then with its Thing and policy, as for every certificate.
        let certificate = fleet.iot().describe_certificate(id).await.unwrap();
        if certificate.status == CertificateStatus::Active {
            let things = fleet.iot().list_principal_things(&certificate.arn).await;
            let policies = fleet.iot().list_attached_policies(&certificate.arn).await;
            assert!(
                things.is_ok_and(|t| !t.is_empty()) && policies.is_ok_and(|p| !p.is_empty()),
                "{id}: dead-lettered ACTIVE without its Thing or policy"
            );
        }
    }
    assert!(
        active.len() >= DEVICES / 2,
        "most registrations survive the matrix: {dead_letters:?}"
    );
    for device in &active {
        assert_admitted(&fleet, device, &device.id).await;
    }

    // ------------------------------------------------------------ decommission, half of them
    let model = FaultModel::new(&DEFAULT_IOT_QUOTAS, matrix(), 0x5eed_0002);
    let sdk = model.sdk_config(&fleet.account.sdk);
    let lifecycle = |sdk: &SdkConfig| {
        let config = LifecycleConfig::from_lookup(|_| None).unwrap();
        Arc::new(
            Lifecycle::new(IotRegistry::from_sdk_config(sdk), config)
                .with_ledger(DynamoLedger::from_sdk_config(sdk, "jitr-ledger")),
        )
    };
    let faulty_lifecycle = lifecycle(&sdk);
    let (retired, kept) = active.split_at(active.len() / 2);
    let started = Instant::now();
    let runs: Vec<_> = retired
        .iter()
        .map(|device| {
            let lifecycle = Arc::clone(&faulty_lifecycle);
            let name = jitr_domain::certificate::common_name(&device.cert_pem).unwrap();
            let command = DeviceCommand::new(&name, Action::Decommission, None).unwrap();
            tokio::spawn(async move { invoke_async(|| lifecycle.apply_now(&command)).await })
        })
        .collect();
    let mut redriven = 0;
    let clean_lifecycle = lifecycle(&fleet.account.sdk);
    for (device, run) in retired.iter().zip(runs) {
        if let Err(error_type) = run.await.expect("lifecycle task") {
            // An operator redrives the dead letter once the storm is over.
            assert!(error_type.contains('.'), "classified: {error_type}");
            let name = jitr_domain::certificate::common_name(&device.cert_pem).unwrap();
            let command = DeviceCommand::new(&name, Action::Decommission, None).unwrap();
            clean_lifecycle.apply_now(&command).await.expect("redrive");
            redriven += 1;
        }
    }
    print_tallies("decommission", &model, started.elapsed());
    eprintln!("{redriven} decommissions redriven from the dead letters");
    stop.store(true, Ordering::Relaxed);
    let (samples, violations) = checker.await.expect("checker");
    assert!(samples > 3, "the checker sampled throughout ({samples})");
    assert!(violations.is_empty(), "{violations:#?}");

    for device in retired {
        let name = jitr_domain::certificate::common_name(&device.cert_pem).unwrap();
        let thing = fleet.iot().describe_thing(&name).await;
        assert!(
            thing.is_err_and(|e| e.kind() == RegistryErrorKind::NotFound),
            "{name}: Thing left behind"
        );
        let certificate = fleet.iot().describe_certificate(&device.id).await;
        assert!(
            certificate.is_err_and(|e| e.kind() == RegistryErrorKind::NotFound),
            "{name}: certificate left behind"
        );
    }
    for device in kept {
        assert_admitted(&fleet, device, &device.id).await;
    }
}

/// A dead letter's error type is one of the classes the functions log (DESIGN.md's error classes).
fn is_classified(error_type: &str) -> bool {
    error_type.starts_with("Retryable.") || error_type.starts_with("Permanent.")
}

/// ACTIVE with its Thing and policy, as every admitted device must end.
async fn assert_admitted(fleet: &Fleet, device: &Device, context: &str) {
    assert_eq!(
        fleet.status(device).await,
        CertificateStatus::Active,
        "{context}: not ACTIVE"
    );
    let (things, policies) = fleet.attachments(device).await;
    assert!(
        !things.is_empty() && !policies.is_empty(),
        "{context}: ACTIVE without its Thing or policy"
    );
}

/// One message of the burst queue.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receives: u32,
}

/// The SQS path: registration events go through the burst queue to the real entry point
/// (`handle_lambda_event`) in batches; a failed message is redelivered until its receive count
/// reaches maxReceiveCount, then dead-lettered. Every device ends ACTIVE with its Thing and
/// policy, or in the dead-letter queue with the classified error the function logged for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_through_the_burst_queue_holds_under_faults() {
    let log = FailureLog::global();
    let Matrix {
        fleet,
        devices,
        stop,
        checker,
        model,
        registrar,
    } = matrix_of("queued", 0x5eed_0003).await;
    let mut messages: VecDeque<Message> = (devices.iter().enumerate())
        .map(|(n, device)| Message {
            id: format!("m-{n:02}"),
            body: fleet.event(device).to_string(),
            receives: 0,
        })
        .collect();
    // Two that fail every time, so the dead-letter path always runs: an event published in
    // another account (for a device pending here), and a body that is not JSON.
    let foreign = fleet
        .pending_device(DeviceSpec::named("queued-foreign"))
        .await;
    let mut foreign_event = fleet.event(&foreign);
    foreign_event["awsAccountId"] = "999999999999".into();
    for (id, body) in [
        ("m-foreign", foreign_event.to_string()),
        ("m-poison", "{not json".to_owned()),
    ] {
        let (id, receives) = (id.to_owned(), 0);
        messages.push_back(Message { id, body, receives });
    }
    let queue = Arc::new(Mutex::new(messages));
    let dead_letters: Arc<Mutex<Vec<Message>>> = Arc::default();
    let arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:registration",
        fleet.account.id
    );
    let started = Instant::now();
    let pollers: Vec<_> = (0..SQS_POLLERS)
        .map(|_| {
            let (queue, dead_letters) = (Arc::clone(&queue), Arc::clone(&dead_letters));
            let (registrar, arn) = (Arc::clone(&registrar), arn.clone());
            tokio::spawn(async move {
                loop {
                    let batch: Vec<Message> = {
                        let mut queue = queue.lock().unwrap();
                        let n = queue.len().min(SQS_BATCH);
                        queue.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        return;
                    }
                    let records: Vec<serde_json::Value> = (batch.iter())
                        .map(|m| {
                            serde_json::json!({"messageId": m.id, "eventSource": "aws:sqs",
                                "body": m.body, "attributes": {"ApproximateReceiveCount": (m.receives + 1).to_string()}})
                        })
                        .collect();
                    let mut context = lambda_runtime::Context::default();
                    context.invoked_function_arn.clone_from(&arn);
                    let payload = serde_json::json!({ "Records": records });
                    let answer = jitr_registration::handle_lambda_event(
                        &registrar,
                        lambda_runtime::LambdaEvent::new(payload, context),
                    )
                    .await;
                    // A failed invocation returns the whole batch; otherwise only its failures.
                    let failed: BTreeSet<String> = match answer {
                        Ok(response) => response["batchItemFailures"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                            .collect(),
                        Err(_) => batch.iter().map(|m| m.id.clone()).collect(),
                    };
                    for mut message in batch.into_iter().filter(|m| failed.contains(&m.id)) {
                        message.receives += 1;
                        if message.receives >= SQS_MAX_RECEIVES {
                            dead_letters.lock().unwrap().push(message);
                        } else {
                            queue.lock().unwrap().push_back(message);
                        }
                    }
                }
            })
        })
        .collect();
    for poller in pollers {
        poller.await.expect("poller");
    }
    print_tallies("registration (SQS)", &model, started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let (samples, violations) = checker.await.expect("checker");
    assert!(samples > 1, "the checker sampled throughout ({samples})");
    assert!(violations.is_empty(), "{violations:#?}");

    let dead: BTreeMap<String, u32> = (dead_letters.lock().unwrap().iter())
        .map(|m| (m.id.clone(), m.receives))
        .collect();
    eprintln!("dead letters (message, receives): {dead:?}");
    for (n, device) in devices.iter().enumerate() {
        let message = format!("m-{n:02}");
        if let Some(receives) = dead.get(&message) {
            assert_eq!(
                *receives, SQS_MAX_RECEIVES,
                "{message}: dead-lettered early"
            );
            let errors = log.errors_of(&device.id);
            assert_eq!(
                errors.len(),
                SQS_MAX_RECEIVES as usize,
                "{message}: one logged failure per receive: {errors:?}"
            );
            for error_type in errors {
                assert!(
                    is_classified(&error_type),
                    "{message}: unclassified {error_type}"
                );
            }
            // ACTIVE all the same when a step after the activation failed every time: then
            // with its Thing and policy.
            if fleet.status(device).await == CertificateStatus::Active {
                let (things, policies) = fleet.attachments(device).await;
                assert!(!things.is_empty() && !policies.is_empty(), "{message}");
            }
        } else {
            let context = format!("{message} ({}): not dead-lettered", device.id);
            assert_admitted(&fleet, device, &context).await;
        }
    }
    for (message, certificate_id) in [("m-foreign", foreign.id.as_str()), ("m-poison", "")] {
        assert_eq!(dead.get(message), Some(&SQS_MAX_RECEIVES), "{message}");
        let errors = log.errors_of(certificate_id);
        assert_eq!(
            errors.len(),
            SQS_MAX_RECEIVES as usize,
            "{message}: {errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.starts_with("Permanent.")),
            "{message}: {errors:?}"
        );
    }
    assert_eq!(
        fleet.status(&foreign).await,
        CertificateStatus::PendingActivation
    );
    assert!(
        dead.len() - 2 <= DEVICES / 2,
        "most registrations survive the matrix: {dead:?}"
    );
}

/// The calls one registration makes against each IoT quota: at IoT's default quotas the account
/// admits at least 9 devices a second (at most one call per registration against each 10/s
/// quota; the CA description is cached per container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_fit_the_default_quotas_at_nine_a_second() {
    const N: usize = 6;
    let fleet = Fleet::new().await;
    fleet.ledger().await;
    let model = FaultModel::new(&[], Faults::default(), 3);
    let sdk = model.sdk_config(&fleet.account.sdk);
    let registrar = Registrar::new(
        IotRegistry::from_sdk_config(&sdk),
        fleet.config(),
        SourceFetcher::without_s3(),
    )
    .with_ledger(DynamoLedger::from_sdk_config(&sdk, "jitr-ledger"));
    for n in 0..N {
        let device = fleet
            .pending_device(DeviceSpec::named(&format!("quota-{n}")))
            .await;
        let report = registrar
            .handle(&fleet.event(&device), &fleet.account.id)
            .await
            .unwrap();
        assert_eq!(report.outcome, Outcome::Activated);
    }
    let tallies = model.tallies();
    let mut bound = f64::INFINITY;
    for (api, quota) in DEFAULT_IOT_QUOTAS {
        let per_registration = tallies.get(api).map_or(0, |t| t.calls) as f64 / N as f64;
        let rate = quota / per_registration;
        eprintln!("  {api:<22} {per_registration:.2} per registration -> {rate:.1}/s");
        bound = bound.min(rate);
    }
    eprintln!("quota-bound rate: {bound:.1} registrations/s");
    assert!(
        bound >= 9.0,
        "{bound:.1} registrations/s at the default quotas"
    );
}
