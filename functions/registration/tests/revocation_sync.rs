//! Revocation that reaches admitted devices, over the in-memory registry and ledger: admission
//! indexes the serial; a new CRL makes the sync revoke ACTIVE and INACTIVE certificates, paced,
//! within its deadline, and only when the list changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jitr_aws::SourceFetcher;
use jitr_aws::source::HttpLimits;
use jitr_domain::Config;
use jitr_domain::certificate::normalized_serial;
use jitr_domain::ledger::{Ledger, MemoryLedger};
use jitr_domain::registry::{CertificateStatus, MemoryRegistry, Registry};
use jitr_domain::source::AddressPolicy;
use jitr_registration::{Outcome, Registrar, SyncBudget, handle_lambda_event};
use jitr_testkit::crl_server::CrlServer;
use jitr_testkit::pki::{Ca, Device, DeviceSpec, registered_event};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use time::{Duration as Span, OffsetDateTime};

const ACCOUNT: &str = "123456789012";

struct World {
    registry: Arc<MemoryRegistry>,
    ledger: Arc<MemoryLedger>,
    ca: Ca,
    ca_id: String,
    server: CrlServer,
}

type Sut = Registrar<Arc<MemoryRegistry>, SourceFetcher, Arc<MemoryLedger>>;

impl World {
    async fn new() -> Self {
        let registry = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
        let ca = Ca::new("Sync CA", "Acme").unwrap();
        let ca_id = registry.register_ca(&ca.pem, true).unwrap();
        registry.create_policy("device");
        Self {
            registry,
            ledger: Arc::new(MemoryLedger::new()),
            ca,
            ca_id,
            server: CrlServer::start().await.unwrap(),
        }
    }

    /// CRL at /ca.crl, the CA allowed (so the default profile's list is synced for it).
    fn registrar(&self) -> Sut {
        let mut config = Config::with_policy("device");
        config.allowed_ca_certificate_ids = [self.ca_id.clone()].into();
        config.revocation_list = Some(self.server.url("/ca.crl").parse().unwrap());
        Registrar::new(Arc::clone(&self.registry), config, loopback_fetcher())
            .with_ledger(Arc::clone(&self.ledger))
    }

    fn publish(&self, number: u64, revoked: &[&Device]) {
        let now = OffsetDateTime::now_utc();
        let serials: Vec<Vec<u8>> = revoked.iter().map(|d| d.serial.clone()).collect();
        let pem = self
            .ca
            .crl_numbered(
                &serials,
                number,
                now - Span::minutes(number as i64),
                now + Span::days(1),
            )
            .unwrap();
        self.server.publish("/ca.crl", pem);
    }

    async fn admit(&self, registrar: &Sut, cn: &str) -> Device {
        let device = self.ca.issue(&DeviceSpec::named(cn)).unwrap();
        let id = self
            .registry
            .register_pending(&device.cert_pem, &self.ca_id)
            .unwrap();
        let event = registered_event(&id, &self.ca_id, ACCOUNT);
        let report = registrar.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(report.outcome, Outcome::Activated, "{cn}");
        device
    }

    async fn status(&self, device: &Device) -> CertificateStatus {
        self.registry
            .describe_certificate(&device.id)
            .await
            .unwrap()
            .status
    }
}

