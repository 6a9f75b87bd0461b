//! Fleets of several CAs over the in-memory registry: per-CA registration profiles, and
//! revocation lists per CA from S3-like files, URLs and the certificates' distribution points,
//! served by a loopback HTTP server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use jitr_aws::SourceFetcher;
use jitr_aws::source::HttpLimits;
use jitr_domain::Config;
use jitr_domain::registry::{CertificateStatus, MemoryRegistry, Registry};
use jitr_domain::source::AddressPolicy;
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::crl_server::CrlServer;
use jitr_testkit::pki::{Ca, DeviceSpec, registered_event};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const ACCOUNT: &str = "123456789012";

struct Fleet {
    registry: Arc<MemoryRegistry>,
    factory: Ca,
    factory_id: String,
    partner: Ca,
    partner_id: String,
    dir: tempdir::Dir,
}

/// A private temporary folder for profile documents (removed on drop).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "jitr-profiles-{tag}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Fleet {
    fn new(tag: &str) -> Self {
        let registry = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
        let factory = Ca::new("Factory CA", "Acme").unwrap();
        let partner = Ca::new("Partner CA", "Partner").unwrap();
        let factory_id = registry.register_ca(&factory.pem, true).unwrap();
        let partner_id = registry.register_ca(&partner.pem, true).unwrap();
        for policy in [
            "jitr-device",
            "factory-device",
            "factory-telemetry",
            "partner-device",
        ] {
            registry.create_policy(policy);
        }
        registry.create_thing_type("sensor");
        registry.create_thing_group("fleet");
        registry.create_thing_group("partner-fleet");
        Self {
            registry,
            factory,
            factory_id,
            partner,
            partner_id,
            dir: tempdir::Dir::new(tag),
        }
    }

    fn pending(&self, ca: &Ca, spec: DeviceSpec) -> (String, Value) {
        let ca_id = ca.id();
        let device = ca.issue(&spec).unwrap();
        let id = self
            .registry
            .register_pending(&device.cert_pem, &ca_id)
            .unwrap();
        let event = registered_event(&id, &ca_id, ACCOUNT);
        (id, event)
    }

    /// A registrar whose REGISTRATION_PROFILES is `document` (written to a file), fetching
    /// lists from the loopback server these tests publish them on.
    fn registrar(&self, document: &str) -> Registrar<Arc<MemoryRegistry>, SourceFetcher> {
        let loopback = SourceFetcher::with_http(HttpLimits {
            addresses: AddressPolicy::AllowLoopback,
            ..HttpLimits::default()
        });
        self.registrar_fetching(document, loopback)
    }

    /// The same with `fetcher` (a deployed function's: public addresses only).
    fn registrar_fetching(
        &self,
        document: &str,
        fetcher: SourceFetcher,
    ) -> Registrar<Arc<MemoryRegistry>, SourceFetcher> {
        let path = self.dir.path().join("profiles.json");
        std::fs::write(&path, document).unwrap();
        let mut config = Config::with_policy("jitr-device");
        config.thing_group_names = vec!["fleet".into()];
        config.registration_profiles = Some(format!("file://{}", path.display()).parse().unwrap());
        Registrar::new(Arc::clone(&self.registry), config, fetcher)
    }

    /// Profiles: the factory's list at `factory_url`, the partner's at its certificates'
    /// distribution points.
    fn factory_url_partner_points(&self, factory_url: &str) -> String {
        format!(
            r#"{{"version": 1, "profiles": {{
                "{}": {{"revocation": {{"sources": ["{factory_url}"]}}}},
                "{}": {{"revocation": {{"sources": ["distribution-point"]}}}}
            }}}}"#,
            self.factory_id, self.partner_id
        )
    }

    /// Profiles: the partner alone, its list at its certificates' distribution points.
    fn partner_points_only(&self) -> String {
        format!(
            r#"{{"version": 1, "profiles": {{"{}": {{"revocation": {{"sources": ["distribution-point"]}}}}}}}}"#,
            self.partner_id
        )
    }

    async fn status(&self, id: &str) -> CertificateStatus {
        self.registry.describe_certificate(id).await.unwrap().status
    }

    fn row(&self, id: &str) -> jitr_domain::registry::memory::CertificateRow {
        self.registry
            .snapshot()
            .certificates
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }
}

