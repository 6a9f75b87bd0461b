//! A verified CRL reduced to what lookups need.

use std::collections::HashSet;

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::RevocationError;
use crate::certificate::{CaCertificate, normalized_serial};

/// The serials revoked by one CA, with the window in which the list is current.
#[derive(Debug, Clone)]
pub struct RevocationList {
    serials: HashSet<Box<[u8]>>,
    this_update: i64,
    next_update: i64,
}

impl RevocationList {
    /// Parses a PEM or DER CRL and verifies it against `ca` (issuer and signature).
    /// Staleness is checked by the caller, which knows the time.
    pub fn parse(bytes: &[u8], ca: &CaCertificate) -> Result<Self, RevocationError> {
        let pem_der;
        let der = if is_pem(bytes) {
            let (_, block) = x509_parser::pem::parse_x509_pem(bytes)
                .map_err(|e| RevocationError::Malformed(format!("PEM: {e}")))?;
            if block.label != "X509 CRL" {
                return Err(RevocationError::Malformed(format!(
                    "PEM block is {:?}, expected \"X509 CRL\"",
                    block.label
                )));
            }
            pem_der = block.contents;
            &pem_der[..]
        } else {
            bytes
        };
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| RevocationError::Malformed(format!("DER: {e}")))?;
        let ca = ca
            .parsed()
            .ok_or_else(|| RevocationError::Malformed("CA certificate unparseable".into()))?;
        if crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(RevocationError::WrongIssuer);
        }
        crl.verify_signature(ca.public_key())
            .map_err(|_| RevocationError::BadSignature)?;
        let next_update = crl.next_update().map(|t| t.timestamp()).ok_or_else(|| {
            RevocationError::Malformed("no nextUpdate: freshness cannot be judged".into())
        })?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|revoked| normalized_serial(revoked.raw_serial()).into())
            .collect();
        Ok(Self {
            serials,
            this_update: crl.last_update().timestamp(),
            next_update,
        })
    }

    /// True when `serial` (raw or normalized) is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(normalized_serial(serial))
    }

    /// Refuses a list whose nextUpdate is not after `now`.
    pub fn check_fresh(&self, now: i64) -> Result<(), RevocationError> {
        if now < self.next_update {
            Ok(())
        } else {
            Err(RevocationError::Stale {
                next_update: self.next_update,
                now,
            })
        }
    }

    /// How many serials are revoked.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    /// thisUpdate, seconds since the epoch.
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    /// nextUpdate, seconds since the epoch.
    pub fn next_update(&self) -> i64 {
        self.next_update
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    bytes[start..].starts_with(b"-----BEGIN")
}