fn budget() -> SyncBudget {
    SyncBudget {
        rate_per_second: 1000,
        deadline: tokio::time::Instant::now() + Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_listed_after_admission_is_revoked_by_the_sync() {
    let world = World::new().await;
    world.publish(1, &[]);
    let registrar = world.registrar();
    let stays = world.admit(&registrar, "stays").await;
    let goes = world.admit(&registrar, "goes").await;
    let deactivated = world.admit(&registrar, "deactivated").await;
    assert_eq!(world.ledger.len(), 3, "every admission is indexed");
    world
        .registry
        .update_certificate_status(&deactivated.id, &CertificateStatus::Inactive)
        .await
        .unwrap();

    // The CA publishes a new list naming two admitted devices.
    world.publish(2, &[&goes, &deactivated]);
    let now = jitr_aws::unix_now() + 400; // past the cache's refresh interval
    let reports = registrar.sync_revocations(now, budget()).await.unwrap();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(
        (
            report.listed,
            report.indexed,
            report.revoked,
            report.already_revoked
        ),
        (2, 2, 2, 0),
        "{report:?}"
    );
    assert!(report.list.as_deref().unwrap().contains("CRL number 2"));
    assert_eq!(world.status(&goes).await, CertificateStatus::Revoked);
    assert_eq!(world.status(&deactivated).await, CertificateStatus::Revoked);
    assert_eq!(world.status(&stays).await, CertificateStatus::Active);
    let entries = world
        .ledger
        .certificates_with_serial(&world.ca_id, &hex::encode(normalized_serial(&goes.serial)))
        .await
        .unwrap();
    assert!(
        entries[0]
            .revoked
            .as_ref()
            .unwrap()
            .by
            .contains("CRL number 2")
    );

    // The same list again: nothing to do, no IoT call.
    let again = registrar
        .sync_revocations(now + 400, budget())
        .await
        .unwrap();
    assert!(again[0].unchanged, "{again:?}");
    // A cold container finds the list applied in the ledger: nothing to do either.
    let cold = world.registrar();
    let report = &cold.sync_revocations(now, budget()).await.unwrap()[0];
    assert!(report.unchanged, "{report:?}");
}

/// Issue 18, defect 1: the sync marked a list version done in the container that ran it, so a
/// container still holding the older list admitted a serial the newer one revokes, and every
/// later run said "unchanged". Now the admission itself sees, in the ledger, that a newer list
/// was accepted, and revokes the certificate; the synced state is the ledger's, whichever
/// container runs next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_admission_under_an_older_list_is_revoked() {
    let world = World::new().await;
    world.publish(1, &[]);
    let stale = world.registrar();
    world.admit(&stale, "warms-the-cache").await;
    let late = world.ca.issue(&DeviceSpec::named("late")).unwrap();

    // The CA revokes `late`; another container's sync applies the new list to the end.
    world.publish(2, &[&late]);
    let now = jitr_aws::unix_now();
    let syncing = world.registrar();
    let report = &syncing.sync_revocations(now, budget()).await.unwrap()[0];
    assert!(
        report.list.as_deref().unwrap().contains("CRL number 2"),
        "{report:?}"
    );

    // The stale container (list 1, still within its refresh interval) sees `late` connect.
    let id = world
        .registry
        .register_pending(&late.cert_pem, &world.ca_id)
        .unwrap();
    let event = registered_event(&id, &world.ca_id, ACCOUNT);
    let report = stale.handle_at(&event, ACCOUNT, now).await.unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{report:?}");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .starts_with("SerialRevoked")
    );
    assert_eq!(
        world
            .registry
            .describe_certificate(&id)
            .await
            .unwrap()
            .status,
        CertificateStatus::Revoked
    );
    // Every container's next run agrees the list is applied.
    for registrar in [&stale, &syncing, &world.registrar()] {
        let report = &registrar
            .sync_revocations(now + 400, budget())
            .await
            .unwrap()[0];
        assert!(report.unchanged, "{report:?}");
    }
}

/// Issue 18, defect 2: the deadline was checked only on an unrevoked entry and every run started
/// again at the first serial. Now a run stops at its deadline between batches, saves a cursor in
/// the ledger, and the next run (another container here) goes on from it: at most one batch is
/// looked up twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_its_deadline_goes_on_from_its_cursor_in_any_container() {
    let world = World::new().await;
    world.publish(1, &[]);
    let registrar = world.registrar();
    let mut devices = Vec::new();
    for n in 0..60 {
        devices.push(world.admit(&registrar, &format!("cursor-{n}")).await);
    }
    world.publish(2, &devices.iter().collect::<Vec<_>>());
    let now = jitr_aws::unix_now() + 400;
    let short = SyncBudget {
        rate_per_second: 100,
        deadline: tokio::time::Instant::now() + Duration::from_millis(250),
    };
    let first = &registrar.sync_revocations(now, short).await.unwrap()[0];
    assert!(
        first.partial && first.revoked > 0 && first.revoked < 60,
        "{first:?}"
    );
    let cold = world.registrar();
    let second = &cold.sync_revocations(now, budget()).await.unwrap()[0];
    assert!(!second.partial, "{second:?}");
    assert_eq!(first.revoked + second.revoked, 60, "{first:?} {second:?}");
    assert!(
        second.indexed <= 60 - first.revoked + 16,
        "the second run went on from the cursor: {second:?}"
    );
    for device in &devices {
        assert_eq!(world.status(device).await, CertificateStatus::Revoked);
    }
    let third = &world
        .registrar()
        .sync_revocations(now, budget())
        .await
        .unwrap()[0];
    assert!(third.unchanged, "{third:?}");
}