fn crl(ca: &Ca, number: u64, serials: &[Vec<u8>]) -> String {
    let now = OffsetDateTime::now_utc();
    ca.crl_numbered(
        serials,
        number,
        now - Duration::hours(1),
        now + Duration::days(1),
    )
    .unwrap()
}

/// The fleet samples (`make demo`), each with its documented outcome.
#[tokio::test]
async fn fleet_samples_have_their_documented_outcomes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/fleet");
    let sample = jitr_domain::samples::load(&dir).await.unwrap();
    let config = Config::from_lookup(|name| sample.variable(name)).unwrap();
    let registry = Arc::new(sample.registry);
    let registrar = Registrar::new(Arc::clone(&registry), config, SourceFetcher::without_s3());
    let expected = [
        (
            "01-factory-device.json",
            "Activated",
            Some("acme-SN0001"),
            "factory",
        ),
        (
            "02-partner-device.json",
            "Activated",
            Some("partner-0001"),
            "partner",
        ),
        (
            "03-partner-takeover.json",
            "ThingBoundToOtherCa",
            Some("acme-SN0001"),
            "partner",
        ),
        ("04-factory-revoked.json", "Revoked", None, "factory"),
        ("05-retired-ca.json", "ProfileDisabled", None, "legacy"),
    ];
    for (file, outcome, thing, profile) in expected {
        let payload: Value =
            serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let report = registrar.handle(&payload, &sample.account).await.unwrap();
        let got = match report.outcome {
            Outcome::Rejected => report.reason.clone().unwrap_or_default(),
            other => other.as_str().to_owned(),
        };
        assert_eq!(got, outcome, "{file}");
        assert_eq!(report.thing_name.as_deref(), thing, "{file}");
        assert_eq!(report.profile.as_deref(), Some(profile), "{file}");
    }
    let things = registry.snapshot().things;
    assert_eq!(things.len(), 2);
    assert_eq!(things[0].name, "acme-SN0001");
    assert_eq!(things[0].type_name.as_deref(), Some("sensor"));
    assert_eq!(things[1].groups, ["partner-fleet"]);
    assert!(registry.invariant_violations().is_empty());
}

#[tokio::test]
async fn two_cas_admit_their_devices_with_their_own_profiles() {
    let fleet = Fleet::new("two-cas");
    let document = format!(
        r#"{{"version": 1, "profiles": {{
            "{}": {{"name": "factory", "policies": ["factory-device", "factory-telemetry"],
                   "thingType": "sensor", "thingName": "acme-{{serialNumber}}",
                   "attributes": {{"model": "{{OU}}", "cn": "{{CN}}"}}}},
            "{}": {{"name": "partner", "policies": ["partner-device"],
                   "thingGroups": ["partner-fleet"]}}
        }}}}"#,
        fleet.factory_id, fleet.partner_id
    );
    let registrar = fleet.registrar(&document);
    let (made, event) = fleet.pending(
        &fleet.factory,
        DeviceSpec {
            subject_serial_number: Some("SN0042".into()),
            ..DeviceSpec::named("factory-dev")
        },
    );
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(report.thing_name.as_deref(), Some("acme-SN0042"));
    assert_eq!(
        fleet.row(&made).policies,
        ["factory-device", "factory-telemetry"]
    );

    let (bought, event) = fleet.pending(&fleet.partner, DeviceSpec::named("partner-dev"));
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(report.thing_name.as_deref(), Some("partner-dev"));
    assert_eq!(fleet.row(&bought).policies, ["partner-device"]);

    let things = fleet.registry.snapshot().things;
    let thing = |name: &str| things.iter().find(|t| t.name == name).unwrap().clone();
    let factory_thing = thing("acme-SN0042");
    assert_eq!(factory_thing.type_name.as_deref(), Some("sensor"));
    assert_eq!(
        factory_thing.groups,
        ["fleet"],
        "inherited from the default"
    );
    assert_eq!(factory_thing.attributes["cn"], "factory-dev");
    assert_eq!(
        factory_thing.attributes["caCertificateId"],
        fleet.factory_id
    );
    assert!(
        !factory_thing.attributes.contains_key("model"),
        "a field the certificate lacks (OU) is left out"
    );
    let partner_thing = thing("partner-dev");
    assert_eq!(partner_thing.type_name, None);
    assert_eq!(partner_thing.groups, ["partner-fleet"]);
    assert!(fleet.registry.invariant_violations().is_empty());
}

