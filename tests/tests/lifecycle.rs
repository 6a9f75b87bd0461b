//! The lifecycle function against ministack: devices admitted by the registration function
//! over real mTLS connects, then moved through every transition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use jitr_domain::ledger::Ledger;

use jitr_aws::DynamoLedger;
use jitr_domain::registry::{CertificateStatus, Registry, RegistryErrorKind};
use jitr_domain::webhook::WebhookSecret;
use jitr_domain::webhook::sign;
use jitr_lifecycle::{Action, DeviceCommand, Lifecycle, LifecycleConfig, handle_payload};
use jitr_registration::Outcome;
use jitr_testkit::faults::Faulty;
use jitr_testkit::pki::{Device, DeviceSpec};
use jitr_tests::device::Connect;
use jitr_tests::fleet::{Fleet, POLICY};
use serde_json::json;

const SECRET: &str = "integration-webhook-secret";

fn config() -> LifecycleConfig {
    LifecycleConfig {
        webhook_secret: Some(WebhookSecret::new(SECRET)),
        decommission_deletes_certificates: true,
        device_ledger: None,
        webhook_max_age_secs: 900,
        webhook_secret_arn: None,
        device_id_attribute: None,
    }
}

/// A device connected, registered and activated, as in production.
async fn admitted(fleet: &Fleet, name: &str) -> Device {
    fleet.admitted(name, jitr_domain::ledger::NoLedger).await
}

