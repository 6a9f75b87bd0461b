//! What the fuzz targets share: a real CA to check certificates and CRLs against.

use std::sync::OnceLock;

use jitr_domain::certificate::CaCertificate;

/// One CA for the whole run (made once: key generation is not what is being fuzzed).
pub fn ca() -> &'static CaCertificate {
    static CA: OnceLock<CaCertificate> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = jitr_pki::Ca::new("Fuzz CA", "Acme").expect("CA");
        CaCertificate::from_pem(&ca.pem).expect("CA parses")
    })
}
