//! Where a Thing's name comes from, and what IoT Core accepts as one.

use std::str::FromStr;

/// `THING_NAME_SOURCE`: which part of the certificate names the Thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThingNameSource {
    /// The subject's first commonName (the default).
    #[default]
    CommonName,
    /// The subject's serialNumber attribute (OID 2.5.4.5), not the certificate serial.
    SerialNumber,
    /// The certificate id IoT Core assigned (always a valid name).
    CertificateId,
}

impl FromStr for ThingNameSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "common-name" => Ok(Self::CommonName),
            "serial-number" => Ok(Self::SerialNumber),
            "certificate-id" => Ok(Self::CertificateId),
            other => Err(format!(
                "expected common-name, serial-number or certificate-id, got {other:?}"
            )),
        }
    }
}

impl ThingNameSource {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommonName => "common-name",
            Self::SerialNumber => "serial-number",
            Self::CertificateId => "certificate-id",
        }
    }
}

/// The longest Thing name IoT Core accepts.
pub const MAX_THING_NAME_LEN: usize = 128;

/// IoT Core's Thing name pattern `[a-zA-Z0-9:_-]{1,128}`.
pub fn is_valid_thing_name(name: &str) -> bool {
    (1..=MAX_THING_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// IoT Core's attribute-name pattern `[a-zA-Z0-9_.,@/:#-]{1,128}`.
pub fn is_valid_attribute_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b))
}

/// IoT Core's attribute-value pattern `[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}`.
pub fn is_valid_attribute_value(value: &str) -> bool {
    value.len() <= 800
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#=[]-".contains(&b))
}

/// The longest device-management id (`DEVICE_ID_ATTRIBUTE`'s value). IoT Core would take 800
/// characters in an attribute value; device-management ids are UUIDs and serial numbers, and a
/// ledger key stays short.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// The one alphabet of device-management ids, for both functions (invariant 7): IoT Core's
/// attribute-value characters, 1 to [`MAX_DEVICE_ID_LEN`]. Registration refuses a certificate
/// whose id is outside it (`DeviceIdInvalid`), and the lifecycle function takes every id inside
/// it, so every device registration admits can be governed. A Thing name (`[a-zA-Z0-9:_-]`, at
/// most 128) is always a valid id.
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_LEN).contains(&id.len()) && is_valid_attribute_value(id)
}

/// IoT policy names: `[\w+=,.@-]{1,128}`.
pub fn is_valid_policy_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// True for exactly twelve ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// True for a 64-character lowercase hex id, the form IoT Core uses for certificate ids.
pub fn is_certificate_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_name_pattern() {
        let cases = [
            ("sensor-0001", true),
            ("a", true),
            ("A:b_c-9", true),
            (&*"x".repeat(128), true),
            (&*"x".repeat(129), false),
            ("", false),
            ("has space", false),
            ("slash/name", false),
            ("dot.name", false),
            ("ünïcode", false),
            ("semi;colon", false),
            ("new\nline", false),
        ];
        for (name, valid) in cases {
            assert_eq!(is_valid_thing_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn attribute_patterns() {
        assert!(is_valid_attribute_name("subject.organization"));
        assert!(!is_valid_attribute_name(""));
        assert!(!is_valid_attribute_name("has space"));
        assert!(is_valid_attribute_value(""));
        assert!(is_valid_attribute_value("Acme-Devices,Ltd."));
        assert!(!is_valid_attribute_value("Acme Devices"));
        assert!(!is_valid_attribute_value(&"v".repeat(801)));
    }

    #[test]
    fn device_ids_take_attribute_value_characters() {
        for id in [
            "SN.0001",
            "a/b",
            "x@y",
            "#",
            "=",
            "[1]",
            "5f3c0e2a-mender",
            "a,b:c_d",
        ] {
            assert!(is_valid_device_id(id), "{id:?}");
        }
        for id in ["", "a b", "new\nline", "ü", &"x".repeat(129)] {
            assert!(!is_valid_device_id(id), "{id:?}");
        }
    }

    #[test]
    fn source_round_trips() {
        for source in [
            ThingNameSource::CommonName,
            ThingNameSource::SerialNumber,
            ThingNameSource::CertificateId,
        ] {
            assert_eq!(source.as_str().parse::<ThingNameSource>(), Ok(source));
        }
        assert!("cn".parse::<ThingNameSource>().is_err());
    }
}
