//! The lifecycle function over the in-memory registry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jitr_domain::ledger::{Ledger, MemoryLedger};
use jitr_domain::registry::memory::Snapshot;
use jitr_domain::registry::{
    CertificateStatus, MemoryRegistry, Registry, RegistryErrorKind, ThingSpec,
};
use jitr_domain::samples;
use jitr_domain::webhook::sign;
use jitr_lifecycle::{Action, DeviceCommand, Lifecycle, LifecycleConfig, handle_payload};
use jitr_testkit::faults::Faulty;
use jitr_testkit::pki::{Ca, DeviceSpec};
use serde_json::{Value, json};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/lifecycle")
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn sample_events_have_their_documented_outcomes() {
    use time::format_description::well_known::Rfc3339;
    let sample = samples::load(&samples_dir()).await.unwrap();
    let now = time::OffsetDateTime::parse(sample.now.as_deref().unwrap(), &Rfc3339)
        .unwrap()
        .unix_timestamp();
    let config = LifecycleConfig::from_lookup(|n| sample.variable(n)).unwrap();
    let ids = sample.certificate_ids.clone();
    let lifecycle = Lifecycle::new(sample.registry, config);
    let run = |file: &str| {
        let payload: Value =
            serde_json::from_slice(&std::fs::read(samples_dir().join(file)).unwrap()).unwrap();
        let lifecycle = &lifecycle;
        async move { handle_payload(lifecycle, &payload, now).await }
    };
    let status = |lifecycle: &Lifecycle<MemoryRegistry>, n: usize| {
        lifecycle
            .registry()
            .snapshot()
            .certificates
            .into_iter()
            .find(|c| c.id == ids[n])
            .map(|c| c.status)
    };

    let r = run("01-webhook-accepted.json").await.unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), body(&r)["outcome"].as_str()),
        (Some(200), Some("Changed"))
    );
    assert_eq!(status(&lifecycle, 0), Some(CertificateStatus::Active));
    let r = run("02-webhook-rejected-base64.json").await.unwrap();
    assert_eq!(r["statusCode"], 200);
    assert_eq!(status(&lifecycle, 0), Some(CertificateStatus::Inactive));

    let before = lifecycle.registry().snapshot();
    let r = run("03-webhook-bad-signature.json").await.unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), body(&r)["error"].as_str()),
        (Some(401), Some("BadSignature"))
    );
    let r = run("04-webhook-replayed.json").await.unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), body(&r)["error"].as_str()),
        (Some(400), Some("Replay"))
    );
    assert_eq!(
        lifecycle.registry().snapshot(),
        before,
        "refused webhooks change nothing"
    );

    let r = run("05-direct-activate-revoked.json").await.unwrap();
    assert_eq!(r["certificates"][0]["note"], "RevokedStaysRevoked");
    assert_eq!(status(&lifecycle, 3), Some(CertificateStatus::Revoked));
    let r = run("06-eventbridge-deactivate.json").await.unwrap();
    assert_eq!(r["outcome"], "Changed");
    assert_eq!(status(&lifecycle, 2), Some(CertificateStatus::Inactive));
    let r = run("07-sqs-batch.json").await.unwrap();
    assert_eq!(
        r,
        json!({"batchItemFailures": [{"itemIdentifier": "msg-2"}]})
    );
    assert_eq!(status(&lifecycle, 2), Some(CertificateStatus::Active));

    let r = run("08-webhook-decommissioned.json").await.unwrap();
    assert_eq!(r["statusCode"], 200);
    let snapshot = lifecycle.registry().snapshot();
    assert_eq!(
        status(&lifecycle, 0),
        None,
        "the exclusive certificate is deleted"
    );
    let shared = snapshot
        .certificates
        .iter()
        .find(|c| c.id == ids[1])
        .unwrap();
    assert_eq!(
        (shared.things.as_slice(), shared.status.clone()),
        (&["gateway-0200".to_owned()][..], CertificateStatus::Active)
    );
    assert!(!snapshot.things.iter().any(|t| t.name == "sensor-0100"));
    let r = run("09-webhook-decommissioned-again.json").await.unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), body(&r)["outcome"].as_str()),
        (Some(200), Some("ThingNotFound"))
    );
}

