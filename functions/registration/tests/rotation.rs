//! Certificate rotation over the in-memory registry and ledger: a device admitted with a newer
//! certificate has its previous ones set aside per the rotation policy, never one another Thing
//! uses; an older certificate arriving after a newer one is refused (`Superseded`), even when
//! the two race.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::ledger::{Ledger, MemoryLedger};
use jitr_domain::registry::{CertificateStatus, MemoryRegistry, Registry};
use jitr_domain::rotation::RotationPolicy;
use jitr_registration::{Outcome, Registrar, Report};
use jitr_testkit::pki::{Ca, DeviceSpec, registered_event};
use time::{Duration, OffsetDateTime};

const ACCOUNT: &str = "123456789012";

struct World {
    registry: Arc<MemoryRegistry>,
    ledger: Arc<MemoryLedger>,
    ca: Ca,
    ca_id: String,
    registrar: Registrar<Arc<MemoryRegistry>, SourceFetcher, Arc<MemoryLedger>>,
}

impl World {
    fn new(rotation: RotationPolicy) -> Self {
        let registry = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
        let ca = Ca::new("Rotation CA", "Acme").unwrap();
        let ca_id = registry.register_ca(&ca.pem, true).unwrap();
        registry.create_policy("jitr-device");
        let ledger = Arc::new(MemoryLedger::new());
        let config = Config {
            rotation_policy: rotation,
            ..Config::with_policy("jitr-device")
        };
        let registrar = Registrar::new(Arc::clone(&registry), config, SourceFetcher::without_s3())
            .with_ledger(Arc::clone(&ledger));
        Self {
            registry,
            ledger,
            ca,
            ca_id,
            registrar,
        }
    }

    /// A pending certificate for `name`, valid from `days_ago` days ago.
    fn pending(&self, name: &str, days_ago: i64) -> String {
        let spec = DeviceSpec {
            not_before: OffsetDateTime::now_utc() - Duration::days(days_ago),
            ..DeviceSpec::named(name)
        };
        let device = self.ca.issue(&spec).unwrap();
        self.registry
            .register_pending(&device.cert_pem, &self.ca_id)
            .unwrap()
    }

    async fn register(&self, id: &str) -> Report {
        self.registrar
            .handle(&registered_event(id, &self.ca_id, ACCOUNT), ACCOUNT)
            .await
            .unwrap()
    }

    fn status(&self, id: &str) -> CertificateStatus {
        self.registry
            .snapshot()
            .certificates
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
            .status
    }
}

#[tokio::test]
async fn a_newer_certificate_sets_the_previous_ones_aside_per_the_policy() {
    let cases = [
        (
            RotationPolicy::DeactivatePrevious,
            CertificateStatus::Inactive,
        ),
        (RotationPolicy::RevokePrevious, CertificateStatus::Revoked),
        (RotationPolicy::Keep, CertificateStatus::Active),
    ];
    for (policy, previous_ends) in cases {
        let world = World::new(policy);
        let old = world.pending("meter-1", 30);
        assert_eq!(world.register(&old).await.outcome, Outcome::Activated);
        let new = world.pending("meter-1", 1);
        assert_eq!(world.register(&new).await.outcome, Outcome::Activated);
        assert_eq!(world.status(&new), CertificateStatus::Active, "{policy:?}");
        assert_eq!(world.status(&old), previous_ends, "{policy:?}");
        let record = world.ledger.device("meter-1").await.unwrap().unwrap();
        assert_eq!(
            record.latest.map(|l| l.certificate_id),
            Some(new.clone()),
            "{policy:?}"
        );
        assert_eq!(
            record.retired.contains(&old),
            policy != RotationPolicy::Keep,
            "{policy:?}"
        );
        assert!(world.registry.invariant_violations().is_empty());
    }
}

#[tokio::test]
async fn rotation_never_touches_a_certificate_another_thing_uses() {
    let world = World::new(RotationPolicy::RevokePrevious);
    let gateway = world.pending("gateway-1", 30);
    assert_eq!(world.register(&gateway).await.outcome, Outcome::Activated);
    // The gateway's certificate also serves meter-2 (a shared identity).
    world
        .registry
        .create_thing(&jitr_domain::registry::ThingSpec {
            name: "meter-2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    world
        .registry
        .attach_thing_principal("meter-2", &world.registry.certificate_arn(&gateway))
        .await
        .unwrap();
    let own = world.pending("meter-2", 1);
    let report = world.register(&own).await;
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    assert_eq!(world.status(&gateway), CertificateStatus::Active);
    assert_eq!(world.status(&own), CertificateStatus::Active);
}

#[tokio::test]
async fn an_older_certificate_after_a_newer_one_is_superseded() {
    let world = World::new(RotationPolicy::DeactivatePrevious);
    let new = world.pending("meter-3", 1);
    assert_eq!(world.register(&new).await.outcome, Outcome::Activated);
    // A stolen, older certificate of the same device connects.
    let stolen = world.pending("meter-3", 300);
    let report = world.register(&stolen).await;
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Rejected, Some("Superseded"))
    );
    assert_eq!(world.status(&stolen), CertificateStatus::Inactive);
    assert_eq!(
        world.status(&new),
        CertificateStatus::Active,
        "the current certificate is not pushed out"
    );
}

