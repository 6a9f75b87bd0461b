//! `jitr webhook sign`: a Mender webhook signed now, as a Function URL request event, for
//! `cargo lambda invoke --data-file` (the samples are signed for a pinned clock, so the
//! function's replay window refuses them today).

use jitr_lifecycle::webhook::sign;
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