#[tokio::test]
async fn disabled_and_unlisted_cas_are_refused_and_an_invalid_document_fails_closed() {
    let fleet = Fleet::new("refusals");
    let third = Ca::new("Third CA", "Else").unwrap();
    fleet.registry.register_ca(&third.pem, true).unwrap();
    let document = format!(
        r#"{{"version": 1, "unlistedCas": "reject", "profiles": {{
            "{}": {{}}, "{}": {{"enabled": false}} }}}}"#,
        fleet.factory_id, fleet.partner_id
    );
    let registrar = fleet.registrar(&document);
    let cases = [
        (&fleet.factory, "Activated"),
        (&fleet.partner, "ProfileDisabled"),
        (&third, "NoProfile"),
    ];
    for (n, (ca, expected)) in cases.into_iter().enumerate() {
        let (id, event) = fleet.pending(ca, DeviceSpec::named(&format!("dev-{n}")));
        let report = registrar.handle(&event, ACCOUNT).await.unwrap();
        let got = report
            .reason
            .unwrap_or_else(|| report.outcome.as_str().to_owned());
        assert_eq!(got, expected);
        if expected != "Activated" {
            assert_eq!(fleet.status(&id).await, CertificateStatus::Inactive);
            assert!(fleet.row(&id).things.is_empty());
        }
    }

    let invalid = format!(
        r#"{{"version": 1, "profiles": {{"{}": {{"policies": ["ok", "not ok"]}}}}}}"#,
        fleet.factory_id
    );
    let registrar = fleet.registrar(&invalid);
    let (id, event) = fleet.pending(&fleet.factory, DeviceSpec::named("dev-invalid"));
    let err = registrar.handle(&event, ACCOUNT).await.unwrap_err();
    assert_eq!(err.error_type(), "Retryable.ProfilesInvalid");
    assert!(
        err.to_string()
            .contains(&format!("profiles.{}.policies[1]", fleet.factory_id)),
        "{err}"
    );
    assert_eq!(
        fleet.status(&id).await,
        CertificateStatus::PendingActivation
    );
    assert!(fleet.row(&id).things.is_empty() && fleet.row(&id).policies.is_empty());
}

/// Each CA's list comes from where that CA publishes it: a URL in its profile, or the
/// distribution point in its certificates; a list signed by another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_lists_come_per_ca_from_urls_and_distribution_points() {
    let fleet = Fleet::new("revocation");
    let server = CrlServer::start().await.unwrap();
    let revoked_serial = vec![0x42; 8];
    server.publish(
        "/factory.crl",
        crl(&fleet.factory, 1, std::slice::from_ref(&revoked_serial)),
    );
    server.publish(
        "/partner.crl",
        crl(&fleet.partner, 1, std::slice::from_ref(&revoked_serial)),
    );
    let document = fleet.factory_url_partner_points(&server.url("/factory.crl"));
    let registrar = fleet.registrar(&document);
    let spec = |cn: &str, serial: &[u8], dp: &str| DeviceSpec {
        serial: serial.to_vec(),
        crl_distribution_points: vec![server.url(dp)],
        ..DeviceSpec::named(cn)
    };
    let outcome = |report: jitr_registration::Report| {
        report
            .reason
            .unwrap_or_else(|| report.outcome.as_str().to_owned())
    };
    // Factory: the profile's URL (the certificate's distribution point is not consulted).
    let (id, event) = fleet.pending(&fleet.factory, spec("f-revoked", &revoked_serial, "/none"));
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert!(outcome(report).starts_with("SerialRevoked:4242"));
    assert_eq!(fleet.status(&id).await, CertificateStatus::Revoked);
    let (_, event) = fleet.pending(&fleet.factory, spec("f-fine", &[7; 8], "/none"));
    assert_eq!(
        outcome(registrar.handle(&event, ACCOUNT).await.unwrap()),
        "Activated"
    );

    // Partner: each certificate's own distribution point.
    let (id, event) = fleet.pending(
        &fleet.partner,
        spec("p-revoked", &revoked_serial, "/partner.crl"),
    );
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert!(outcome(report).starts_with("SerialRevoked:4242"));
    assert_eq!(fleet.status(&id).await, CertificateStatus::Revoked);

    // A partner certificate pointing at the factory's list: another issuer, refused (fail closed).
    let (id, event) = fleet.pending(
        &fleet.partner,
        spec("p-misdirected", &[8; 8], "/factory.crl"),
    );
    let err = registrar.handle(&event, ACCOUNT).await.unwrap_err();
    assert_eq!(err.error_type(), "Retryable.RevocationListWrongIssuer");
    assert_eq!(
        fleet.status(&id).await,
        CertificateStatus::PendingActivation
    );

    // No distribution point in the certificate: nothing to check against, fail closed.
    let (id, event) = fleet.pending(&fleet.partner, DeviceSpec::named("p-no-dp"));
    let err = registrar.handle(&event, ACCOUNT).await.unwrap_err();
    assert_eq!(
        err.error_type(),
        "Retryable.RevocationListNoDistributionPoint"
    );
    assert_eq!(
        fleet.status(&id).await,
        CertificateStatus::PendingActivation
    );

    // Lists are cached per URL and CA: more devices cost no more fetches.
    let fetched = server.requests();
    assert_eq!(
        fetched, 3,
        "factory.crl for each CA that used it, partner.crl once"
    );
    let (_, event) = fleet.pending(&fleet.factory, spec("f-more", &[9; 8], "/none"));
    assert_eq!(
        outcome(registrar.handle(&event, ACCOUNT).await.unwrap()),
        "Activated"
    );
    let (_, event) = fleet.pending(&fleet.partner, spec("p-more", &[9; 8], "/partner.crl"));
    assert_eq!(
        outcome(registrar.handle(&event, ACCOUNT).await.unwrap()),
        "Activated"
    );
    assert_eq!(server.requests(), fetched);
}

