//! A verified CRL reduced to what lookups need.
//!
//! A fleet's list can hold a million entries (40 MB of DER). It is read in one pass without a
//! per-entry allocation: the revoked entries are walked in place and their serials copied into
//! a compact [`SerialSet`]; x509-parser reads the rest of the list (issuer, dates, extensions)
//! from a copy without the entries, and the signature is checked over the original signed
//! bytes. A PEM list is decoded in its own buffer, so no second copy of it exists.

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::verify::verify_signature;

use super::RevocationError;
use super::serials::{SerialSet, SerialSetBuilder};
use crate::certificate::{CaCertificate, der_sequence, is_canonical_signed, normalized_serial};

/// The serials revoked by one CA, with the window in which the list is current.
#[derive(Debug, Clone)]
pub struct RevocationList {
    serials: SerialSet,
    /// The cRLNumber extension, big-endian without leading zeros.
    crl_number: Option<Vec<u8>>,
    this_update: i64,
    next_update: i64,
    /// The signer's subject and public key (DER): a CA certificate with the same two verifies
    /// this list too, so a re-registered CA need not fetch it again.
    signer: Vec<u8>,
}

impl RevocationList {
    /// Parses a PEM or DER CRL and verifies it against `ca` (issuer and signature).
    /// Staleness is checked by the caller, which knows the time.
    pub fn parse(bytes: &[u8], ca: &CaCertificate) -> Result<Self, RevocationError> {
        if is_pem(bytes) {
            Self::parse_owned(bytes.to_vec(), ca)
        } else {
            Self::parse_der(bytes, ca)
        }
    }

    /// The same, consuming a fetched body: a PEM list is decoded within it.
    pub fn parse_owned(mut bytes: Vec<u8>, ca: &CaCertificate) -> Result<Self, RevocationError> {
        if is_pem(&bytes) {
            decode_pem_in_place(&mut bytes, "X509 CRL")?;
        }
        Self::parse_der(&bytes, ca)
    }

