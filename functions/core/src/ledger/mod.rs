//! The device ledger: what registration and lifecycle need to remember beyond IoT Core itself.
//!
//! Today it holds the serial index: for every certificate registration admits, an entry keyed by
//! (CA, serial) naming the certificate and its Thing, so a serial that appears in a CA's CRL
//! later can be found and REVOKED although IoT Core publishes no event for an ACTIVE certificate.
//! The AWS adapter (`dynamodb`) is one DynamoDB table (`DEVICE_LEDGER_TABLE`); the in-memory one
//! (`memory`) answers the same, proven by one contract suite (`contract`).

use std::future::Future;

pub mod contract;
pub mod dynamodb;
pub mod memory;

pub use dynamodb::DynamoLedger;
pub use memory::MemoryLedger;

use crate::registry::RegistryErrorKind;

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

/// A revocation the sync applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub at: i64,
    /// e.g. `crl:<source> #<number>`.
    pub by: String,
}

/// A classified ledger failure; the kinds are the registry's (throttled, unavailable, denied...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device ledger {operation} failed ({}): {message}", kind.as_str())]
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
}

/// The partition key of a serial's entries.
fn serial_key(ca_certificate_id: &str, serial_hex: &str) -> String {
    format!("SERIAL#{ca_certificate_id}#{serial_hex}")
}

/// The sort key of one certificate's entry.
fn certificate_key(certificate_id: &str) -> String {
    format!("CERT#{certificate_id}")
}