#[tokio::test]
async fn every_lifecycle_sample_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if name == "registry.json" {
            samples::load(&samples_dir()).await.unwrap();
        } else if name.ends_with(".json") {
            let value: Value = serde_json::from_str(&text).unwrap();
            let recognised = jitr_domain::webhook::is_function_url_request(&value)
                || value.get("Records").is_some()
                || DeviceCommand::from_value(value.get("detail").unwrap_or(&value)).is_ok();
            assert!(recognised, "{name}");
        } else if name.ends_with(".key.pem") {
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
        } else if name.ends_with(".pem") {
            assert!(
                jitr_domain::certificate::pem_to_der(&text).is_some(),
                "{name}"
            );
        } else {
            panic!("unexpected file {name}");
        }
        seen += 1;
    }
    assert!(seen >= 15);
}

/// A device Thing with certificates in given statuses, all with the policy; and the device
/// ledger the lifecycle function records its decisions in.
struct World {
    memory: Arc<MemoryRegistry>,
    registry: Arc<Faulty<Arc<MemoryRegistry>>>,
    ledger: Arc<MemoryLedger>,
    ca: Ca,
    ca_id: String,
}

impl World {
    fn new() -> Self {
        let memory = Arc::new(MemoryRegistry::new("123456789012", "eu-west-1"));
        let ca = Ca::new("Lifecycle CA", "Acme").unwrap();
        let ca_id = memory.register_ca(&ca.pem, true).unwrap();
        memory.create_policy("device");
        let registry = Arc::new(Faulty::new(Arc::clone(&memory)));
        Self {
            memory,
            registry,
            ledger: Arc::default(),
            ca,
            ca_id,
        }
    }

    /// A certificate in `status`, attached to `things` and (optionally) the policy.
    async fn certificate(
        &self,
        cn: &str,
        status: CertificateStatus,
        things: &[&str],
        policy: bool,
    ) -> String {
        let device = self.ca.issue(&DeviceSpec::named(cn)).unwrap();
        let id = self
            .memory
            .register_certificate(&device.cert_pem, Some(&self.ca_id), status)
            .unwrap();
        let arn = self.memory.certificate_arn(&id);
        for thing in things {
            self.memory
                .create_thing(&ThingSpec {
                    name: (*thing).into(),
                    ..ThingSpec::default()
                })
                .await
                .unwrap();
            self.memory
                .attach_thing_principal(thing, &arn)
                .await
                .unwrap();
        }
        if policy {
            self.memory.attach_policy("device", &arn).await.unwrap();
        }
        id
    }

    fn lifecycle(
        &self,
        deletes: bool,
    ) -> Lifecycle<Arc<Faulty<Arc<MemoryRegistry>>>, Arc<MemoryLedger>> {
        let config = LifecycleConfig {
            webhook_secret: None,
            decommission_deletes_certificates: deletes,
            device_ledger: None,
            webhook_max_age_secs: 900,
            webhook_secret_arn: None,
            device_id_attribute: None,
        };
        Lifecycle::new(Arc::clone(&self.registry), config).with_ledger(Arc::clone(&self.ledger))
    }

    fn status(&self, id: &str) -> Option<CertificateStatus> {
        self.memory
            .snapshot()
            .certificates
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.status)
    }
}

fn command(device: &str, action: Action) -> DeviceCommand {
    DeviceCommand::new(device, action, None).unwrap()
}

#[tokio::test]
async fn transition_table() {
    use CertificateStatus::{Active, Inactive, PendingActivation, Revoked};
    let cases = [
        (Action::Activate, Inactive, Active),
        (Action::Activate, Active, Active),
        (Action::Activate, Revoked, Revoked),
        (Action::Activate, PendingActivation, PendingActivation),
        (Action::Deactivate, Active, Inactive),
        (Action::Deactivate, Inactive, Inactive),
        (Action::Deactivate, Revoked, Revoked),
        // A registration in flight: its activation will find INACTIVE and leave it.
        (Action::Deactivate, PendingActivation, Inactive),
        (Action::Revoke, Active, Revoked),
        (Action::Revoke, Inactive, Revoked),
        (Action::Revoke, PendingActivation, Revoked),
        (Action::Revoke, Revoked, Revoked),
    ];
    for (action, from, to) in cases {
        let world = World::new();
        let id = world.certificate("dev", from.clone(), &["dev"], true).await;
        world
            .lifecycle(true)
            .apply_now(&command("dev", action))
            .await
            .unwrap();
        assert_eq!(world.status(&id), Some(to), "{action:?} from {from}");
        assert!(world.memory.invariant_violations().is_empty());
    }
}

