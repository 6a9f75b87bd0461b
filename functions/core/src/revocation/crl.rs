//! A verified CRL reduced to what lookups need.

use std::collections::HashSet;

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::RevocationError;
use crate::certificate::{CaCertificate, is_canonical_signed, normalized_serial};

/// The serials revoked by one CA, with the window in which the list is current.
#[derive(Debug, Clone)]
pub struct RevocationList {
    serials: HashSet<Box<[u8]>>,
    /// The cRLNumber extension, big-endian without leading zeros.
    crl_number: Option<Vec<u8>>,
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
        if !is_canonical_signed(
            der,
            crl.tbs_cert_list.as_ref(),
            &crl.tbs_cert_list.signature,
            &crl.signature_value,
        ) {
            return Err(RevocationError::BadSignature);
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
        let crl_number = crl
            .crl_number()
            .map(|n| normalized_serial(&n.to_bytes_be()).to_vec());
        Ok(Self {
            serials,
            crl_number,
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

    /// Refuses a list issued before `accepted` (a lower CRL number or, when either list has
    /// none, an earlier thisUpdate): serving it would un-revoke devices.
    pub fn check_not_older_than(&self, accepted: &Self) -> Result<(), RevocationError> {
        let rolled_back = match (&self.crl_number, &accepted.crl_number) {
            (Some(new), Some(old)) => (new.len(), new) < (old.len(), old),
            _ => self.this_update < accepted.this_update,
        };
        if rolled_back {
            return Err(RevocationError::RolledBack(format!(
                "{} is older than the accepted {}",
                self.version(),
                accepted.version()
            )));
        }
        Ok(())
    }

    /// "CRL number N (thisUpdate T)", for messages.
    pub fn version(&self) -> String {
        match &self.crl_number {
            Some(n) => format!(
                "CRL number {} (thisUpdate {})",
                number_text(n),
                self.this_update
            ),
            None => format!("CRL without a number (thisUpdate {})", self.this_update),
        }
    }

    /// The CRL number as text (decimal up to 128 bits, hex beyond).
    pub fn crl_number(&self) -> Option<String> {
        self.crl_number.as_deref().map(number_text)
    }

    /// The revoked serials (normalized), in no particular order.
    pub fn serials(&self) -> impl Iterator<Item = &[u8]> {
        self.serials.iter().map(|s| &s[..])
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

fn number_text(bytes: &[u8]) -> String {
    if bytes.len() <= 16 {
        let mut value = 0u128;
        for b in bytes {
            value = (value << 8) | u128::from(*b);
        }
        value.to_string()
    } else {
        format!("0x{}", hex::encode(bytes))
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    bytes[start..].starts_with(b"-----BEGIN")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;
    use time::{Duration, OffsetDateTime};

    fn ca_certificate(ca: &Ca) -> CaCertificate {
        CaCertificate::from_pem(&ca.pem).unwrap()
    }

    #[test]
    fn parses_pem_and_der_and_finds_serials() {
        let ca = Ca::new("CRL CA", "Acme").unwrap();
        let now = OffsetDateTime::now_utc();
        let serials = vec![vec![0x01, 0x02], vec![0x7f; 16]];
        let pem = ca
            .crl(&serials, now - Duration::hours(1), now + Duration::days(7))
            .unwrap();
        let list = RevocationList::parse(pem.as_bytes(), &ca_certificate(&ca)).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.is_revoked(&[0x01, 0x02]));
        assert!(
            list.is_revoked(&[0x00, 0x01, 0x02]),
            "leading zero bytes do not matter"
        );
        assert!(!list.is_revoked(&[0x01, 0x03]));
        let der = crate::certificate::pem_to_der(&pem.replace("X509 CRL", "CERTIFICATE")).unwrap();
        assert_eq!(
            RevocationList::parse(&der, &ca_certificate(&ca))
                .unwrap()
                .len(),
            2
        );
        assert!(list.check_fresh(now.unix_timestamp()).is_ok());
    }

    #[test]
    fn an_older_list_is_refused_by_number_then_by_date() {
        let ca = Ca::new("CRL CA", "Acme").unwrap();
        let now = OffsetDateTime::now_utc();
        let (earlier, later) = (now - Duration::hours(2), now - Duration::hours(1));
        let next = now + Duration::days(1);
        let list = |number, this_update| {
            let pem = ca.crl_numbered(&[], number, this_update, next).unwrap();
            RevocationList::parse(pem.as_bytes(), &ca_certificate(&ca)).unwrap()
        };
        let (v3, v5) = (list(3, earlier), list(5, later));
        assert_eq!(v5.crl_number().as_deref(), Some("5"));
        assert!(v5.check_not_older_than(&v3).is_ok());
        assert!(v5.check_not_older_than(&v5).is_ok(), "the same list again");
        let err = v3.check_not_older_than(&v5).unwrap_err();
        assert_eq!(err.kind(), "RevocationListRolledBack");
        assert!(err.to_string().contains("CRL number 3"), "{err}");
        assert!(err.to_string().contains("accepted CRL number 5"), "{err}");
        // A number that grows past one byte still compares as a number.
        assert!(
            list(256, later)
                .check_not_older_than(&list(255, later))
                .is_ok()
        );
        // The number decides even against the clock (a re-signed list with a higher number).
        assert!(list(6, earlier).check_not_older_than(&v5).is_ok());
    }

    #[test]
    fn refuses_lists_it_cannot_trust() {
        let ca = Ca::new("CRL CA", "Acme").unwrap();
        let twin = Ca::new("CRL CA", "Acme").unwrap();
        let other = Ca::new("Other CA", "Else").unwrap();
        let now = OffsetDateTime::now_utc();
        let crl = |ca: &Ca| {
            ca.crl(&[vec![1]], now - Duration::days(2), now - Duration::days(1))
                .unwrap()
        };
        let parse = |pem: &str| RevocationList::parse(pem.as_bytes(), &ca_certificate(&ca));
        assert_eq!(
            parse(&crl(&twin)).unwrap_err(),
            RevocationError::BadSignature
        );
        assert_eq!(
            parse(&crl(&other)).unwrap_err(),
            RevocationError::WrongIssuer
        );
        assert!(matches!(
            parse("not a crl").unwrap_err(),
            RevocationError::Malformed(_)
        ));
        assert!(matches!(
            parse(&ca.pem).unwrap_err(),
            RevocationError::Malformed(_)
        ));
        let stale = parse(&crl(&ca)).unwrap();
        assert!(matches!(
            stale.check_fresh(now.unix_timestamp()),
            Err(RevocationError::Stale { .. })
        ));
    }
}
