//! The device ledger: what registration and lifecycle need to remember beyond IoT Core itself.
//!
//! Two kinds of record, in one table:
//! - by device (`device`): the device-management decision (allowed, denied, decommissioned)
//!   with the stamp of the lifecycle event that made it, the certificates the device has held,
//!   and an append-only history. Registration reads it before it writes anything and again
//!   right after activating; lifecycle records a decision before it applies it.
//! - by certificate (the serial index): for every certificate registration admits, an entry
//!   keyed by (CA, serial) naming the certificate and its Thing, so a serial that appears in a
//!   CA's CRL later can be found and REVOKED although IoT Core publishes no event for an ACTIVE
//!   certificate.
//!
//! The AWS adapter (`jitr_aws::dynamodb`) is one DynamoDB table (`DEVICE_LEDGER_TABLE`); the
//! in-memory one (`memory`) answers the same, proven by one contract suite
//! (`jitr_testkit::contract::ledger`).

use std::future::Future;

pub mod device;
pub mod memory;

pub use device::{
    DeviceDecision, DeviceRecord, DeviceState, EventStamp, HistoryEntry, Holdings,
    LatestCertificate, MAX_EVENT_ID_LEN, MAX_STAMP_AGE_SECS, MAX_STAMP_SKEW_SECS, Recorded,
    StampError, device_key, id_key, is_printable, is_printable_id,
};
pub use memory::MemoryLedger;

use crate::registry::RegistryErrorKind;
use crate::revocation::mark::{ListMark, SyncProgress};

/// How long history entries are kept by default (`DEVICE_LEDGER_HISTORY_DAYS`).
pub const DEFAULT_HISTORY_DAYS: u32 = 400;

/// Where the device ledger lives and how long its history is kept; both functions read it
/// (`config` reads it from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// `DEVICE_LEDGER_TABLE`.
    pub table: String,
    /// `DEVICE_LEDGER_HISTORY_DAYS` (default 400): history entries expire after this.
    pub history_days: u32,
}

/// One admitted certificate in the serial index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialEntry {
    pub ca_certificate_id: String,
    /// The serial, lowercase hex without leading zero bytes (the form CRL lookups use).
    pub serial_hex: String,
    pub certificate_id: String,
    pub thing_name: String,
    /// When registration first indexed it (seconds since the epoch).
    pub admitted_at: i64,
    /// When the revocation sync set it REVOKED, and on which list's word.
    pub revoked: Option<Revoked>,
}

/// One page of a CA's serial index, in serial order, and where the next page starts (`None`
/// after the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPage {
    pub entries: Vec<SerialEntry>,
    pub after: Option<String>,
}

/// How many entries a page of a CA's serial index holds at most.
pub const INDEX_PAGE_ENTRIES: usize = 1000;

/// The cursor after `entry` in a CA's index: `<serialHex>/<certificateId>`.
pub fn index_cursor(entry: &SerialEntry) -> String {
    format!("{}/{}", entry.serial_hex, entry.certificate_id)
}

/// A revocation the sync applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub at: i64,
    /// e.g. `crl:<source> #<number>`.
    pub by: String,
}

/// A classified ledger failure; the kinds are the registry's (throttled, unavailable, denied...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device ledger {operation} failed: {message}")]
pub struct LedgerError {
    pub kind: RegistryErrorKind,
    pub operation: &'static str,
    pub message: String,
}

