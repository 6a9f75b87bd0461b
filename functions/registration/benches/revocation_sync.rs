//! The revocation sync for a fleet of 100,000 under IoT Core's quota model (`make bench-sync`):
//! how long from a CRL upload to the last newly listed certificate REVOKED. Then two scale cases
//! on a paused clock (runs of the deployed length, 55 s of work each, in simulated time): a CRL of
//! 1,000,000 serials against 100,000 indexed certificates of its CA, and 1,100 serials against
//! 1,000,000 indexed, each ending in one `sync-scale:` line.
//!
//! The model: every IoT call takes 15 ms and every ledger Query 5 ms (typical in-region
//! latencies); UpdateCertificate is throttled above `QUOTA` calls in any one second, and the
//! model counts every throttle. The fleet's 100,000 certificates are in the serial index; the new
//! CRL lists 1,000 serials revoked earlier (already marked) and `NEWLY_LISTED` new ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::ledger::{Ledger, MemoryLedger, Revoked, SerialEntry};
use jitr_domain::registry::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryError,
    RegistryErrorKind, ThingDescription, ThingSpec,
};
use jitr_registration::{Registrar, SyncBudget};
use jitr_testkit::interpose::{Interposed, Latency};
use jitr_testkit::pki::Ca;
use time::{Duration as Span, OffsetDateTime};

const FLEET: usize = 100_000;
const PREVIOUSLY_REVOKED: usize = 1_000;
const NEWLY_LISTED: usize = 100;
/// UpdateCertificate calls per second the model allows, and the sync's configured rate.
const QUOTA: usize = 10;
const IOT_LATENCY: Duration = Duration::from_millis(15);
const LEDGER_LATENCY: Duration = Duration::from_millis(5);

/// IoT Core as far as the sync uses it: certificate statuses, latency, and the quota.
struct QuotaModel {
    ca: CaDescription,
    statuses: Mutex<HashMap<String, CertificateStatus>>,
    updates: Mutex<VecDeque<tokio::time::Instant>>,
    throttled: Mutex<usize>,
}

impl QuotaModel {
    /// The CA, with certificates in `statuses`.
    fn new(ca: &Ca, statuses: HashMap<String, CertificateStatus>) -> Arc<Self> {
        Arc::new(Self {
            ca: CaDescription {
                id: ca.id(),
                active: true,
                pem: ca.pem.clone(),
            },
            statuses: Mutex::new(statuses),
            updates: Mutex::default(),
            throttled: Mutex::default(),
        })
    }
}

/// The function's configuration for a sync of `ca_id`'s list at the quota's rate.
fn sync_config(ca_id: &str) -> Config {
    let mut config = Config::with_policy("device");
    config.allowed_ca_certificate_ids = [ca_id.to_owned()].into();
    config.revocation_sync_rate = u32::try_from(QUOTA).unwrap();
    config
}

/// `n` certificates of the CA in the serial index, each ACTIVE unless `revoked(n)` (then REVOKED
/// and marked so in the index); their statuses by certificate id.
async fn index_fleet(
    ledger: &MemoryLedger,
    ca_id: &str,
    n: usize,
    revoked: impl Fn(usize) -> bool,
) -> HashMap<String, CertificateStatus> {
    let mut statuses = HashMap::with_capacity(n);
    for n in 0..n {
        let certificate_id = format!("{n:064x}");
        let entry = SerialEntry {
            ca_certificate_id: ca_id.to_owned(),
            serial_hex: hex::encode(serial(n)),
            certificate_id: certificate_id.clone(),
            thing_name: format!("device-{n}"),
            admitted_at: 0,
            revoked: None,
        };
        ledger.index_certificate(&entry).await.unwrap();
        let status = if revoked(n) {
            let by = Revoked {
                at: 0,
                by: "crl #1".into(),
            };
            ledger
                .mark_revoked(ca_id, &entry.serial_hex, &certificate_id, &by)
                .await
                .unwrap();
            CertificateStatus::Revoked
        } else {
            CertificateStatus::Active
        };
        statuses.insert(certificate_id, status);
    }
    statuses
}

fn unsupported<T>(operation: &'static str) -> Result<T, RegistryError> {
    Err(RegistryError::new(
        RegistryErrorKind::Other,
        operation,
        "not in the model",
    ))
}

