//! Mender-style webhooks through a Lambda Function URL.
//!
//! Authenticity before anything else: the raw body (base64-decoded when the Function URL says
//! so) must carry `X-Men-Signature` = hex(HMAC-SHA256(secret, body)), checked in constant time
//! by `hmac`'s `verify_slice`. Only then is the body parsed, the event's age checked against the
//! replay window, and its type and status mapped to an [`Action`].

use std::collections::BTreeMap;

use crate::ledger::EventStamp;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::command::{Action, DeviceCommand};

/// The largest body accepted, before or after base64 decoding.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The only `X-Men-Algorithm` accepted.
pub const ALGORITHM: &str = "MEN-HMAC-SHA256-Payload";
const SIGNATURE_HEADER: &str = "x-men-signature";
const ALGORITHM_HEADER: &str = "x-men-algorithm";

/// Why a webhook was refused; each maps to an HTTP status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("method {0} not allowed; use POST")]
    MethodNotAllowed(String),
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("body is not valid base64")]
    BadEncoding,
    #[error("no webhook secret is configured; webhooks are refused")]
    NoSecret,
    #[error("the webhook secret could not be read again after its maximum age; retry later")]
    SecretUnavailable,
    #[error("missing X-Men-Signature header")]
    MissingSignature,
    #[error("unsupported X-Men-Algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("signature does not match the body")]
    BadSignature,
    #[error("malformed webhook: {0}")]
    Malformed(String),
    #[error("unknown webhook type {0}")]
    UnknownType(String),
    #[error("unknown device status {0}")]
    UnknownStatus(String),
    #[error("event time {event_time} is outside the {window}s replay window")]
    Replay { event_time: String, window: i64 },
}

impl WebhookError {
    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed(_) => 405,
            Self::BodyTooLarge => 413,
            Self::NoSecret => 500,
            Self::SecretUnavailable => 503,
            Self::MissingSignature | Self::UnsupportedAlgorithm(_) | Self::BadSignature => 401,
            _ => 400,
        }
    }

    /// A stable code for logs and the response body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "MethodNotAllowed",
            Self::BodyTooLarge => "BodyTooLarge",
            Self::BadEncoding => "BadEncoding",
            Self::NoSecret => "NoSecret",
            Self::SecretUnavailable => "SecretUnavailable",
            Self::MissingSignature => "MissingSignature",
            Self::UnsupportedAlgorithm(_) => "UnsupportedAlgorithm",
            Self::BadSignature => "BadSignature",
            Self::Malformed(_) => "Malformed",
            Self::UnknownType(_) => "UnknownType",
            Self::UnknownStatus(_) => "UnknownStatus",
            Self::Replay { .. } => "Replay",
        }
    }
}

/// The shortest secret accepted: a short HMAC key is guessable offline from one signed request.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared secret for `X-Men-Signature`; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    /// A secret long enough to use (from the environment or from Secrets Manager).
    pub fn parse(secret: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("must be at least {MIN_SECRET_LEN} characters"));
        }
        Ok(Self::new(secret))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// The parts of a Function URL (HTTP API v2) request a webhook needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    /// Header names lowercased (HTTP header names are case-insensitive).
    pub headers: BTreeMap<String, String>,
    /// The raw body, base64-decoded when `isBase64Encoded`.
    pub body: Vec<u8>,
}

/// True when the payload is a Function URL / HTTP API v2 request.
pub fn is_function_url_request(payload: &Value) -> bool {
    payload.get("requestContext").is_some_and(Value::is_object) && payload.get("headers").is_some()
}

impl WebhookRequest {
    /// Method, headers and body of a Function URL event (`aws_lambda_events`' type, which
    /// lowercases header names); one that does not read as a Function URL request is malformed.
    pub fn from_event(payload: &Value) -> Result<Self, WebhookError> {
        let event = LambdaFunctionUrlRequest::deserialize(payload).map_err(|e| {
            WebhookError::Malformed(format!(
                "not a Function URL request: {}",
                crate::event::escape(&e.to_string())
            ))
        })?;
        let method = event
            .request_context
            .http
            .method
            .as_deref()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let headers = event
            .headers
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let raw = event.body.unwrap_or_default();
        // Base64 is 4/3 of the decoded size: refuse before decoding anything huge.
        if raw.len() > MAX_BODY_BYTES * 4 / 3 + 4 {
            return Err(WebhookError::BodyTooLarge);
        }
        let body = if event.is_base64_encoded {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|_| WebhookError::BadEncoding)?
        } else {
            raw.into_bytes()
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(WebhookError::BodyTooLarge);
        }
        Ok(Self {
            method,
            headers,
            body,
        })
    }

    /// Method, size, algorithm and signature, in that order; nothing is parsed before it passes.
    pub fn authenticate(&self, secret: Option<&WebhookSecret>) -> Result<(), WebhookError> {
        if self.method != "POST" {
            return Err(WebhookError::MethodNotAllowed(self.method.clone()));
        }
        let secret = secret.ok_or(WebhookError::NoSecret)?;
        if let Some(algorithm) = self.headers.get(ALGORITHM_HEADER)
            && algorithm != ALGORITHM
        {
            return Err(WebhookError::UnsupportedAlgorithm(crate::event::escape(
                algorithm,
            )));
        }
        let signature = self
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(WebhookError::MissingSignature)?;
        verify_signature(secret.expose(), &self.body, signature)
    }
}

