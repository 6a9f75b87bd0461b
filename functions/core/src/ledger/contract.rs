//! The ledger port's contract, run against the in-memory adapter and, in `tests/`, against
//! DynamoDB on the emulator.

use super::{Ledger, Revoked, SerialEntry};
use crate::registry::RegistryErrorKind;

/// Runs every check on `ledger`; `unique` keeps keys apart from other runs on a shared table.
pub async fn run_all<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    let ca = format!("ca-{unique}");
    let entry = |certificate: &str, thing: &str, at: i64| SerialEntry {
        ca_certificate_id: ca.clone(),
        serial_hex: "0a0b".into(),
        certificate_id: certificate.into(),
        thing_name: thing.into(),
        admitted_at: at,
        revoked: None,
    };
    let found = |r: Result<Vec<SerialEntry>, super::LedgerError>| {
        r.map_err(|e| format!("Query: {e}")).map(|mut v| {
            v.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
            v
        })
    };
    if !found(ledger.certificates_with_serial(&ca, "0a0b").await)?.is_empty() {
        return Err("an unknown serial has entries".into());
    }
    let first = entry("cert-1", "thing-1", 100);
    ledger
        .index_certificate(&first)
        .await
        .map_err(|e| format!("index: {e}"))?;
    ledger
        .index_certificate(&entry("cert-1", "thing-1", 200))
        .await
        .map_err(|e| format!("index again: {e}"))?;
    ledger
        .index_certificate(&entry("cert-2", "thing-2", 300))
        .await
        .map_err(|e| format!("index a second certificate: {e}"))?;
    let entries = found(ledger.certificates_with_serial(&ca, "0a0b").await)?;
    if entries != [first.clone(), entry("cert-2", "thing-2", 300)] {
        return Err(format!(
            "index is idempotent and keeps admitted_at: {entries:?}"
        ));
    }
    if !found(ledger.certificates_with_serial(&ca, "0a0c").await)?.is_empty() {
        return Err("another serial shares the entries".into());
    }
    let revoked = Revoked {
        at: 400,
        by: "crl:test #2".into(),
    };
    ledger
        .mark_revoked(&ca, "0a0b", "cert-1", &revoked)
        .await
        .map_err(|e| format!("mark_revoked: {e}"))?;
    ledger
        .index_certificate(&first)
        .await
        .map_err(|e| format!("index after revocation: {e}"))?;
    let entries = found(ledger.certificates_with_serial(&ca, "0a0b").await)?;
    if entries[0].revoked.as_ref() != Some(&revoked) || entries[1].revoked.is_some() {
        return Err(format!(
            "revocation recorded on cert-1 only, and kept: {entries:?}"
        ));
    }
    match ledger.mark_revoked(&ca, "0a0b", "cert-9", &revoked).await {
        Err(e) if e.kind == RegistryErrorKind::NotFound => Ok(()),
        other => Err(format!(
            "mark_revoked of an unindexed certificate: {other:?}"
        )),
    }
}