#[tokio::test]
async fn activation_needs_a_policy_and_a_missing_thing_is_nothing_to_do() {
    let world = World::new();
    let id = world
        .certificate("bare", CertificateStatus::Inactive, &["bare"], false)
        .await;
    let summary = world
        .lifecycle(true)
        .apply_now(&command("bare", Action::Activate))
        .await
        .unwrap();
    assert_eq!(summary.certificates[0].note, Some("NoPolicyAttached"));
    assert_eq!(world.status(&id), Some(CertificateStatus::Inactive));
    for action in Action::ALL {
        let summary = world
            .lifecycle(true)
            .apply_now(&command("ghost", action))
            .await
            .unwrap();
        assert_eq!(summary.outcome, "ThingNotFound");
    }
}

#[tokio::test]
async fn a_revoked_certificate_stays_revoked_through_every_sequence() {
    let actions = [
        Action::Activate,
        Action::Deactivate,
        Action::Revoke,
        Action::Activate,
    ];
    for first in actions {
        for second in actions {
            for third in actions {
                let world = World::new();
                let id = world
                    .certificate("rv", CertificateStatus::Revoked, &["rv"], true)
                    .await;
                let lifecycle = world.lifecycle(true);
                for action in [first, second, third] {
                    lifecycle.apply_now(&command("rv", action)).await.unwrap();
                    assert_eq!(
                        world.status(&id),
                        Some(CertificateStatus::Revoked),
                        "{first:?} {second:?} {third:?}"
                    );
                }
            }
        }
    }
}

/// Two certificates on the device, one shared with a gateway.
async fn decommission_world() -> (World, String, String, String) {
    let world = World::new();
    let own = world
        .certificate("own", CertificateStatus::Active, &["device-1"], true)
        .await;
    let shared = world
        .certificate(
            "shared",
            CertificateStatus::Active,
            &["device-1", "gateway-1"],
            true,
        )
        .await;
    let gateway = world
        .certificate("gw", CertificateStatus::Active, &["gateway-1"], true)
        .await;
    (world, own, shared, gateway)
}

fn assert_decommissioned(snapshot: &Snapshot, own: &str, shared: &str) {
    assert!(
        !snapshot.certificates.iter().any(|c| c.id == own),
        "the device's own certificate is deleted"
    );
    let shared = snapshot
        .certificates
        .iter()
        .find(|c| c.id == shared)
        .unwrap();
    assert_eq!(
        shared.status,
        CertificateStatus::Active,
        "the gateway keeps using the shared certificate"
    );
    assert_eq!(shared.things, ["gateway-1"]);
    assert_eq!(shared.policies, ["device"]);
    assert!(!snapshot.things.iter().any(|t| t.name == "device-1"));
}

#[tokio::test]
async fn decommission_deletes_what_is_the_devices_and_spares_what_is_shared() {
    let (world, own, shared, gateway) = decommission_world().await;
    let summary = world
        .lifecycle(true)
        .apply_now(&command("device-1", Action::Decommission))
        .await
        .unwrap();
    assert!(summary.thing_deleted);
    assert_decommissioned(&world.memory.snapshot(), &own, &shared);
    assert_eq!(world.status(&gateway), Some(CertificateStatus::Active));
    let again = world
        .lifecycle(true)
        .apply_now(&command("device-1", Action::Decommission))
        .await
        .unwrap();
    assert_eq!(again.outcome, "ThingNotFound");
}

#[tokio::test]
async fn decommission_can_keep_certificates_inactive() {
    let (world, own, _, _) = decommission_world().await;
    world
        .lifecycle(false)
        .apply_now(&command("device-1", Action::Decommission))
        .await
        .unwrap();
    let kept = world
        .memory
        .snapshot()
        .certificates
        .into_iter()
        .find(|c| c.id == own)
        .unwrap();
    assert_eq!(kept.status, CertificateStatus::Inactive);
    assert!(kept.things.is_empty() && kept.policies.is_empty());
}

