//! The neutral device command any system can send (direct invoke, EventBridge `detail`, or an
//! SQS message body), and the action every input is reduced to.
//!
//! Schema (strict; unknown fields are refused so a typo cannot silently do nothing):
//! `{"deviceId": "<thing name>", "action": "activate"|"deactivate"|"revoke"|"decommission",
//!   "reason": "<optional, ≤ 1024 chars>", "eventId": "<optional>", "eventTime": "<optional, RFC 3339>"}`
//!
//! `eventId` and `eventTime` (both or neither) are the sender's stamp: the device ledger applies
//! a command only if it is newer than the last one applied to the device. Without them the
//! envelope's stamp is used (SQS message id and send time, EventBridge id and time), or, for a
//! direct invoke, the time it arrived.

use crate::JitrError;
use crate::event::escape;
use crate::ledger::{EventStamp, MAX_EVENT_ID_LEN, is_printable, is_printable_id};
use crate::naming::{MAX_DEVICE_ID_LEN, is_valid_device_id};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What to do with a device's certificates and Thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// INACTIVE certificates become ACTIVE (never a REVOKED one; PENDING is registration's).
    Activate,
    /// ACTIVE certificates become INACTIVE.
    Deactivate,
    /// Every certificate becomes REVOKED.
    Revoke,
    /// Certificates detached, deactivated and deleted; then the Thing is deleted.
    Decommission,
}

impl Action {
    /// Every action, in the order the schema lists them.
    pub const ALL: [Action; 4] = [
        Self::Activate,
        Self::Deactivate,
        Self::Revoke,
        Self::Decommission,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::Revoke => "revoke",
            Self::Decommission => "decommission",
        }
    }
}

/// The longest `reason` kept.
pub const MAX_REASON_LEN: usize = 1024;

/// An RFC 3339 time as milliseconds since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The neutral command as sent (the schema above, unknown fields refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NeutralCommand {
    device_id: Option<String>,
    action: Option<Action>,
    reason: Option<String>,
    event_id: Option<String>,
    event_time: Option<String>,
}

impl NeutralCommand {
    const FIELDS: [&str; 5] = ["deviceId", "action", "reason", "eventId", "eventTime"];
}

/// A validated command for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    pub device_id: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sender's stamp (`eventId`, `eventTime`), when it gave one.
    #[serde(skip)]
    pub stamp: Option<EventStamp>,
}

impl DeviceCommand {
    pub fn new(device_id: &str, action: Action, reason: Option<String>) -> Result<Self, JitrError> {
        let command = Self {
            device_id: device_id.to_owned(),
            action,
            reason,
            stamp: None,
        };
        command.validate()?;
        Ok(command)
    }

    /// Parses and validates the neutral JSON form; errors name the field.
    pub fn from_value(value: &Value) -> Result<Self, JitrError> {
        // serde refuses unknown fields and wrong types, and `serde_path_to_error` (already in
        // every bootstrap through lambda_runtime) says at which field. Every field is optional
        // to serde, so a missing one is named here too rather than reported at the root.
        let sent: NeutralCommand = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = NeutralCommand::FIELDS
                .into_iter()
                .find(|f| *f == path)
                .unwrap_or("$");
            malformed(field, escape(&e.inner().to_string()))
        })?;
        let device_id = sent
            .device_id
            .ok_or_else(|| malformed("deviceId", "required, a string".into()))?;
        let action = sent
            .action
            .ok_or_else(|| malformed("action", "required, a string".into()))?;
        let stamp = match (sent.event_id, sent.event_time) {
            (None, None) => None,
            (Some(id), Some(time)) => {
                if !is_printable_id(&id) {
                    return Err(malformed(
                        "eventId",
                        format!("1 to {MAX_EVENT_ID_LEN} characters, none a control character"),
                    ));
                }
                let at_ms = rfc3339_ms(&time).ok_or_else(|| {
                    malformed("eventTime", format!("{} is not RFC 3339", escape(&time)))
                })?;
                Some(EventStamp { at_ms, id })
            }
            _ => {
                return Err(malformed(
                    "eventId",
                    "eventId and eventTime come together".into(),
                ));
            }
        };
        let mut command = Self::new(&device_id, action, sent.reason)?;
        command.stamp = stamp;
        Ok(command)
    }

    fn validate(&self) -> Result<(), JitrError> {
        // The one id alphabet registration admits (invariant 7); whether the id must also be
        // a Thing name depends on DEVICE_ID_ATTRIBUTE (`Lifecycle::apply`).
        if !is_valid_device_id(&self.device_id) {
            return Err(malformed(
                "deviceId",
                format!(
                    "{} is not a device id (1 to {MAX_DEVICE_ID_LEN} of a-z A-Z 0-9 _ . , @ / : # = [ ] -)",
                    escape(&self.device_id)
                ),
            ));
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_LEN || !is_printable(r))
        {
            return Err(malformed(
                "reason",
                format!("at most {MAX_REASON_LEN} characters, none a control character"),
            ));
        }
        Ok(())
    }
}

