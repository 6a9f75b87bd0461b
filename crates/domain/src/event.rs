//! The certificate-registered event IoT Core publishes on
//! `$aws/events/certificates/registered/<caCertificateId>`.
//!
//! Parsing is lenient (numbers or strings for timestamps, unknown fields ignored) because the
//! publisher has varied over time; validation is strict because the ids end up in API calls.

use serde::Deserialize;
use serde_json::Value;

use crate::error::JitrError;
pub use crate::naming::{is_account_id, is_certificate_id};

/// The status IoT Core gives a just-in-time registered certificate.
pub const PENDING_ACTIVATION: &str = "PENDING_ACTIVATION";

/// The event exactly as it arrives, before validation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    certificate_id: Option<Value>,
    ca_certificate_id: Option<Value>,
    timestamp: Option<Value>,
    certificate_status: Option<Value>,
    aws_account_id: Option<Value>,
    certificate_registration_timestamp: Option<Value>,
}

/// A validated registration event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationEvent {
    /// 64 lowercase hex characters (the SHA-256 of the certificate's DER).
    pub certificate_id: String,
    /// 64 lowercase hex characters.
    pub ca_certificate_id: String,
    /// Milliseconds since the epoch, when IoT Core published the event.
    pub timestamp_ms: i64,
    /// The 12-digit account the certificate was registered in.
    pub account_id: String,
    /// Null on the connect that created the certificate, set on later reconnects.
    pub registration_timestamp_ms: Option<i64>,
}

impl RegistrationEvent {
    /// Parses raw bytes (an invocation payload or an event file).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, JitrError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed("$", e.to_string()))?;
        Self::from_value(&value)
    }

    /// Parses an already-decoded JSON value and validates every field.
    pub fn from_value(value: &Value) -> Result<Self, JitrError> {
        if !value.is_object() {
            return Err(malformed("$", "expected a JSON object".into()));
        }
        let raw: RawEvent =
            serde_json::from_value(value.clone()).map_err(|e| malformed("$", e.to_string()))?;
        let certificate_id = hex_id("certificateId", raw.certificate_id.as_ref())?;
        let ca_certificate_id = hex_id("caCertificateId", raw.ca_certificate_id.as_ref())?;
        let status = required_str("certificateStatus", raw.certificate_status.as_ref())?;
        if status != PENDING_ACTIVATION {
            return Err(malformed(
                "certificateStatus",
                format!("expected {PENDING_ACTIVATION}, got {}", escape(status)),
            ));
        }
        let account_id = required_str("awsAccountId", raw.aws_account_id.as_ref())?;
        if !is_account_id(account_id) {
            return Err(malformed(
                "awsAccountId",
                format!("expected 12 digits, got {}", escape(account_id)),
            ));
        }
        let timestamp_ms = millis("timestamp", raw.timestamp.as_ref())?
            .ok_or_else(|| malformed("timestamp", "missing".into()))?;
        let registration_timestamp_ms = millis(
            "certificateRegistrationTimestamp",
            raw.certificate_registration_timestamp.as_ref(),
        )?;
        Ok(Self {
            certificate_id,
            ca_certificate_id,
            timestamp_ms,
            account_id: account_id.to_owned(),
            registration_timestamp_ms,
        })
    }

    /// Refuses an event for another account than the function's own.
    pub fn check_account(&self, function_account: &str) -> Result<(), JitrError> {
        if self.account_id == function_account {
            Ok(())
        } else {
            Err(JitrError::WrongAccount {
                event_account: self.account_id.clone(),
                function_account: function_account.to_owned(),
            })
        }
    }
}

/// The account id (fifth field) of a Lambda function ARN
/// `arn:aws:lambda:<region>:<account>:function:<name>[:alias]`.
pub fn account_from_function_arn(arn: &str) -> Result<&str, JitrError> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.nth(3)) {
        (Some("arn"), Some(account)) if is_account_id(account) => Ok(account),
        _ => Err(malformed(
            "invokedFunctionArn",
            format!("no account id in {}", escape(arn)),
        )),
    }
}