impl Registry for QuotaModel {
    async fn describe_certificate(
        &self,
        id: &str,
    ) -> Result<CertificateDescription, RegistryError> {
        tokio::time::sleep(IOT_LATENCY).await;
        let status = self.statuses.lock().unwrap().get(id).cloned();
        match status {
            Some(status) => Ok(CertificateDescription {
                id: id.to_owned(),
                arn: format!("arn:aws:iot:eu-west-1:123456789012:cert/{id}"),
                status,
                pem: String::new(),
                ca_certificate_id: Some(self.ca.id.clone()),
            }),
            None => Err(RegistryError::new(
                RegistryErrorKind::NotFound,
                "DescribeCertificate",
                "absent",
            )),
        }
    }
    async fn describe_ca_certificate(&self, _: &str) -> Result<CaDescription, RegistryError> {
        tokio::time::sleep(IOT_LATENCY).await;
        Ok(self.ca.clone())
    }
    async fn update_certificate_status(
        &self,
        id: &str,
        status: &CertificateStatus,
    ) -> Result<(), RegistryError> {
        tokio::time::sleep(IOT_LATENCY).await;
        let now = tokio::time::Instant::now();
        {
            let mut window = self.updates.lock().unwrap();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            if window.len() >= QUOTA {
                *self.throttled.lock().unwrap() += 1;
                return Err(RegistryError::new(
                    RegistryErrorKind::Throttled,
                    "UpdateCertificate",
                    "Rate exceeded",
                ));
            }
            window.push_back(now);
        }
        self.statuses
            .lock()
            .unwrap()
            .insert(id.to_owned(), status.clone());
        Ok(())
    }
    async fn policy_exists(&self, _: &str) -> Result<bool, RegistryError> {
        unsupported("GetPolicy")
    }
    async fn list_ca_certificates(&self) -> Result<Vec<String>, RegistryError> {
        tokio::time::sleep(IOT_LATENCY).await;
        Ok(vec![self.ca.id.clone()])
    }
    async fn describe_thing(&self, _: &str) -> Result<ThingDescription, RegistryError> {
        unsupported("DescribeThing")
    }
    async fn set_thing_attribute(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<(), RegistryError> {
        unsupported("UpdateThing")
    }
    async fn create_thing(&self, _: &ThingSpec) -> Result<(), RegistryError> {
        unsupported("CreateThing")
    }
    async fn add_thing_to_group(&self, _: &str, _: &str) -> Result<(), RegistryError> {
        unsupported("AddThingToThingGroup")
    }
    async fn attach_policy(&self, _: &str, _: &str) -> Result<(), RegistryError> {
        unsupported("AttachPolicy")
    }
    async fn attach_thing_principal(&self, _: &str, _: &str) -> Result<(), RegistryError> {
        unsupported("AttachThingPrincipal")
    }
    async fn list_thing_principals(&self, _: &str) -> Result<Vec<String>, RegistryError> {
        unsupported("ListThingPrincipals")
    }
    async fn list_principal_things(&self, _: &str) -> Result<Vec<String>, RegistryError> {
        unsupported("ListPrincipalThings")
    }
    async fn things_with_attribute(&self, _: &str, _: &str) -> Result<Vec<String>, RegistryError> {
        unsupported("ListThings")
    }
    async fn list_attached_policies(&self, _: &str) -> Result<Vec<String>, RegistryError> {
        unsupported("ListAttachedPolicies")
    }
    async fn detach_thing_principal(&self, _: &str, _: &str) -> Result<(), RegistryError> {
        unsupported("DetachThingPrincipal")
    }
    async fn detach_policy(&self, _: &str, _: &str) -> Result<(), RegistryError> {
        unsupported("DetachPolicy")
    }
    async fn delete_certificate(&self, _: &str) -> Result<(), RegistryError> {
        unsupported("DeleteCertificate")
    }
    async fn delete_thing(&self, _: &str) -> Result<(), RegistryError> {
        unsupported("DeleteThing")
    }
}

fn serial(n: usize) -> Vec<u8> {
    let mut s = vec![0x10];
    s.extend_from_slice(&(n as u64).to_be_bytes());
    s
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ca = Ca::new("Fleet CA", "Acme").unwrap();
    let ca_id = ca.id();
    let ledger = MemoryLedger::new();
    let built = Instant::now();
    let statuses = index_fleet(&ledger, &ca_id, FLEET, |n| n < PREVIOUSLY_REVOKED).await;
    let listed: Vec<Vec<u8>> = (0..PREVIOUSLY_REVOKED + NEWLY_LISTED).map(serial).collect();
    let now = OffsetDateTime::now_utc();
    let crl = ca
        .crl_numbered(&listed, 2, now - Span::minutes(1), now + Span::days(1))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("jitr-bench-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let crl_path = dir.join("ca.crl");
    std::fs::write(&crl_path, &crl).unwrap();
    println!(
        "fleet: {FLEET} certificates indexed; CRL: {} serials ({PREVIOUSLY_REVOKED} revoked before, {NEWLY_LISTED} new), {} KiB; built in {:?}",
        listed.len(),
        crl.len() / 1024,
        built.elapsed()
    );

    let model = QuotaModel::new(&ca, statuses);
    let mut config = sync_config(&ca_id);
    config.revocation_list = Some(format!("file://{}", crl_path.display()).parse().unwrap());
    let registrar = Registrar::new(
        Arc::clone(&model),
        config.clone(),
        SourceFetcher::without_s3(),
    )
    .with_ledger(Interposed::new(ledger, Latency(LEDGER_LATENCY)));

    let started = Instant::now();
    let budget = SyncBudget {
        rate_per_second: config.revocation_sync_rate,
        deadline: tokio::time::Instant::now() + Duration::from_secs(55),
    };
    let reports = registrar
        .sync_revocations(jitr_aws::unix_now(), budget)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let report = &reports[0];
    let throttled = *model.throttled.lock().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.revoked, NEWLY_LISTED, "{report:?}");
    assert_eq!(report.already_revoked, PREVIOUSLY_REVOKED, "{report:?}");
    println!(
        "sync at {QUOTA}/s: {} newly REVOKED, {} already marked, {} throttles, in {:.1} s ({:.1} revocations/s)",
        report.revoked,
        report.already_revoked,
        throttled,
        elapsed.as_secs_f64(),
        report.revoked as f64 / elapsed.as_secs_f64()
    );
    let per_revocation = elapsed.as_secs_f64() / NEWLY_LISTED as f64;
    println!(
        "within one minute of an S3 upload (notification ≈ 1 s, 55 s of work): up to ≈ {} newly listed serials per upload at {QUOTA}/s; URL sources add up to 60 s of schedule delay",
        (55.0 / per_revocation) as usize
    );
    assert_eq!(throttled, 0, "the sync must stay within the quota");

    // The scale cases, in simulated time.
    tokio::time::pause();
    sync_scale(&ca, 1_000_000, 100_000, 1_000).await;
    sync_scale(&ca, 1_100, 1_000_000, 1_100).await;
}

/// The ledger as deployed: 5 ms a call, and every Query counted (lookups and index pages).
#[derive(Clone, Default)]
struct LedgerModel(Arc<std::sync::atomic::AtomicUsize>);

impl jitr_testkit::interpose::Hook for LedgerModel {
    async fn before(&self, operation: &'static str) -> Result<(), RegistryErrorKind> {
        if operation == "Query" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::time::sleep(LEDGER_LATENCY).await;
        Ok(())
    }
}

/// Serves one list, as S3 would: the body, then 304 for its ETag.
struct OneList(Vec<u8>);

impl jitr_domain::source::Fetcher for OneList {
    async fn fetch(
        &self,
        _: &jitr_domain::source::ObjectSource,
        validator: Option<&jitr_domain::source::Validator>,
    ) -> Result<jitr_domain::source::Fetched, jitr_domain::source::FetchError> {
        use jitr_domain::source::{Fetched, Validator};
        if validator == Some(&Validator::ETag("\"scale\"".into())) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::body(self.0.clone(), Some("\"scale\"")))
    }
}

