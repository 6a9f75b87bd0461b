//! The device side of the ledger: what the device-management system decided about a device, in
//! which order, which certificates the device has held, and the history of decisions.
//!
//! The ordering rule: a lifecycle event is applied only if its stamp (time, then id to break
//! ties) is newer than the last one recorded for the device. The same event again is "unfinished"
//! until the lifecycle function marks it applied, so a retry after a partial failure completes
//! it; once applied, a repeat (a replayed webhook, a redelivery) is stale and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Text a sender gave that is stored and shown (event ids, reasons): no control characters, so
/// nothing printed from the ledger can forge a row or drive a terminal.
pub fn is_printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// An event id: 1 to [`MAX_EVENT_ID_LEN`] printable characters.
pub fn is_printable_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_EVENT_ID_LEN && is_printable(id)
}

/// The ledger key of a device known by its device-management id: `<attribute>=<id>`. `=` is not
/// allowed in a Thing name, so such a key never collides with a device keyed by its Thing.
pub fn id_key(attribute: &str, id: &str) -> String {
    format!("{attribute}={id}")
}

/// The ledger key of the device a Thing is: its device-management id when `id_attribute`
/// (`DEVICE_ID_ATTRIBUTE`) is set and the Thing carries it, else the Thing's name. Both functions
/// key by the same rule, so a decision sent by id meets the certificates registered by name.
pub fn device_key(
    thing_name: &str,
    attributes: &BTreeMap<String, String>,
    id_attribute: Option<&str>,
) -> String {
    match id_attribute.and_then(|a| attributes.get(a).map(|id| (a, id))) {
        Some((attribute, id)) => id_key(attribute, id),
        None => thing_name.to_owned(),
    }
}

/// The device-management system's standing decision about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Accepted: its genuine certificates are admitted.
    Allowed,
    /// Rejected (deactivate or revoke): no certificate of it is admitted or left ACTIVE.
    Denied,
    /// Decommissioned: torn down, and no certificate of it is admitted again.
    Decommissioned,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Allowed, Self::Denied, Self::Decommissioned]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// When a lifecycle event happened and its id; ordered by time, then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStamp {
    /// Milliseconds since the epoch, as the sender stamped the event.
    pub at_ms: i64,
    pub id: String,
}

/// How old a sender's stamp may be: SQS keeps a message at most 14 days, so a queued command
/// is never older; anything older is a forged or broken stamp.
pub const MAX_STAMP_AGE_SECS: i64 = 14 * 86_400;

/// How far ahead of this function's clock a sender's stamp may be: clock skew, no more. A stamp
/// further ahead would make every later decision about the device stale.
pub const MAX_STAMP_SKEW_SECS: i64 = 300;

/// The longest event id kept.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// Why a sender's stamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("more than {MAX_STAMP_AGE_SECS} s in the past")]
    TooOld,
    #[error("more than {MAX_STAMP_SKEW_SECS} s in the future")]
    InFuture,
    #[error("1 to {MAX_EVENT_ID_LEN} printable characters")]
    BadId,
}

impl EventStamp {
    /// Whether a sender's stamp may order decisions at `now_ms`: its time within
    /// [now − 14 days, now + 5 minutes] and its id printable (invariant 9).
    pub fn check(&self, now_ms: i64) -> Result<(), StampError> {
        if now_ms.saturating_sub(self.at_ms) > MAX_STAMP_AGE_SECS * 1000 {
            return Err(StampError::TooOld);
        }
        if self.at_ms.saturating_sub(now_ms) > MAX_STAMP_SKEW_SECS * 1000 {
            return Err(StampError::InFuture);
        }
        if !is_printable_id(&self.id) {
            return Err(StampError::BadId);
        }
        Ok(())
    }

    /// The stamp of a command that brought none, nor an envelope with one: when it arrived, with
    /// a per-process sequence number so two arrivals in the same millisecond stay ordered, after
    /// a random per-process tag so two containers' arrivals are never taken for one event.
    /// `now_ms`: the arrival time (milliseconds since the epoch), read by the caller.
    pub fn arrival(now_ms: i64) -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        static PROCESS: OnceLock<u64> = OnceLock::new();
        // std's hasher keys are random per process: a tag without another crate.
        let process = *PROCESS.get_or_init(|| RandomState::new().build_hasher().finish());
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        Self {
            at_ms: now_ms,
            id: format!("arrival:{process:016x}:{sequence:020}"),
        }
    }
}

