//! A device certificate as IoT Core hands it over (PEM), checked against a real CA; the input
//! is used as DER inside a PEM block and as PEM text.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use jitr_core::certificate::{CaCertificate, inspect, summary};
use libfuzzer_sys::fuzz_target;

fn ca() -> &'static CaCertificate {
    static CA: OnceLock<CaCertificate> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = jitr_core::pki::Ca::new("Fuzz CA", "Acme").expect("CA");
        CaCertificate::from_pem(&ca.pem).expect("CA parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let _ = inspect(&pem, ca(), 1_800_000_000);
    let text = String::from_utf8_lossy(data);
    let _ = inspect(&text, ca(), 1_800_000_000);
    let _ = summary(&text);
    let _ = CaCertificate::from_pem(&text);
});
