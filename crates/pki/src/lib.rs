//! jitr-pki: a small PKI for the CLI (`jitr ca register`, `jitr seed`), the tests and the
//! fixtures, never in the functions: CAs, verification certificates, device certificates and
//! CRLs, made with rcgen so every test owns fresh, unique material. With the `connect` feature,
//! a device's mTLS + MQTT connect (`mqtt_connect`).
//!
//! Its API takes and returns PEM, DER and plain values, never a jitr-domain type: jitr-domain's
//! own unit tests use it, and see a second copy of that crate through it.

#[cfg(feature = "connect")]
pub mod mqtt_connect;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, RevokedCertParams, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// Boxed errors keep the factory short; tests unwrap them.
pub type PkiResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A certificate authority with its private key.
#[derive(Debug)]
pub struct Ca {
    pub pem: String,
    key: KeyPair,
}

impl Ca {
    /// A new EC P-256 CA whose subject is `CN=<common_name>, O=<organization>`.
    pub fn new(common_name: &str, organization: &str) -> PkiResult<Self> {
        Self::with_spec(&CaSpec::named(common_name, organization))
    }

    /// A CA as `spec` says (expired, not a CA, no keyCertSign: the CAs tests must refuse).
    pub fn with_spec(spec: &CaSpec) -> PkiResult<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let pem = Self::self_signed(spec, &key)?;
        Ok(Self { pem, key })
    }

    /// This CA's key in a new certificate as `spec` says (a new serial): what an operator
    /// registers when the old certificate nears its end.
    pub fn reissued(&self, spec: &CaSpec) -> PkiResult<Self> {
        let pem = Self::self_signed(spec, &self.key)?;
        let key = KeyPair::from_pem(&self.key.serialize_pem())?;
        Ok(Self { pem, key })
    }

    fn self_signed(spec: &CaSpec, key: &KeyPair) -> PkiResult<String> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, spec.organization.as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        if spec.key_cert_sign {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        Ok(params.self_signed(key)?.pem())
    }

    /// A CA from stored PEM files.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> PkiResult<Self> {
        Ok(Self {
            pem: cert_pem.to_owned(),
            key: KeyPair::from_pem(key_pem)?,
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// IoT Core's id for this CA certificate.
    pub fn id(&self) -> String {
        certificate_id(&self.pem)
    }

    fn issuer(&self) -> PkiResult<Issuer<'_, &KeyPair>> {
        Ok(Issuer::from_ca_cert_pem(&self.pem, &self.key)?)
    }

    /// The verification certificate RegisterCACertificate wants: CN = the registration code.
    pub fn verification_certificate(&self, registration_code: &str) -> PkiResult<String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, registration_code);
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        Ok(params.signed_by(&key, &self.issuer()?)?.pem())
    }

    /// Signs a device certificate.
    pub fn issue(&self, spec: &DeviceSpec) -> PkiResult<Device> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(org) = &spec.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org.as_str());
        }
        if let Some(serial) = &spec.subject_serial_number {
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial.as_str());
        }
        if let Some(cn) = &spec.common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        if !spec.crl_distribution_points.is_empty() {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: spec.crl_distribution_points.clone(),
            }];
        }
        let issuer = self.issuer()?;
        let (cert_pem, key_pem) = match &spec.public_key {
            Some(spki_pem) => {
                let spki = SubjectPublicKeyInfo::from_pem(spki_pem)?;
                (params.signed_by(&spki, &issuer)?.pem(), None)
            }
            None => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                (
                    params.signed_by(&key, &issuer)?.pem(),
                    Some(key.serialize_pem()),
                )
            }
        };
        let id = certificate_id(&cert_pem);
        Ok(Device {
            cert_pem,
            key_pem,
            id,
            serial: spec.serial.clone(),
        })
    }

    /// A CRL revoking `serials`, current from `this_update` to `next_update` (CRL number 1).
    pub fn crl(
        &self,
        serials: &[Vec<u8>],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> PkiResult<String> {
        self.crl_numbered(serials, 1, this_update, next_update)
    }

    /// A CRL with the given CRL number (RFC 5280 5.2.3: increases with every list issued).
    pub fn crl_numbered(
        &self,
        serials: &[Vec<u8>],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> PkiResult<String> {
        let number = crl_number.to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(jitr_domain::certificate::normalized_serial(
                &number,
            )),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: this_update,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer()?)?.pem()?)
    }
}

/// What a CA certificate should say.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub common_name: String,
    pub organization: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// basicConstraints cA=TRUE (otherwise cA=FALSE, explicitly).
    pub is_ca: bool,
    /// keyUsage includes keyCertSign.
    pub key_cert_sign: bool,
}

impl CaSpec {
    /// A valid CA for the next hundred years.
    pub fn named(common_name: &str, organization: &str) -> Self {
        Self {
            common_name: common_name.to_owned(),
            organization: organization.to_owned(),
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(365 * 100),
            is_ca: true,
            key_cert_sign: true,
        }
    }
}

/// What a device certificate should say.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub common_name: Option<String>,
    pub organization: Option<String>,
    pub subject_serial_number: Option<String>,
    /// Certificate serial; the default is random.
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// A given public key (PEM SPKI) instead of a fresh EC P-256 pair; no private key then.
    pub public_key: Option<String>,
    /// URLs for the CRL Distribution Points extension (none: no extension).
    pub crl_distribution_points: Vec<String>,
}

impl DeviceSpec {
    /// A valid device `CN=<common_name>, O=Acme-Devices`, valid for ten years.
    pub fn named(common_name: &str) -> Self {
        Self {
            common_name: Some(common_name.to_owned()),
            organization: Some("Acme-Devices".to_owned()),
            subject_serial_number: None,
            serial: random_serial(),
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(3650),
            public_key: None,
            crl_distribution_points: Vec::new(),
        }
    }
}

/// A device certificate, its key (when generated here) and its IoT Core id.
#[derive(Debug, Clone)]
pub struct Device {
    pub cert_pem: String,
    pub key_pem: Option<String>,
    pub id: String,
    pub serial: Vec<u8>,
}

/// The certificate-registered event IoT Core publishes for a pending certificate (the fields the
/// handler needs; the samples under `events/` show the whole message).
pub fn registered_event(
    certificate_id: &str,
    ca_certificate_id: &str,
    account: &str,
) -> serde_json::Value {
    serde_json::json!({
        "certificateId": certificate_id,
        "caCertificateId": ca_certificate_id,
        "timestamp": 1,
        "certificateStatus": "PENDING_ACTIVATION",
        "awsAccountId": account,
    })
}

/// IoT Core's certificate id: hex SHA-256 of the DER.
pub fn certificate_id(pem: &str) -> String {
    let der = jitr_domain::certificate::pem_to_der(pem).unwrap_or_default();
    hex::encode(Sha256::digest(der))
}

/// 16 random bytes with the top bit clear (a positive serial), from a fresh key's randomness.
pub fn random_serial() -> Vec<u8> {
    let entropy = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map(|k| Sha256::digest(k.der_bytes()).to_vec())
        .unwrap_or_else(|_| vec![0x42; 32]);
    let mut serial = entropy[..16].to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x10;
    serial
}