/// A lifecycle decision as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDecision {
    pub state: DeviceState,
    /// The lifecycle action (`activate`, `deactivate`, `revoke`, `decommission`).
    pub action: String,
    pub event: EventStamp,
}

/// The newest certificate admitted for a device (by notBefore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestCertificate {
    pub certificate_id: String,
    /// Seconds since the epoch.
    pub not_before: i64,
}

/// Everything the ledger knows about one device (one Thing name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub thing_name: String,
    /// The last recorded lifecycle decision; `None` when the device-management side never spoke.
    pub decision: Option<DeviceDecision>,
    /// The id of the last decision the lifecycle function finished applying.
    pub applied_event_id: Option<String>,
    /// Its time: an id alone does not name an event a sender may reuse the id of.
    pub applied_event_at: Option<i64>,
    /// Every certificate the device has held (admitted by registration or found by lifecycle).
    pub certificates: BTreeSet<String>,
    /// Certificates a rotation set aside: never re-activated by an `activate`.
    pub retired: BTreeSet<String>,
    /// Certificates registration refused because of the device's standing (denied,
    /// decommissioned), never provisioned: an `activate` deletes them so the device's next
    /// connect registers them again through JITR.
    pub refused: BTreeSet<String>,
    pub latest: Option<LatestCertificate>,
}

impl DeviceRecord {
    /// The standing state; a device nobody decided about is neither allowed nor denied.
    pub fn state(&self) -> Option<DeviceState> {
        self.decision.as_ref().map(|d| d.state)
    }

    /// Whether `event` is the recorded decision and it was applied to the end.
    pub fn applied(&self, event: &EventStamp) -> bool {
        self.decision.as_ref().is_some_and(|d| d.event == *event)
            && self.applied_event_id.as_deref() == Some(event.id.as_str())
            && self.applied_event_at == Some(event.at_ms)
    }
}

/// What recording a decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Newer than anything recorded: it is now the device's decision.
    New(DeviceRecord),
    /// The same event was recorded before but not finished: apply it again.
    Unfinished(DeviceRecord),
    /// Older than, or the same as, a decision already applied: change nothing.
    Stale(DeviceRecord),
    /// No ledger is configured: nothing is ordered or remembered.
    NotKept,
}

/// Certificates to add to a device's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub held: Vec<String>,
    pub retired: Vec<String>,
    pub refused: Vec<String>,
    /// Becomes the device's latest unless a newer one is already recorded.
    pub latest: Option<LatestCertificate>,
}

/// One line of a device's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// `registration`, or `lifecycle:<input>` (`webhook`, `sqs`, `direct`).
    pub source: String,
    /// The outcome or action (`Activated`, `Rejected`, `deactivate`, ...).
    pub what: String,
    pub certificate_id: Option<String>,
    /// A reason code or the sender's reason.
    pub reason: Option<String>,
    /// The lifecycle event id, for lifecycle entries.
    pub event_id: Option<String>,
}

impl HistoryEntry {
    /// The entry's sort key within the device: time order, and the same entry written twice (a
    /// retry) lands on the same key.
    pub fn sort_key(&self) -> String {
        let subject = self
            .event_id
            .as_deref()
            .or(self.certificate_id.as_deref())
            .unwrap_or("-");
        format!(
            "HISTORY#{:013}#{}#{}#{}",
            self.at_ms, self.source, self.what, subject
        )
    }
}

/// The partition key of a device's items (`device` is its key: see [`device_key`]).
pub fn device_pk(device: &str) -> String {
    format!("DEVICE#{device}")
}

/// The sort key of a device's record.
pub const STATE_KEY: &str = "STATE";

