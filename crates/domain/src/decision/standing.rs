//! What the device ledger says about a plan: device management's decision stands over the
//! certificate's merits, and an older certificate than the device's latest is refused.

use crate::ledger::{DeviceRecord, DeviceState};
use crate::rotation::is_superseded;

use super::{Decision, ProvisionPlan, RejectReason, RevokeReason};

/// What the device ledger says about a plan: `None` lets it go ahead; otherwise the decision
/// that replaces it. The device-management side's decision stands over the certificate's merits:
/// decommissioned or revoked → REVOKED, deactivated → INACTIVE (what the lifecycle function did
/// to the device's other certificates); and an older certificate than the device's latest is
/// refused. A device the ledger does not know, or that was allowed, goes ahead.
pub fn standing(plan: &ProvisionPlan, device: Option<&DeviceRecord>) -> Option<Decision> {
    let device = device?;
    let revoked = device
        .decision
        .as_ref()
        .is_some_and(|d| d.action == "revoke");
    match device.state() {
        Some(DeviceState::Decommissioned) => Some(Decision::Revoke {
            reason: RevokeReason::Decommissioned,
        }),
        Some(DeviceState::Denied) if revoked => Some(Decision::Revoke {
            reason: RevokeReason::DeviceRevoked,
        }),
        Some(DeviceState::Denied) => Some(Decision::Reject {
            reason: RejectReason::DeviceDenied,
        }),
        Some(DeviceState::Allowed) | None => {
            is_superseded(device, &plan.certificate_id, plan.not_before).then_some(
                Decision::Reject {
                    reason: RejectReason::Superseded,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::decision::world::{Tweak, run, world};
    use crate::registry::CertificateStatus;
    use jitr_pki::DeviceSpec;

    #[test]
    fn the_device_managements_decision_stands_over_the_certificate() {
        use crate::ledger::{DeviceDecision, EventStamp, LatestCertificate};
        let w = world();
        let device = w.ca.issue(&DeviceSpec::named("sensor-9")).unwrap();
        let policy = Config::with_policy("p");
        let plan = match run(
            &w,
            &device,
            CertificateStatus::PendingActivation,
            &policy,
            Tweak::default(),
        ) {
            Ok(Decision::Provision(plan)) => *plan,
            other => panic!("{other:?}"),
        };
        let record = |state: Option<DeviceState>, latest: Option<(&str, i64)>| DeviceRecord {
            thing_name: "sensor-9".into(),
            decision: state.map(|state| DeviceDecision {
                state,
                action: "deactivate".into(),
                event: EventStamp {
                    at_ms: 1,
                    id: "e".into(),
                },
            }),
            latest: latest.map(|(id, not_before)| LatestCertificate {
                certificate_id: id.into(),
                not_before,
            }),
            ..DeviceRecord::default()
        };
        let revoked = Some(Decision::Revoke {
            reason: RevokeReason::Decommissioned,
        });
        let rejected = |reason| Some(Decision::Reject { reason });
        let newer = Some(("newer", plan.not_before + 1));
        let older = Some(("older", plan.not_before - 1));
        let cases = [
            (None, None),
            (Some(record(None, None)), None),
            (Some(record(Some(DeviceState::Allowed), older)), None),
            (
                Some(record(Some(DeviceState::Decommissioned), None)),
                revoked.clone(),
            ),
            (
                Some(record(Some(DeviceState::Decommissioned), older)),
                revoked,
            ),
            (
                Some(record(Some(DeviceState::Denied), None)),
                rejected(RejectReason::DeviceDenied),
            ),
            (
                Some(record(Some(DeviceState::Allowed), newer)),
                rejected(RejectReason::Superseded),
            ),
            (
                Some(record(None, newer)),
                rejected(RejectReason::Superseded),
            ),
        ];
        for (device, expected) in cases {
            assert_eq!(standing(&plan, device.as_ref()), expected, "{device:?}");
        }
        let mut by_revoke = record(Some(DeviceState::Denied), None);
        if let Some(decision) = by_revoke.decision.as_mut() {
            decision.action = "revoke".into();
        }
        assert_eq!(
            standing(&plan, Some(&by_revoke)),
            Some(Decision::Revoke {
                reason: RevokeReason::DeviceRevoked
            }),
            "a revoked device's new certificate is REVOKED, as its others are"
        );
        assert_eq!(RevokeReason::Decommissioned.code(), "Decommissioned");
    }
}