/// A fault at any step surfaces as a classified error; the retry completes the same end state.
#[tokio::test]
async fn a_retry_after_a_failure_at_any_decommission_step_completes() {
    let steps = [
        "ListThingPrincipals",
        "DescribeCertificate",
        "ListPrincipalThings",
        "UpdateCertificate",
        "ListAttachedPolicies",
        "DetachPolicy",
        "DetachThingPrincipal",
        "DeleteCertificate",
        "DeleteThing",
    ];
    for step in steps {
        let error_type = decommission_failing_once(step, RegistryErrorKind::Throttled).await;
        assert_eq!(error_type, "Retryable.Throttled", "{step}");
    }
}

/// Decommissions with `step` failing once as `kind`; returns the error type after checking
/// that the retry completes the decommission.
async fn decommission_failing_once(step: &'static str, kind: RegistryErrorKind) -> String {
    let (world, own, shared, _) = decommission_world().await;
    world.registry.fail_next(step, kind);
    let err = world
        .lifecycle(true)
        .apply_now(&command("device-1", Action::Decommission))
        .await
        .unwrap_err();
    world
        .lifecycle(true)
        .apply_now(&command("device-1", Action::Decommission))
        .await
        .unwrap();
    assert_decommissioned(&world.memory.snapshot(), &own, &shared);
    err.error_type()
}

/// Issue 9, item 5: DeleteCertificate's conflict and DeleteThing's "still attached" right after
/// the detaches are IoT Core catching up: retryable, and the retry completes. A Thing that keeps
/// a principal this function does not manage stays a permanent error.
#[tokio::test]
async fn deletes_refused_while_detaches_propagate_are_retryable() {
    let cases = [
        ("DeleteCertificate", RegistryErrorKind::Conflict),
        ("DeleteThing", RegistryErrorKind::InvalidRequest),
    ];
    for (step, kind) in cases {
        let error_type = decommission_failing_once(step, kind).await;
        assert_eq!(error_type, "Retryable.NotYetConsistent", "{step}");
    }

    let world = World::new();
    world
        .certificate("own", CertificateStatus::Active, &["device-2"], true)
        .await;
    // A principal that is not a certificate (a Cognito identity) stays attached.
    world
        .memory
        .attach_foreign_principal("device-2", "us-east-1:0000-cognito-identity");
    let err = world
        .lifecycle(true)
        .apply_now(&command("device-2", Action::Decommission))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Permanent.InvalidRequest");
}

#[tokio::test]
async fn webhooks_with_bad_signatures_change_nothing() {
    let world = World::new();
    let id = world
        .certificate("mender-1", CertificateStatus::Active, &["mender-1"], true)
        .await;
    let secret = "webhook-secret-for-tests";
    let config = LifecycleConfig {
        webhook_secret: Some(jitr_domain::webhook::WebhookSecret::new(secret)),
        decommission_deletes_certificates: true,
        device_ledger: None,
        webhook_max_age_secs: 900,
        webhook_secret_arn: None,
        device_id_attribute: None,
    };
    let lifecycle = Lifecycle::new(Arc::clone(&world.registry), config);
    let now = 1_800_000_000;
    let time = time::OffsetDateTime::from_unix_timestamp(now)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let payload = json!({"id": "w1", "type": "device-decommissioned", "data": {"id": "mender-1"}, "time": time}).to_string();
    let request = |signature: &str| {
        json!({"version": "2.0", "headers": {"x-men-signature": signature},
        "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": payload, "isBase64Encoded": false})
    };
    let before = world.memory.snapshot();
    for bad in [
        sign(b"wrong-secret-wrong-secret", payload.as_bytes()),
        String::new(),
        "00".repeat(32),
    ] {
        let response = handle_payload(&lifecycle, &request(&bad), now)
            .await
            .unwrap();
        assert_eq!(response["statusCode"], 401);
    }
    assert_eq!(world.memory.snapshot(), before);
    let response = handle_payload(
        &lifecycle,
        &request(&sign(secret.as_bytes(), payload.as_bytes())),
        now,
    )
    .await
    .unwrap();
    assert_eq!(response["statusCode"], 200);
    assert_eq!(world.status(&id), None);
}