/// Whether `decision` may replace what `record` holds, per the ordering rule.
pub fn judge(record: Option<&DeviceRecord>, decision: &DeviceDecision) -> Recorded {
    let current = record.cloned().unwrap_or_default();
    match current.decision.as_ref().map(|d| &d.event) {
        None => Recorded::New(current),
        Some(recorded) if decision.event > *recorded => Recorded::New(current),
        Some(recorded) if *recorded == decision.event && !current.applied(&decision.event) => {
            Recorded::Unfinished(current)
        }
        Some(_) => Recorded::Stale(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(at_ms: i64, id: &str) -> EventStamp {
        EventStamp {
            at_ms,
            id: id.into(),
        }
    }

    fn decision(at_ms: i64, id: &str) -> DeviceDecision {
        DeviceDecision {
            state: DeviceState::Denied,
            action: "deactivate".into(),
            event: stamp(at_ms, id),
        }
    }

    fn record(at_ms: i64, id: &str, applied: bool) -> DeviceRecord {
        DeviceRecord {
            thing_name: "d".into(),
            decision: Some(decision(at_ms, id)),
            applied_event_id: applied.then(|| id.to_owned()),
            applied_event_at: applied.then_some(at_ms),
            ..DeviceRecord::default()
        }
    }

    #[test]
    fn only_a_newer_event_or_an_unfinished_repeat_is_applied() {
        let cases = [
            (None, decision(100, "a"), "New"),
            (Some(record(100, "a", true)), decision(200, "b"), "New"),
            (Some(record(100, "a", true)), decision(100, "b"), "New"),
            (Some(record(100, "b", true)), decision(100, "a"), "Stale"),
            (Some(record(200, "b", true)), decision(100, "a"), "Stale"),
            (Some(record(100, "a", true)), decision(100, "a"), "Stale"),
            (
                Some(record(100, "a", false)),
                decision(100, "a"),
                "Unfinished",
            ),
            (Some(record(200, "b", false)), decision(100, "a"), "Stale"),
        ];
        for (current, incoming, expected) in cases {
            let got = match judge(current.as_ref(), &incoming) {
                Recorded::New(_) => "New",
                Recorded::Unfinished(_) => "Unfinished",
                Recorded::Stale(_) => "Stale",
                Recorded::NotKept => "NotKept",
            };
            assert_eq!(got, expected, "{current:?} then {incoming:?}");
        }
    }

    /// Issue 18, defect 4: ids carry `#`, `=`, `/` and `[`, yet no id's key can be another
    /// device's: a Thing-name key has no `=`, every id key starts `<attribute>=` (one attribute
    /// per deployment), so the rest is the id itself, and the partition key only prefixes it.
    #[test]
    fn ids_with_key_characters_cannot_forge_another_key() {
        let ids = ["a", "a=b", "a#b", "menderId=a", "#", "=", "a/b", "[x]"];
        let things = ["a", "menderId", "DEVICE", "STATE"];
        let mut keys: Vec<String> = ids.iter().map(|id| id_key("menderId", id)).collect();
        keys.extend(things.iter().map(|t| (*t).to_owned()));
        let partitions: BTreeSet<String> = keys.iter().map(|k| device_pk(k)).collect();
        assert_eq!(partitions.len(), ids.len() + things.len(), "{keys:?}");
    }

    #[test]
    fn arrivals_are_ordered_even_within_a_millisecond() {
        let stamps: Vec<EventStamp> = (0..100)
            .map(|_| EventStamp::arrival(1_700_000_000_000))
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn history_keys_sort_by_time() {
        let entry = |at_ms| HistoryEntry {
            at_ms,
            source: "registration".into(),
            what: "Activated".into(),
            certificate_id: Some("c".into()),
            reason: None,
            event_id: None,
        };
        assert!(entry(9_000).sort_key() < entry(10_000).sort_key());
        assert_eq!(entry(5).sort_key(), entry(5).sort_key());
    }

    #[test]
    fn states_round_trip() {
        for state in [
            DeviceState::Allowed,
            DeviceState::Denied,
            DeviceState::Decommissioned,
        ] {
            assert_eq!(DeviceState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DeviceState::parse("maybe"), None);
    }
}