fn malformed(field: &'static str, problem: String) -> JitrError {
    JitrError::MalformedEvent { field, problem }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_schema() {
        let command = DeviceCommand::from_value(
            &json!({"deviceId": "sensor-1", "action": "revoke", "reason": "stolen"}),
        )
        .unwrap();
        assert_eq!(
            command,
            DeviceCommand {
                device_id: "sensor-1".into(),
                action: Action::Revoke,
                reason: Some("stolen".into()),
                stamp: None,
            }
        );
        let stamped = DeviceCommand::from_value(&json!({"deviceId": "sensor-1",
            "action": "deactivate", "eventId": "e-7", "eventTime": "2026-01-02T03:04:05.678Z"}))
        .unwrap();
        assert_eq!(
            stamped.stamp,
            Some(EventStamp {
                at_ms: 1_767_323_045_678,
                id: "e-7".into()
            })
        );
        for action in ["activate", "deactivate", "revoke", "decommission"] {
            let command =
                DeviceCommand::from_value(&json!({"deviceId": "d", "action": action})).unwrap();
            assert_eq!(command.action.as_str(), action);
        }
    }

    #[test]
    fn refuses_anything_else_naming_the_field() {
        let cases = [
            (json!({"action": "revoke"}), "deviceId"),
            (
                json!({"deviceId": "bad name", "action": "revoke"}),
                "deviceId",
            ),
            (
                json!({"deviceId": "x".repeat(129), "action": "revoke"}),
                "deviceId",
            ),
            (json!({"deviceId": 7, "action": "revoke"}), "deviceId"),
            (json!({"deviceId": "d", "action": "delete"}), "action"),
            (
                json!({"deviceId": "d", "action": "revoke", "reason": 5}),
                "reason",
            ),
            (json!({"deviceId": "d"}), "action"),
            (
                json!({"deviceId": "d", "action": "revoke", "reason": "x".repeat(1025)}),
                "reason",
            ),
            (
                json!({"deviceId": "d", "action": "revoke", "actoin": "typo"}),
                "$",
            ),
            (json!([1]), "$"),
            (
                json!({"deviceId": "d", "action": "revoke", "eventId": "e"}),
                "eventId",
            ),
            (
                json!({"deviceId": "d", "action": "revoke", "eventId": "e", "eventTime": "today"}),
                "eventTime",
            ),
            (
                json!({"deviceId": "d", "action": "revoke", "eventId": "", "eventTime": "2026-01-02T03:04:05Z"}),
                "eventId",
            ),
            // Issue 18, defect 9: control characters would be stored and printed as they are
            // (a forged history row, a terminal escape).
            (
                json!({"deviceId": "d", "action": "revoke", "reason": "ok\n2026-01-01  forged row"}),
                "reason",
            ),
            (
                json!({"deviceId": "d", "action": "revoke", "reason": "\u{1b}[2J"}),
                "reason",
            ),
            (
                json!({"deviceId": "d", "action": "revoke", "eventId": "e\r1", "eventTime": "2026-01-02T03:04:05Z"}),
                "eventId",
            ),
        ];
        for (value, field) in cases {
            match DeviceCommand::from_value(&value) {
                Err(JitrError::MalformedEvent { field: got, .. }) => {
                    assert_eq!(got, field, "{value}")
                }
                other => panic!("{value}: {other:?}"),
            }
        }
    }
}