#[tokio::test]
async fn retryable_failures_answer_503_and_direct_errors_are_classified() {
    let world = World::new();
    world
        .certificate("dev-503", CertificateStatus::Active, &["dev-503"], true)
        .await;
    let secret = "webhook-secret-for-tests";
    let config = LifecycleConfig {
        webhook_secret: Some(jitr_domain::webhook::WebhookSecret::new(secret)),
        decommission_deletes_certificates: true,
        device_ledger: None,
        webhook_max_age_secs: 900,
        webhook_secret_arn: None,
        device_id_attribute: None,
    };
    let lifecycle = Lifecycle::new(Arc::clone(&world.registry), config);
    let now = 1_800_000_000;
    let time = time::OffsetDateTime::from_unix_timestamp(now)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let payload = json!({"id": "w2", "type": "device-status-changed", "data": {"id": "dev-503", "status": "rejected"}, "time": time}).to_string();
    let request = json!({"headers": {"x-men-signature": sign(secret.as_bytes(), payload.as_bytes())},
        "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": payload, "isBase64Encoded": false});
    world
        .registry
        .fail_next("UpdateCertificate", RegistryErrorKind::Throttled);
    let response = handle_payload(&lifecycle, &request, now).await.unwrap();
    assert_eq!(response["statusCode"], 503);
    world
        .registry
        .fail_next("UpdateCertificate", RegistryErrorKind::AccessDenied);
    let response = handle_payload(&lifecycle, &request, now).await.unwrap();
    assert_eq!(response["statusCode"], 500);

    let err = handle_payload(
        &lifecycle,
        &json!({"deviceId": "dev-503", "action": "explode"}),
        now,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "Permanent.MalformedEvent");
    world
        .registry
        .fail_next("ListThingPrincipals", RegistryErrorKind::Unavailable);
    let err = handle_payload(
        &lifecycle,
        &json!({"deviceId": "dev-503", "action": "revoke"}),
        now,
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "Retryable.Unavailable");
}

/// A signed Mender webhook for `device` with `status`, sent at `time` (seconds), as the
/// Function URL delivers it.
fn mender_webhook(secret: &str, id: &str, device: &str, status: &str, time: i64) -> Value {
    let time = time::OffsetDateTime::from_unix_timestamp(time)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"id": id, "type": "device-status-changed",
        "data": {"id": device, "status": status}, "time": time})
    .to_string();
    json!({"headers": {"x-men-signature": sign(secret.as_bytes(), body.as_bytes())},
        "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": body, "isBase64Encoded": false})
}

/// The secret and the clock the webhook tests sign and check with.
const WEBHOOK_TEST_SECRET: &str = "webhook-secret-for-tests";
const WEBHOOK_TEST_NOW: i64 = 1_800_000_000;

impl World {
    /// A world with one device whose ACTIVE certificate (returned) is its only one, and the
    /// lifecycle function taking webhooks signed with `WEBHOOK_TEST_SECRET`.
    async fn webhook_device(
        name: &str,
    ) -> (
        Self,
        String,
        Lifecycle<Arc<Faulty<Arc<MemoryRegistry>>>, Arc<MemoryLedger>>,
    ) {
        let world = World::new();
        let id = world
            .certificate(name, CertificateStatus::Active, &[name], true)
            .await;
        let lifecycle = world.webhook_lifecycle(WEBHOOK_TEST_SECRET);
        (world, id, lifecycle)
    }

    /// The lifecycle function with a webhook secret and this world's ledger.
    fn webhook_lifecycle(
        &self,
        secret: &str,
    ) -> Lifecycle<Arc<Faulty<Arc<MemoryRegistry>>>, Arc<MemoryLedger>> {
        let config = LifecycleConfig {
            webhook_secret: Some(jitr_domain::webhook::WebhookSecret::new(secret)),
            decommission_deletes_certificates: true,
            device_ledger: None,
            webhook_max_age_secs: 900,
            webhook_secret_arn: None,
            device_id_attribute: None,
        };
        Lifecycle::new(Arc::clone(&self.registry), config).with_ledger(Arc::clone(&self.ledger))
    }
}

