//! Revocation that reaches devices already admitted. IoT Core publishes the registered event only
//! for new or pending certificates, so a serial added to a CRL later would change nothing; the
//! sync reads each CA's list when it changes and sets REVOKED every ACTIVE or INACTIVE certificate
//! the serial index (the ledger) holds for a listed serial.
//!
//! It runs on a schedule (every minute in the template) and on S3 notifications for CRL objects.
//! Its progress lives in the ledger, not in a container (invariant 6): per (source, CA), the list
//! it is applying and the position in that list's serials where the next run starts. A run reads
//! the newest list (forced, conditional), goes on from the ledger's cursor when that list is the
//! one in progress, starts over for a newer one, and does nothing for one applied to the end. The
//! deadline is checked before every batch of serial lookups and every revocation; a run stopped
//! by it saves the cursor at the start of its unfinished batch, so the next run, in any
//! container, redoes at most one batch. UpdateCertificate calls are paced to a rate within IoT
//! Core's quota.
//!
//! Certificates admitted under an older list than one already synced (a container still held it)
//! are revoked by registration itself: after activation it reads the ledger's mark of the newest
//! list accepted and, when it is newer than the list it checked, refreshes and revokes a serial
//! the newer list names. The sync raises that mark before it reads the index, registration writes
//! the index before it reads the mark: one of the two always sees the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jitr_domain::JitrError;
use jitr_domain::ledger::{Ledger, Revoked, SerialEntry};
use jitr_domain::profiles::{Profile, Unlisted};
use jitr_domain::registry::{CertificateStatus, Registry, RegistryErrorKind};
use jitr_domain::revocation::{RevocationError, RevocationList, RevocationSource, SyncProgress};
use jitr_domain::source::{Fetcher, ObjectSource};
use serde::Serialize;

use crate::registrar::Registrar;

/// How many serial-index reads run at once.
const LOOKUP_CONCURRENCY: usize = 16;

/// A list longer than this is applied by walking the CA's serial index (one page of up to 1,000
/// entries a read, each looked up in the list in memory) rather than by one index lookup per
/// listed serial: O(indexed / 1000) reads instead of O(listed).
pub const WALK_ABOVE_LISTED: usize = 20_000;

/// Before a walk of a new list starts, the index the walk reads (a DynamoDB global secondary
/// index, which lags its table by about a second at most) is given this long to show every entry
/// written before the list's mark was raised; later admissions see the mark themselves.
const INDEX_SETTLE: Duration = Duration::from_secs(2);
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
    /// Serial-index entries read walking the CA's index (a list longer than
    /// [`WALK_ABOVE_LISTED`]); 0 when the listed serials were looked up one by one.
    pub walked: usize,
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
    /// Stop starting new work after this instant (the runtime's clock, so a benchmark with a
    /// paused clock runs deployed-length runs in simulated time).
    pub deadline: tokio::time::Instant,
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
            jitr_aws::telemetry::emit_metric("revocation-sync", outcome, elapsed_ms);
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
        report.list = Some(list.version());
        report.listed = list.len();
        let source_key = source.to_string();
        let mark = list.mark();
        let resumed = match self.ledger().sync_progress(&source_key, ca_id).await? {
            Some(progress) if progress.mark == mark && progress.complete => {
                report.unchanged = true;
                return Ok(());
            }
            Some(progress) if progress.mark == mark => Some(progress),
            _ => None,
        };
        let progress = if list.len() > WALK_ABOVE_LISTED {
            if resumed.is_none() {
                tokio::time::sleep(INDEX_SETTLE).await;
            }
            let after = resumed.and_then(|p| p.walk_after);
            let stopped = self
                .walk_index(&list, ca_id, after, now, budget, pacer, report)
                .await?;
            SyncProgress {
                mark,
                next: 0,
                complete: stopped.is_none(),
                walk_after: stopped.flatten(),
            }
        } else {
            let start = resumed.map_or(0, |p| p.next);
            let next = self
                .revoke_listed(&list, ca_id, start, now, budget, pacer, report)
                .await?;
            SyncProgress {
                mark,
                next: next.unwrap_or(u64::try_from(list.len()).unwrap_or(u64::MAX)),
                complete: next.is_none(),
                walk_after: None,
            }
        };
        report.partial = !progress.complete;
        self.ledger()
            .save_sync_progress(&source_key, ca_id, &progress)
            .await?;
        Ok(())
    }

    /// Revokes the indexed certificates of the serials of `list` from position `start` on, a
    /// batch of lookups at a time; `Some(position)` where the deadline stopped it (the start of
    /// the batch it did not finish), `None` once at the end.
    #[allow(clippy::too_many_arguments)]
    async fn revoke_listed(
        &self,
        list: &Arc<RevocationList>,
        ca_id: &str,
        start: u64,
        now: i64,
        budget: SyncBudget,
        pacer: &mut Pacer,
        report: &mut SyncReport,
    ) -> Result<Option<u64>, JitrError> {
        let ledger = self.ledger();
        let by = format!("crl {}", list.version());
        let skip = usize::try_from(start).unwrap_or(usize::MAX);
        let mut serials = list.serials().skip(skip).peekable();
        let mut position = start;
        while serials.peek().is_some() {
            if tokio::time::Instant::now() >= budget.deadline {
                return Ok(Some(position));
            }
            let batch: Vec<String> = (serials.by_ref().take(LOOKUP_CONCURRENCY))
                .map(hex::encode)
                .collect();
            let size = u64::try_from(batch.len()).unwrap_or(u64::MAX);
            let mut lookups = futures_util::stream::iter(batch)
                .map(|serial| async move { ledger.certificates_with_serial(ca_id, &serial).await })
                .buffer_unordered(LOOKUP_CONCURRENCY);
            while let Some(entries) = lookups.next().await {
                for entry in entries? {
                    report.indexed += 1;
                    if entry.revoked.is_some() {
                        report.already_revoked += 1;
                        continue;
                    }
                    if tokio::time::Instant::now() >= budget.deadline {
                        return Ok(Some(position));
                    }
                    self.revoke_entry(&entry, &by, now, pacer, report).await?;
                }
            }
            position += size;
        }
        Ok(None)
    }

    /// Walks the CA's serial index from after `after`, a page at a time, revoking every entry
    /// whose serial `list` names. `None` once at the end; `Some(cursor)` where the deadline
    /// stopped it (the cursor after the last entry done; `None` inside: nothing done yet).
    #[allow(clippy::too_many_arguments)]
    async fn walk_index(
        &self,
        list: &Arc<RevocationList>,
        ca_id: &str,
        mut after: Option<String>,
        now: i64,
        budget: SyncBudget,
        pacer: &mut Pacer,
        report: &mut SyncReport,
    ) -> Result<Option<Option<String>>, JitrError> {
        let by = format!("crl {}", list.version());
        loop {
            if tokio::time::Instant::now() >= budget.deadline {
                return Ok(Some(after));
            }
            let page = self
                .ledger()
                .serial_index_page(ca_id, after.as_deref())
                .await?;
            for entry in &page.entries {
                report.walked += 1;
                let serial = hex::decode(&entry.serial_hex).unwrap_or_default();
                if list.is_revoked(&serial) {
                    report.indexed += 1;
                    if entry.revoked.is_some() {
                        report.already_revoked += 1;
                    } else {
                        if tokio::time::Instant::now() >= budget.deadline {
                            return Ok(Some(after));
                        }
                        self.revoke_entry(entry, &by, now, pacer, report).await?;
                    }
                }
                after = Some(jitr_domain::ledger::index_cursor(entry));
            }
            if page.after.is_none() {
                return Ok(None);
            }
        }
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
