//! X.509 inspection of a device certificate against its registered CA.
//!
//! IoT Core checked the chain only at TLS time, and the event itself proves nothing, so the
//! function re-checks everything that matters before it activates a certificate: issuer,
//! signature, validity window, key type and size, and signature algorithm.

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{BitString, ToDer};
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_ORGANIZATION_NAME,
    OID_X509_ORGANIZATIONAL_UNIT, OID_X509_SERIALNUMBER,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

/// Why a certificate cannot be admitted; the names are the reason codes in logs and outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// Not a parseable X.509 certificate.
    Unparseable,
    /// Signed with MD5 or SHA-1.
    WeakSignatureAlgorithm,
    /// The issuer is not the registered CA's subject.
    IssuerMismatch,
    /// The signature does not verify with the registered CA's public key.
    SignatureInvalid,
    /// Before notBefore.
    NotYetValid,
    /// After notAfter.
    Expired,
    /// Neither RSA nor EC P-256/P-384.
    UnsupportedKey,
    /// RSA shorter than 2048 bits.
    WeakKey,
    /// The CA certificate is past its notAfter.
    CaExpired,
    /// The CA certificate is before its notBefore.
    CaNotYetValid,
    /// The CA certificate lacks basicConstraints `cA=TRUE`.
    CaNotAuthority,
    /// The CA certificate's keyUsage does not include keyCertSign.
    CaCannotSignCertificates,
}

impl CertificateProblem {
    /// The reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparseable => "CertificateUnparseable",
            Self::WeakSignatureAlgorithm => "WeakSignatureAlgorithm",
            Self::IssuerMismatch => "IssuerMismatch",
            Self::SignatureInvalid => "SignatureInvalid",
            Self::NotYetValid => "NotYetValid",
            Self::Expired => "Expired",
            Self::UnsupportedKey => "UnsupportedKeyType",
            Self::WeakKey => "WeakKey",
            Self::CaExpired => "CaExpired",
            Self::CaNotYetValid => "CaNotYetValid",
            Self::CaNotAuthority => "CaNotCertificateAuthority",
            Self::CaCannotSignCertificates => "CaCannotSignCertificates",
        }
    }
}

/// A registered CA certificate, kept as DER so it can be cached per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: Vec<u8>,
}

impl CaCertificate {
    /// Decodes a PEM CA certificate; `None` when it is not a parseable certificate.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let der = pem_to_der(pem)?;
        X509Certificate::from_der(&der).ok()?;
        Some(Self { der })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate; it parsed when this value was made.
    pub fn parsed(&self) -> Option<X509Certificate<'_>> {
        X509Certificate::from_der(&self.der)
            .ok()
            .map(|(_, cert)| cert)
    }

    /// Whether it can sign device certificates at `now` (seconds): the check every admission
    /// makes of its CA, for `jitr ca register` to make before registering one.
    pub fn check_authority(&self, now: i64) -> Result<(), CertificateProblem> {
        let cert = self.parsed().ok_or(CertificateProblem::Unparseable)?;
        check_authority(&cert, now)
    }
}

/// The subject fields a Thing can be named after or described by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub common_name: Option<String>,
    pub serial_number: Option<String>,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub country: Option<String>,
}

/// What an admissible certificate tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedCertificate {
    /// The certificate serial without leading zero bytes (the form CRL lookups use).
    pub serial: Vec<u8>,
    pub subject: Subject,
    /// notBefore, seconds since the epoch (orders a device's certificates).
    pub not_before: i64,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
}

