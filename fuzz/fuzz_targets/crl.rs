//! A revocation list (DER, or PEM text) verified against a real CA.
#![no_main]

use jitr_domain::revocation::RevocationList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = RevocationList::parse(data, jitr_fuzz::ca());
});