/// A certificate that does not verify never makes the function fetch the URL it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_certificate_cannot_make_the_function_fetch_its_url() {
    let fleet = Fleet::new("forged-dp");
    let server = CrlServer::start().await.unwrap();
    let document = fleet.partner_points_only();
    let registrar = fleet.registrar(&document);
    // Signed by an impostor with the partner CA's name, registered under the partner CA.
    let impostor = Ca::new("Partner CA", "Partner").unwrap();
    let device = impostor
        .issue(&DeviceSpec {
            crl_distribution_points: vec![server.url("/attacker")],
            ..DeviceSpec::named("forged")
        })
        .unwrap();
    let id = fleet
        .registry
        .register_pending(&device.cert_pem, &fleet.partner_id)
        .unwrap();
    let event = registered_event(&id, &fleet.partner_id, ACCOUNT);
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert_eq!(report.reason.as_deref(), Some("SignatureInvalid"));
    assert_eq!(server.requests(), 0);
}

/// `explain` on the fleet samples: the real decision on the real facts, and nothing written.
#[tokio::test]
async fn explain_tells_why_and_writes_nothing() {
    use jitr_registration::Target;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/fleet");
    let sample = jitr_domain::samples::load(&dir).await.unwrap();
    let config = Config::from_lookup(|name| sample.variable(name)).unwrap();
    let registry = Arc::new(sample.registry);
    let registrar = Registrar::new(Arc::clone(&registry), config, SourceFetcher::without_s3());
    let event = |file: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap()
    };
    // Admit the factory device only; the takeover certificate is still PENDING.
    registrar
        .handle(&event("01-factory-device.json"), &sample.account)
        .await
        .unwrap();
    let before = registry.snapshot();
    let now = jitr_aws::unix_now();

    let answer = registrar
        .explain(&Target::Thing("acme-SN0001".into()), now)
        .await
        .unwrap();
    let thing = answer.thing.as_ref().unwrap();
    assert_eq!(thing.type_name.as_deref(), Some("sensor"));
    let factory_id = event("01-factory-device.json")["caCertificateId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(thing.bound_to_ca.as_deref(), Some(factory_id.as_str()));
    assert_eq!(answer.certificates.len(), 1);
    let cert = &answer.certificates[0];
    assert_eq!(
        (
            cert.status.as_str(),
            cert.verdict.as_str(),
            cert.profile.as_deref()
        ),
        ("ACTIVE", "reconcile", Some("factory"))
    );
    assert_eq!(cert.policies, ["factory-device"]);
    assert_eq!(cert.common_name.as_deref(), Some("factory-0001"));

    let takeover = event("03-partner-takeover.json")["certificateId"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = registrar
        .explain(&Target::Certificate(takeover), now)
        .await
        .unwrap();
    let cert = &answer.certificates[0];
    assert_eq!(cert.status, "PENDING_ACTIVATION");
    assert_eq!(
        (
            cert.verdict.as_str(),
            cert.reason.as_deref(),
            cert.profile.as_deref()
        ),
        ("reject", Some("ThingBoundToOtherCa"), Some("partner"))
    );
    let partner = event("02-partner-device.json")["certificateId"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = registrar
        .explain(&Target::Certificate(partner), now)
        .await
        .unwrap();
    assert!(answer.thing.is_none(), "not admitted yet: no Thing");
    assert_eq!(answer.certificates[0].verdict, "admit");
    assert!(
        answer.certificates[0]
            .detail
            .contains("create Thing partner-0001"),
        "{}",
        answer.certificates[0].detail
    );
    assert_eq!(registry.snapshot(), before, "explain wrote nothing");
}

/// Issue 18, defect 5: a verified certificate's distribution points are followed only when they
/// are http(s) URLs. A `file://` point (`/dev/zero` would be read whole) or an `s3://` point
/// (another bucket the role can read) is passed over, whatever its place in the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_http_distribution_points_are_followed() {
    let fleet = Fleet::new("dp-kinds");
    let server = CrlServer::start().await.unwrap();
    server.publish("/partner.crl", crl(&fleet.partner, 1, &[vec![0x42; 8]]));
    let document = fleet.partner_points_only();
    let registrar = fleet.registrar(&document);
    let secret = fleet.dir.path().join("not-a-crl");
    std::fs::write(&secret, "operator's file").unwrap();
    let file_url = format!("file://{}", secret.display());

    // Only non-HTTP points: nothing may be followed, so the certificate has none (fail closed).
    for points in [
        vec![file_url.clone()],
        vec!["file:///dev/zero".to_owned()],
        vec!["s3://other-bucket/ca.crl".to_owned(), file_url.clone()],
    ] {
        let (id, event) = fleet.pending(
            &fleet.partner,
            DeviceSpec {
                crl_distribution_points: points.clone(),
                ..DeviceSpec::named(&format!("p-{}", points.len()))
            },
        );
        let err = registrar.handle(&event, ACCOUNT).await.unwrap_err();
        assert_eq!(
            err.error_type(),
            "Retryable.RevocationListNoDistributionPoint",
            "{points:?}"
        );
        assert_eq!(
            fleet.status(&id).await,
            CertificateStatus::PendingActivation
        );
    }

    // A file point before an HTTP one: the HTTP one is the list consulted.
    let (id, event) = fleet.pending(
        &fleet.partner,
        DeviceSpec {
            serial: vec![0x42; 8],
            crl_distribution_points: vec![file_url, server.url("/partner.crl")],
            ..DeviceSpec::named("p-mixed")
        },
    );
    let report = registrar.handle(&event, ACCOUNT).await.unwrap();
    assert!(
        report
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("SerialRevoked:4242"),
        "{report:?}"
    );
    assert_eq!(fleet.status(&id).await, CertificateStatus::Revoked);
    assert_eq!(server.requests(), 1);
}

/// Issue 18, defect 6: a verified certificate's distribution point aimed at loopback (the Lambda
/// Runtime API listens on 127.0.0.1:9001), a private address or a name resolving to one is never
/// requested by a function with the default policy: the registration fails closed and the
/// listener sees nothing. The private-network option admits private addresses, never loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_points_never_reach_loopback_or_private_addresses() {
    let fleet = Fleet::new("dp-addresses");
    let server = CrlServer::start().await.unwrap();
    server.publish("/partner.crl", crl(&fleet.partner, 1, &[]));
    let document = fleet.partner_points_only();
    let port = server
        .url("/")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let aimed = [
        server.url("/partner.crl"),
        format!("http://localhost:{port}/partner.crl"),
        format!("http://[::ffff:127.0.0.1]:{port}/partner.crl"),
        format!("http://2130706433:{port}/partner.crl"),
        "http://10.0.0.1/crl".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/iam/".to_owned(),
    ];
    for policy in [AddressPolicy::PublicOnly, AddressPolicy::AllowPrivate] {
        let fetcher = SourceFetcher::with_http(HttpLimits {
            addresses: policy,
            timeout: std::time::Duration::from_millis(300),
            ..HttpLimits::default()
        });
        let registrar = fleet.registrar_fetching(&document, fetcher);
        for (n, url) in aimed.iter().enumerate() {
            // 10.0.0.1 is allowed under AllowPrivate: nothing answers there, so it times out,
            // failing closed just the same (a real on-premises PKI would answer).
            let (id, event) = fleet.pending(
                &fleet.partner,
                DeviceSpec {
                    crl_distribution_points: vec![url.clone()],
                    ..DeviceSpec::named(&format!("aimed-{policy:?}-{n}"))
                },
            );
            let err = registrar.handle(&event, ACCOUNT).await.unwrap_err();
            assert!(
                err.error_type().starts_with("Retryable.RevocationList"),
                "{policy:?} {url}: {err}"
            );
            assert_eq!(
                fleet.status(&id).await,
                CertificateStatus::PendingActivation
            );
        }
    }
    assert_eq!(
        server.requests(),
        0,
        "nothing reached the loopback listener"
    );
}

