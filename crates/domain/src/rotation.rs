//! Certificate rotation: what happens to a device's other certificates once a new one is ACTIVE
//! (`ROTATION_POLICY`, or a profile's `rotation`), and the rule that refuses an older
//! certificate after a newer one was admitted.

use std::str::FromStr;

use crate::ledger::DeviceRecord;

/// What to do with the certificates a device held before the one just activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RotationPolicy {
    /// Leave them as they are.
    Keep,
    /// ACTIVE ones become INACTIVE (an operator can still re-activate one).
    #[default]
    DeactivatePrevious,
    /// They become REVOKED, for good.
    RevokePrevious,
}

impl RotationPolicy {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::DeactivatePrevious => "deactivate-previous",
            Self::RevokePrevious => "revoke-previous",
        }
    }
}

impl FromStr for RotationPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Keep, Self::DeactivatePrevious, Self::RevokePrevious]
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| {
                format!("expected keep, deactivate-previous or revoke-previous, got {s:?}")
            })
    }
}

/// Whether `certificate_id` (valid from `not_before`) is older than what the device already
/// moved on to: a certificate rotation set aside, or one with an earlier notBefore than the
/// latest admitted. A stolen old certificate must not push the current one out.
pub fn is_superseded(device: &DeviceRecord, certificate_id: &str, not_before: i64) -> bool {
    if device.retired.contains(certificate_id) {
        return true;
    }
    device.latest.as_ref().is_some_and(|latest| {
        latest.certificate_id != certificate_id && not_before < latest.not_before
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LatestCertificate;

    #[test]
    fn policies_parse_in_their_configuration_spelling() {
        for policy in [
            RotationPolicy::Keep,
            RotationPolicy::DeactivatePrevious,
            RotationPolicy::RevokePrevious,
        ] {
            assert_eq!(policy.as_str().parse::<RotationPolicy>(), Ok(policy));
        }
        assert!("revoke".parse::<RotationPolicy>().is_err());
        assert_eq!(
            RotationPolicy::default(),
            RotationPolicy::DeactivatePrevious
        );
    }

    #[test]
    fn only_an_older_certificate_is_superseded() {
        let device = DeviceRecord {
            latest: Some(LatestCertificate {
                certificate_id: "new".into(),
                not_before: 1_000,
            }),
            retired: ["retired".to_owned()].into(),
            ..DeviceRecord::default()
        };
        let cases = [
            ("older", 999, true),
            ("same-time", 1_000, false),
            ("newer", 1_001, false),
            ("new", 1_000, false),
            ("retired", 5_000, true),
        ];
        for (id, not_before, superseded) in cases {
            assert_eq!(is_superseded(&device, id, not_before), superseded, "{id}");
        }
        assert!(!is_superseded(&DeviceRecord::default(), "any", 0));
    }
}