/// `indexed` certificates of the CA admitted, the first `admitted_listed` of them in a CRL of
/// `listed` serials; the sync runs (55 s of work each, on the paused clock) until the list is
/// applied to the end. Prints the `sync-scale:` line and checks every listed admitted
/// certificate ended REVOKED.
async fn sync_scale(ca: &Ca, listed: usize, indexed: usize, admitted_listed: usize) {
    let ca_id = ca.id();
    let ledger = MemoryLedger::new();
    let statuses = index_fleet(&ledger, &ca_id, indexed, |_| false).await;
    let serials: Vec<Vec<u8>> = (0..admitted_listed)
        .chain(indexed..indexed + (listed - admitted_listed))
        .map(serial)
        .collect();
    let now = OffsetDateTime::now_utc();
    let crl = ca
        .crl_numbered(&serials, 3, now - Span::minutes(1), now + Span::days(1))
        .unwrap();
    drop(serials);
    let model = QuotaModel::new(ca, statuses);
    let mut config = sync_config(&ca_id);
    config.revocation_list = Some("s3://pki/crl/ca.crl".parse().unwrap());
    let reads = LedgerModel::default();
    let registrar = Registrar::new(
        Arc::clone(&model),
        config.clone(),
        OneList(crl.into_bytes()),
    )
    .with_ledger(Interposed::new(ledger, reads.clone()));
    let started = tokio::time::Instant::now();
    let (mut runs, mut revoked) = (0, 0);
    let mut clock = jitr_aws::unix_now();
    loop {
        runs += 1;
        let budget = SyncBudget {
            rate_per_second: config.revocation_sync_rate,
            deadline: tokio::time::Instant::now() + Duration::from_secs(55),
        };
        let report = registrar
            .sync_revocations(clock, budget)
            .await
            .unwrap()
            .remove(0);
        assert!(report.error.is_none(), "{report:?}");
        revoked += report.revoked;
        if !report.partial {
            break;
        }
        assert!(runs < 60, "not done in an hour of runs: {report:?}");
        // The next scheduled run, a minute after this one started.
        tokio::time::sleep_until(started + Duration::from_secs(60 * runs)).await;
        clock += 60;
    }
    let seconds = started.elapsed().as_secs_f64();
    let statuses = model.statuses.lock().unwrap();
    let ended_revoked = (0..admitted_listed)
        .filter(|n| statuses.get(&format!("{n:064x}")) == Some(&CertificateStatus::Revoked))
        .count();
    let throttled = *model.throttled.lock().unwrap();
    println!(
        "sync-scale: {listed} listed, {indexed} indexed, {runs} runs, {seconds:.0} s, {} reads, {revoked} of {admitted_listed} revoked",
        reads.0.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(
        ended_revoked, admitted_listed,
        "every listed admitted certificate REVOKED"
    );
    assert_eq!(revoked, admitted_listed);
    assert_eq!(throttled, 0, "the sync must stay within the quota");
}