/// Checks a hex HMAC-SHA256 signature of `body` in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    signature_hex: &str,
) -> Result<(), WebhookError> {
    let signature = hex::decode(signature_hex.trim()).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::BadSignature)
}

/// hex(HMAC-SHA256(secret, body)): what a sender puts in `X-Men-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC accepts keys of any length, so `new_from_slice` cannot fail.
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new(&Default::default())
}

/// A Mender webhook envelope, authenticated and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenderEvent {
    pub id: String,
    pub kind: String,
    pub device_id: String,
    pub status: Option<String>,
    /// Seconds since the epoch.
    pub time: i64,
    /// The same instant in milliseconds: orders events for the ledger.
    pub time_ms: i64,
}

/// Parses the envelope `{"id", "type", "data": {"id", "status"}, "time"}`.
pub fn parse_envelope(body: &[u8]) -> Result<MenderEvent, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("body: {e}")))?;
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let required = |pointer: &str| {
        text(pointer)
            .ok_or_else(|| WebhookError::Malformed(format!("{pointer} missing or not a string")))
    };
    let time_text = required("/time")?;
    let instant = OffsetDateTime::parse(&time_text, &Rfc3339).map_err(|_| {
        WebhookError::Malformed(format!(
            "/time {} is not RFC 3339",
            crate::event::escape(&time_text)
        ))
    })?;
    let time_ms = i64::try_from(instant.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| WebhookError::Malformed("/time out of range".into()))?;
    Ok(MenderEvent {
        id: required("/id")?,
        kind: required("/type")?,
        device_id: required("/data/id")?,
        status: text("/data/status"),
        time: instant.unix_timestamp(),
        time_ms,
    })
}

impl MenderEvent {
    /// The ledger's stamp: Mender's own time and id, so a redelivery or a replay is recognised.
    pub fn stamp(&self) -> EventStamp {
        EventStamp {
            at_ms: self.time_ms,
            id: format!("mender:{}", self.id),
        }
    }