/// Issue 18, defect 7: a flood of partner certificates with distinct distribution points used
/// to clear every cache (the factory's too), after which an older factory CRL was accepted and a
/// revoked device admitted. Now a CA's flood is cut at its own budget and evicts only its own
/// caches; and whatever a container holds, no container (a cold one sharing the ledger) accepts
/// a factory list older than one already accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cas_flood_cannot_roll_back_another_cas_list() {
    use jitr_domain::ledger::MemoryLedger;
    let fleet = Fleet::new("flood");
    let server = CrlServer::start().await.unwrap();
    let revoked = vec![0x51; 8];
    server.publish(
        "/factory.crl",
        crl(&fleet.factory, 2, std::slice::from_ref(&revoked)),
    );
    let document = fleet.factory_url_partner_points(&server.url("/factory.crl"));
    let ledger = Arc::new(MemoryLedger::new());
    let registrar = fleet.registrar(&document).with_ledger(Arc::clone(&ledger));
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (_, event) = fleet.pending(&fleet.factory, DeviceSpec::named("factory-ok"));
    let report = registrar.handle_at(&event, ACCOUNT, now).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);

    // 70 partner certificates, each naming its own distribution point.
    let mut refused_for_budget = 0;
    for n in 0..70 {
        let path = format!("/partner-{n}.crl");
        server.publish(&path, crl(&fleet.partner, 1, &[]));
        let (_, event) = fleet.pending(
            &fleet.partner,
            DeviceSpec {
                crl_distribution_points: vec![server.url(&path)],
                ..DeviceSpec::named(&format!("partner-{n}"))
            },
        );
        if registrar.handle_at(&event, ACCOUNT, now).await.is_err() {
            refused_for_budget += 1;
        }
    }
    assert_eq!(
        refused_for_budget,
        70 - jitr_registration::MAX_DISTRIBUTION_POINTS_PER_WINDOW,
        "a CA's distinct distribution points are budgeted per window"
    );

    // The factory's source now serves an older list without the revoked serial.
    server.publish("/factory.crl", crl(&fleet.factory, 1, &[]));
    let later = now + jitr_domain::revocation::REFRESH_INTERVAL_SECS + 1;
    let (id, event) = fleet.pending(
        &fleet.factory,
        DeviceSpec {
            serial: revoked.clone(),
            ..DeviceSpec::named("factory-revoked")
        },
    );
    let report = registrar.handle_at(&event, ACCOUNT, later).await.unwrap();
    assert!(
        report
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("SerialRevoked"),
        "the held factory list still stands: {report:?}"
    );
    assert_eq!(fleet.status(&id).await, CertificateStatus::Revoked);

    // A cold container sharing the ledger is served the same older list: refused, fail closed.
    let cold = fleet.registrar(&document).with_ledger(Arc::clone(&ledger));
    let (id, event) = fleet.pending(
        &fleet.factory,
        DeviceSpec {
            serial: revoked,
            ..DeviceSpec::named("factory-revoked-2")
        },
    );
    let err = cold.handle_at(&event, ACCOUNT, later).await.unwrap_err();
    assert_eq!(err.error_type(), "Retryable.RevocationListRolledBack");
    assert_eq!(
        fleet.status(&id).await,
        CertificateStatus::PendingActivation
    );
}