    fn parse_der(der: &[u8], ca: &CaCertificate) -> Result<Self, RevocationError> {
        let malformed = |what: &str| RevocationError::Malformed(format!("DER: {what}"));
        let ca = ca
            .parsed()
            .ok_or_else(|| RevocationError::Malformed("CA certificate unparseable".into()))?;
        // CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
        let (trailing, outer) = sequence(der).ok_or_else(|| malformed("not a CertificateList"))?;
        if !trailing.is_empty() {
            return Err(malformed("bytes after the CertificateList"));
        }
        let (unsigned_tail, tbs) =
            sequence(outer.data).ok_or_else(|| malformed("no tbsCertList"))?;
        let signed = &outer.data[..outer.data.len() - unsigned_tail.len()];
        let TbsParts { fields, revoked } =
            split_revoked(tbs.data).ok_or_else(|| malformed("tbsCertList"))?;

        // Everything but the entries, through x509-parser.
        let skeleton = der_sequence(&[&der_sequence(&fields), unsigned_tail]);
        let (_, crl) = CertificateRevocationList::from_der(&skeleton)
            .map_err(|e| RevocationError::Malformed(format!("DER: {e}")))?;
        if crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(RevocationError::WrongIssuer);
        }
        if !is_canonical_signed(
            der,
            signed,
            &crl.tbs_cert_list.signature,
            &crl.signature_value,
        ) {
            return Err(RevocationError::BadSignature);
        }
        verify_signature(
            ca.public_key(),
            &crl.signature_algorithm,
            &crl.signature_value,
            signed,
        )
        .map_err(|_| RevocationError::BadSignature)?;
        let next_update = crl.next_update().map(|t| t.timestamp()).ok_or_else(|| {
            RevocationError::Malformed("no nextUpdate: freshness cannot be judged".into())
        })?;
        let serials = match revoked {
            Some(entries) => revoked_serials(entries).ok_or_else(|| malformed("revoked entry"))?,
            None => SerialSet::default(),
        };
        let crl_number = crl
            .crl_number()
            .map(|n| normalized_serial(&n.to_bytes_be()).to_vec());
        Ok(Self {
            serials,
            crl_number,
            this_update: crl.last_update().timestamp(),
            next_update,
            signer: signer_of(&ca),
        })
    }

    /// True when `serial` (raw or normalized) is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(serial)
    }

    /// True when `ca` has the subject and key this list verified against.
    pub fn verifies_under(&self, ca: &CaCertificate) -> bool {
        ca.parsed().is_some_and(|ca| signer_of(&ca) == self.signer)
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
        if self.mark().is_older_than(&accepted.mark()) {
            return Err(RevocationError::RolledBack(format!(
                "{} is older than the accepted {}",
                self.version(),
                accepted.version()
            )));
        }
        Ok(())
    }

    /// "CRL number N (thisUpdate T)", for messages.
    /// How new this list is.
    pub fn mark(&self) -> super::ListMark {
        super::ListMark {
            crl_number: self.crl_number.clone(),
            this_update: self.this_update,
        }
    }

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

    /// The revoked serials (normalized), shortest first.
    pub fn serials(&self) -> impl Iterator<Item = &[u8]> {
        self.serials.iter()
    }

    /// Heap bytes the list holds.
    pub fn heap_bytes(&self) -> usize {
        self.serials.heap_bytes() + self.signer.capacity()
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

fn signer_of(ca: &X509Certificate<'_>) -> Vec<u8> {
    [ca.subject().as_raw(), ca.public_key().raw].concat()
}

/// One DER SEQUENCE at the start of `input`: (what follows, the element).
fn sequence(input: &[u8]) -> Option<(&[u8], Any<'_>)> {
    let (rest, any) = Any::from_der(input).ok()?;
    let header = &any.header;
    (header.class() == Class::Universal && header.is_constructed() && header.tag() == Tag::Sequence)
        .then_some((rest, any))
}

/// A tbsCertList taken apart: its other elements (raw), and revokedCertificates' content.
struct TbsParts<'a> {
    fields: Vec<&'a [u8]>,
    revoked: Option<&'a [u8]>,
}

/// Finds revokedCertificates: after the issuer and the dates, the only universal SEQUENCE
/// there (RFC 5280 5.1).
fn split_revoked(mut content: &[u8]) -> Option<TbsParts<'_>> {
    let (mut fields, mut revoked, mut dates) = (Vec::new(), None, 0);
    while !content.is_empty() {
        let (rest, any) = Any::from_der(content).ok()?;
        let raw = &content[..content.len() - rest.len()];
        let universal = any.header.class() == Class::Universal;
        if universal && matches!(any.header.tag(), Tag::UtcTime | Tag::GeneralizedTime) {
            dates += 1;
        }
        if dates > 0 && revoked.is_none() && universal && any.header.tag() == Tag::Sequence {
            revoked = Some(any.data);
        } else {
            fields.push(raw);
        }
        content = rest;
    }
    Some(TbsParts { fields, revoked })
}

/// The serial of every entry: SEQUENCE { userCertificate INTEGER, revocationDate Time,
/// crlEntryExtensions OPTIONAL }.
fn revoked_serials(mut entries: &[u8]) -> Option<SerialSet> {
    let mut serials = SerialSetBuilder::default();
    while !entries.is_empty() {
        let (rest, entry) = sequence(entries)?;
        let (after_serial, serial) = Any::from_der(entry.data).ok()?;
        let (_, date) = Any::from_der(after_serial).ok()?;
        let universal = |any: &Any<'_>| any.header.class() == Class::Universal;
        if !universal(&serial)
            || serial.header.tag() != Tag::Integer
            || serial.data.is_empty()
            || !universal(&date)
            || !matches!(date.header.tag(), Tag::UtcTime | Tag::GeneralizedTime)
        {
            return None;
        }
        serials.push(serial.data);
        entries = rest;
    }
    Some(serials.build())
}

