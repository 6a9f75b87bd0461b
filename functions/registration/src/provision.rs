//! `apply` for an admissible certificate: the Thing first (created bound to the certificate's CA,
//! or an existing one checked against that binding), then the policy, groups and Thing-principal
//! attachment (concurrently), then activation strictly last. Each step is idempotent,
//! so a failure anywhere leaves the certificate PENDING and a retry finishes the job.
//! After activation `rotate_among` sets the device's previous certificates aside, per the
//! rotation policy, among the Thing's principals `thing_principals_to_rotate` read.

use std::future::Future;

use jitr_domain::JitrError;
use jitr_domain::binding::{AttachedPrincipal, BINDING_ATTRIBUTE, Binding, bind};
use jitr_domain::certificate::summary;
use jitr_domain::decision::{ProvisionPlan, RejectReason};
use jitr_domain::registry::{
    CertificateStatus, Registry, RegistryError, RegistryErrorKind, ThingDescription,
    certificate_id_from_arn,
};
use jitr_domain::rotation::RotationPolicy;

use crate::report::Outcome;

/// How often an adoption is re-judged when another writer changed the Thing in between.
const BINDING_ATTEMPTS: usize = 3;

/// What provisioning did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// Activated, AlreadyActive, or LeftAlone when the certificate's status changed under us
    /// (an operator or the lifecycle function got there first).
    Done(Outcome),
    /// The Thing belongs to another CA (or is unbound under a strict rule): nothing was attached.
    Refused(RejectReason),
}

