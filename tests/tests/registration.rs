//! The registration flow against ministack: certificates made PENDING_ACTIVATION by real mTLS
//! connects, then the real handler through the real aws-sdk-iot client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jitr_domain::binding::BINDING_ATTRIBUTE;
use jitr_domain::registry::{CertificateStatus, Registry};
use jitr_domain::revocation::RevocationSource;
use jitr_domain::source::ObjectSource;
use jitr_registration::Outcome;
use jitr_testkit::pki::DeviceSpec;
use jitr_tests::device::Connect;
use jitr_tests::fleet::{Fleet, POLICY};
use time::{Duration as Span, OffsetDateTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_certificate_is_provisioned_activated_and_the_device_connects() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec {
            subject_serial_number: Some("SN-1".into()),
            ..DeviceSpec::named("sensor-happy")
        })
        .await;

    let report = fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(report.thing_name.as_deref(), Some("sensor-happy"));

    assert_eq!(fleet.status(&device).await, CertificateStatus::Active);
    assert_eq!(
        fleet.attachments(&device).await,
        (vec!["sensor-happy".to_owned()], vec![POLICY.to_owned()])
    );
    let thing = fleet.iot().describe_thing("sensor-happy").await.unwrap();
    assert_eq!(
        thing.attributes.get("commonName").map(String::as_str),
        Some("sensor-happy")
    );
    assert_eq!(
        fleet.connect(&device).await,
        Connect::Accepted,
        "the device's next connect succeeds"
    );
}

