//! The in-memory ledger, for unit tests and the offline demo; the contract suite proves it
//! answers like the DynamoDB adapter against the emulator.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::device::{
    DeviceDecision, DeviceRecord, EventStamp, HistoryEntry, Holdings, Recorded, judge,
};
use super::{Ledger, LedgerError, Revoked, SerialEntry, certificate_key, serial_key};
use crate::registry::RegistryErrorKind;
use crate::revocation::mark::{ListMark, SyncProgress};
use crate::sync::lock;

/// (partition key, sort key) → entry; devices by Thing name; history by (Thing, sort key).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<BTreeMap<(String, String), SerialEntry>>,
    devices: Mutex<BTreeMap<String, DeviceRecord>>,
    history: Mutex<BTreeMap<(String, String), HistoryEntry>>,
    /// certificate id → admitted at (seconds), `None` once forgotten.
    admissions: Mutex<BTreeMap<String, Option<i64>>>,
    /// (source, CA) → the newest list accepted.
    list_marks: Mutex<BTreeMap<(String, String), ListMark>>,
    /// (source, CA) → how far the revocation sync got.
    sync_progress: Mutex<BTreeMap<(String, String), SyncProgress>>,
    /// document → how often it was announced changed.
    generations: Mutex<BTreeMap<String, u64>>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many certificates are indexed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), SerialEntry>> {
        lock(&self.entries)
    }
}

impl Ledger for MemoryLedger {
    async fn index_certificate(&self, entry: &SerialEntry) -> Result<(), LedgerError> {
        let key = (
            serial_key(&entry.ca_certificate_id, &entry.serial_hex),
            certificate_key(&entry.certificate_id),
        );
        let mut entries = self.lock();
        let stored = entries.entry(key).or_insert_with(|| SerialEntry {
            revoked: None,
            ..entry.clone()
        });
        stored.thing_name.clone_from(&entry.thing_name);
        Ok(())
    }