/// Runs the plan: the Thing first (nothing is attached to a certificate the Thing's binding
/// refuses), then the policies, the groups, the Thing-principal attachment and `hold` (the
/// device ledger's record that the device holds the certificate) concurrently (independent
/// calls, each a round trip the registration would otherwise wait for in turn), then activation
/// strictly last. `hold` runs only once the binding judged the certificate the device's: another
/// CA's certificate never changes what the ledger records for the device (invariant 3).
pub async fn provision<R: Registry, H>(
    registry: &R,
    plan: &ProvisionPlan,
    hold: H,
) -> Result<Provisioned, JitrError>
where
    H: Future<Output = Result<(), JitrError>>,
{
    if let Err(reason) = ensure_thing(registry, plan).await? {
        return Ok(Provisioned::Refused(reason));
    }
    let groups = async {
        for group in &plan.thing_groups {
            registry
                .add_thing_to_group(&plan.thing.name, group)
                .await
                .map_err(|e| missing_if_not_found("thing group", group, e.into()))?;
        }
        Ok::<(), JitrError>(())
    };
    let policies = async {
        for policy in &plan.policies {
            match registry.attach_policy(policy, &plan.certificate_arn).await {
                Ok(()) => {}
                // The policy, or the certificate IoT has not caught up with: ask which.
                Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                    if registry.policy_exists(policy).await? {
                        return Err(JitrError::not_yet_consistent(e));
                    }
                    return Err(missing("device policy", policy));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok::<(), JitrError>(())
    };
    // The Thing exists (just created or checked) and so does the certificate (just described):
    // a NotFound here is IoT Core not seeing them yet. A certificate really deleted meanwhile
    // shows on the retry, whose DescribeCertificate answers NotFound for good.
    let attached = async {
        registry
            .attach_thing_principal(&plan.thing.name, &plan.certificate_arn)
            .await
            .map_err(|e| match e.kind() {
                RegistryErrorKind::NotFound => JitrError::not_yet_consistent(e),
                _ => JitrError::from(e),
            })
    };
    let (groups, policies, attached, held) = tokio::join!(groups, policies, attached, hold);
    groups?;
    policies?;
    attached?;
    held?;

    if !plan.activate {
        return Ok(Provisioned::Done(Outcome::AlreadyActive));
    }
    // Activated last, without reading the status again (that second DescribeCertificate per
    // registration would halve the registrations the account's 10/s quota allows). Decisions
    // stand all the same: one recorded in the device ledger is read right after this (`settle`),
    // and the lifecycle function re-enforces what it finds held there; IoT Core refuses
    // REVOKED → ACTIVE (CertificateStateException), which leaves the certificate alone.
    let outcome = match registry
        .update_certificate_status(&plan.certificate_id, &CertificateStatus::Active)
        .await
    {
        Ok(()) => Outcome::Activated,
        Err(e) if e.kind() == RegistryErrorKind::Conflict => Outcome::LeftAlone,
        Err(e) => return Err(e.into()),
    };
    Ok(Provisioned::Done(outcome))
}

/// The Thing's principals, read only when the plan's rotation policy sets any aside (`None`
/// for keep); it can be read beside other calls, once the plan's certificate is ACTIVE.
pub async fn thing_principals_to_rotate<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
) -> Option<Result<Vec<String>, RegistryError>> {
    if plan.rotation == RotationPolicy::Keep {
        return None;
    }
    Some(registry.list_thing_principals(&plan.thing.name).await)
}

/// Applies the plan's rotation policy to the other certificates on the plan's Thing, once the
/// plan's certificate is ACTIVE; returns the ids it set aside. It looks at the Thing itself
/// (one ListThingPrincipals) rather than trusting that a Thing just "created" is new: CreateThing
/// answers success for an existing Thing with the same attributes. Never touches a certificate
/// another Thing also uses, one still pending (a registration in flight), or one newer than the
/// plan's (a concurrent rotation: the newest certificate wins), nor another CA's certificate
/// (a rotation stays within the CA the Thing is bound to).
/// `principals` is what `thing_principals_to_rotate` read.
pub async fn rotate_among<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
    principals: Option<Result<Vec<String>, RegistryError>>,
) -> Result<Vec<String>, JitrError> {
    let to = match plan.rotation {
        RotationPolicy::Keep => return Ok(Vec::new()),
        RotationPolicy::DeactivatePrevious => CertificateStatus::Inactive,
        RotationPolicy::RevokePrevious => CertificateStatus::Revoked,
    };
    let Some(principals) = principals else {
        return Ok(Vec::new());
    };
    let mut retired = Vec::new();
    for arn in gone_is_empty(principals)? {
        let Some(id) = certificate_id_from_arn(&arn) else {
            continue;
        };
        if id == plan.certificate_id {
            continue;
        }
        let users = gone_is_empty(registry.list_principal_things(&arn).await)?;
        if users.iter().any(|thing| *thing != plan.thing.name) {
            continue;
        }
        let certificate = match registry.describe_certificate(id).await {
            Ok(certificate) => certificate,
            Err(e) if e.kind() == RegistryErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if certificate.ca_certificate_id.as_deref() != Some(plan.ca_certificate_id.as_str()) {
            continue;
        }
        let newer = summary(&certificate.pem).is_none_or(|s| s.not_before > plan.not_before);
        let applies = match certificate.status {
            CertificateStatus::Active => true,
            CertificateStatus::Inactive => to == CertificateStatus::Revoked,
            _ => false,
        };
        if newer || !applies {
            continue;
        }
        registry.update_certificate_status(id, &to).await?;
        tracing::info!(thing_name = %plan.thing.name, certificate_id = id, status = to.as_str(), rotation = plan.rotation.as_str(), "previous certificate set aside");
        retired.push(id.to_owned());
    }
    Ok(retired)
}

/// An empty list for NotFound (the Thing or certificate is gone: nothing to rotate).
fn gone_is_empty(result: Result<Vec<String>, RegistryError>) -> Result<Vec<String>, JitrError> {
    match result {
        Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(Vec::new()),
        other => other.map_err(Into::into),
    }
}

/// Creates the Thing bound to the plan's CA or, when it exists, checks it against the binding
/// and adopts it if the rule allows. `Ok(Err(reason))` refuses the certificate.
///
/// Creating first (rather than looking first) closes the race with a concurrent registration
/// through another CA: CreateThing is atomic on the name, and a Thing made by anyone else
/// answers `AlreadyExists` because its binding attribute differs.
async fn ensure_thing<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
) -> Result<Result<(), RejectReason>, JitrError> {
    for _ in 0..BINDING_ATTEMPTS {
        match registry.create_thing(&plan.thing).await {
            Ok(()) => return Ok(Ok(())),
            Err(e) if e.kind() == RegistryErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                let type_name = plan.thing.type_name.as_deref().unwrap_or("?");
                return Err(missing("thing type", type_name));
            }
            Err(e) => return Err(e.into()),
        }
        // Deleted between the two calls (a decommission): create it again.
        let Some((thing, binding)) = judge(registry, plan).await? else {
            continue;
        };
        if let Some(reason) = binding.refusal() {
            return Ok(Err(reason));
        }
        if binding == Binding::Adopt {
            match adopt(registry, &thing, &plan.ca_certificate_id).await {
                // Someone changed the Thing since we read it: judge it again.
                Err(e) if e.kind() == RegistryErrorKind::Conflict => continue,
                other => other?,
            }
        }
        // Bound (or just adopted): an existing Thing keeps its other attributes.
        return Ok(Ok(()));
    }
    Err(JitrError::ThingContended {
        thing: plan.thing.name.clone(),
    })
}