/// Five deliveries of one event at once, with a watcher that fails the test if the certificate
/// is ever seen ACTIVE without its Thing and policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_duplicates_make_one_thing_and_one_activation() {
    let fleet = Arc::new(Fleet::new().await);
    let device = fleet.pending_device(DeviceSpec::named("sensor-dup")).await;
    let registrar = Arc::new(fleet.registrar(fleet.config()));

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (fleet, device, done) = (Arc::clone(&fleet), device.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut observations = 0;
            while !done.load(Ordering::Relaxed) {
                if fleet.status(&device).await == CertificateStatus::Active {
                    let (things, policies) = fleet.attachments(&device).await;
                    assert!(
                        !things.is_empty() && !policies.is_empty(),
                        "ACTIVE without Thing/policy: {things:?} {policies:?}"
                    );
                }
                observations += 1;
            }
            observations
        })
    };
    let event = fleet.event(&device);
    let runs = (0..5).map(|_| {
        let (registrar, event, account) = (
            Arc::clone(&registrar),
            event.clone(),
            fleet.account.id.clone(),
        );
        tokio::spawn(async move { registrar.handle(&event, &account).await })
    });
    let mut outcomes = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        outcomes.push(run.await.unwrap().expect("no duplicate fails").outcome);
    }
    done.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);

    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Activated | Outcome::AlreadyActive)),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&Outcome::Activated), "{outcomes:?}");
    assert_eq!(fleet.status(&device).await, CertificateStatus::Active);
    assert_eq!(
        fleet.attachments(&device).await,
        (vec!["sensor-dup".to_owned()], vec![POLICY.to_owned()])
    );
    assert_eq!(
        fleet
            .iot()
            .list_thing_principals("sensor-dup")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_serial_is_revoked_and_never_connects() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-revoked"))
        .await;
    let now = OffsetDateTime::now_utc();
    let crl = fleet
        .ca
        .crl(
            std::slice::from_ref(&device.serial),
            now - Span::hours(1),
            now + Span::days(1),
        )
        .unwrap();
    let dir = tempdir(&fleet);
    let path = dir.join("crl.pem");
    std::fs::write(&path, crl).unwrap();
    let mut config = fleet.config();
    config.revocation_list = Some(RevocationSource::Object(ObjectSource::File(path)));

    let report = fleet
        .registrar(config)
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Revoked);
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    assert_eq!(fleet.attachments(&device).await, (vec![], vec![]));
    assert_ne!(fleet.connect(&device).await, Connect::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_in_s3_is_fetched_and_applied() {
    let fleet = Fleet::new().await;
    let revoked = fleet
        .pending_device(DeviceSpec::named("sensor-s3-revoked"))
        .await;
    let admitted = fleet
        .pending_device(DeviceSpec::named("sensor-s3-ok"))
        .await;
    let now = OffsetDateTime::now_utc();
    let crl = fleet
        .ca
        .crl(
            std::slice::from_ref(&revoked.serial),
            now - Span::hours(1),
            now + Span::days(1),
        )
        .unwrap();
    let bucket = format!("crl-{}", fleet.account.id);
    jitr_aws::source::S3Fetcher::from_sdk_config(&fleet.account.sdk)
        .publish(&bucket, "ca.crl", crl.into_bytes())
        .await
        .unwrap();
    let mut config = fleet.config();
    config.revocation_list = Some(RevocationSource::Object(ObjectSource::S3 {
        bucket,
        key: "ca.crl".into(),
    }));
    let registrar = fleet.registrar(config);
    assert_eq!(
        registrar
            .handle(&fleet.event(&revoked), &fleet.account.id)
            .await
            .unwrap()
            .outcome,
        Outcome::Revoked
    );
    assert_eq!(
        registrar
            .handle(&fleet.event(&admitted), &fleet.account.id)
            .await
            .unwrap()
            .outcome,
        Outcome::Activated
    );
}

/// The refresh is a conditional GET: an unchanged object costs a 304, a changed one is re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_refreshes_are_conditional_on_the_etag() {
    use jitr_aws::SourceFetcher;
    use jitr_aws::source::HttpFetcher;
    use jitr_aws::source::HttpLimits;
    use jitr_aws::source::S3Fetcher;
    use jitr_domain::source::{Fetched, Fetcher, Validator};
    let fleet = Fleet::new().await;
    let s3 = S3Fetcher::from_sdk_config(&fleet.account.sdk);
    let bucket = format!("etag-{}", fleet.account.id);
    s3.publish(&bucket, "ca.crl", b"version 1".to_vec())
        .await
        .unwrap();
    let fetcher = SourceFetcher::new(s3.clone(), HttpFetcher::new(HttpLimits::default()));
    let source = ObjectSource::S3 {
        bucket: bucket.clone(),
        key: "ca.crl".into(),
    };

    let Fetched::Body {
        bytes,
        validator: Some(etag @ Validator::ETag(_)),
    } = fetcher.fetch(&source, None).await.unwrap()
    else {
        panic!("the first fetch returns the body and its ETag");
    };
    assert_eq!(bytes, b"version 1");
    assert_eq!(
        fetcher.fetch(&source, Some(&etag)).await.unwrap(),
        Fetched::NotModified
    );
    s3.publish(&bucket, "ca.crl", b"version 2".to_vec())
        .await
        .unwrap();
    match fetcher.fetch(&source, Some(&etag)).await.unwrap() {
        Fetched::Body {
            bytes,
            validator: new,
        } => {
            assert_eq!(bytes, b"version 2");
            assert_ne!(new.as_ref(), Some(&etag));
        }
        Fetched::NotModified => panic!("a changed object must be re-read"),
    }
    let missing = ObjectSource::S3 {
        bucket,
        key: "absent.crl".into(),
    };
    let err = fetcher.fetch(&missing, None).await.unwrap_err();
    assert!(err.to_string().contains("NoSuchKey"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_set_the_certificate_inactive_and_create_nothing() {
    let fleet = Fleet::new().await;
    let bad_name = fleet
        .pending_device(DeviceSpec::named("sensor bad/name"))
        .await;
    let not_allowed = fleet
        .pending_device(DeviceSpec::named("sensor-not-allowed"))
        .await;
    let ca_inactive = fleet
        .pending_device(DeviceSpec::named("sensor-ca-off"))
        .await;

    let report = fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&bad_name), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Rejected, Some("ThingNameInvalid"))
    );

    let mut allow_other = fleet.config();
    allow_other
        .allowed_ca_certificate_ids
        .insert("f".repeat(64));
    let report = fleet
        .registrar(allow_other)
        .handle(&fleet.event(&not_allowed), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Rejected, Some("CaNotAllowed"))
    );

    fleet
        .iot()
        .set_ca_active(&fleet.ca_id, false)
        .await
        .unwrap();
    let report = fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&ca_inactive), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Rejected, Some("CaInactive"))
    );

    for device in [&bad_name, &not_allowed, &ca_inactive] {
        assert_eq!(fleet.status(device).await, CertificateStatus::Inactive);
        assert_eq!(fleet.attachments(device).await, (vec![], vec![]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_permanent_errors_that_change_nothing() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-bad-events"))
        .await;
    let registrar = fleet.registrar(fleet.config());

    let mut wrong_account = fleet.event(&device);
    wrong_account["awsAccountId"] = "999999999999".into();
    let mut malformed = fleet.event(&device);
    malformed["certificateId"] = "../../etc/passwd".into();
    let mut other_ca = fleet.event(&device);
    other_ca["caCertificateId"] = "a".repeat(64).into();
    let cases = [
        (wrong_account, "Permanent.WrongAccount"),
        (malformed, "Permanent.MalformedEvent"),
        (other_ca, "Permanent.EventMismatch"),
    ];
    for (event, error_type) in cases {
        let err = registrar
            .handle(&event, &fleet.account.id)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), error_type);
    }
    let mut unknown = fleet.event(&device);
    unknown["certificateId"] = "b".repeat(64).into();
    assert_eq!(
        registrar
            .handle(&unknown, &fleet.account.id)
            .await
            .unwrap_err()
            .error_type(),
        "Permanent.NotFound"
    );

    assert_eq!(
        fleet.status(&device).await,
        CertificateStatus::PendingActivation
    );
    assert_eq!(fleet.attachments(&device).await, (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_crl_fails_closed_and_leaves_the_certificate_pending() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-crl-closed"))
        .await;
    let dir = tempdir(&fleet);
    let now = OffsetDateTime::now_utc();

    let mut missing = fleet.config();
    missing.revocation_list = Some(RevocationSource::Object(ObjectSource::File(
        dir.join("absent.crl"),
    )));
    let err = fleet
        .registrar(missing.clone())
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Retryable.RevocationListUnreadable");

    let stale_path = dir.join("stale.crl");
    std::fs::write(
        &stale_path,
        fleet
            .ca
            .crl(&[], now - Span::days(8), now - Span::days(1))
            .unwrap(),
    )
    .unwrap();
    let mut stale = fleet.config();
    stale.revocation_list = Some(RevocationSource::Object(ObjectSource::File(stale_path)));
    let err = fleet
        .registrar(stale)
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Retryable.RevocationListStale");

    assert_eq!(
        fleet.status(&device).await,
        CertificateStatus::PendingActivation
    );
    assert_eq!(fleet.attachments(&device).await, (vec![], vec![]));
    assert_eq!(
        fleet.connect(&device).await,
        Connect::Closed,
        "still pending: refused"
    );

    missing.revocation_fail_open = true;
    let report = fleet
        .registrar(missing)
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert!(report.revocation_unchecked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_by_an_operator_is_never_reactivated() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-operator"))
        .await;
    fleet
        .iot()
        .update_certificate_status(&device.id, &CertificateStatus::Revoked)
        .await
        .unwrap();
    let report = fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::LeftAlone, Some("StatusRevoked"))
    );
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_ne!(fleet.connect(&device).await, Connect::Accepted);
}

fn tempdir(fleet: &Fleet) -> std::path::PathBuf {
    let dir = fleet
        .ministack
        .state_dir
        .join(format!("test-{}", fleet.account.id));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Defect found in review, on the emulator with two registered CAs and real mTLS connects: a
/// device of CA B whose CN names a device admitted through CA A must not get A's Thing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_another_ca_cannot_take_over_a_thing() {
    let fleet = Fleet::new().await;
    let (partner, partner_id) = fleet.another_ca("Partner CA").await;
    let registrar = fleet.registrar(fleet.config()); // any registered, ACTIVE CA
    let genuine = fleet
        .pending_device(DeviceSpec::named("sensor-contested"))
        .await;
    let report = registrar
        .handle(&fleet.event(&genuine), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);

    let forged = fleet
        .pending_device_of(&partner, DeviceSpec::named("sensor-contested"))
        .await;
    let report = registrar
        .handle(&fleet.event_of(&partner_id, &forged), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Rejected);
    assert_eq!(report.reason.as_deref(), Some("ThingBoundToOtherCa"));
    assert_eq!(fleet.status(&forged).await, CertificateStatus::Inactive);
    assert_eq!(fleet.attachments(&forged).await, (vec![], vec![]));
    assert_eq!(
        fleet.attachments(&genuine).await.0,
        ["sensor-contested"],
        "the genuine device keeps its Thing"
    );
    let thing = fleet
        .iot()
        .describe_thing("sensor-contested")
        .await
        .unwrap();
    assert_eq!(
        thing.attributes.get(BINDING_ATTRIBUTE),
        Some(&fleet.ca_id),
        "the Thing is bound to the CA that admitted it"
    );
    let refused = fleet.connect_with(&partner, &forged).await;
    assert!(
        matches!(refused, Connect::Closed | Connect::Refused(_)),
        "the forged device is refused at connect: {refused:?}"
    );
    assert_eq!(fleet.connect(&genuine).await, Connect::Accepted);
}

/// A serial published in the CA's list after the device was admitted: the sync (DynamoDB serial
/// index, CRL in S3) revokes the ACTIVE certificate and the device can no longer connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_published_later_revokes_an_active_device() {
    let fleet = Fleet::new().await;
    let crl = S3Crl::new(&fleet, "sync").await;
    let (s3, bucket, config) = (&crl.s3, &crl.bucket, crl.config.clone());
    let list = |number, serials: &[Vec<u8>]| crl.list(number, serials);
    let registrar = fleet.registrar(config).with_ledger(fleet.ledger().await);
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-later"))
        .await;
    let report = registrar
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert_eq!(fleet.connect(&device).await, Connect::Accepted);

    s3.publish(
        bucket,
        "crl/ca.crl",
        list(2, std::slice::from_ref(&device.serial)),
    )
    .await
    .unwrap();
    let budget = jitr_registration::SyncBudget {
        rate_per_second: 10,
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };
    let later = jitr_aws::unix_now() + 400; // past the cached list's refresh interval
    let reports = registrar.sync_revocations(later, budget).await.unwrap();
    assert_eq!(reports[0].revoked, 1, "{reports:?}");
    assert_eq!(fleet.status(&device).await, CertificateStatus::Revoked);
    let refused = fleet.connect(&device).await;
    assert!(
        matches!(refused, Connect::Closed | Connect::Refused(_)),
        "a revoked device cannot connect: {refused:?}"
    );
}