/// Issue 10: Mender names a device by its own id, not by the Thing's name. With
/// `DEVICE_ID_ATTRIBUTE` a webhook reaches the Thing carrying that id in the attribute; an id no
/// Thing carries answers 200 `DeviceUnresolved`, recorded, where it was a silent `ThingNotFound`.
#[tokio::test]
async fn a_webhook_by_mender_id_reaches_the_thing_carrying_it() {
    let world = World::new();
    let mender_id = "6a1b2c3d4e5f60718293a4b5";
    let id = world
        .certificate("sensor-77", CertificateStatus::Active, &[], true)
        .await;
    world
        .memory
        .create_thing(&ThingSpec {
            name: "sensor-77".into(),
            attributes: [("menderId".to_owned(), mender_id.to_owned())].into(),
            ..ThingSpec::default()
        })
        .await
        .unwrap();
    world
        .memory
        .attach_thing_principal("sensor-77", &world.memory.certificate_arn(&id))
        .await
        .unwrap();
    let (secret, now) = (WEBHOOK_TEST_SECRET, WEBHOOK_TEST_NOW);
    let by_name = world.webhook_lifecycle(secret);
    let mut config = by_name.config().clone();
    config.device_id_attribute = Some("menderId".into());
    let by_id =
        Lifecycle::new(Arc::clone(&world.registry), config).with_ledger(Arc::clone(&world.ledger));

    let rejected = mender_webhook(secret, "r-1", mender_id, "rejected", now - 30);
    let response = handle_payload(&by_name, &rejected, now).await.unwrap();
    assert_eq!(
        body(&response)["outcome"],
        "ThingNotFound",
        "without the attribute the Mender id names no Thing"
    );
    assert_eq!(world.status(&id), Some(CertificateStatus::Active));

    let rejected = mender_webhook(secret, "r-2", mender_id, "rejected", now - 20);
    let response = handle_payload(&by_id, &rejected, now).await.unwrap();
    assert_eq!(response["statusCode"], 200);
    let answer = body(&response);
    assert_eq!(
        (
            &answer["outcome"],
            &answer["thingNames"],
            &answer["deviceId"]
        ),
        (&json!("Changed"), &json!(["sensor-77"]), &json!(mender_id)),
        "{answer}"
    );
    assert_eq!(world.status(&id), Some(CertificateStatus::Inactive));
    let history = world.ledger.history(&format!("menderId={mender_id}")).await;
    assert_eq!(
        history.unwrap().len(),
        1,
        "the ledger knows the device by its id"
    );

    let unknown = mender_webhook(secret, "r-3", "0000aaaa0000bbbb0000cccc", "rejected", now);
    let response = handle_payload(&by_id, &unknown, now).await.unwrap();
    assert_eq!(response["statusCode"], 200);
    let answer = body(&response);
    assert_eq!(
        (&answer["outcome"], &answer["recorded"]),
        (&json!("DeviceUnresolved"), &json!(true)),
        "{answer}"
    );
}

/// Issue 9: a delayed `accepted` (Mender retries deliveries) after a newer `rejected` changes
/// nothing, and a captured signed webhook replayed within the window changes nothing either.
#[tokio::test]
async fn stale_and_replayed_webhooks_change_nothing() {
    let (world, id, lifecycle) = World::webhook_device("mender-2").await;
    let (secret, now) = (WEBHOOK_TEST_SECRET, WEBHOOK_TEST_NOW);
    let accepted = mender_webhook(secret, "a-1", "mender-2", "accepted", now - 60);
    let rejected = mender_webhook(secret, "r-1", "mender-2", "rejected", now - 30);

    let response = handle_payload(&lifecycle, &rejected, now).await.unwrap();
    assert_eq!(body(&response)["outcome"], "Changed");
    assert_eq!(world.status(&id), Some(CertificateStatus::Inactive));
    let before = world.memory.snapshot();
    for (late, what) in [(&accepted, "an older accepted"), (&rejected, "a replay")] {
        let response = handle_payload(&lifecycle, late, now).await.unwrap();
        assert_eq!(response["statusCode"], 200, "{what}");
        assert_eq!(body(&response)["outcome"], "Stale", "{what}");
        assert_eq!(world.memory.snapshot(), before, "{what} changes nothing");
    }
    // A newer accepted is the device-management side changing its mind: it applies.
    let newer = mender_webhook(secret, "a-2", "mender-2", "accepted", now);
    let response = handle_payload(&lifecycle, &newer, now).await.unwrap();
    assert_eq!(body(&response)["outcome"], "Changed");
    assert_eq!(world.status(&id), Some(CertificateStatus::Active));
    let history = world.ledger.history("mender-2").await.unwrap();
    let events: Vec<_> = history
        .iter()
        .map(|e| (e.what.as_str(), e.event_id.as_deref()))
        .collect();
    assert_eq!(
        events,
        [
            ("deactivate", Some("mender:r-1")),
            ("activate", Some("mender:a-2"))
        ],
        "stale events leave no trace but the log line"
    );
}

