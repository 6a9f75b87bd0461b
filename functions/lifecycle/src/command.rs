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

use jitr_core::JitrError;
use jitr_core::event::escape;
use jitr_core::ledger::EventStamp;
use jitr_core::naming::is_valid_thing_name;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What to do with a device's certificates and Thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// The longest `eventId` kept.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// An RFC 3339 time as milliseconds since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()
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
    ///
    /// Read by hand rather than with a serde derive and `deny_unknown_fields`: serde would refuse
    /// the same inputs, but its type errors name no field ("invalid type: integer, expected a
    /// string"), the pairing rule of eventId/eventTime and the bounds would still be checked
    /// here, and the derived deserializer would spend bytes of a bootstrap at its size budget.
    pub fn from_value(value: &Value) -> Result<Self, JitrError> {
        const FIELDS: [&str; 5] = ["deviceId", "action", "reason", "eventId", "eventTime"];
        let object = value
            .as_object()
            .ok_or_else(|| malformed("$", "expected a JSON object".into()))?;
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(malformed("$", format!("unknown field {}", escape(unknown))));
        }
        let device_id = object
            .get("deviceId")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("deviceId", "required, a string".into()))?;
        let action = match object.get("action").and_then(Value::as_str) {
            Some(name) => Action::parse(name).ok_or_else(|| {
                malformed(
                    "action",
                    format!(
                        "{} is not activate, deactivate, revoke or decommission",
                        escape(name)
                    ),
                )
            })?,
            None => return Err(malformed("action", "required, a string".into())),
        };
        let reason = match object.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) => Some(reason.clone()),
            Some(_) => return Err(malformed("reason", "expected a string".into())),
        };
        let stamp = match (object.get("eventId"), object.get("eventTime")) {
            (None, None) => None,
            (Some(Value::String(id)), Some(Value::String(time))) => {
                if id.is_empty() || id.chars().count() > MAX_EVENT_ID_LEN {
                    return Err(malformed(
                        "eventId",
                        format!("1 to {MAX_EVENT_ID_LEN} characters"),
                    ));
                }
                let at_ms = rfc3339_ms(time).ok_or_else(|| {
                    malformed("eventTime", format!("{} is not RFC 3339", escape(time)))
                })?;
                Some(EventStamp {
                    at_ms,
                    id: id.clone(),
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(malformed(
                    "eventId",
                    "eventId and eventTime come together".into(),
                ));
            }
            _ => {
                return Err(malformed(
                    "eventId",
                    "eventId and eventTime are strings".into(),
                ));
            }
        };
        let mut command = Self::new(device_id, action, reason)?;
        command.stamp = stamp;
        Ok(command)
    }

    fn validate(&self) -> Result<(), JitrError> {
        if !is_valid_thing_name(&self.device_id) {
            return Err(malformed(
                "deviceId",
                format!("{} is not a valid thing name", escape(&self.device_id)),
            ));
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_LEN)
        {
            return Err(malformed(
                "reason",
                format!("longer than {MAX_REASON_LEN} characters"),
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
                json!({"deviceId": "bad/name", "action": "revoke"}),
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