/// The port.
pub trait Ledger: Send + Sync {
    /// Records an admitted certificate; idempotent (a repeat keeps the first `admitted_at` and
    /// any revocation already recorded).
    fn index_certificate(
        &self,
        entry: &SerialEntry,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Every certificate indexed under (CA, serial), read strongly consistent.
    fn certificates_with_serial(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
    ) -> impl Future<Output = Result<Vec<SerialEntry>, LedgerError>> + Send;

    /// Records that the sync revoked an indexed certificate; `NotFound` when it is not indexed.
    fn mark_revoked(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
        certificate_id: &str,
        revoked: &Revoked,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The device's record, read strongly consistent; `None` if the ledger knows nothing of it.
    fn device(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = Result<Option<DeviceRecord>, LedgerError>> + Send;

    /// Records a lifecycle decision if the ordering rule lets it replace the recorded one
    /// (atomically: a conditional write), creating the record for a device never seen.
    fn record_decision(
        &self,
        thing_name: &str,
        decision: &DeviceDecision,
    ) -> impl Future<Output = Result<Recorded, LedgerError>> + Send;

    /// Marks `event` applied if it is still the recorded decision (its time and id: a sender may
    /// reuse an id), unless a newer decision was recorded meanwhile.
    fn mark_applied(
        &self,
        thing_name: &str,
        event: &EventStamp,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Adds certificates to the device's held and retired sets, and moves its latest
    /// certificate forward (never back).
    fn add_certificates(
        &self,
        thing_name: &str,
        holdings: &Holdings,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Appends to the device's history; the same entry twice is kept once.
    fn append_history(
        &self,
        thing_name: &str,
        entry: &HistoryEntry,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The device's history in time order.
    fn history(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>, LedgerError>> + Send;

    /// When registration admitted the certificate (seconds), unless it was deleted since: a
    /// registration event for an admitted certificate is a duplicate (IoT Core publishes one on
    /// every connect while a certificate is pending, and they queue up in a storm). An
    /// eventually consistent read: a miss only costs the full path.
    fn admitted(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = Result<Option<i64>, LedgerError>> + Send;

    /// Records that registration admitted the certificate at `at` (seconds).
    fn record_admission(
        &self,
        certificate_id: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The certificate was deleted: its next registration event is new, not a duplicate.
    fn forget_admission(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Records `mark` as the newest list accepted from `source` for the CA unless a newer one
    /// is recorded (atomically); returns the newest recorded, this one or that. A list older
    /// than the answer is refused by every container.
    fn raise_list_mark(
        &self,
        source: &str,
        ca_certificate_id: &str,
        mark: &ListMark,
    ) -> impl Future<Output = Result<ListMark, LedgerError>> + Send;

    /// The newest list accepted from `source` for the CA, read strongly consistent.
    fn list_mark(
        &self,
        source: &str,
        ca_certificate_id: &str,
    ) -> impl Future<Output = Result<Option<ListMark>, LedgerError>> + Send;

    /// How far the revocation sync got with `source` for the CA, read strongly consistent.
    fn sync_progress(
        &self,
        source: &str,
        ca_certificate_id: &str,
    ) -> impl Future<Output = Result<Option<SyncProgress>, LedgerError>> + Send;

    /// One page of the certificates indexed for a CA, in serial order, from after `after` (a
    /// previous page's cursor). Read from an index that may lag a write by about a second: for
    /// the sync's walk of a CA whose list is far longer than its index, never for a decision.
    fn serial_index_page(
        &self,
        ca_certificate_id: &str,
        after: Option<&str>,
    ) -> impl Future<Output = Result<IndexPage, LedgerError>> + Send;

    /// Records how far the revocation sync got.
    fn save_sync_progress(
        &self,
        source: &str,
        ca_certificate_id: &str,
        progress: &SyncProgress,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// How often a document (the profiles) was announced changed: 0 before the first time.
    /// Containers compare it with the one their cached copy was fetched at.
    fn document_generation(
        &self,
        document: &str,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// Announces that a document changed (an S3 notification for it); returns the new
    /// generation.
    fn bump_document_generation(
        &self,
        document: &str,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send;
}

/// No ledger configured: nothing is indexed, and nothing can be found.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn index_certificate(&self, _: &SerialEntry) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn certificates_with_serial(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<SerialEntry>, LedgerError> {
        Ok(Vec::new())
    }
    async fn mark_revoked(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &Revoked,
    ) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn device(&self, _: &str) -> Result<Option<DeviceRecord>, LedgerError> {
        Ok(None)
    }
    async fn record_decision(&self, _: &str, _: &DeviceDecision) -> Result<Recorded, LedgerError> {
        Ok(Recorded::NotKept)
    }
    async fn mark_applied(&self, _: &str, _: &EventStamp) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn add_certificates(&self, _: &str, _: &Holdings) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn append_history(&self, _: &str, _: &HistoryEntry) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn history(&self, _: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        Ok(Vec::new())
    }
    async fn admitted(&self, _: &str) -> Result<Option<i64>, LedgerError> {
        Ok(None)
    }
    async fn record_admission(&self, _: &str, _: i64) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn forget_admission(&self, _: &str) -> Result<(), LedgerError> {
        Ok(())
    }
    /// Nothing is shared: each container guards against rollback on its own.
    async fn raise_list_mark(
        &self,
        _: &str,
        _: &str,
        mark: &ListMark,
    ) -> Result<ListMark, LedgerError> {
        Ok(mark.clone())
    }
    async fn list_mark(&self, _: &str, _: &str) -> Result<Option<ListMark>, LedgerError> {
        Ok(None)
    }
    /// Nothing is indexed without a ledger, so the sync has nothing to go on from.
    async fn sync_progress(&self, _: &str, _: &str) -> Result<Option<SyncProgress>, LedgerError> {
        Ok(None)
    }
    async fn save_sync_progress(
        &self,
        _: &str,
        _: &str,
        _: &SyncProgress,
    ) -> Result<(), LedgerError> {
        Ok(())
    }
    /// Without a ledger each container only has its own refresh interval.
    async fn document_generation(&self, _: &str) -> Result<u64, LedgerError> {
        Ok(0)
    }
    async fn bump_document_generation(&self, _: &str) -> Result<u64, LedgerError> {
        Ok(0)
    }
    async fn serial_index_page(&self, _: &str, _: Option<&str>) -> Result<IndexPage, LedgerError> {
        Ok(IndexPage::default())
    }
}

/// An optional ledger: `None` behaves as [`NoLedger`] (the function's wiring picks at cold start).
impl<L: Ledger> Ledger for Option<L> {
    async fn index_certificate(&self, entry: &SerialEntry) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.index_certificate(entry).await,
            None => Ok(()),
        }
    }
    async fn certificates_with_serial(
        &self,
        ca: &str,
        serial: &str,
    ) -> Result<Vec<SerialEntry>, LedgerError> {
        match self {
            Some(ledger) => ledger.certificates_with_serial(ca, serial).await,
            None => Ok(Vec::new()),
        }
    }
    async fn mark_revoked(
        &self,
        ca: &str,
        serial: &str,
        certificate: &str,
        revoked: &Revoked,
    ) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.mark_revoked(ca, serial, certificate, revoked).await,
            None => Ok(()),
        }
    }
    async fn device(&self, thing: &str) -> Result<Option<DeviceRecord>, LedgerError> {
        match self {
            Some(ledger) => ledger.device(thing).await,
            None => NoLedger.device(thing).await,
        }
    }
    async fn record_decision(
        &self,
        thing: &str,
        decision: &DeviceDecision,
    ) -> Result<Recorded, LedgerError> {
        match self {
            Some(ledger) => ledger.record_decision(thing, decision).await,
            None => NoLedger.record_decision(thing, decision).await,
        }
    }
    async fn mark_applied(&self, thing: &str, event: &EventStamp) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.mark_applied(thing, event).await,
            None => Ok(()),
        }
    }
    async fn add_certificates(&self, thing: &str, holdings: &Holdings) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.add_certificates(thing, holdings).await,
            None => Ok(()),
        }
    }
    async fn append_history(&self, thing: &str, entry: &HistoryEntry) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.append_history(thing, entry).await,
            None => Ok(()),
        }
    }
    async fn history(&self, thing: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        match self {
            Some(ledger) => ledger.history(thing).await,
            None => Ok(Vec::new()),
        }
    }
    async fn admitted(&self, certificate: &str) -> Result<Option<i64>, LedgerError> {
        match self {
            Some(ledger) => ledger.admitted(certificate).await,
            None => Ok(None),
        }
    }
    async fn record_admission(&self, certificate: &str, at: i64) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.record_admission(certificate, at).await,
            None => Ok(()),
        }
    }
    async fn forget_admission(&self, certificate: &str) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.forget_admission(certificate).await,
            None => Ok(()),
        }
    }
    async fn raise_list_mark(
        &self,
        source: &str,
        ca: &str,
        mark: &ListMark,
    ) -> Result<ListMark, LedgerError> {
        match self {
            Some(ledger) => ledger.raise_list_mark(source, ca, mark).await,
            None => NoLedger.raise_list_mark(source, ca, mark).await,
        }
    }
    async fn list_mark(&self, source: &str, ca: &str) -> Result<Option<ListMark>, LedgerError> {
        match self {
            Some(ledger) => ledger.list_mark(source, ca).await,
            None => NoLedger.list_mark(source, ca).await,
        }
    }
    async fn sync_progress(
        &self,
        source: &str,
        ca: &str,
    ) -> Result<Option<SyncProgress>, LedgerError> {
        match self {
            Some(ledger) => ledger.sync_progress(source, ca).await,
            None => NoLedger.sync_progress(source, ca).await,
        }
    }
    async fn save_sync_progress(
        &self,
        source: &str,
        ca: &str,
        progress: &SyncProgress,
    ) -> Result<(), LedgerError> {
        match self {
            Some(ledger) => ledger.save_sync_progress(source, ca, progress).await,
            None => NoLedger.save_sync_progress(source, ca, progress).await,
        }
    }
    async fn document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        match self {
            Some(ledger) => ledger.document_generation(document).await,
            None => NoLedger.document_generation(document).await,
        }
    }
    async fn bump_document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        match self {
            Some(ledger) => ledger.bump_document_generation(document).await,
            None => NoLedger.bump_document_generation(document).await,
        }
    }
    async fn serial_index_page(
        &self,
        ca: &str,
        after: Option<&str>,
    ) -> Result<IndexPage, LedgerError> {
        match self {
            Some(ledger) => ledger.serial_index_page(ca, after).await,
            None => NoLedger.serial_index_page(ca, after).await,
        }
    }
}

