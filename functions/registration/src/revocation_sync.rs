//! Revocation that reaches devices already admitted. IoT Core publishes the registered event only
//! for new or pending certificates, so a serial added to a CRL later would change nothing; the
//! sync reads each CA's list when it changes and sets REVOKED every ACTIVE or INACTIVE certificate
//! the serial index (the ledger) holds for a listed serial.
//!
//! It runs on a schedule (every minute in the template) and on S3 notifications for CRL objects.
//! Each (source, CA) is synced when its verified list differs from the one last synced in this
//! container (a cold container syncs everything once: entries already marked revoked cost one
//! read and no IoT call). UpdateCertificate calls are paced to a rate within IoT Core's quota and
//! the sync stops before the invocation's deadline; the next run continues where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jitr_core::JitrError;
use jitr_core::ledger::{Ledger, Revoked, SerialEntry};
use jitr_core::profiles::{Profile, Unlisted};
use jitr_core::registry::{CertificateStatus, Registry, RegistryErrorKind};
use jitr_core::revocation::{RevocationError, RevocationList, RevocationSource};
use jitr_core::source::{Fetcher, ObjectSource};
use serde::Serialize;

use crate::registrar::Registrar;

/// How many serial-index reads run at once.
const LOOKUP_CONCURRENCY: usize = 16;
/// A progress line every this many revocations.
const PROGRESS_EVERY: usize = 100;

/// What one (source, CA) sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub source: String,
    pub ca_certificate_id: String,
    /// The list's version (`CRL number N (thisUpdate T)`), when it could be read.
    pub list: Option<String>,
    /// The list is the one already synced: nothing was done.
    pub unchanged: bool,
    /// Serials in the list.
    pub listed: usize,
    /// Certificates found in the serial index for those serials.
    pub indexed: usize,
    /// Set REVOKED by this run.
    pub revoked: usize,
    /// Already REVOKED (by an earlier run, an operator or registration).
    pub already_revoked: usize,
    /// Deleted from IoT Core since they were indexed.
    pub gone: usize,
    /// Stopped at the deadline with work left; the next run continues.
    pub partial: bool,
    /// Why this source could not be synced (the others still were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the sync may spend IoT Core's quota and the invocation's time.
#[derive(Debug, Clone, Copy)]
pub struct SyncBudget {
    /// UpdateCertificate calls per second.
    pub rate_per_second: u32,
    /// Stop starting new work after this instant.
    pub deadline: Instant,
}

/// Spaces calls `1 / rate` apart (a token bucket of depth one: no bursts above the quota).
struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(rate_per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate_per_second.max(1),
            next: tokio::time::Instant::now(),
        }
    }

    async fn tick(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now().max(self.next) + self.interval;
    }
}

impl<R: Registry, F: Fetcher, L: Ledger> Registrar<R, F, L> {
    /// Syncs every (object source, CA) the profiles name: each CA profile's sources, and the
    /// default profile's for the CAs of `ALLOWED_CA_CERTIFICATE_IDS` or, with an empty
    /// allow-list, for every registered CA without a profile (a list another CA issued is
    /// skipped quietly there: the default list belongs to one of them). Distribution points are
    /// per certificate and checked at registration only.
    pub async fn sync_revocations(
        &self,
        now: i64,
        budget: SyncBudget,
    ) -> Result<Vec<SyncReport>, JitrError> {
        let profiles = self.profiles(now).await?;
        // (source, CA, whether the CA was named for this source rather than guessed)
        let mut pairs: Vec<(ObjectSource, String, bool)> = Vec::new();
        let mut add = |ca: &str, profile: &Profile, named: bool| {
            for source in &profile.revocation {
                if let RevocationSource::Object(object) = source
                    && profile.enabled
                {
                    pairs.push((object.clone(), ca.to_owned(), named));
                }
            }
        };
        for (ca, profile) in &profiles.by_ca {
            add(ca, profile, true);
        }
        let allowed = &self.config().allowed_ca_certificate_ids;
        let default_has_objects = profiles
            .default
            .revocation
            .iter()
            .any(|s| matches!(s, RevocationSource::Object(_)));
        if !allowed.is_empty() {
            for ca in allowed
                .iter()
                .filter(|ca| !profiles.by_ca.contains_key(*ca))
            {
                add(ca, &profiles.default, true);
            }
        } else if default_has_objects && profiles.unlisted == Unlisted::UseDefault {
            for ca in self.registry().list_ca_certificates().await? {
                if !profiles.by_ca.contains_key(&ca) {
                    add(&ca, &profiles.default, false);
                }
            }
        }
        let mut pacer = Pacer::new(budget.rate_per_second);
        let mut reports = Vec::new();
        for (source, ca, named) in pairs {
            let started = Instant::now();
            let mut report = SyncReport {
                source: source.to_string(),
                ca_certificate_id: ca.clone(),
                ..SyncReport::default()
            };
            match self
                .sync_one(&source, &ca, now, budget, &mut pacer, &mut report)
                .await
            {
                Ok(()) => {}
                Err(JitrError::Revocation(RevocationError::WrongIssuer)) if !named => continue,
                Err(err) => {
                    tracing::error!(source = %source, ca_certificate_id = %ca, error = %err, error_type = %err.error_type(), "revocation sync failed for this source");
                    report.error = Some(err.to_string());
                }
            }
            tracing::info!(
                source = %report.source,
                ca_certificate_id = %report.ca_certificate_id,
                list = report.list.as_deref().unwrap_or(""),
                unchanged = report.unchanged,
                listed = report.listed,
                indexed = report.indexed,
                revoked = report.revoked,
                already_revoked = report.already_revoked,
                partial = report.partial,
                "revocation sync"
            );
            let outcome = match (&report.error, report.unchanged, report.partial) {
                (Some(_), _, _) => "Failed",
                (None, true, _) => "Unchanged",
                (None, false, true) => "Partial",
                (None, false, false) => "Synced",
            };
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            jitr_core::telemetry::emit_metric("revocation-sync", outcome, elapsed_ms);
            reports.push(report);
        }
        Ok(reports)
    }