/// The account this function runs in: the invoked ARN's, which `expected` (`EXPECTED_ACCOUNT_ID`)
/// must equal when set. A local runtime (`cargo lambda invoke` sends the ARN `function-arn`)
/// names no account: only then does `expected` stand in for it, and without it the event is
/// refused, naming the variable. The account check itself is never skipped.
pub fn function_account(arn: &str, expected: Option<&str>) -> Result<String, JitrError> {
    match (account_from_function_arn(arn), expected) {
        (Ok(account), None) => Ok(account.to_owned()),
        (Ok(account), Some(expected)) if account == expected => Ok(account.to_owned()),
        (Ok(account), Some(expected)) => Err(malformed(
            "invokedFunctionArn",
            format!("account {account} is not EXPECTED_ACCOUNT_ID {expected}"),
        )),
        (Err(_), Some(expected)) => Ok(expected.to_owned()),
        (Err(_), None) => Err(malformed(
            "invokedFunctionArn",
            format!(
                "no account id in {}; a local runtime (cargo lambda) names none: set EXPECTED_ACCOUNT_ID",
                escape(arn)
            ),
        )),
    }
}

/// Escapes a hostile value for a message or a log line and bounds its length.
/// `s` with its control characters escaped (`\n`, `\u{1b}`), for text shown to an operator
/// that a sender or a stored record supplied: no row forged by a newline, no terminal escape.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().collect()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