    /// Refuses an event whose `time` is more than `window` seconds before `now`, or ahead of it
    /// by more than clock skew (a time ahead would make later decisions about the device stale).
    pub fn check_fresh(&self, now: i64, window: i64) -> Result<(), WebhookError> {
        let ahead = window.min(crate::ledger::MAX_STAMP_SKEW_SECS);
        if now.saturating_sub(self.time) <= window && self.time.saturating_sub(now) <= ahead {
            Ok(())
        } else {
            let event_time = OffsetDateTime::from_unix_timestamp(self.time)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| self.time.to_string());
            Err(WebhookError::Replay { event_time, window })
        }
    }

    /// The action for this type and status.
    pub fn action(&self) -> Result<Action, WebhookError> {
        match self.kind.as_str() {
            "device-decommissioned" => Ok(Action::Decommission),
            "device-provisioned" | "device-status-changed" => {
                let status = self
                    .status
                    .as_deref()
                    .ok_or_else(|| WebhookError::Malformed("/data/status missing".into()))?;
                match status {
                    "accepted" | "preauthorized" => Ok(Action::Activate),
                    "rejected" | "pending" | "noauth" => Ok(Action::Deactivate),
                    "decommissioned" => Ok(Action::Decommission),
                    other => Err(WebhookError::UnknownStatus(crate::event::escape(other))),
                }
            }
            other => Err(WebhookError::UnknownType(crate::event::escape(other))),
        }
    }

    /// The device command; the device id must be a valid thing name.
    pub fn command(&self) -> Result<DeviceCommand, WebhookError> {
        let reason = format!(
            "mender {} {} ({})",
            self.kind,
            self.status.as_deref().unwrap_or(""),
            self.id
        );
        DeviceCommand::new(&self.device_id, self.action()?, Some(reason))
            .map_err(|e| WebhookError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-0123456789";
    const NOW: i64 = 1_763_800_000;

    fn body(kind: &str, status: &str) -> String {
        json!({"id": "b9c6f0c2-6f3e-4c1e-9d6e-3a1f2b4c5d6e", "type": kind,
               "data": {"id": "sensor-0100", "status": status}, "time": "2025-11-22T08:26:40Z"})
        .to_string()
    }

    fn request(body: &str, headers: Value, base64: bool) -> Value {
        let encoded = if base64 {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            body.to_owned()
        };
        json!({"version": "2.0", "rawPath": "/", "headers": headers,
               "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": encoded, "isBase64Encoded": base64})
    }

    fn secret() -> WebhookSecret {
        WebhookSecret::new(SECRET)
    }

    fn check(event: &Value) -> Result<(), WebhookError> {
        WebhookRequest::from_event(event)?.authenticate(Some(&secret()))
    }

    #[test]
    fn a_correct_signature_passes_in_every_accepted_form() {
        let b = body("device-status-changed", "accepted");
        let sig = sign(SECRET.as_bytes(), b.as_bytes());
        assert_eq!(
            check(&request(&b, json!({"x-men-signature": sig}), false)),
            Ok(())
        );
        assert_eq!(
            check(&request(
                &b,
                json!({"X-Men-Signature": sig, "X-MEN-ALGORITHM": ALGORITHM}),
                false
            )),
            Ok(()),
            "header names are case-insensitive"
        );
        assert_eq!(
            check(&request(
                &b,
                json!({"x-men-signature": sig.to_uppercase()}),
                false
            )),
            Ok(()),
            "hex case does not matter"
        );
        assert_eq!(
            check(&request(&b, json!({"x-men-signature": sig}), true)),
            Ok(()),
            "base64 body is verified decoded"
        );
    }

    #[test]
    fn every_tampering_is_refused_with_401() {
        let b = body("device-status-changed", "accepted");
        let sig = sign(SECRET.as_bytes(), b.as_bytes());
        let tampered = b.replace("accepted", "rejected");
        let cases = [
            (
                request(&tampered, json!({"x-men-signature": sig}), false),
                WebhookError::BadSignature,
            ),
            (
                request(
                    &b,
                    json!({"x-men-signature": sign(b"another-secret-123456", b.as_bytes())}),
                    false,
                ),
                WebhookError::BadSignature,
            ),
            (
                request(&b, json!({}), false),
                WebhookError::MissingSignature,
            ),
            (
                request(&b, json!({"x-men-signature": "zz-not-hex"}), false),
                WebhookError::BadSignature,
            ),
            (
                request(&b, json!({"x-men-signature": &sig[..32]}), false),
                WebhookError::BadSignature,
            ),
            (
                request(
                    &b,
                    json!({"x-men-signature": sig, "x-men-algorithm": "MEN-HMAC-SHA1-Payload"}),
                    false,
                ),
                WebhookError::UnsupportedAlgorithm("\"MEN-HMAC-SHA1-Payload\"".into()),
            ),
        ];
        for (event, expected) in cases {
            let err = check(&event).unwrap_err();
            assert_eq!(err.status(), 401);
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn size_encoding_method_and_secret_are_checked_first() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(
            check(&request(&big, json!({}), false)),
            Err(WebhookError::BodyTooLarge)
        );
        assert_eq!(
            check(&request(&big, json!({}), true)),
            Err(WebhookError::BodyTooLarge)
        );
        let mut bad = request("{}", json!({}), false);
        bad["isBase64Encoded"] = true.into();
        bad["body"] = "%%%".into();
        assert_eq!(check(&bad), Err(WebhookError::BadEncoding));
        let mut get = request("{}", json!({}), false);
        get["requestContext"]["http"]["method"] = "GET".into();
        assert_eq!(check(&get).unwrap_err().status(), 405);
        let b = body("device-status-changed", "accepted");
        let signed = request(
            &b,
            json!({"x-men-signature": sign(SECRET.as_bytes(), b.as_bytes())}),
            false,
        );
        assert_eq!(
            WebhookRequest::from_event(&signed)
                .unwrap()
                .authenticate(None),
            Err(WebhookError::NoSecret)
        );
    }

    #[test]
    fn types_and_statuses_map_to_actions() {
        let cases = [
            ("device-status-changed", "accepted", Some(Action::Activate)),
            (
                "device-provisioned",
                "preauthorized",
                Some(Action::Activate),
            ),
            (
                "device-status-changed",
                "rejected",
                Some(Action::Deactivate),
            ),
            ("device-status-changed", "pending", Some(Action::Deactivate)),
            ("device-status-changed", "noauth", Some(Action::Deactivate)),
            (
                "device-status-changed",
                "decommissioned",
                Some(Action::Decommission),
            ),
            ("device-decommissioned", "", Some(Action::Decommission)),
            ("device-status-changed", "exploded", None),
            ("device-renamed", "accepted", None),
        ];
        for (kind, status, action) in cases {
            let event = parse_envelope(body(kind, status).as_bytes()).unwrap();
            assert_eq!(event.action().ok(), action, "{kind} {status}");
        }
        let event = parse_envelope(body("device-status-changed", "accepted").as_bytes()).unwrap();
        assert_eq!(event.command().unwrap().device_id, "sensor-0100");
    }

    #[test]
    fn malformed_envelopes_are_400() {
        for bad in [
            "not json",
            "{}",
            r#"{"id":"1","type":"device-decommissioned","data":{},"time":"2025-11-22T08:26:40Z"}"#,
            r#"{"id":"1","type":"device-decommissioned","data":{"id":"d"},"time":"yesterday"}"#,
        ] {
            let err = parse_envelope(bad.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
        let mut bad_id =
            parse_envelope(body("device-status-changed", "accepted").as_bytes()).unwrap();
        bad_id.device_id = "../etc passwd".into();
        assert_eq!(bad_id.command().unwrap_err().status(), 400);
    }

    #[test]
    fn old_or_future_events_are_replays() {
        let event = parse_envelope(body("device-status-changed", "accepted").as_bytes()).unwrap();
        assert_eq!(event.time, NOW);
        assert!(event.check_fresh(NOW + 900, 900).is_ok());
        // Ahead of the clock by skew at most (issue 18, defect 9), whatever the window.
        assert!(event.check_fresh(NOW - 300, 900).is_ok());
        assert_eq!(
            event.check_fresh(NOW - 301, 900).unwrap_err().code(),
            "Replay"
        );
        assert_eq!(
            event.check_fresh(NOW + 901, 900).unwrap_err().code(),
            "Replay"
        );
    }

    #[test]
    fn bodies_up_to_the_limit_pass_and_an_oversized_encoding_is_refused_before_decoding() {
        // Exactly the limit, plain and base64-encoded (4/3 of it): accepted.
        let limit = "x".repeat(MAX_BODY_BYTES);
        assert_eq!(MAX_BODY_BYTES, 262_144);
        for base64 in [false, true] {
            let read = WebhookRequest::from_event(&request(&limit, json!({}), base64)).unwrap();
            assert_eq!(read.body.len(), MAX_BODY_BYTES, "base64 {base64}");
        }
        // Undecodable text at the encoded limit is decoded (and fails as an encoding); one
        // byte more is refused by its size, without being decoded at all.
        let encoded_limit = MAX_BODY_BYTES * 4 / 3 + 4;
        for (len, expected) in [
            (encoded_limit, WebhookError::BadEncoding),
            (encoded_limit + 1, WebhookError::BodyTooLarge),
        ] {
            let mut event = request("{}", json!({}), true);
            event["body"] = "%".repeat(len).into();
            assert_eq!(WebhookRequest::from_event(&event), Err(expected), "{len}");
        }
    }

    #[test]
    fn every_refusal_has_its_status() {
        let cases = [
            (WebhookError::MethodNotAllowed("GET".into()), 405),
            (WebhookError::BodyTooLarge, 413),
            (WebhookError::BadEncoding, 400),
            (WebhookError::NoSecret, 500),
            (WebhookError::SecretUnavailable, 503),
            (WebhookError::MissingSignature, 401),
            (WebhookError::UnsupportedAlgorithm("x".into()), 401),
            (WebhookError::BadSignature, 401),
            (WebhookError::Malformed("x".into()), 400),
            (WebhookError::UnknownType("x".into()), 400),
            (WebhookError::UnknownStatus("x".into()), 400),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    #[test]
    fn a_secret_needs_sixteen_characters_and_is_never_shown() {
        assert!(WebhookSecret::parse(&"s".repeat(MIN_SECRET_LEN - 1)).is_err());
        assert!(WebhookSecret::parse(&"s".repeat(MIN_SECRET_LEN)).is_ok());
        assert!(WebhookSecret::parse(&"s".repeat(MIN_SECRET_LEN + 1)).is_ok());
        let shown = format!("{:?}", secret());
        assert_eq!(shown, "WebhookSecret(redacted)");
        assert!(!shown.contains(SECRET));
    }

    #[test]
    fn only_a_function_url_request_is_read_as_one() {
        assert!(is_function_url_request(&request("{}", json!({}), false)));
        let eventbridge = json!({"detail-type": "x", "detail": {}, "source": "s"});
        assert!(!is_function_url_request(&eventbridge));
        let mut no_headers = request("{}", json!({}), false);
        no_headers.as_object_mut().unwrap().remove("headers");
        assert!(!is_function_url_request(&no_headers));
        let mut context_not_object = request("{}", json!({}), false);
        context_not_object["requestContext"] = "x".into();
        assert!(!is_function_url_request(&context_not_object));
    }

    #[test]
    fn the_stamp_keeps_the_events_milliseconds() {
        let text = body("device-status-changed", "accepted").replace("08:26:40Z", "08:26:40.123Z");
        let event = parse_envelope(text.as_bytes()).unwrap();
        assert_eq!(event.time, NOW);
        assert_eq!(event.stamp().at_ms, NOW * 1000 + 123);
    }
}
