//! A Function URL request carrying a webhook: read, authenticated, then (as if authentic) its
//! body parsed as a Mender envelope.
#![no_main]

use jitr_domain::webhook::WebhookSecret;
use jitr_domain::webhook::{WebhookRequest, parse_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(request) = WebhookRequest::from_event(&event) {
            let _ = request.authenticate(Some(&WebhookSecret::new("fuzz-secret-0123456789")));
            let _ = parse_envelope(&request.body);
        }
    }
    let _ = parse_envelope(data);
});