/// An S3 bucket in memory: the objects an operator uploads, each with a new ETag.
/// key → (body, version).
type Objects = std::collections::HashMap<String, (Vec<u8>, u32)>;

#[derive(Clone, Default)]
struct Bucket(Arc<std::sync::Mutex<Objects>>);

impl Bucket {
    fn upload(&self, key: &str, body: &str) {
        let mut objects = self.0.lock().unwrap();
        let version = objects.get(key).map_or(1, |(_, v)| v + 1);
        objects.insert(key.to_owned(), (body.as_bytes().to_vec(), version));
    }
}

impl jitr_domain::source::Fetcher for Bucket {
    async fn fetch(
        &self,
        source: &jitr_domain::source::ObjectSource,
        validator: Option<&jitr_domain::source::Validator>,
    ) -> Result<jitr_domain::source::Fetched, jitr_domain::source::FetchError> {
        use jitr_domain::source::{FetchError, Fetched, ObjectSource, Validator};
        let ObjectSource::S3 { key, .. } = source else {
            return Err(FetchError(format!("{source}: not in the bucket")));
        };
        let objects = self.0.lock().unwrap();
        let (body, version) = objects
            .get(key)
            .ok_or_else(|| FetchError(format!("{key}: NoSuchKey")))?;
        let etag = format!("\"v{version}\"");
        if validator == Some(&Validator::ETag(etag.clone())) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::body(body.clone(), Some(&etag)))
    }
}

