//! Hostile webhooks and commands, as properties: whatever arrives is answered (never a panic),
//! a signature verifies only its own body under its own secret, and nothing unauthenticated
//! reaches the parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitr_domain::command::DeviceCommand;
use jitr_domain::webhook::WebhookSecret;
use jitr_domain::webhook::{WebhookRequest, parse_envelope, sign, verify_signature};
use proptest::prelude::*;
use serde_json::{Value, json};

fn function_url_event(body: &str, headers: Value, base64: bool) -> Value {
    json!({"version": "2.0", "rawPath": "/", "headers": headers, "isBase64Encoded": base64,
           "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": body})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_signature_verifies_its_own_body_and_nothing_else(
        secret in prop::collection::vec(any::<u8>(), 16..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
        index in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let signature = sign(&secret, &body);
        prop_assert!(verify_signature(&secret, &body, &signature).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[index.index(body.len())] ^= flip;
            prop_assert!(verify_signature(&secret, &tampered, &signature).is_err());
        }
        let mut other = secret.clone();
        other[index.index(secret.len())] ^= flip;
        prop_assert!(verify_signature(&other, &body, &signature).is_err());
        let mut forged = signature.into_bytes();
        let at = index.index(forged.len());
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        prop_assert!(verify_signature(&secret, &body, &String::from_utf8(forged).unwrap()).is_err());
    }

    #[test]
    fn any_request_is_answered_and_only_signed_ones_pass(
        body in ".{0,300}",
        signature in prop::option::of("[0-9a-f]{0,70}"),
        base64 in any::<bool>(),
    ) {
        let secret = WebhookSecret::new("property-secret-0123456789");
        let headers = match &signature {
            Some(s) => json!({"x-men-signature": s}),
            None => json!({}),
        };
        if let Ok(request) = WebhookRequest::from_event(&function_url_event(&body, headers, base64)) {
            let genuine = sign(secret.expose(), &request.body);
            let passes = request.authenticate(Some(&secret)).is_ok();
            prop_assert_eq!(passes, signature.as_deref() == Some(genuine.as_str()));
        }
    }

    #[test]
    fn any_body_or_command_is_parsed_or_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        text in ".{0,200}",
    ) {
        let _ = parse_envelope(&bytes);
        let _ = parse_envelope(text.as_bytes());
        if let Ok(value) = serde_json::from_str::<Value>(&text)
            && let Err(e) = DeviceCommand::from_value(&value)
        {
            prop_assert!(e.error_type().starts_with("Permanent."));
        }
    }
}