/// Replaces a PEM document in `bytes` by the DER in its `label` block, decoding in place
/// (the DER is shorter than its base64), so a large list never exists twice.
fn decode_pem_in_place(bytes: &mut Vec<u8>, label: &str) -> Result<(), RevocationError> {
    use base64::Engine as _;
    let malformed = |what: String| RevocationError::Malformed(format!("PEM: {what}"));
    let text = &bytes[..];
    let begin = find(text, b"-----BEGIN ").ok_or_else(|| malformed("no BEGIN line".into()))?;
    let after_begin = begin + b"-----BEGIN ".len();
    let label_end = find(&text[after_begin..], b"-----")
        .map(|i| after_begin + i)
        .ok_or_else(|| malformed("unterminated BEGIN line".into()))?;
    let found = String::from_utf8_lossy(&text[after_begin..label_end]).into_owned();
    if found != label {
        return Err(RevocationError::Malformed(format!(
            "PEM block is {found:?}, expected {label:?}"
        )));
    }
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = find(&text[body_start..], end_marker.as_bytes())
        .map(|i| body_start + i)
        .ok_or_else(|| malformed(format!("no {end_marker:?} line")))?;

    // Base64 characters are gathered in blocks of 4; each decoded block is written behind the
    // read position, which it can never overtake (3 bytes out for at least 4 in).
    let (mut read, mut written) = (body_start, 0);
    let mut block = [0u8; 1024];
    let mut decoded = [0u8; 768];
    let mut filled = 0;
    loop {
        let done = read == body_end;
        if !done {
            let b = bytes[read];
            read += 1;
            if b.is_ascii_whitespace() {
                continue;
            }
            block[filled] = b;
            filled += 1;
        }
        if filled == block.len() || (done && filled > 0) {
            let n = base64::engine::general_purpose::STANDARD
                .decode_slice(&block[..filled], &mut decoded)
                .map_err(|e| malformed(format!("base64: {e}")))?;
            bytes[written..written + n].copy_from_slice(&decoded[..n]);
            written += n;
            if !done && block[filled - 1] == b'=' {
                return Err(malformed("padding before the end".into()));
            }
            filled = 0;
        }
        if done {
            break;
        }
    }
    bytes.truncate(written);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    use jitr_pki::Ca;
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

    /// The PEM decoder works within the fetched buffer: line endings, wrapping and the label are
    /// as x509-parser reads them, and anything else is refused as malformed.
    #[test]
    fn decodes_pem_in_place_as_x509_parser_does() {
        let ca = Ca::new("CRL CA", "Acme").unwrap();
        let now = OffsetDateTime::now_utc();
        let serials: Vec<Vec<u8>> = (0..200u32).map(|n| n.to_be_bytes().to_vec()).collect();
        let pem = ca
            .crl(&serials, now - Duration::hours(1), now + Duration::days(7))
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        for variant in [
            pem.clone(),
            pem.replace('\n', "\r\n"),
            format!("\n  {pem}trailer"),
        ] {
            let mut bytes = variant.into_bytes();
            decode_pem_in_place(&mut bytes, "X509 CRL").unwrap();
            assert_eq!(bytes, block.contents);
        }
        let list = RevocationList::parse_owned(pem.clone().into_bytes(), &ca_certificate(&ca));
        assert_eq!(list.unwrap().len(), 200);
        let body_start = pem.find('\n').unwrap() + 1;
        let broken = [
            pem.replace("X509 CRL", "CERTIFICATE"),
            pem.replace("-----END X509 CRL-----", ""),
            format!("{}={}", &pem[..body_start + 4], &pem[body_start + 4..]),
            format!("{}*{}", &pem[..body_start + 8], &pem[body_start + 8..]),
        ];
        for bad in broken {
            let err = RevocationList::parse_owned(bad.into_bytes(), &ca_certificate(&ca));
            assert!(matches!(err, Err(RevocationError::Malformed(_))), "{err:?}");
        }
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

    #[test]
    fn a_list_reports_what_it_holds() {
        let ca = Ca::new("CRL CA", "Acme").unwrap();
        let this_update = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let next_update = this_update + Duration::days(7);
        let serials: Vec<Vec<u8>> = (1..=200u32).map(|n| n.to_be_bytes().to_vec()).collect();
        let pem = ca
            .crl_numbered(&serials, 300, this_update, next_update)
            .unwrap();
        let list = RevocationList::parse(pem.as_bytes(), &ca_certificate(&ca)).unwrap();
        // A number of more than one byte reads back in decimal.
        assert_eq!(list.crl_number().as_deref(), Some("300"));
        assert_eq!(list.this_update(), this_update.unix_timestamp());
        assert_eq!(list.next_update(), next_update.unix_timestamp());
        // Fresh until nextUpdate, not at it.
        assert!(list.check_fresh(list.next_update() - 1).is_ok());
        assert!(list.check_fresh(list.next_update()).is_err());
        assert!(!list.is_empty());
        let mut listed: Vec<Vec<u8>> = list.serials().map(<[u8]>::to_vec).collect();
        listed.sort();
        let mut expected: Vec<Vec<u8>> = serials
            .iter()
            .map(|s| crate::certificate::normalized_serial(s).to_vec())
            .collect();
        expected.sort();
        assert_eq!(listed, expected);
        // The serials' bytes plus the signer's subject and key (about 150 bytes for P-256).
        let serial_bytes: usize = expected.iter().map(Vec::len).sum();
        let held = list.heap_bytes();
        assert!(
            held > serial_bytes + 64 && held < serial_bytes + 4096,
            "{held} for {serial_bytes} bytes of serials"
        );
        let empty = ca.crl(&[], this_update, next_update).unwrap();
        let empty = RevocationList::parse(empty.as_bytes(), &ca_certificate(&ca)).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.serials().count(), 0);
    }

    /// Entries are read only in their one shape: a universal non-empty INTEGER, then a
    /// universal UTCTime or GeneralizedTime, each inside a universal constructed SEQUENCE.
    #[test]
    fn an_entry_of_any_other_shape_is_refused() {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, u8::try_from(content.len()).unwrap()];
            out.extend_from_slice(content);
            out
        }
        let serial = tlv(0x02, &[0x01]);
        let utc = tlv(0x17, b"250101000000Z");
        let generalized = tlv(0x18, b"20250101000000Z");
        let entry = |serial: &[u8], date: &[u8]| tlv(0x30, &[serial, date].concat());
        assert_eq!(revoked_serials(&entry(&serial, &utc)).unwrap().len(), 1);
        assert_eq!(
            revoked_serials(&entry(&serial, &generalized))
                .unwrap()
                .len(),
            1
        );
        let refused = [
            ("serial context-specific", entry(&tlv(0x82, &[0x01]), &utc)),
            ("serial not an INTEGER", entry(&tlv(0x04, &[0x01]), &utc)),
            ("serial empty", entry(&tlv(0x02, &[]), &utc)),
            (
                "date context-specific",
                entry(&serial, &tlv(0x97, b"250101000000Z")),
            ),
            ("date not a time", entry(&serial, &tlv(0x02, &[0x01]))),
        ];
        for (what, bytes) in refused {
            assert!(revoked_serials(&bytes).is_none(), "{what}");
        }
        let content = [serial.as_slice(), utc.as_slice()].concat();
        assert!(sequence(&tlv(0x30, &content)).is_some());
        for (what, tag) in [
            ("context-specific", 0xb0),
            ("a SET", 0x31),
            ("application class", 0x70),
        ] {
            assert!(sequence(&tlv(tag, &content)).is_none(), "{what}");
        }
    }
}
