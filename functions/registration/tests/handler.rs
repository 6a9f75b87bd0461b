//! The registration handler over the in-memory registry: the sample events, fault injection at
//! every provisioning step, concurrency, and the Lambda entry point's error classification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::binding::{BINDING_ATTRIBUTE, BindingRule};
use jitr_domain::registry::{
    CertificateStatus, MemoryRegistry, Registry, RegistryErrorKind, ThingSpec,
};
use jitr_domain::samples;
use jitr_registration::{Outcome, Registrar, handle_lambda_event};
use jitr_testkit::faults::Faulty;
use jitr_testkit::pki::{Ca, DeviceSpec, registered_event};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/registration")
}

/// Every sample event, in order, with what the handler must answer.
#[tokio::test]
async fn sample_events_have_their_documented_outcomes() {
    let sample = samples::load(&samples_dir()).await.unwrap();
    let config = Config::from_lookup(|name| sample.variable(name)).unwrap();
    let registry = Arc::new(sample.registry);
    let registrar = Registrar::new(Arc::clone(&registry), config, SourceFetcher::without_s3());
    let expected: &[(&str, &str)] = &[
        ("01-happy-path.json", "Activated"),
        ("02-duplicate.json", "AlreadyActive"),
        ("03-revoked-serial.json", "Revoked"),
        ("04-unknown-ca.json", "Rejected:CaUnknown"),
        ("05-ca-not-allowed.json", "Rejected:CaNotAllowed"),
        ("06-expired.json", "Rejected:Expired"),
        ("07-wrong-signature.json", "Rejected:SignatureInvalid"),
        ("08-rsa-1024-key.json", "Rejected:WeakKey"),
        ("09-invalid-thing-name.json", "Rejected:ThingNameInvalid"),
        ("10-malformed.json", "Permanent.MalformedEvent"),
        ("11-wrong-account.json", "Permanent.WrongAccount"),
        ("12-already-active.json", "AlreadyActive"),
    ];
    for (file, want) in expected {
        let bytes = std::fs::read(samples_dir().join(file)).unwrap();
        let got = match serde_json::from_slice::<Value>(&bytes) {
            Err(_) => jitr_domain::event::RegistrationEvent::from_slice(&bytes)
                .unwrap_err()
                .error_type(),
            Ok(payload) => match registrar.handle(&payload, &sample.account).await {
                Ok(r) if matches!(r.outcome, Outcome::Rejected) => {
                    format!("Rejected:{}", r.reason.unwrap_or_default())
                }
                Ok(r) => r.outcome.as_str().to_owned(),
                Err(e) => e.error_type(),
            },
        };
        assert_eq!(&got, want, "{file}");
    }
    let snapshot = registry.snapshot();
    let status = |cn: &str| {
        let pem = std::fs::read_to_string(samples_dir().join(format!("{cn}.pem"))).unwrap();
        let id = jitr_domain::registry::memory::certificate_id_of(&pem, "test").unwrap();
        snapshot
            .certificates
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(status("sensor-0001").status, CertificateStatus::Active);
    assert_eq!(status("sensor-0001").things, ["sensor-0001"]);
    assert_eq!(status("sensor-0001").policies, ["jitr-device"]);
    assert_eq!(status("sensor-0002").status, CertificateStatus::Revoked);
    for rejected in [
        "sensor-0003",
        "sensor-0004",
        "sensor-0005",
        "sensor-0006",
        "sensor-0007",
        "sensor-0008",
    ] {
        let row = status(rejected);
        assert_eq!(row.status, CertificateStatus::Inactive, "{rejected}");
        assert!(
            row.things.is_empty() && row.policies.is_empty(),
            "{rejected}"
        );
    }
    assert_eq!(
        status("sensor-0009").things,
        ["sensor-0009"],
        "an ACTIVE certificate is reconciled"
    );
    assert_eq!(snapshot.things.len(), 2);
    assert!(
        registry.invariant_violations().is_empty(),
        "{:?}",
        registry.invariant_violations()
    );
}

/// Every file under events/registration is one of: an event that parses, the malformed sample,
/// the registry manifest, a certificate, a private key, or a CRL. (The lifecycle crate checks
/// events/lifecycle; no other folder may appear.)
#[tokio::test]
async fn every_file_under_events_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut folders: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        ["fleet", "lifecycle", "registration"],
        "every folder under events/ has a test that parses it"
    );
    let mut seen = 0;
    for folder in [root.join("registration"), root.join("fleet")] {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            if name == "registry.json" {
                samples::load(path.parent().unwrap()).await.unwrap();
            } else if name == "profiles.json" {
                let default = Config::with_policy("jitr-device").default_profile();
                jitr_domain::profiles::parse_document(text.as_bytes(), &default).unwrap();
            } else if name.ends_with(".json") {
                let parsed = jitr_domain::event::RegistrationEvent::from_slice(text.as_bytes());
                assert_eq!(
                    parsed.is_err(),
                    name.contains("malformed"),
                    "{name}: {parsed:?}"
                );
            } else if name.ends_with(".key.pem") {
                assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
            } else if name.ends_with("crl.pem") {
                // <prefix>crl.pem is signed by <prefix>ca.pem.
                let ca_file = name.replace("crl.pem", "ca.pem");
                let ca = jitr_domain::certificate::CaCertificate::from_pem(
                    &std::fs::read_to_string(path.with_file_name(ca_file)).unwrap(),
                )
                .unwrap();
                jitr_domain::revocation::RevocationList::parse(text.as_bytes(), &ca).unwrap();
            } else if name.ends_with(".pem") {
                assert!(
                    jitr_domain::certificate::pem_to_der(&text).is_some(),
                    "{name}"
                );
            } else {
                panic!("unexpected file under events/: {name}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 45, "only {seen} files");
}

/// A fresh world: one CA, the policy, a group, and one pending device.
struct World {
    memory: Arc<MemoryRegistry>,
    /// The same registry behind fault injection; handlers under test use this one.
    registry: Arc<Faulty<Arc<MemoryRegistry>>>,
    ca: Ca,
    ca_id: String,
}

impl World {
    fn new() -> Self {
        let memory = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
        let ca = Ca::new("Handler CA", "Acme").unwrap();
        let ca_id = memory.register_ca(&ca.pem, true).unwrap();
        memory.create_policy("device");
        memory.create_thing_group("fleet");
        let registry = Arc::new(Faulty::new(Arc::clone(&memory)));
        Self {
            memory,
            registry,
            ca,
            ca_id,
        }
    }

    fn pending(&self, cn: &str) -> (String, Value) {
        let device = self.ca.issue(&DeviceSpec::named(cn)).unwrap();
        let id = self
            .memory
            .register_pending(&device.cert_pem, &self.ca_id)
            .unwrap();
        let event = registered_event(&id, &self.ca_id, ACCOUNT);
        (id, event)
    }

    fn config(&self) -> Config {
        let mut config = Config::with_policy("device");
        config.thing_group_names = vec!["fleet".into()];
        config
    }

    fn registrar<R: Registry>(&self, registry: R) -> Registrar<R, SourceFetcher> {
        Registrar::new(registry, self.config(), SourceFetcher::without_s3())
    }

    async fn status(&self, id: &str) -> CertificateStatus {
        self.registry.describe_certificate(id).await.unwrap().status
    }
}

/// A failure at any step leaves the certificate pending; the retry finishes the job.
#[tokio::test]
async fn a_failure_at_any_step_leaves_it_pending_and_a_retry_completes() {
    let steps = [
        "DescribeCertificate",
        "DescribeCACertificate",
        "CreateThing",
        "AddThingToThingGroup",
        "AttachPolicy",
        "AttachThingPrincipal",
        "UpdateCertificate",
    ];
    for (n, step) in steps.into_iter().enumerate() {
        for kind in [
            RegistryErrorKind::Throttled,
            RegistryErrorKind::Unavailable,
            RegistryErrorKind::Timeout,
        ] {
            let world = World::new();
            let (id, event) = world.pending(&format!("dev-{n}"));
            let error_type = failing_once_then_retried(&world, &id, &event, step, kind).await;
            assert_eq!(error_type, format!("Retryable.{}", kind.as_str()), "{step}");
        }
    }
}

#[tokio::test]
async fn missing_deployment_resources_are_permanent_and_named() {
    let world = World::new();
    type ConfigChange = fn(&mut Config);
    let cases: [(&str, ConfigChange); 3] = [
        ("absent-policy", |c| {
            c.device_policy_name = "absent-policy".into()
        }),
        ("absent-group", |c| {
            c.thing_group_names = vec!["absent-group".into()]
        }),
        ("absent-type", |c| {
            c.thing_type_name = Some("absent-type".into())
        }),
    ];
    for (n, (name, change)) in cases.into_iter().enumerate() {
        let (id, event) = world.pending(&format!("dev-missing-{n}"));
        let mut config = world.config();
        change(&mut config);
        let err = Registrar::new(
            Arc::clone(&world.registry),
            config,
            SourceFetcher::without_s3(),
        )
        .handle(&event, ACCOUNT)
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "Permanent.MissingResource", "{name}");
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(
            world.status(&id).await,
            CertificateStatus::PendingActivation,
            "{name}"
        );
    }

    let (id, event) = world.pending("dev-denied");
    world
        .registry
        .fail_next("AttachPolicy", RegistryErrorKind::AccessDenied);
    let err = world
        .registrar(Arc::clone(&world.registry))
        .handle(&event, ACCOUNT)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Permanent.AccessDenied");
    assert_eq!(
        world.status(&id).await,
        CertificateStatus::PendingActivation
    );
}

#[tokio::test]
async fn a_thing_that_exists_with_other_attributes_is_adopted() {
    let world = World::new();
    let (id, event) = world.pending("preprovisioned");
    let existing = ThingSpec {
        name: "preprovisioned".into(),
        type_name: None,
        attributes: [("site".to_owned(), "lab".to_owned())].into(),
    };
    world.registry.create_thing(&existing).await.unwrap();
    let report = world
        .registrar(Arc::clone(&world.registry))
        .handle(&event, ACCOUNT)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(world.status(&id).await, CertificateStatus::Active);
    let thing = world
        .memory
        .snapshot()
        .things
        .into_iter()
        .find(|t| t.name == "preprovisioned")
        .unwrap();
    assert_eq!(
        thing.attributes["site"], "lab",
        "the operator's attributes are kept"
    );
    assert_eq!(
        thing.attributes[BINDING_ATTRIBUTE], world.ca_id,
        "an adopted thing is bound to the CA that admitted it"
    );
}

/// A second CA registered in the same account, with a device of the same CN as `cn`'s.
fn pending_from(world: &World, ca: &Ca, ca_id: &str, cn: &str) -> (String, Value) {
    let device = ca.issue(&DeviceSpec::named(cn)).unwrap();
    let id = world
        .memory
        .register_pending(&device.cert_pem, ca_id)
        .unwrap();
    let event = registered_event(&id, ca_id, ACCOUNT);
    (id, event)
}

/// Defect found in review: with any-CA admission (or an allow-list of two), a certificate from
/// CA B whose CN names a device admitted through CA A was attached to A's Thing and activated.
#[tokio::test]
async fn a_certificate_of_another_ca_cannot_take_over_a_bound_thing() {
    let world = World::new();
    let partner = Ca::new("Partner CA", "Partner").unwrap();
    let partner_id = world.memory.register_ca(&partner.pem, true).unwrap();
    let any_ca = world.config();
    let both_listed = {
        let mut c = world.config();
        c.allowed_ca_certificate_ids = [world.ca_id.clone(), partner_id.clone()].into();
        c
    };
    for (n, config) in [any_ca, both_listed].into_iter().enumerate() {
        let cn = format!("sensor-takeover-{n}");
        let registrar = Registrar::new(
            Arc::clone(&world.registry),
            config,
            SourceFetcher::without_s3(),
        );
        let (genuine, event) = world.pending(&cn);
        let report = registrar.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(report.outcome, Outcome::Activated);

        let (forged, event) = pending_from(&world, &partner, &partner_id, &cn);
        let report = registrar.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(report.outcome, Outcome::Rejected, "case {n}");
        assert_eq!(report.reason.as_deref(), Some("ThingBoundToOtherCa"));
        assert_eq!(world.status(&forged).await, CertificateStatus::Inactive);
        let rows = world.memory.snapshot().certificates;
        let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
        assert!(
            row(&forged).things.is_empty() && row(&forged).policies.is_empty(),
            "nothing attached to the refused certificate: {:?}",
            row(&forged)
        );
        assert_eq!(row(&genuine).things, std::slice::from_ref(&cn));
        assert_eq!(world.status(&genuine).await, CertificateStatus::Active);

        // Duplicates and retries of the forged event stay refused (INACTIVE is left alone).
        let again = registrar.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(again.outcome, Outcome::LeftAlone);
    }
    assert!(world.memory.invariant_violations().is_empty());
}

/// Things that exist without a binding: made by an older version (a certificate attached, no
/// attribute), or pre-created by an operator (nothing attached).
#[tokio::test]
async fn unbound_things_are_adopted_only_without_another_cas_certificate() {
    let world = World::new();
    let partner = Ca::new("Partner CA", "Partner").unwrap();
    let partner_id = world.memory.register_ca(&partner.pem, true).unwrap();
    let registrar = world.registrar(Arc::clone(&world.registry));
    let unbound = |name: &str| ThingSpec {
        name: name.into(),
        type_name: None,
        attributes: [("commonName".to_owned(), name.to_owned())].into(),
    };

    // An older version's Thing: CA A's certificate attached, no binding attribute.
    world
        .registry
        .create_thing(&unbound("legacy"))
        .await
        .unwrap();
    let (legacy_cert, _) = world.pending("legacy");
    let arn = world.memory.certificate_arn(&legacy_cert);
    world
        .registry
        .attach_thing_principal("legacy", &arn)
        .await
        .unwrap();
    world
        .registry
        .update_certificate_status(&legacy_cert, &CertificateStatus::Inactive)
        .await
        .unwrap();
    let (forged, event) = pending_from(&world, &partner, &partner_id, "legacy");
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(
        report.reason.as_deref(),
        Some("ThingBoundToOtherCa"),
        "another CA's certificate, even INACTIVE, keeps the thing"
    );
    assert_eq!(world.status(&forged).await, CertificateStatus::Inactive);

    // The same Thing for a second certificate of its own CA: adopted and bound.
    let (own, event) = world.pending("legacy");
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(world.status(&own).await, CertificateStatus::Active);
    let thing = world.registry.describe_thing("legacy").await.unwrap();
    assert_eq!(thing.attributes[BINDING_ATTRIBUTE], world.ca_id);

    // Strict profiles refuse a pre-created Thing they did not bind.
    world
        .registry
        .create_thing(&unbound("precreated"))
        .await
        .unwrap();
    let mut strict = world.config();
    strict.thing_binding = BindingRule::Strict;
    let (id, event) = world.pending("precreated");
    let report = Registrar::new(
        Arc::clone(&world.registry),
        strict,
        SourceFetcher::without_s3(),
    )
    .handle(&event, ACCOUNT)
    .await
    .unwrap();
    assert_eq!(report.reason.as_deref(), Some("ThingUnbound"));
    assert_eq!(world.status(&id).await, CertificateStatus::Inactive);
    assert!(world.memory.invariant_violations().is_empty());
}

/// Two CAs adopting one unbound Thing at once: the version check lets exactly one win.
#[tokio::test]
async fn a_concurrent_adoption_by_another_ca_is_judged_again() {
    let world = World::new();
    let partner = Ca::new("Partner CA", "Partner").unwrap();
    let partner_id = world.memory.register_ca(&partner.pem, true).unwrap();
    let spec = ThingSpec {
        name: "contested".into(),
        ..ThingSpec::default()
    };
    world.registry.create_thing(&spec).await.unwrap();
    let (id, event) = world.pending("contested");
    // Right before our UpdateThing, the partner CA's registration binds the Thing to itself.
    let memory = Arc::clone(&world.memory);
    let partner_binding = partner_id.clone();
    world.registry.before_next("UpdateThing", move || {
        memory.set_attribute("contested", BINDING_ATTRIBUTE, &partner_binding);
    });
    let report = world
        .registrar(Arc::clone(&world.registry))
        .handle(&event, ACCOUNT)
        .await
        .unwrap();
    assert_eq!(report.reason.as_deref(), Some("ThingBoundToOtherCa"));
    assert_eq!(world.status(&id).await, CertificateStatus::Inactive);
    let thing = world.registry.describe_thing("contested").await.unwrap();
    assert_eq!(thing.attributes[BINDING_ATTRIBUTE], partner_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_converge() {
    let world = World::new();
    let (id, event) = world.pending("busy");
    let registrar = Arc::new(world.registrar(Arc::clone(&world.registry)));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (registrar, event) = (Arc::clone(&registrar), event.clone());
            tokio::spawn(async move { registrar.handle(&event, ACCOUNT).await })
        })
        .collect();
    let mut activated = 0;
    for task in tasks {
        match task.await.unwrap().unwrap().outcome {
            Outcome::Activated => activated += 1,
            Outcome::AlreadyActive => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(activated >= 1);
    let snapshot = world.memory.snapshot();
    assert_eq!(snapshot.things.len(), 1);
    assert_eq!(snapshot.things[0].principals, 1);
    assert_eq!(world.status(&id).await, CertificateStatus::Active);
    assert!(world.memory.invariant_violations().is_empty());
}

/// An operator revokes the certificate while it is being provisioned: it stays REVOKED.
#[tokio::test]
async fn a_revocation_during_provisioning_wins() {
    let world = World::new();
    let (id, event) = world.pending("contested");
    let (memory, target) = (Arc::clone(&world.memory), id.clone());
    world.registry.before_next("AttachThingPrincipal", move || {
        memory.set_status(&target, CertificateStatus::Revoked)
    });
    let registrar = world.registrar(Arc::clone(&world.registry));
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::LeftAlone, Some("StatusChangedDuringProvisioning"))
    );
    assert_eq!(world.status(&id).await, CertificateStatus::Revoked);
}

#[tokio::test]
async fn the_lambda_entry_point_classifies_errors() {
    let world = World::new();
    let (_, event) = world.pending("entry");
    let registrar = world.registrar(Arc::clone(&world.registry));
    let lambda_event = |payload: Value, arn: &str| {
        let mut context = Context::default();
        context.invoked_function_arn = arn.to_owned();
        LambdaEvent::new(payload, context)
    };
    let ok = handle_lambda_event(
        &registrar,
        lambda_event(
            event.clone(),
            &format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:registration"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(ok["outcome"], "Activated");
    let err = handle_lambda_event(
        &registrar,
        lambda_event(
            event.clone(),
            "arn:aws:lambda:eu-west-1:999999999999:function:registration",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "Permanent.WrongAccount");
    let err = handle_lambda_event(&registrar, lambda_event(event.clone(), "not-an-arn"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "Permanent.MalformedEvent");
    assert_eq!(
        err.error_message.matches("malformed event").count(),
        1,
        "{}",
        err.error_message
    );
    let err = handle_lambda_event(
        &registrar,
        lambda_event(
            json!({"certificateId": 1}),
            &format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:r"),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "Permanent.MalformedEvent");
    assert!(err.error_message.contains("certificateId"));
    world
        .registry
        .fail_next("DescribeCertificate", RegistryErrorKind::Throttled);
    let err = handle_lambda_event(
        &registrar,
        lambda_event(
            event,
            &format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:r"),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "Retryable.Throttled");
}

/// Behind the burst buffer the function gets SQS batches: each body is one IoT event, and only
/// the messages that failed are reported back.
#[tokio::test]
async fn an_sqs_batch_of_events_reports_only_its_failures() {
    let world = World::new();
    let (ok_id, ok_event) = world.pending("burst-1");
    let (other_id, mut other_account) = world.pending("burst-2");
    other_account["awsAccountId"] = "999999999999".into();
    let registrar = world.registrar(Arc::clone(&world.registry));
    let mut context = Context::default();
    context.invoked_function_arn =
        format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:registration");
    let batch = json!({"Records": [
        {"messageId": "m-ok", "eventSource": "aws:sqs", "body": ok_event.to_string()},
        {"messageId": "m-poison", "eventSource": "aws:sqs", "body": "{not json"},
        {"messageId": "m-other-account", "eventSource": "aws:sqs", "body": other_account.to_string()}
    ]});
    let response = handle_lambda_event(&registrar, LambdaEvent::new(batch, context))
        .await
        .unwrap();
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "m-poison"}, {"itemIdentifier": "m-other-account"}]})
    );
    assert_eq!(world.status(&ok_id).await, CertificateStatus::Active);
    assert_eq!(
        world.status(&other_id).await,
        CertificateStatus::PendingActivation
    );
}

/// Issue 9, item 5: right after CreateThing, IoT Core may not see the new Thing (or a new
/// certificate) yet. A NotFound there is retryable; AttachPolicy's NotFound blames the policy
/// only when the policy really is missing.
#[tokio::test]
async fn eventual_consistency_right_after_a_write_is_retryable() {
    for step in ["AttachThingPrincipal", "AttachPolicy"] {
        let world = World::new();
        let (id, event) = world.pending(&format!("settling-{step}"));
        let kind = RegistryErrorKind::NotFound;
        let error_type = failing_once_then_retried(&world, &id, &event, step, kind).await;
        assert_eq!(error_type, "Retryable.NotYetConsistent", "{step}");
    }
}

/// Handles `event` with `step` failing once as `kind`; checks the certificate stayed pending and
/// the retry activates it with the invariants intact; returns the first error's type.
async fn failing_once_then_retried(
    world: &World,
    id: &str,
    event: &Value,
    step: &'static str,
    kind: RegistryErrorKind,
) -> String {
    let registrar = world.registrar(Arc::clone(&world.registry));
    world.registry.fail_next(step, kind);
    let err = registrar.handle(event, ACCOUNT).await.unwrap_err();
    assert_eq!(
        world.status(id).await,
        CertificateStatus::PendingActivation,
        "{step}"
    );
    let report = registrar.handle(event, ACCOUNT).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{step}");
    assert!(world.memory.invariant_violations().is_empty(), "{step}");
    err.error_type()
}

/// A storm's duplicates: once a certificate is admitted, its further registration events are
/// answered from the ledger (`AdmittedBefore`) without a single IoT call, so they spend none of
/// the account's quotas; once the lifecycle function deletes it (forgetting the admission), its
/// next registration is handled afresh.
#[tokio::test]
async fn duplicates_of_an_admitted_certificate_cost_no_iot_call() {
    use jitr_domain::ledger::{Ledger, MemoryLedger};
    let world = World::new();
    let (id, event) = world.pending("stormy");
    let ledger = Arc::new(MemoryLedger::new());
    let registrar = world
        .registrar(Arc::clone(&world.registry))
        .with_ledger(Arc::clone(&ledger));
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);

    let before = world.memory.snapshot();
    for operation in [
        "DescribeCertificate",
        "DescribeCACertificate",
        "CreateThing",
    ] {
        world
            .registry
            .fail_next(operation, RegistryErrorKind::Unavailable);
    }
    for _ in 0..3 {
        let report = registrar.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(
            (report.outcome, report.reason.as_deref()),
            (Outcome::AlreadyActive, Some("AdmittedBefore"))
        );
    }
    assert_eq!(world.memory.snapshot(), before, "nothing touched");

    ledger.forget_admission(&id).await.unwrap();
    let failed = registrar.handle(&event, ACCOUNT).await;
    assert!(
        failed.is_err(),
        "after the admission is forgotten the event takes the full path (here into the injected fault)"
    );
}