/// What `ensure_thing` would find, read only: `None` when the Thing does not exist (it would be
/// created bound to the plan's CA). For `jitr explain`.
pub async fn judge_binding<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
) -> Result<Option<Binding>, JitrError> {
    Ok(judge(registry, plan).await?.map(|(_, binding)| binding))
}

/// The existing Thing of the plan and the binding rule's verdict on it; `None` if absent.
async fn judge<R: Registry>(
    registry: &R,
    plan: &ProvisionPlan,
) -> Result<Option<(ThingDescription, Binding)>, JitrError> {
    let thing = match registry.describe_thing(&plan.thing.name).await {
        Ok(thing) => thing,
        Err(e) if e.kind() == RegistryErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The attribute alone decides when present; the attached certificates only otherwise.
    let principals = if thing.attributes.contains_key(BINDING_ATTRIBUTE) {
        Vec::new()
    } else {
        attached_principals(registry, &thing.name).await?
    };
    let binding = bind(
        &plan.ca_certificate_id,
        &thing,
        &principals,
        plan.binding_rule,
    );
    Ok(Some((thing, binding)))
}

/// Writes the binding on an unbound Thing, guarded by its version so two CAs adopting it at
/// once cannot both win.
async fn adopt<R: Registry>(
    registry: &R,
    thing: &ThingDescription,
    ca_certificate_id: &str,
) -> Result<(), jitr_domain::registry::RegistryError> {
    let written = registry
        .set_thing_attribute(
            &thing.name,
            BINDING_ATTRIBUTE,
            ca_certificate_id,
            thing.version,
        )
        .await;
    match written {
        Ok(()) => {
            tracing::info!(thing_name = %thing.name, ca_certificate_id, "adopted an unbound thing");
            Ok(())
        }
        // An untyped Thing already at IoT Core's 3 attributes cannot take the binding; the
        // certificate about to be attached (checked above: no other CA's) is the binding then.
        Err(e) if e.kind() == RegistryErrorKind::InvalidRequest => {
            tracing::warn!(thing_name = %thing.name, error = %e, "thing adopted without its binding attribute");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The certificates attached to a Thing, with their CA and status.
async fn attached_principals<R: Registry>(
    registry: &R,
    thing_name: &str,
) -> Result<Vec<AttachedPrincipal>, JitrError> {
    let mut principals = Vec::new();
    for arn in registry.list_thing_principals(thing_name).await? {
        let Some(id) = certificate_id_from_arn(&arn) else {
            principals.push(AttachedPrincipal::Other);
            continue;
        };
        match registry.describe_certificate(id).await {
            Ok(c) => principals.push(AttachedPrincipal::Certificate {
                certificate_id: c.id,
                ca_certificate_id: c.ca_certificate_id,
                status: c.status,
            }),
            // Deleted, detachment still propagating: it binds nothing.
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(principals)
}

fn missing(resource: &'static str, name: &str) -> JitrError {
    JitrError::MissingResource {
        resource,
        name: name.to_owned(),
    }
}

fn missing_if_not_found(resource: &'static str, name: &str, err: JitrError) -> JitrError {
    if err.is_registry(RegistryErrorKind::NotFound) {
        missing(resource, name)
    } else {
        err
    }
}