fn command(device: &str, action: Action) -> DeviceCommand {
    DeviceCommand::new(device, action, Some("integration test".into())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_emulator_and_the_device_feels_it() {
    let fleet = Fleet::new().await;
    let device = admitted(&fleet, "life-1").await;
    let lifecycle = Lifecycle::new(fleet.iot().clone(), config());
    assert_eq!(fleet.connect(&device).await, Connect::Accepted);

    lifecycle
        .apply_now(&command("life-1", Action::Deactivate))
        .await
        .unwrap();
    assert_eq!(fleet.status(&device).await, CertificateStatus::Inactive);
    assert_ne!(fleet.connect(&device).await, Connect::Accepted);

    lifecycle
        .apply_now(&command("life-1", Action::Activate))
        .await
        .unwrap();
    assert_eq!(fleet.status(&device).await, CertificateStatus::Active);
    assert_eq!(fleet.connect(&device).await, Connect::Accepted);

    lifecycle
        .apply_now(&command("life-1", Action::Revoke))
        .await
        .unwrap();
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    // The emulator would allow REVOKED → ACTIVE; our code must not ask for it.
    for action in [Action::Activate, Action::Deactivate, Action::Activate] {
        let summary = lifecycle
            .apply_now(&command("life-1", action))
            .await
            .unwrap();
        assert_eq!(summary.outcome, "NothingToDo");
        assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    }
    let report = fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::LeftAlone,
        "registration leaves a REVOKED certificate alone too"
    );
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    assert_ne!(fleet.connect(&device).await, Connect::Accepted);
}

/// `device` has its own certificate and one it shares with `gateway`.
async fn shared_world(fleet: &Fleet, device: &str, gateway: &str) -> (Device, Device) {
    let own = admitted(fleet, device).await;
    let shared = admitted(fleet, gateway).await;
    let arn = fleet
        .iot()
        .describe_certificate(&shared.id)
        .await
        .unwrap()
        .arn;
    fleet
        .iot()
        .attach_thing_principal(device, &arn)
        .await
        .unwrap();
    (own, shared)
}

async fn assert_decommissioned(
    fleet: &Fleet,
    device: &str,
    gateway: &str,
    own: &Device,
    shared: &Device,
) {
    let err = fleet.iot().describe_certificate(&own.id).await.unwrap_err();
    assert_eq!(
        err.kind(),
        RegistryErrorKind::NotFound,
        "the device's own certificate is deleted"
    );
    assert_eq!(
        fleet
            .iot()
            .list_thing_principals(device)
            .await
            .unwrap_err()
            .kind(),
        RegistryErrorKind::NotFound,
        "the Thing is deleted"
    );
    assert_eq!(
        fleet.status(shared).await,
        CertificateStatus::Active,
        "the shared certificate survives"
    );
    assert_eq!(
        fleet.attachments(shared).await,
        (vec![gateway.to_owned()], vec![POLICY.to_owned()])
    );
    let targets = fleet.iot().list_policy_targets(POLICY).await.unwrap();
    assert!(
        !targets.iter().any(|t| t.ends_with(&own.id)),
        "no policy target points at the deleted certificate: {targets:?}"
    );
    assert_ne!(fleet.connect(own).await, Connect::Accepted);
    assert_eq!(
        fleet.connect(shared).await,
        Connect::Accepted,
        "the gateway still connects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_decommission_webhook_removes_the_device_and_spares_the_shared_certificate() {
    let fleet = Fleet::new().await;
    let (own, shared) = shared_world(&fleet, "life-dev", "life-gw").await;
    let lifecycle = Lifecycle::new(fleet.iot().clone(), config());
    let now = time::OffsetDateTime::now_utc();
    let body = json!({"id": "d-1", "type": "device-decommissioned", "data": {"id": "life-dev"},
                      "time": now.format(&time::format_description::well_known::Rfc3339).unwrap()})
    .to_string();
    let request = |signature: String| {
        json!({"version": "2.0", "headers": {"X-Men-Signature": signature},
        "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": body, "isBase64Encoded": false})
    };

    let refused = handle_payload(
        &lifecycle,
        &request(sign(b"not-the-secret-at-all", body.as_bytes())),
        now.unix_timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(refused["statusCode"], 401);
    assert_eq!(
        fleet.status(&own).await,
        CertificateStatus::Active,
        "a bad signature changes nothing"
    );
    assert_eq!(
        fleet.attachments(&own).await,
        (vec!["life-dev".to_owned()], vec![POLICY.to_owned()])
    );

    let done = handle_payload(
        &lifecycle,
        &request(sign(SECRET.as_bytes(), body.as_bytes())),
        now.unix_timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(done["statusCode"], 200, "{done}");
    assert_decommissioned(&fleet, "life-dev", "life-gw", &own, &shared).await;
    let again = handle_payload(
        &lifecycle,
        &request(sign(SECRET.as_bytes(), body.as_bytes())),
        now.unix_timestamp(),
    )
    .await
    .unwrap();
    assert_eq!(again["statusCode"], 200, "a repeated event is harmless");
}

/// Decommission by intent, on the emulator: a fault at every step (after the detach and during
/// the detach poll included) leaves the certificate findable through the ledger, and the retry
/// completes the teardown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_failure_at_any_step_completes_the_decommission() {
    let fleet = Fleet::new().await;
    let ledger = fleet.ledger().await;
    let steps: [(&str, usize); 8] = [
        ("ListThingPrincipals", 0),
        ("UpdateCertificate", 0),
        ("ListAttachedPolicies", 0),
        ("DetachPolicy", 0),
        ("DetachThingPrincipal", 0),
        // The first poll after a detach.
        ("ListThingPrincipals", 1),
        ("DeleteCertificate", 0),
        ("DeleteThing", 0),
    ];
    for (n, (step, skip)) in steps.into_iter().enumerate() {
        let (device, gateway) = (format!("life-dev-{n}"), format!("life-gw-{n}"));
        let (own, shared) = shared_world(&fleet, &device, &gateway).await;
        let faulty = Arc::new(Faulty::new(fleet.iot().clone()));
        faulty.fail_after(step, skip, RegistryErrorKind::Unavailable);
        let lifecycle = Lifecycle::new(Arc::clone(&faulty), config()).with_ledger(ledger.clone());
        let decommission = command(&device, Action::Decommission);
        let err = lifecycle.apply_now(&decommission).await.unwrap_err();
        assert_eq!(err.error_type(), "Retryable.Unavailable", "{step}");
        // Lambda retries the same event.
        let lifecycle = Lifecycle::new(fleet.iot().clone(), config()).with_ledger(ledger.clone());
        lifecycle.apply_now(&decommission).await.unwrap();
        assert_decommissioned(&fleet, &device, &gateway, &own, &shared).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_reports_only_its_failures() {
    let fleet = Fleet::new().await;
    let device = admitted(&fleet, "life-sqs").await;
    let lifecycle = Lifecycle::new(fleet.iot().clone(), config());
    let batch = json!({"Records": [
        {"messageId": "ok", "body": json!({"deviceId": "life-sqs", "action": "deactivate"}).to_string()},
        {"messageId": "poison", "body": "{\"deviceId\": "},
        {"messageId": "unknown-device", "body": json!({"deviceId": "nobody", "action": "revoke"}).to_string()}
    ]});
    let response = handle_payload(&lifecycle, &batch, 0).await.unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "poison"}]})
    );
    assert_eq!(fleet.status(&device).await, CertificateStatus::Inactive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_device_that_connects_again_is_revoked_not_readmitted() {
    let fleet = Fleet::new().await;
    let ledger: DynamoLedger = fleet.ledger().await;
    let device = fleet.admitted("life-gone", ledger.clone()).await;
    let lifecycle = Lifecycle::new(fleet.iot().clone(), config()).with_ledger(ledger.clone());
    let registrar = fleet.registrar(fleet.config()).with_ledger(ledger.clone());

    lifecycle
        .apply_now(&command("life-gone", Action::Decommission))
        .await
        .unwrap();
    let record = ledger.device("life-gone").await.unwrap().unwrap();
    assert!(record.certificates.contains(&device.id), "{record:?}");

    // Auto-registration knows nothing of the deleted certificate: the next connect registers
    // it PENDING_ACTIVATION again and IoT publishes the event again.
    assert_eq!(fleet.connect(&device).await, Connect::Closed);
    assert_eq!(
        fleet.status(&device).await,
        CertificateStatus::PendingActivation
    );
    let report = registrar
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Revoked);
    assert_eq!(report.reason.as_deref(), Some("Decommissioned"));
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);

    // A second certificate with the same identity (a new key, the same name) is refused too.
    let second = fleet.pending_device(DeviceSpec::named("life-gone")).await;
    let report = registrar
        .handle(&fleet.event(&second), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Revoked);
    assert_eq!(report.reason.as_deref(), Some("Decommissioned"));
    assert_eq!(
        fleet
            .iot()
            .list_thing_principals("life-gone")
            .await
            .unwrap_err()
            .kind(),
        RegistryErrorKind::NotFound,
        "no Thing was created again"
    );
    assert_ne!(fleet.connect(&device).await, Connect::Accepted);
    assert_ne!(fleet.connect(&second).await, Connect::Accepted);
}
