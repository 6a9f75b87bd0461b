//! The in-memory ledger, for unit tests and the offline demo; the contract suite proves it
//! answers like the DynamoDB adapter against the emulator.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Ledger, LedgerError, Revoked, SerialEntry, certificate_key, serial_key};
use crate::registry::RegistryErrorKind;

/// (partition key, sort key) → entry.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    entries: Mutex<BTreeMap<(String, String), SerialEntry>>,
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
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_ledger_honours_the_port_contract() {
        super::super::contract::run_all(&MemoryLedger::new(), "memory")
            .await
            .unwrap();
    }
}
