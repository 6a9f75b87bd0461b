//! Hostile input, as properties: whatever the bytes, parsing answers (never panics), and no
//! tampering with a signed certificate or CRL is ever accepted. `make fuzz` runs the same entry
//! points under cargo-fuzz for longer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use jitr_domain::certificate::{CaCertificate, inspect, pem_to_der};
use jitr_domain::event::RegistrationEvent;
use jitr_domain::naming::is_valid_thing_name;
use jitr_domain::revocation::RevocationList;
use jitr_pki::{Ca, Device, DeviceSpec};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

struct Fixture {
    ca: CaCertificate,
    device_der: Vec<u8>,
    crl_der: Vec<u8>,
    now: i64,
}

/// One CA, one device certificate and one CRL, made once for every case.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = Ca::new("Property CA", "Acme").unwrap();
        let device: Device = ca.issue(&DeviceSpec::named("sensor-p")).unwrap();
        let now = OffsetDateTime::now_utc();
        let crl = ca
            .crl(
                &[vec![0x42]],
                now - Duration::hours(1),
                now + Duration::days(1),
            )
            .unwrap();
        Fixture {
            ca: CaCertificate::from_pem(&ca.pem).unwrap(),
            device_der: pem_to_der(&device.cert_pem).unwrap(),
            crl_der: pem_to_der_block(&crl),
            now: now.unix_timestamp(),
        }
    })
}

fn pem_to_der_block(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,80}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,20}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The event's fields with arbitrary values (or absent), and arbitrary extra fields.
fn event_like() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        2 => json_value(),
        1 => "[0-9a-f]{64}".prop_map(Value::from),
        1 => "[0-9]{12}".prop_map(Value::from),
        1 => Just(json!("PENDING_ACTIVATION")),
    ];
    let names = [
        "certificateId",
        "caCertificateId",
        "certificateStatus",
        "awsAccountId",
        "timestamp",
        "certificateRegistrationTimestamp",
        "sourceIp",
        "extra",
    ];
    prop::collection::vec(prop::option::of(field), names.len()).prop_map(move |values| {
        let object = names
            .iter()
            .zip(values)
            .filter_map(|(name, value)| value.map(|v| ((*name).to_owned(), v)))
            .collect();
        Value::Object(object)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_an_answer_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = RegistrationEvent::from_slice(&bytes);
        let _ = RevocationList::parse(&bytes, &fixture().ca);
        let _ = inspect(&String::from_utf8_lossy(&bytes), &fixture().ca, fixture().now);
        let _ = inspect(&to_pem(&bytes), &fixture().ca, fixture().now);
    }

    #[test]
    fn any_event_shaped_json_is_parsed_or_refused_by_field(value in event_like()) {
        match RegistrationEvent::from_value(&value) {
            Ok(event) => {
                prop_assert_eq!(event.certificate_id.len(), 64);
                prop_assert_eq!(event.account_id.len(), 12);
            }
            Err(e) => prop_assert!(e.error_type().starts_with("Permanent."), "{}", e),
        }
    }

    #[test]
    fn no_tampered_certificate_is_accepted(index in any::<prop::sample::Index>(), flip in 1..=255u8) {
        let fixture = fixture();
        prop_assert!(inspect(&to_pem(&fixture.device_der), &fixture.ca, fixture.now).is_ok());
        let mut der = fixture.device_der.clone();
        let at = index.index(der.len());
        der[at] ^= flip;
        prop_assert!(
            inspect(&to_pem(&der), &fixture.ca, fixture.now).is_err(),
            "byte {} ^ {:#04x} still passes", at, flip
        );
    }

    #[test]
    fn no_tampered_crl_is_accepted(index in any::<prop::sample::Index>(), flip in 1..=255u8) {
        let fixture = fixture();
        prop_assert!(RevocationList::parse(&fixture.crl_der, &fixture.ca).is_ok());
        let mut der = fixture.crl_der.clone();
        let at = index.index(der.len());
        der[at] ^= flip;
        prop_assert!(
            RevocationList::parse(&der, &fixture.ca).is_err(),
            "byte {} ^ {:#04x} still verifies", at, flip
        );
    }

    #[test]
    fn thing_names_are_exactly_iot_cores(name in ".{0,140}") {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
        prop_assert_eq!(is_valid_thing_name(&name), valid);
    }
}
