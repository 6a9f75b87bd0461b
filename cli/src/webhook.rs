//! `jitr webhook sign`: a Mender webhook signed now, as a Function URL request event, for
//! `cargo lambda invoke --data-file` (the samples are signed for a pinned clock, so the
//! function's replay window refuses them today).

use jitr_domain::webhook::WebhookSecret;
use jitr_domain::webhook::{parse_envelope, sign};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::{Failure, line};

/// What to sign: a body from a file (its `time` set to now), or a status change / decommission
/// of one device.
pub enum Body {
    File(std::path::PathBuf),
    Status { device: String, status: String },
    Decommissioned { device: String },
}

pub fn run(secret: Option<String>, body: Body, raw: bool) -> Result<(), Failure> {
    let secret = secret
        .or_else(|| std::env::var("WEBHOOK_SECRET").ok())
        .filter(|s| !s.is_empty())
        .ok_or("give --secret, or set WEBHOOK_SECRET")?;
    // The function's own rule: a secret it would refuse signs nothing.
    WebhookSecret::parse(&secret).map_err(|e| {
        format!("the webhook secret {e}: the lifecycle function refuses a shorter one")
    })?;
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(|e| e.to_string())?;
    let id = format!("jitr-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
    let body = match body {
        Body::File(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut body: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            let object = body
                .as_object_mut()
                .ok_or_else(|| format!("{}: not a JSON object", path.display()))?;
            object.insert("time".into(), json!(now));
            body
        }
        Body::Status { device, status } => json!({"id": id, "type": "device-status-changed",
            "time": now, "data": {"id": device, "status": status}}),
        Body::Decommissioned { device } => json!({"id": id, "type": "device-decommissioned",
            "time": now, "data": {"id": device}}),
    };
    let body = body.to_string();
    refused_by_the_function(&body)?;
    let signature = sign(secret.as_bytes(), body.as_bytes());
    if raw {
        // For curl against a Function URL: the body exactly as signed (no newline: it would be
        // part of what curl --data-binary sends), the header on stderr.
        eprintln!("X-Men-Signature: {signature}");
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(body.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::Message(format!("stdout: {e}")));
    }
    let event = json!({
        "version": "2.0",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-men-algorithm": "MEN-HMAC-SHA256-Payload",
            "x-men-signature": signature,
        },
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1"}, "requestId": id, "timeEpoch": 0},
        "body": body,
        "isBase64Encoded": false,
    });
    line(serde_json::to_string_pretty(&event).map_err(|e| e.to_string())?)
}

/// Why the lifecycle function would refuse this body (its own parser, action table and device-id
/// rule: an unknown `--status`, a body missing a field, an id no Thing can have), before
/// anything is signed.
fn refused_by_the_function(body: &str) -> Result<(), String> {
    parse_envelope(body.as_bytes())
        .and_then(|event| event.action().and(event.command()))
        .map(|_| ())
        .map_err(|e| format!("the lifecycle function would refuse this webhook: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_or_a_status_the_function_refuses_signs_nothing() {
        let status = |status: &str| Body::Status {
            device: "sensor-1".into(),
            status: status.into(),
        };
        let short = run(Some("fifteen-chars!!".into()), status("accepted"), true);
        assert!(
            matches!(&short, Err(Failure::Message(m)) if m.contains("at least 16 characters")),
            "{short:?}"
        );
        let unknown = run(
            Some("a-secret-of-24-characters".into()),
            status("acepted"),
            true,
        );
        assert!(
            matches!(&unknown, Err(Failure::Message(m)) if m.contains("would refuse") && m.contains("acepted")),
            "{unknown:?}"
        );
        assert!(refused_by_the_function(r#"{"id":"1","type":"device-decommissioned","time":"2026-01-01T00:00:00Z","data":{"id":"sensor-1"}}"#).is_ok());
    }
}