/// The sync never exceeds its rate, and stops at its deadline with the rest left for the next
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_is_paced_and_stops_at_its_deadline() {
    let world = World::new().await;
    world.publish(1, &[]);
    let registrar = world.registrar();
    let mut devices = Vec::new();
    for n in 0..12 {
        devices.push(world.admit(&registrar, &format!("paced-{n}")).await);
    }
    let (first, rest) = devices.split_at(10);
    world.publish(2, &first.iter().collect::<Vec<_>>());
    let now = jitr_aws::unix_now() + 400;
    let started = Instant::now();
    let paced = SyncBudget {
        rate_per_second: 20,
        deadline: tokio::time::Instant::now() + Duration::from_secs(60),
    };
    let report = &registrar.sync_revocations(now, paced).await.unwrap()[0];
    assert_eq!(report.revoked, 10);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(9 * 50),
        "10 calls at 20/s are spaced 50 ms apart: took {elapsed:?}"
    );

    // A deadline already passed: no revocation is started and the run says it is partial...
    world.publish(3, &devices.iter().collect::<Vec<_>>());
    let expired = SyncBudget {
        rate_per_second: 20,
        deadline: tokio::time::Instant::now(),
    };
    let cold = world.registrar();
    let late = &cold.sync_revocations(now, expired).await.unwrap()[0];
    assert!(late.partial && late.revoked == 0, "{late:?}");
    for device in rest {
        assert_eq!(world.status(device).await, CertificateStatus::Active);
    }
    // ...and the next run finishes the job.
    let report = &cold.sync_revocations(now, paced).await.unwrap()[0];
    assert_eq!(
        (report.revoked, report.already_revoked),
        (2, 10),
        "{report:?}"
    );
    assert!(!report.partial);
}

/// The Lambda entry point runs the sync for a schedule and for an S3 notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_s3_notifications_run_the_sync() {
    let world = World::new().await;
    world.publish(1, &[]);
    let registrar = world.registrar();
    let device = world.admit(&registrar, "notified").await;
    world.publish(2, &[&device]);
    let mut context = Context::default();
    context.invoked_function_arn =
        format!("arn:aws:lambda:eu-west-1:{ACCOUNT}:function:registration");
    context.deadline = u64::try_from(jitr_aws::unix_now() * 1000 + 60_000).unwrap();
    let s3 = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "pki"}, "object": {"key": "crl/ca.crl"}}}]});
    // The cache fetched /ca.crl at admission; a fresh container sees the new list at once.
    let fresh = world.registrar();
    let answer = handle_lambda_event(&fresh, LambdaEvent::new(s3, context.clone()))
        .await
        .unwrap();
    assert_eq!(answer["revocationSync"][0]["revoked"], 1, "{answer}");
    assert_eq!(world.status(&device).await, CertificateStatus::Revoked);
    let schedule = json!({"source": "aws.events", "detail-type": "Scheduled Event",
        "detail": {}});
    let answer = handle_lambda_event(&fresh, LambdaEvent::new(schedule, context))
        .await
        .unwrap();
    assert_eq!(answer["revocationSync"][0]["unchanged"], true, "{answer}");
}

/// The template's default: one REVOCATION_LIST, an empty allow-list, no profiles. The sync finds
/// the list's CA among the registered ones; another registered CA is skipped quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_list_is_synced_for_its_ca_without_an_allow_list() {
    let world = World::new().await;
    let other = Ca::new("Other CA", "Else").unwrap();
    world.registry.register_ca(&other.pem, true).unwrap();
    world.publish(1, &[]);
    let mut config = Config::with_policy("device");
    config.revocation_list = Some(world.server.url("/ca.crl").parse().unwrap());
    let registrar = Registrar::new(Arc::clone(&world.registry), config, loopback_fetcher())
        .with_ledger(Arc::clone(&world.ledger));
    let device = world.admit(&registrar, "default-profile").await;
    world.publish(2, &[&device]);
    let reports = registrar
        .sync_revocations(jitr_aws::unix_now(), budget())
        .await
        .unwrap();
    assert_eq!(
        reports.len(),
        1,
        "only the list's own CA is reported: {reports:?}"
    );
    assert_eq!(reports[0].ca_certificate_id, world.ca_id);
    assert_eq!(reports[0].revoked, 1, "{reports:?}");
    assert!(reports[0].error.is_none());
    assert_eq!(world.status(&device).await, CertificateStatus::Revoked);
}

