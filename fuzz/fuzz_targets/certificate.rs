//! A device certificate as IoT Core hands it over (PEM), checked against a real CA; the input
//! is used as DER inside a PEM block and as PEM text.
#![no_main]

use base64::Engine;
use jitr_domain::certificate::{CaCertificate, inspect, summary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let _ = inspect(&pem, jitr_fuzz::ca(), 1_800_000_000);
    let text = String::from_utf8_lossy(data);
    let _ = inspect(&text, jitr_fuzz::ca(), 1_800_000_000);
    let _ = summary(&text);
    let _ = CaCertificate::from_pem(&text);
});