/// Checks `device_pem` against `ca` at `now` (seconds since the epoch).
pub fn inspect(
    device_pem: &str,
    ca: &CaCertificate,
    now: i64,
) -> Result<InspectedCertificate, CertificateProblem> {
    let der = pem_to_der(device_pem).ok_or(CertificateProblem::Unparseable)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| CertificateProblem::Unparseable)?;
    let ca = ca.parsed().ok_or(CertificateProblem::Unparseable)?;
    check_authority(&ca, now)?;

    if is_weak_signature_algorithm(&cert.signature_algorithm.algorithm) {
        return Err(CertificateProblem::WeakSignatureAlgorithm);
    }
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(CertificateProblem::IssuerMismatch);
    }
    if !is_canonical_signed(
        &der,
        cert.tbs_certificate.as_ref(),
        &cert.tbs_certificate.signature,
        &cert.signature_value,
    ) {
        return Err(CertificateProblem::SignatureInvalid);
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| CertificateProblem::SignatureInvalid)?;

    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(CertificateProblem::NotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(CertificateProblem::Expired);
    }
    check_key(&cert)?;

    Ok(InspectedCertificate {
        serial: normalized_serial(cert.raw_serial()).to_vec(),
        subject: subject_of(cert.subject()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// A signed document (certificate or CRL) must be exactly the DER of its three parts: RFC 5280
/// (4.1.1.2, 5.1.1.2) wants the outer signature algorithm to be the signed one, and nothing
/// outside the signed part may differ from its one valid encoding. The parser reads tags without
/// checking their class and accepts unused bits in the signature, so tampered unsigned bytes (the
/// outer algorithm's or the signature's tag, the unused-bits octet, trailing bytes) could parse
/// and verify: the document is compared with the canonical encoding of what was parsed. Found
/// by `tests/properties.rs`.
pub(crate) fn is_canonical_signed(
    whole: &[u8],
    signed_part: &[u8],
    signed: &AlgorithmIdentifier<'_>,
    signature: &BitString<'_>,
) -> bool {
    if signature.unused_bits != 0 {
        return false;
    }
    let mut oid = vec![0x06];
    der_length(&mut oid, signed.algorithm.as_bytes().len());
    oid.extend_from_slice(signed.algorithm.as_bytes());
    let parameters = match signed.parameters.as_ref().map(|p| p.to_der_vec()) {
        None => Vec::new(),
        Some(Ok(bytes)) => bytes,
        Some(Err(_)) => return false,
    };
    let mut tail = der_sequence(&[&oid, &parameters]);
    tail.push(0x03);
    der_length(&mut tail, signature.data.len() + 1);
    tail.push(0);
    tail.extend_from_slice(&signature.data);
    let mut header = vec![0x30];
    der_length(&mut header, signed_part.len() + tail.len());
    // The signed part is a slice of the document: it must start right after the header.
    let at = (signed_part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    at == header.len()
        && whole.len() == header.len() + signed_part.len() + tail.len()
        && whole.starts_with(&header)
        && whole[at + signed_part.len()..] == tail[..]
}

/// A DER SEQUENCE of the given encoded elements.
pub(crate) fn der_sequence(elements: &[&[u8]]) -> Vec<u8> {
    let len: usize = elements.iter().map(|e| e.len()).sum();
    let mut out = vec![0x30];
    der_length(&mut out, len);
    for element in elements {
        out.extend_from_slice(element);
    }
    out
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// What a person asks about a certificate, read without checking it (for `jitr explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Serial, hex without leading zero bytes.
    pub serial_hex: String,
    pub subject: Subject,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// The summary of a PEM certificate; `None` when it is not one.
pub fn summary(pem: &str) -> Option<Summary> {
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some(Summary {
        serial_hex: hex::encode(normalized_serial(cert.raw_serial())),
        subject: subject_of(cert.subject()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The subject's first commonName, for display; `None` if absent or not a certificate.
pub fn common_name(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    subject_of(cert.subject()).common_name
}

/// The URLs of the certificate's CRL Distribution Points extension (full names only), in order;
/// empty when absent or not a certificate. Trust them only after `inspect` verified the
/// certificate against its CA.
pub fn distribution_points(pem: &str) -> Vec<String> {
    let Some(der) = pem_to_der(pem) else {
        return Vec::new();
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for extension in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = extension.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    urls.extend(names.iter().filter_map(|name| match name {
                        GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    }));
                }
            }
        }
    }
    urls
}

/// A serial number without its leading zero bytes (DER adds one to keep it positive).
pub fn normalized_serial(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    &raw[start..]
}

/// The DER inside a PEM `CERTIFICATE` block, or `None`.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    is_certificate_block(&block).then_some(block.contents)
}

fn is_certificate_block(block: &Pem) -> bool {
    block.label == "CERTIFICATE"
}

/// A certificate signed by a CA is only as good as the CA: it must be within its own validity
/// window and be a CA allowed to sign certificates (RFC 5280 4.2.1.9 and 4.2.1.3).
fn check_authority(ca: &X509Certificate<'_>, now: i64) -> Result<(), CertificateProblem> {
    let validity = ca.validity();
    if now < validity.not_before.timestamp() {
        return Err(CertificateProblem::CaNotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(CertificateProblem::CaExpired);
    }
    match ca.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => {}
        _ => return Err(CertificateProblem::CaNotAuthority),
    }
    match ca.key_usage() {
        // keyUsage is optional; when present it must allow certificate signing.
        Ok(None) => Ok(()),
        Ok(Some(usage)) if usage.value.key_cert_sign() => Ok(()),
        _ => Err(CertificateProblem::CaCannotSignCertificates),
    }
}

fn check_key(cert: &X509Certificate<'_>) -> Result<(), CertificateProblem> {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(()),
            Ok(PublicKey::RSA(_)) => Err(CertificateProblem::WeakKey),
            _ => Err(CertificateProblem::UnsupportedKey),
        };
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            _ => Err(CertificateProblem::UnsupportedKey),
        };
    }
    Err(CertificateProblem::UnsupportedKey)
}

/// MD5 and SHA-1 signatures, with RSA or ECDSA.
fn is_weak_signature_algorithm(oid: &Oid<'_>) -> bool {
    const WEAK: [&[u64]; 6] = [
        &[1, 2, 840, 113549, 1, 1, 4], // md5WithRSAEncryption
        &[1, 2, 840, 113549, 1, 1, 5], // sha1WithRSAEncryption
        &[1, 3, 14, 3, 2, 29],         // sha1WithRSA (OIW)
        &[1, 2, 840, 10045, 4, 1],     // ecdsa-with-SHA1
        &[1, 2, 840, 113549, 1, 1, 3], // md4WithRSAEncryption
        &[1, 2, 840, 113549, 1, 1, 2], // md2WithRSAEncryption
    ];
    oid.iter()
        .map(|arcs| arcs.collect::<Vec<u64>>())
        .is_some_and(|arcs| WEAK.iter().any(|weak| arcs == *weak))
}

fn subject_of(name: &X509Name<'_>) -> Subject {
    let first = |oid| {
        name.iter_by_oid(&oid)
            .next()
            .and_then(|attr| attr.as_str().ok())
            .map(str::to_owned)
    };
    Subject {
        common_name: first(OID_X509_COMMON_NAME),
        serial_number: first(OID_X509_SERIALNUMBER),
        organization: first(OID_X509_ORGANIZATION_NAME),
        organizational_unit: first(OID_X509_ORGANIZATIONAL_UNIT),
        country: first(OID_X509_COUNTRY_NAME),
    }
}
