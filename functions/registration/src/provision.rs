//! `apply` for an admissible certificate: Thing and policy first (concurrently), then the
//! Thing-principal attachment, then activation strictly last. Each step is idempotent, so a
//! failure anywhere leaves the certificate PENDING and a retry finishes the job.

use jitr_core::JitrError;
use jitr_core::decision::ProvisionPlan;
use jitr_core::registry::{CertificateStatus, Registry, RegistryErrorKind};

use crate::report::Outcome;

/// Runs the plan; returns Activated, AlreadyActive, or LeftAlone when the certificate's
/// status changed under us (an operator or the lifecycle function got there first).
pub async fn provision<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
) -> Result<Outcome, JitrError> {
    let thing = async {
        match registry.create_thing(&plan.thing).await {
            // The Thing exists with other attributes (pre-provisioned, or edited by an operator):
            // it is the device's Thing all the same, and its attributes are not ours to reset.
            Err(e) if e.kind() == RegistryErrorKind::AlreadyExists => {
                tracing::info!(thing_name = %plan.thing.name, "thing exists with other attributes; kept as is");
            }
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                return Err(missing(
                    "thing type",
                    plan.thing.type_name.as_deref().unwrap_or("?"),
                    e.into(),
                ));
            }
            other => other?,
        }
        for group in &plan.thing_groups {
            registry
                .add_thing_to_group(&plan.thing.name, group)
                .await
                .map_err(|e| missing_if_not_found("thing group", group, e.into()))?;
        }
        Ok(())
    };
    let policy = async {
        registry
            .attach_policy(&plan.policy_name, &plan.certificate_arn)
            .await
            .map_err(|e| missing_if_not_found("device policy", &plan.policy_name, e.into()))
    };
    let (thing, policy) = tokio::join!(thing, policy);
    thing?;
    policy?;
    registry
        .attach_thing_principal(&plan.thing.name, &plan.certificate_arn)
        .await?;

    if !plan.activate {
        return Ok(Outcome::AlreadyActive);
    }
    // Read the status again right before activating: an operator or the lifecycle function may
    // have set it INACTIVE or REVOKED since the lookup, and that decision must stand (AWS
    // refuses REVOKED → ACTIVE; emulators do not, so we refuse it ourselves).
    match registry
        .describe_certificate(&plan.certificate_id)
        .await?
        .status
    {
        CertificateStatus::PendingActivation => {
            registry
                .update_certificate_status(&plan.certificate_id, &CertificateStatus::Active)
                .await?;
            Ok(Outcome::Activated)
        }
        CertificateStatus::Active => Ok(Outcome::AlreadyActive),
        _ => Ok(Outcome::LeftAlone),
    }
}

fn missing(resource: &'static str, name: &str, _cause: JitrError) -> JitrError {
    JitrError::MissingResource {
        resource,
        name: name.to_owned(),
    }
}

fn missing_if_not_found(resource: &'static str, name: &str, err: JitrError) -> JitrError {
    if err.is_registry(RegistryErrorKind::NotFound) {
        missing(resource, name, err)
    } else {
        err
    }
}