/// Issue 18, defect 1, on the emulator (DynamoDB ledger, CRL in S3, real IoT): a container still
/// holding the older list admits a device the newer list revokes, after another container's sync
/// applied that list to the end. The admission sees the newer list's mark in the ledger and
/// revokes the certificate itself; the device cannot connect, and the next sync, in either
/// container, finds the list applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_admission_in_a_stale_container_is_revoked_on_the_emulator() {
    let fleet = Fleet::new().await;
    let crl = S3Crl::new(&fleet, "late").await;
    let (s3, bucket, config) = (&crl.s3, &crl.bucket, crl.config.clone());
    let list = |number, serials: &[Vec<u8>]| crl.list(number, serials);
    let ledger = fleet.ledger().await;
    let stale = fleet.registrar(config.clone()).with_ledger(ledger.clone());
    let warm = fleet.pending_device(DeviceSpec::named("sensor-warm")).await;
    let report = stale
        .handle(&fleet.event(&warm), &fleet.account.id)
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Activated,
        "the stale container holds list 1"
    );

    let late = fleet.pending_device(DeviceSpec::named("sensor-late")).await;
    s3.publish(
        bucket,
        "crl/ca.crl",
        list(2, std::slice::from_ref(&late.serial)),
    )
    .await
    .unwrap();
    let syncing = fleet.registrar(config).with_ledger(ledger);
    let budget = || jitr_registration::SyncBudget {
        rate_per_second: 10,
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };
    let at = jitr_aws::unix_now();
    let reports = syncing.sync_revocations(at, budget()).await.unwrap();
    assert!(
        !reports[0].partial && reports[0].error.is_none(),
        "{reports:?}"
    );

    let report = stale
        .handle_at(&fleet.event(&late), &fleet.account.id, at)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Revoked, "{report:?}");
    assert_eq!(fleet.status(&late).await, CertificateStatus::Revoked);
    let refused = fleet.connect(&late).await;
    assert!(
        matches!(refused, Connect::Closed | Connect::Refused(_)),
        "a revoked device cannot connect: {refused:?}"
    );
    for registrar in [&stale, &syncing] {
        let reports = registrar
            .sync_revocations(at + 400, budget())
            .await
            .unwrap();
        assert!(reports[0].unchanged, "{reports:?}");
    }
}