    async fn sync_one(
        &self,
        source: &ObjectSource,
        ca_id: &str,
        now: i64,
        budget: SyncBudget,
        pacer: &mut Pacer,
        report: &mut SyncReport,
    ) -> Result<(), JitrError> {
        let Some(ca) = self.ca(ca_id, now).await? else {
            report.error = Some("CA not registered".into());
            return Ok(());
        };
        let Some(ca_certificate) = ca.certificate else {
            report.error = Some("CA certificate unparseable".into());
            return Ok(());
        };
        let list = self
            .cache(source.clone(), ca_id)
            .refresh(self.fetcher(), self.ledger(), &ca_certificate, now)
            .await?;
        let version = list.version();
        report.list = Some(version.clone());
        report.listed = list.len();
        let key = (source.clone(), ca_id.to_owned());
        if self.lock_synced().get(&key) == Some(&version) {
            report.unchanged = true;
            return Ok(());
        }
        let complete = self
            .revoke_listed(&list, ca_id, &version, now, budget, pacer, report)
            .await?;
        if complete {
            self.lock_synced().insert(key, version);
        } else {
            report.partial = true;
        }
        Ok(())
    }

    /// Revokes the indexed certificates of every serial in `list`; false when the deadline
    /// stopped it.
    #[allow(clippy::too_many_arguments)]
    async fn revoke_listed(
        &self,
        list: &Arc<RevocationList>,
        ca_id: &str,
        version: &str,
        now: i64,
        budget: SyncBudget,
        pacer: &mut Pacer,
        report: &mut SyncReport,
    ) -> Result<bool, JitrError> {
        let ledger = self.ledger();
        let serials: Vec<String> = list.serials().map(hex::encode).collect();
        let mut lookups = futures_util::stream::iter(serials)
            .map(|serial| async move { ledger.certificates_with_serial(ca_id, &serial).await })
            .buffer_unordered(LOOKUP_CONCURRENCY);
        let by = format!("crl {version}");
        while let Some(entries) = lookups.next().await {
            for entry in entries? {
                report.indexed += 1;
                if entry.revoked.is_some() {
                    report.already_revoked += 1;
                    continue;
                }
                if Instant::now() >= budget.deadline {
                    return Ok(false);
                }
                self.revoke_entry(&entry, &by, now, pacer, report).await?;
            }
        }
        Ok(true)
    }

    async fn revoke_entry(
        &self,
        entry: &SerialEntry,
        by: &str,
        now: i64,
        pacer: &mut Pacer,
        report: &mut SyncReport,
    ) -> Result<(), JitrError> {
        let registry = self.registry();
        let status = match registry.describe_certificate(&entry.certificate_id).await {
            Ok(c) => c.status,
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                report.gone += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        match status {
            CertificateStatus::Revoked => report.already_revoked += 1,
            // PENDING_* is IoT Core's own; registration revokes those itself when it runs.
            CertificateStatus::Active | CertificateStatus::Inactive => {
                pacer.tick().await;
                registry
                    .update_certificate_status(&entry.certificate_id, &CertificateStatus::Revoked)
                    .await?;
                report.revoked += 1;
                tracing::warn!(certificate_id = %entry.certificate_id, thing_name = %entry.thing_name, ca_certificate_id = %entry.ca_certificate_id, serial = %entry.serial_hex, previous_status = %status, "certificate revoked: its serial is in the CA's revocation list");
                if report.revoked.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(
                        revoked = report.revoked,
                        listed = report.listed,
                        "revocation sync progress"
                    );
                }
            }
            _ => return Ok(()),
        }
        let revoked = Revoked {
            at: now,
            by: by.to_owned(),
        };
        self.ledger()
            .mark_revoked(
                &entry.ca_certificate_id,
                &entry.serial_hex,
                &entry.certificate_id,
                &revoked,
            )
            .await?;
        Ok(())
    }
}