/// Issue 18, defect 11: disabling a CA used to take effect at each container's next 5-minute
/// refresh. The profiles object's S3 notification, delivered to one container, now announces
/// the change in the ledger, and every other container fetches the document again on its next
/// event: the disabled CA admits nothing more, within the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_ca_reaches_every_container_within_seconds() {
    use jitr_domain::ledger::MemoryLedger;
    use lambda_runtime::{Context, LambdaEvent};
    let fleet = Fleet::new("announced");
    let bucket = Bucket::default();
    let document = |enabled: bool| {
        format!(
            r#"{{"version": 1, "profiles": {{"{}": {{"enabled": {enabled}}}}}}}"#,
            fleet.partner_id
        )
    };
    bucket.upload("profiles/fleet.json", &document(true));
    let ledger = Arc::new(MemoryLedger::new());
    let container = || {
        let mut config = Config::with_policy("jitr-device");
        config.registration_profiles = Some("s3://pki/profiles/fleet.json".parse().unwrap());
        Registrar::new(Arc::clone(&fleet.registry), config, bucket.clone())
            .with_ledger(Arc::clone(&ledger))
    };
    let (notified, other) = (container(), container());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for (n, registrar) in [&notified, &other].into_iter().enumerate() {
        let (_, event) = fleet.pending(&fleet.partner, DeviceSpec::named(&format!("before-{n}")));
        let report = registrar.handle_at(&event, ACCOUNT, now).await.unwrap();
        assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    }

    // The operator disables the partner CA; S3 notifies one container.
    bucket.upload("profiles/fleet.json", &document(false));
    let mut context = Context::default();
    context.invoked_function_arn =
        format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:registration");
    context.deadline = u64::try_from((now + 60) * 1000).unwrap();
    let s3 = serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "pki"}, "object": {"key": "profiles/fleet.json"}}}]});
    let answer = jitr_registration::handle_lambda_event(&notified, LambdaEvent::new(s3, context))
        .await
        .unwrap();
    assert_eq!(answer["profilesGeneration"], 1, "{answer}");

    // The other container, two seconds later and far within its refresh interval.
    let (id, event) = fleet.pending(&fleet.partner, DeviceSpec::named("after"));
    let report = other.handle_at(&event, ACCOUNT, now + 2).await.unwrap();
    assert_eq!(
        report.reason.as_deref(),
        Some("ProfileDisabled"),
        "{report:?}"
    );
    assert_eq!(fleet.status(&id).await, CertificateStatus::Inactive);
}