/// The old and the new certificate registering at once: the old one is held before each of
/// its AWS calls in turn while the new one registers from start to end. Whatever the
/// interleaving, the newest stays ACTIVE and the older one does not.
#[tokio::test]
async fn when_two_certificates_race_the_newest_wins() {
    use jitr_testkit::interpose::{Gate, Interposed};
    for n in 0.. {
        let world = World::new(RotationPolicy::DeactivatePrevious);
        let old = world.pending("meter-4", 30);
        let new = world.pending("meter-4", 1);
        let gate = Gate::new();
        let held = Registrar::new(
            Interposed::new(Arc::clone(&world.registry), Arc::clone(&gate)),
            Config::with_policy("jitr-device"),
            SourceFetcher::without_s3(),
        )
        .with_ledger(Interposed::new(
            Arc::clone(&world.ledger),
            Arc::clone(&gate),
        ));
        gate.hold(n);
        let event = registered_event(&old, &world.ca_id, ACCOUNT);
        let mut old_run = std::pin::pin!(held.handle(&event, ACCOUNT));
        let reached = tokio::select! {
            () = gate.held() => true,
            _ = &mut old_run => false,
        };
        if !reached {
            assert!(n > 8, "the old registration made only {n} calls");
            break;
        }
        let newer = world.register(&new).await;
        gate.release();
        let older = old_run.await;
        let context = format!("old held at call {n}: old {older:?}, new {newer:?}");
        assert_eq!(world.status(&new), CertificateStatus::Active, "{context}");
        assert_ne!(world.status(&old), CertificateStatus::Active, "{context}");
    }
}

/// Issue 18, defect 8: another CA's certificate naming a device bound to this CA is refused for
/// its CA and leaves the device's ledger record as it was, so the device's own next certificate
/// is admitted (not `Superseded` by the refused one); and a rotation never sets aside another
/// CA's certificate on the Thing.
#[tokio::test]
async fn another_cas_certificate_changes_nothing_the_device_holds() {
    let world = World::new(RotationPolicy::DeactivatePrevious);
    let partner = Ca::new("Partner CA", "Partner").unwrap();
    let partner_id = world.registry.register_ca(&partner.pem, true).unwrap();
    let genuine = world.pending("meter-9", 30);
    assert_eq!(world.register(&genuine).await.outcome, Outcome::Activated);
    let before = world.ledger.device("meter-9").await.unwrap().unwrap();

    // A partner certificate naming the factory's Thing, newer than anything the device holds.
    let forged = partner.issue(&DeviceSpec::named("meter-9")).unwrap();
    let forged_id = world
        .registry
        .register_pending(&forged.cert_pem, &partner_id)
        .unwrap();
    let report = world
        .registrar
        .handle(&registered_event(&forged_id, &partner_id, ACCOUNT), ACCOUNT)
        .await
        .unwrap();
    assert_eq!(report.reason.as_deref(), Some("ThingBoundToOtherCa"));
    assert_eq!(world.status(&forged_id), CertificateStatus::Inactive);
    assert_eq!(
        world.ledger.device("meter-9").await.unwrap().unwrap(),
        before,
        "the refused certificate is neither held nor latest"
    );

    // The device's own next certificate (older than the forged one) is admitted.
    let next = world.pending("meter-9", 2);
    assert_eq!(world.register(&next).await.outcome, Outcome::Activated);
    assert_eq!(world.status(&genuine), CertificateStatus::Inactive);

    // An operator attached another CA's ACTIVE certificate to the Thing by hand: a rotation
    // within the factory CA leaves it alone.
    let other = partner
        .issue(&DeviceSpec::named("operator-attached"))
        .unwrap();
    let other_id = world
        .registry
        .register_certificate(
            &other.cert_pem,
            Some(&partner_id),
            CertificateStatus::Active,
        )
        .unwrap();
    world
        .registry
        .attach_thing_principal("meter-9", &world.registry.certificate_arn(&other_id))
        .await
        .unwrap();
    let newest = world.pending("meter-9", 1);
    assert_eq!(world.register(&newest).await.outcome, Outcome::Activated);
    assert_eq!(world.status(&next), CertificateStatus::Inactive);
    assert_eq!(world.status(&other_id), CertificateStatus::Active);
}