/// Lists are served on loopback here: the fetcher says it may reach it (a function never does).
fn loopback_fetcher() -> SourceFetcher {
    SourceFetcher::with_http(HttpLimits {
        addresses: AddressPolicy::AllowLoopback,
        ..HttpLimits::default()
    })
}

/// Counts the ledger's Query calls (serial lookups and index pages).
#[derive(Clone, Default)]
struct Queries(Arc<std::sync::atomic::AtomicUsize>);

impl jitr_testkit::interpose::Hook for Queries {
    async fn before(
        &self,
        operation: &'static str,
    ) -> Result<(), jitr_domain::registry::RegistryErrorKind> {
        if operation == "Query" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Issue 18, defect 2: a list far longer than the CA's index is applied by walking the index (a
/// page of up to 1,000 entries a read, each looked up in the list in memory), not by one lookup
/// per listed serial: 25,000 listed against 40 indexed costs one index read, not 25,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_far_longer_than_the_index_walks_the_index() {
    use jitr_testkit::interpose::Interposed;
    let world = World::new().await;
    world.publish(1, &[]);
    let registrar = world.registrar();
    let mut devices = Vec::new();
    for n in 0..40 {
        devices.push(world.admit(&registrar, &format!("walked-{n}")).await);
    }
    let listed = jitr_registration::WALK_ABOVE_LISTED + 5_000;
    let mut serials: Vec<Vec<u8>> = (0..listed as u32)
        .map(|n| {
            [0x7f, 0xee]
                .iter()
                .copied()
                .chain(n.to_be_bytes())
                .collect()
        })
        .collect();
    serials.extend(devices.iter().take(5).map(|d| d.serial.clone()));
    let now = OffsetDateTime::now_utc();
    let pem = world
        .ca
        .crl_numbered(&serials, 2, now - Span::minutes(2), now + Span::days(1))
        .unwrap();
    world.server.publish("/ca.crl", pem);
    let queries = Queries::default();
    let mut config = Config::with_policy("device");
    config.allowed_ca_certificate_ids = [world.ca_id.clone()].into();
    config.revocation_list = Some(world.server.url("/ca.crl").parse().unwrap());
    let counted = Registrar::new(Arc::clone(&world.registry), config, loopback_fetcher())
        .with_ledger(Interposed::new(Arc::clone(&world.ledger), queries.clone()));
    let report = &counted
        .sync_revocations(jitr_aws::unix_now() + 400, budget())
        .await
        .unwrap()[0];
    assert_eq!(report.listed, listed + 5, "{report:?}");
    assert_eq!(
        (report.walked, report.indexed, report.revoked),
        (40, 5, 5),
        "{report:?}"
    );
    assert!(!report.partial, "{report:?}");
    let reads = queries.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        reads <= 2,
        "{reads} ledger reads for {listed} listed serials"
    );
    for (n, device) in devices.iter().enumerate() {
        let expected = if n < 5 {
            CertificateStatus::Revoked
        } else {
            CertificateStatus::Active
        };
        assert_eq!(world.status(device).await, expected, "walked-{n}");
    }
}

/// `jitr explain` reads only: it compares a list with the ledger's mark (an older list is still
/// refused), and never raises the mark itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_compares_lists_with_the_mark_and_never_raises_it() {
    use jitr_domain::event::RegistrationEvent;
    let world = World::new().await;
    world.publish(2, &[]);
    let device = world.ca.issue(&DeviceSpec::named("explained")).unwrap();
    let id = world
        .registry
        .register_pending(&device.cert_pem, &world.ca_id)
        .unwrap();
    let event =
        RegistrationEvent::from_value(&registered_event(&id, &world.ca_id, ACCOUNT)).unwrap();
    let source = world.server.url("/ca.crl");
    let now = jitr_aws::unix_now();
    let reader = world.registrar().reading_only();
    reader.assess(&event, now).await.unwrap();
    assert_eq!(
        world.ledger.list_mark(&source, &world.ca_id).await.unwrap(),
        None
    );

    // A function accepts list 3; a reader then served list 2 refuses it.
    world.publish(3, &[]);
    world.admit(&world.registrar(), "accepts-3").await;
    world.publish(2, &[]);
    let err = world
        .registrar()
        .reading_only()
        .assess(&event, now)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Retryable.RevocationListRolledBack");
}