    async fn certificates_with_serial(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
    ) -> Result<Vec<SerialEntry>, LedgerError> {
        // A range over the sorted keys, as DynamoDB's Query reads one partition.
        let pk = serial_key(ca_certificate_id, serial_hex);
        Ok(self
            .lock()
            .range((pk.clone(), String::new())..)
            .take_while(|((p, _), _)| *p == pk)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn mark_revoked(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
        certificate_id: &str,
        revoked: &Revoked,
    ) -> Result<(), LedgerError> {
        let key = (
            serial_key(ca_certificate_id, serial_hex),
            certificate_key(certificate_id),
        );
        match self.lock().get_mut(&key) {
            Some(entry) => {
                entry.revoked = Some(revoked.clone());
                Ok(())
            }
            None => Err(LedgerError {
                kind: RegistryErrorKind::NotFound,
                operation: "UpdateItem",
                message: format!("certificate {certificate_id} is not indexed"),
            }),
        }
    }

    async fn device(&self, thing_name: &str) -> Result<Option<DeviceRecord>, LedgerError> {
        Ok(lock(&self.devices).get(thing_name).cloned())
    }

    async fn record_decision(
        &self,
        thing_name: &str,
        decision: &DeviceDecision,
    ) -> Result<Recorded, LedgerError> {
        let mut devices = lock(&self.devices);
        let verdict = judge(devices.get(thing_name), decision);
        if let Recorded::New(_) = verdict {
            let record = devices
                .entry(thing_name.to_owned())
                .or_insert_with(|| DeviceRecord {
                    thing_name: thing_name.to_owned(),
                    ..DeviceRecord::default()
                });
            record.decision = Some(decision.clone());
            return Ok(Recorded::New(record.clone()));
        }
        Ok(verdict)
    }

    async fn mark_applied(&self, thing_name: &str, event: &EventStamp) -> Result<(), LedgerError> {
        if let Some(record) = lock(&self.devices).get_mut(thing_name)
            && record.decision.as_ref().is_some_and(|d| d.event == *event)
        {
            record.applied_event_id = Some(event.id.clone());
            record.applied_event_at = Some(event.at_ms);
        }
        Ok(())
    }

    async fn add_certificates(
        &self,
        thing_name: &str,
        holdings: &Holdings,
    ) -> Result<(), LedgerError> {
        let mut devices = lock(&self.devices);
        let record = devices
            .entry(thing_name.to_owned())
            .or_insert_with(|| DeviceRecord {
                thing_name: thing_name.to_owned(),
                ..DeviceRecord::default()
            });
        record.certificates.extend(holdings.held.iter().cloned());
        record.retired.extend(holdings.retired.iter().cloned());
        record.refused.extend(holdings.refused.iter().cloned());
        if let Some(latest) = &holdings.latest
            && record
                .latest
                .as_ref()
                .is_none_or(|current| current.not_before <= latest.not_before)
        {
            record.latest = Some(latest.clone());
        }
        Ok(())
    }

    async fn append_history(
        &self,
        thing_name: &str,
        entry: &HistoryEntry,
    ) -> Result<(), LedgerError> {
        lock(&self.history).insert((thing_name.to_owned(), entry.sort_key()), entry.clone());
        Ok(())
    }

    async fn history(&self, thing_name: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        Ok(lock(&self.history)
            .range((thing_name.to_owned(), String::new())..)
            .take_while(|((thing, _), _)| thing == thing_name)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    async fn admitted(&self, certificate_id: &str) -> Result<Option<i64>, LedgerError> {
        Ok(lock(&self.admissions)
            .get(certificate_id)
            .copied()
            .flatten())
    }

    async fn record_admission(&self, certificate_id: &str, at: i64) -> Result<(), LedgerError> {
        lock(&self.admissions).insert(certificate_id.to_owned(), Some(at));
        Ok(())
    }

    async fn forget_admission(&self, certificate_id: &str) -> Result<(), LedgerError> {
        lock(&self.admissions).insert(certificate_id.to_owned(), None);
        Ok(())
    }

    async fn raise_list_mark(
        &self,
        source: &str,
        ca_certificate_id: &str,
        mark: &ListMark,
    ) -> Result<ListMark, LedgerError> {
        let mut marks = lock(&self.list_marks);
        let stored = marks
            .entry((source.to_owned(), ca_certificate_id.to_owned()))
            .or_insert_with(|| mark.clone());
        if stored.is_older_than(mark) {
            *stored = mark.clone();
        }
        Ok(stored.clone())
    }

    async fn list_mark(&self, source: &str, ca: &str) -> Result<Option<ListMark>, LedgerError> {
        let key = (source.to_owned(), ca.to_owned());
        Ok(lock(&self.list_marks).get(&key).cloned())
    }

    async fn sync_progress(
        &self,
        source: &str,
        ca: &str,
    ) -> Result<Option<SyncProgress>, LedgerError> {
        let key = (source.to_owned(), ca.to_owned());
        Ok(lock(&self.sync_progress).get(&key).cloned())
    }

    async fn save_sync_progress(
        &self,
        source: &str,
        ca: &str,
        progress: &SyncProgress,
    ) -> Result<(), LedgerError> {
        let key = (source.to_owned(), ca.to_owned());
        lock(&self.sync_progress).insert(key, progress.clone());
        Ok(())
    }

    async fn document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        Ok(lock(&self.generations).get(document).copied().unwrap_or(0))
    }

    async fn bump_document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        let mut generations = lock(&self.generations);
        let generation = generations.entry(document.to_owned()).or_insert(0);
        *generation += 1;
        Ok(*generation)
    }

    async fn serial_index_page(
        &self,
        ca_certificate_id: &str,
        after: Option<&str>,
    ) -> Result<super::IndexPage, LedgerError> {
        use std::ops::Bound;
        let prefix = serial_key(ca_certificate_id, "");
        let start = match after.and_then(|after| after.split_once('/')) {
            Some((serial, certificate)) => Bound::Excluded((
                serial_key(ca_certificate_id, serial),
                certificate_key(certificate),
            )),
            None => Bound::Included((prefix.clone(), String::new())),
        };
        let entries = self.lock();
        let page: Vec<SerialEntry> = entries
            .range((start, Bound::Unbounded))
            .take_while(|((pk, _), _)| pk.starts_with(&prefix))
            .map(|(_, entry)| entry.clone())
            .take(super::INDEX_PAGE_ENTRIES)
            .collect();
        let after = (page.len() == super::INDEX_PAGE_ENTRIES)
            .then(|| page.last().map(super::index_cursor))
            .flatten();
        Ok(super::IndexPage {
            entries: page,
            after,
        })
    }
}