/// The same event delivered again after a failure midway is not stale: it was recorded but not
/// finished, so the retry completes it. Once finished, the same event is stale.
#[tokio::test]
async fn a_retried_event_completes_and_then_is_stale() {
    let (world, id, lifecycle) = World::webhook_device("mender-3").await;
    let (secret, now) = (WEBHOOK_TEST_SECRET, WEBHOOK_TEST_NOW);
    let rejected = mender_webhook(secret, "r-3", "mender-3", "rejected", now);
    world
        .registry
        .fail_next("UpdateCertificate", RegistryErrorKind::Throttled);
    let response = handle_payload(&lifecycle, &rejected, now).await.unwrap();
    assert_eq!(response["statusCode"], 503);
    assert_eq!(world.status(&id), Some(CertificateStatus::Active));
    let response = handle_payload(&lifecycle, &rejected, now).await.unwrap();
    assert_eq!(body(&response)["outcome"], "Changed");
    assert_eq!(world.status(&id), Some(CertificateStatus::Inactive));
    let response = handle_payload(&lifecycle, &rejected, now).await.unwrap();
    assert_eq!(body(&response)["outcome"], "Stale");
}

/// Decommission by intent: the certificate ids are recorded before the teardown, so a failure
/// after the detach, during the detach poll, or a detach AWS has not made visible yet
/// (`DetachPending`) is completed by the retry; nothing is left INACTIVE and undeleted.
#[tokio::test]
async fn an_interrupted_decommission_is_completed_from_the_ledger() {
    enum Fault {
        FailAfter(&'static str, usize),
        SlowDetach,
    }
    let cases = [
        (
            Fault::FailAfter("DeleteCertificate", 0),
            "Retryable.Throttled",
        ),
        // The first poll after a detach (the first listing finds the certificates).
        (
            Fault::FailAfter("ListThingPrincipals", 1),
            "Retryable.Throttled",
        ),
        (Fault::SlowDetach, "Retryable.DetachPending"),
    ];
    for (fault, expected) in cases {
        let (world, own, shared, _) = decommission_world().await;
        match fault {
            Fault::FailAfter(step, skip) => {
                world
                    .registry
                    .fail_after(step, skip, RegistryErrorKind::Throttled);
            }
            Fault::SlowDetach => world.registry.swallow_next("DetachThingPrincipal"),
        }
        let decommission = command("device-1", Action::Decommission);
        let err = world
            .lifecycle(true)
            .apply_now(&decommission)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), expected);
        world
            .lifecycle(true)
            .apply_now(&decommission)
            .await
            .unwrap();
        assert_decommissioned(&world.memory.snapshot(), &own, &shared);
        let record = world.ledger.device("device-1").await.unwrap().unwrap();
        assert!(record.certificates.contains(&own), "{expected}: {record:?}");
    }
}

/// An `activate` brings back what the device uses, never a certificate a rotation set aside.
#[tokio::test]
async fn activate_leaves_certificates_retired_by_rotation_alone() {
    let world = World::new();
    let old = world
        .certificate("rot", CertificateStatus::Inactive, &["rot"], true)
        .await;
    let current = world
        .certificate("rot", CertificateStatus::Inactive, &["rot"], true)
        .await;
    world
        .ledger
        .add_certificates(
            "rot",
            &jitr_domain::ledger::Holdings {
                held: vec![old.clone(), current.clone()],
                retired: vec![old.clone()],
                ..jitr_domain::ledger::Holdings::default()
            },
        )
        .await
        .unwrap();
    world
        .lifecycle(true)
        .apply_now(&command("rot", Action::Activate))
        .await
        .unwrap();
    assert_eq!(world.status(&current), Some(CertificateStatus::Active));
    assert_eq!(world.status(&old), Some(CertificateStatus::Inactive));
}