impl<L: Ledger> Ledger for std::sync::Arc<L> {
    fn index_certificate(
        &self,
        entry: &SerialEntry,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).index_certificate(entry)
    }
    fn certificates_with_serial(
        &self,
        ca: &str,
        serial: &str,
    ) -> impl Future<Output = Result<Vec<SerialEntry>, LedgerError>> + Send {
        (**self).certificates_with_serial(ca, serial)
    }
    fn mark_revoked(
        &self,
        ca: &str,
        serial: &str,
        certificate: &str,
        revoked: &Revoked,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).mark_revoked(ca, serial, certificate, revoked)
    }
    fn device(
        &self,
        thing: &str,
    ) -> impl Future<Output = Result<Option<DeviceRecord>, LedgerError>> + Send {
        (**self).device(thing)
    }
    fn record_decision(
        &self,
        thing: &str,
        decision: &DeviceDecision,
    ) -> impl Future<Output = Result<Recorded, LedgerError>> + Send {
        (**self).record_decision(thing, decision)
    }
    fn mark_applied(
        &self,
        thing: &str,
        event: &EventStamp,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).mark_applied(thing, event)
    }
    fn add_certificates(
        &self,
        thing: &str,
        holdings: &Holdings,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).add_certificates(thing, holdings)
    }
    fn append_history(
        &self,
        thing: &str,
        entry: &HistoryEntry,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).append_history(thing, entry)
    }
    fn history(
        &self,
        thing: &str,
    ) -> impl Future<Output = Result<Vec<HistoryEntry>, LedgerError>> + Send {
        (**self).history(thing)
    }
    fn admitted(
        &self,
        certificate: &str,
    ) -> impl Future<Output = Result<Option<i64>, LedgerError>> + Send {
        (**self).admitted(certificate)
    }
    fn record_admission(
        &self,
        certificate: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).record_admission(certificate, at)
    }
    fn forget_admission(
        &self,
        certificate: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).forget_admission(certificate)
    }
    fn raise_list_mark(
        &self,
        source: &str,
        ca: &str,
        mark: &ListMark,
    ) -> impl Future<Output = Result<ListMark, LedgerError>> + Send {
        (**self).raise_list_mark(source, ca, mark)
    }
    fn list_mark(
        &self,
        source: &str,
        ca: &str,
    ) -> impl Future<Output = Result<Option<ListMark>, LedgerError>> + Send {
        (**self).list_mark(source, ca)
    }
    fn sync_progress(
        &self,
        source: &str,
        ca: &str,
    ) -> impl Future<Output = Result<Option<SyncProgress>, LedgerError>> + Send {
        (**self).sync_progress(source, ca)
    }
    fn save_sync_progress(
        &self,
        source: &str,
        ca: &str,
        progress: &SyncProgress,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).save_sync_progress(source, ca, progress)
    }
    fn document_generation(
        &self,
        document: &str,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        (**self).document_generation(document)
    }
    fn bump_document_generation(
        &self,
        document: &str,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        (**self).bump_document_generation(document)
    }
    fn serial_index_page(
        &self,
        ca: &str,
        after: Option<&str>,
    ) -> impl Future<Output = Result<IndexPage, LedgerError>> + Send {
        (**self).serial_index_page(ca, after)
    }
}

/// The partition key of a serial's entries.
pub fn serial_key(ca_certificate_id: &str, serial_hex: &str) -> String {
    format!("SERIAL#{ca_certificate_id}#{serial_hex}")
}

/// The sort key of one certificate's entry.
pub fn certificate_key(certificate_id: &str) -> String {
    format!("CERT#{certificate_id}")
}