pub fn escape(s: &str) -> String {
    const LIMIT: usize = 80;
    let mut out: String = s.chars().take(LIMIT).flat_map(char::escape_debug).collect();
    if s.chars().count() > LIMIT {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn malformed(field: &'static str, problem: String) -> JitrError {
    JitrError::MalformedEvent { field, problem }
}

fn required_str<'a>(field: &'static str, value: Option<&'a Value>) -> Result<&'a str, JitrError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(malformed(field, "missing".into())),
        Some(other) => Err(malformed(
            field,
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
}

fn hex_id(field: &'static str, value: Option<&Value>) -> Result<String, JitrError> {
    let s = required_str(field, value)?;
    if is_certificate_id(s) {
        Ok(s.to_owned())
    } else {
        Err(malformed(
            field,
            format!("expected 64 lowercase hex characters, got {}", escape(s)),
        ))
    }
}

/// Milliseconds from a number or a numeric string; `None` when absent or null.
fn millis(field: &'static str, value: Option<&Value>) -> Result<Option<i64>, JitrError> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(other) => {
            return Err(malformed(
                field,
                format!("expected milliseconds, got {}", kind_of(other)),
            ));
        }
    };
    match parsed {
        Some(ms) if ms >= 0 => Ok(Some(ms)),
        _ => Err(malformed(
            field,
            "expected non-negative integer milliseconds".into(),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("stolen, état 2"), "stolen, état 2");
        assert_eq!(printable("ok\n2026 forged"), "ok\\n2026 forged");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
    }
    use serde_json::json;

    const CERT: &str = "7a1fd6b5c6b6e0bc32e40f26c5ee7e5c8c1a1ac6b0b1f0f4e5ad6d5f3c2b1a09";
    const CA: &str = "0bb6e39cbc3a3d2f4ef5ff4b7d4c9ef1c0ad4fe7c2a8b1b2c3d4e5f60718293a";

    fn base() -> Value {
        json!({"certificateId": CERT, "caCertificateId": CA, "timestamp": 1_700_000_000_000_i64,
               "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
               "certificateRegistrationTimestamp": null})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    fn without(field: &str) -> Value {
        let mut v = base();
        v.as_object_mut().map(|o| o.remove(field));
        v
    }

    #[test]
    fn accepts_the_documented_shapes() {
        let cases = [
            ("number timestamp", base(), 1_700_000_000_000, None),
            (
                "string timestamp",
                with("timestamp", json!("1700000000001")),
                1_700_000_000_001,
                None,
            ),
            (
                "string registration timestamp",
                with("certificateRegistrationTimestamp", json!("1699999999000")),
                1_700_000_000_000,
                Some(1_699_999_999_000),
            ),
            (
                "extra fields",
                with("sourceIp", json!("10.0.0.1")),
                1_700_000_000_000,
                None,
            ),
            (
                "absent registration timestamp",
                without("certificateRegistrationTimestamp"),
                1_700_000_000_000,
                None,
            ),
        ];
        for (name, value, ts, reg) in cases {
            let event =
                RegistrationEvent::from_value(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(event.certificate_id, CERT, "{name}");
            assert_eq!(event.ca_certificate_id, CA, "{name}");
            assert_eq!(event.account_id, "123456789012", "{name}");
            assert_eq!(event.timestamp_ms, ts, "{name}");
            assert_eq!(event.registration_timestamp_ms, reg, "{name}");
        }
    }

    #[test]
    fn rejects_malformed_fields_naming_the_field() {
        let cases = [
            (without("certificateId"), "certificateId"),
            (
                with("certificateId", json!(CERT.to_uppercase())),
                "certificateId",
            ),
            (with("certificateId", json!(&CERT[..63])), "certificateId"),
            (
                with("certificateId", json!(format!("{}g", &CERT[..63]))),
                "certificateId",
            ),
            (with("certificateId", json!(42)), "certificateId"),
            (
                with("caCertificateId", json!("../../etc/passwd")),
                "caCertificateId",
            ),
            (
                with("certificateStatus", json!("ACTIVE")),
                "certificateStatus",
            ),
            (without("certificateStatus"), "certificateStatus"),
            (with("awsAccountId", json!("12345678901")), "awsAccountId"),
            (with("awsAccountId", json!("12345678901a")), "awsAccountId"),
            (
                with("awsAccountId", json!(123456789012_i64)),
                "awsAccountId",
            ),
            (without("timestamp"), "timestamp"),
            (with("timestamp", json!("yesterday")), "timestamp"),
            (with("timestamp", json!(-1)), "timestamp"),
            (with("timestamp", json!(1.5)), "timestamp"),
            (
                with("certificateRegistrationTimestamp", json!(true)),
                "certificateRegistrationTimestamp",
            ),
            (json!([1, 2]), "$"),
            (json!("text"), "$"),
        ];
        for (value, field) in cases {
            match RegistrationEvent::from_value(&value) {
                Err(JitrError::MalformedEvent { field: got, .. }) => {
                    assert_eq!(got, field, "{value}")
                }
                other => panic!("{value}: expected MalformedEvent on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_bytes_that_are_not_json() {
        let err = RegistrationEvent::from_slice(b"{\"certificateId\": ").unwrap_err();
        assert_eq!(err.error_type(), "Permanent.MalformedEvent");
    }

    #[test]
    fn account_comes_from_the_function_arn() {
        assert_eq!(
            account_from_function_arn(
                "arn:aws:lambda:eu-west-1:123456789012:function:registration"
            )
            .ok(),
            Some("123456789012")
        );
        assert_eq!(
            account_from_function_arn("arn:aws:lambda:eu-west-1:123456789012:function:f:live").ok(),
            Some("123456789012")
        );
        assert!(account_from_function_arn("").is_err());
        assert!(account_from_function_arn("arn:aws:lambda:eu-west-1:12345:function:f").is_err());
        assert!(account_from_function_arn("not-an-arn").is_err());
    }

    #[test]
    fn wrong_account_is_permanent() {
        let event = RegistrationEvent::from_value(&base()).unwrap();
        assert!(event.check_account("123456789012").is_ok());
        let err = event.check_account("210987654321").unwrap_err();
        assert_eq!(err.error_type(), "Permanent.WrongAccount");
    }

    #[test]
    fn the_functions_account_comes_from_its_arn_or_for_local_runs_from_the_variable() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:registration";
        let cases = [
            (arn, None, Ok("123456789012")),
            (arn, Some("123456789012"), Ok("123456789012")),
            (
                arn,
                Some("210987654321"),
                Err("EXPECTED_ACCOUNT_ID 210987654321"),
            ),
            ("function-arn", Some("123456789012"), Ok("123456789012")),
            ("function-arn", None, Err("set EXPECTED_ACCOUNT_ID")),
        ];
        for (arn, expected, want) in cases {
            match (function_account(arn, expected), want) {
                (Ok(account), Ok(want)) => assert_eq!(account, want),
                (Err(err), Err(want)) => {
                    assert_eq!(err.error_type(), "Permanent.MalformedEvent");
                    assert!(err.to_string().contains(want), "{err}");
                }
                (got, want) => panic!("{arn} {expected:?}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn escape_bounds_and_quotes_hostile_values() {
        assert_eq!(escape("a\"b\n"), "\"a\\\"b\\n\"");
        assert!(escape(&"x".repeat(500)).chars().count() < 90);
    }
}