/// Issue 10, item 2: every answer to a Function URL request is a whole Function URL response
/// (the type a strict runtime, `cargo lambda watch`, reads it into): 200, 401, 405 and 400.
#[tokio::test]
async fn function_url_answers_are_whole_function_url_responses() {
    use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlResponse;
    let (_world, _, lifecycle) = World::webhook_device("url-1").await;
    let (secret, now) = (WEBHOOK_TEST_SECRET, WEBHOOK_TEST_NOW);
    let good = mender_webhook(secret, "u-1", "url-1", "rejected", now);
    let forged = mender_webhook("another-secret-entirely", "u-2", "url-1", "accepted", now);
    let mut get = good.clone();
    get["requestContext"]["http"]["method"] = json!("GET");
    let old = mender_webhook(secret, "u-3", "url-1", "accepted", now - 86_400);
    for (request, status) in [(good, 200), (forged, 401), (get, 405), (old, 400)] {
        let response = handle_payload(&lifecycle, &request, now).await.unwrap();
        let typed: LambdaFunctionUrlResponse = serde_json::from_value(response.clone())
            .unwrap_or_else(|e| panic!("{status}: {e}: {response}"));
        assert_eq!(typed.status_code, status, "{response}");
        assert!(!typed.is_base64_encoded);
    }
}

/// Issue 18, defect 9: a sender's stamp far in the future would make every later decision about
/// the device stale; one far in the past is no real event. Either is refused naming its field,
/// records nothing, and a genuine decision after it still applies.
#[tokio::test]
async fn sender_stamps_out_of_bounds_are_refused_and_record_nothing() {
    let world = World::new();
    let id = world
        .certificate("stamped", CertificateStatus::Active, &["stamped"], true)
        .await;
    let lifecycle = world.lifecycle(true);
    let now = 1_800_000_000;
    let rfc = |at: i64| {
        time::OffsetDateTime::from_unix_timestamp(at)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let direct = |event_time: String| json!({"deviceId": "stamped", "action": "deactivate", "eventId": "e-1", "eventTime": event_time});
    let eventbridge = |time: String| {
        json!({"version": "0", "id": "eb-1", "detail-type": "DeviceCommand", "source": "dm",
               "account": "123456789012", "time": time, "region": "eu-west-1", "resources": [],
               "detail": {"deviceId": "stamped", "action": "deactivate"}})
    };
    let cases = [
        (direct("9999-12-31T23:59:59Z".into()), "eventTime"),
        (direct(rfc(now + 301)), "eventTime"),
        (direct(rfc(now - 15 * 86_400)), "eventTime"),
        (direct("1970-01-01T00:00:00Z".into()), "eventTime"),
        (eventbridge(rfc(now + 86_400)), "time"),
    ];
    for (payload, field) in cases {
        match handle_payload(&lifecycle, &payload, now).await {
            Err(jitr_domain::JitrError::MalformedEvent { field: got, .. }) => {
                assert_eq!(got, field, "{payload}")
            }
            other => panic!("{payload}: {other:?}"),
        }
        assert_eq!(world.ledger.device("stamped").await.unwrap(), None);
        assert_eq!(world.status(&id), Some(CertificateStatus::Active));
    }
    // Within the bounds (a little skew ahead, or a command queued for days) it applies.
    let response = handle_payload(&lifecycle, &direct(rfc(now + 299)), now)
        .await
        .unwrap();
    assert_eq!(response["outcome"], "Changed", "{response}");
    assert_eq!(world.status(&id), Some(CertificateStatus::Inactive));
    let later = json!({"deviceId": "stamped", "action": "activate", "eventId": "e-2",
                       "eventTime": rfc(now + 300)});
    let response = handle_payload(&lifecycle, &later, now + 1).await.unwrap();
    assert_eq!(response["outcome"], "Changed", "{response}");
}
