//! A revocation list (DER, or PEM text) verified against a real CA.
#![no_main]

use std::sync::OnceLock;

use jitr_core::certificate::CaCertificate;
use jitr_core::revocation::RevocationList;
use libfuzzer_sys::fuzz_target;

fn ca() -> &'static CaCertificate {
    static CA: OnceLock<CaCertificate> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = jitr_core::pki::Ca::new("Fuzz CA", "Acme").expect("CA");
        CaCertificate::from_pem(&ca.pem).expect("CA parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = RevocationList::parse(data, ca());
});