/// A CA's CRL in an S3 bucket of the fleet's account (list 1, empty, published), and the
/// registration configuration that reads it for that CA.
struct S3Crl<'a> {
    fleet: &'a Fleet,
    s3: jitr_aws::source::S3Fetcher,
    bucket: String,
    config: jitr_domain::Config,
}

impl<'a> S3Crl<'a> {
    async fn new(fleet: &'a Fleet, tag: &str) -> Self {
        let s3 = jitr_aws::source::S3Fetcher::from_sdk_config(&fleet.account.sdk);
        let bucket = format!("{tag}-{}", fleet.account.id);
        let mut config = fleet.config();
        config.allowed_ca_certificate_ids = [fleet.ca_id.clone()].into();
        config.revocation_list = Some(RevocationSource::Object(ObjectSource::S3 {
            bucket: bucket.clone(),
            key: "crl/ca.crl".into(),
        }));
        let crl = Self {
            fleet,
            s3,
            bucket,
            config,
        };
        crl.s3
            .publish(&crl.bucket, "crl/ca.crl", crl.list(1, &[]))
            .await
            .unwrap();
        crl
    }

    /// List `number`, revoking `serials`, valid from an hour ago for a day.
    fn list(&self, number: u64, serials: &[Vec<u8>]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        self.fleet
            .ca
            .crl_numbered(serials, number, now - Span::hours(1), now + Span::days(1))
            .unwrap()
            .into_bytes()
    }
}
