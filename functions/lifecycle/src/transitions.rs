//! Applying an [`Action`] to a device's Thing and certificates through the registry port.
//!
//! Every step is idempotent and every error is classified and surfaced, so a retry after a
//! partial failure finishes the job: a Thing, certificate or attachment that is already gone is
//! "nothing to do". A REVOKED certificate is never made ACTIVE or INACTIVE again.

use std::time::Duration;

use jitr_core::decommissioned::DecommissionedList;
use jitr_core::registry::{
    CertificateStatus, Registry, RegistryError, RegistryErrorKind, certificate_id_from_arn,
};
use jitr_core::{JitrError, unix_now};
use serde::Serialize;

use crate::command::{Action, DeviceCommand};
use crate::config::LifecycleConfig;

/// Waits between checks that a detached principal has left the Thing (AWS detaches
/// asynchronously); about 3 s in all before giving up with a retryable error.
const DETACH_POLL_DELAYS_MS: [u64; 7] = [25, 50, 100, 200, 400, 800, 1600];

/// What happened to one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateChange {
    pub certificate_id: String,
    pub before: String,
    /// The status after, or `DELETED`, or `DETACHED` (still used by another Thing).
    pub after: String,
    /// Why nothing was done, when nothing was (`RevokedStaysRevoked`, `NoPolicyAttached`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub device_id: String,
    pub action: Action,
    /// `Changed`, `NothingToDo` or `ThingNotFound`.
    pub outcome: &'static str,
    pub certificates: Vec<CertificateChange>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thing_deleted: bool,
}

/// Applies commands for one container.
#[derive(Debug)]
pub struct Lifecycle<R> {
    registry: R,
    config: LifecycleConfig,
    decommissioned: DecommissionedList,
}

impl<R: Registry> Lifecycle<R> {
    pub fn new(registry: R, config: LifecycleConfig) -> Self {
        Self {
            registry,
            config,
            decommissioned: DecommissionedList::Off,
        }
    }

    /// Records each certificate decommissioning deletes, so registration never re-admits it.
    #[must_use]
    pub fn with_decommissioned(mut self, list: DecommissionedList) -> Self {
        self.decommissioned = list;
        self
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Applies `command` to the Thing named by its device id.
    pub async fn apply(&self, command: &DeviceCommand) -> Result<Summary, JitrError> {
        let thing = command.device_id.as_str();
        let mut summary = Summary {
            device_id: thing.to_owned(),
            action: command.action,
            outcome: "NothingToDo",
            certificates: Vec::new(),
            thing_deleted: false,
        };
        let principals = match self.registry.list_thing_principals(thing).await {
            Ok(principals) => principals,
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                summary.outcome = "ThingNotFound";
                return Ok(summary);
            }
            Err(e) => return Err(e.into()),
        };
        // Only certificates are ours to manage (a Thing may also have Cognito principals).
        let certificates: Vec<(&str, &str)> = principals
            .iter()
            .filter_map(|arn| certificate_id_from_arn(arn).map(|id| (arn.as_str(), id)))
            .collect();
        for (arn, id) in certificates {
            let change = match command.action {
                Action::Activate => self.activate(id, arn).await?,
                Action::Deactivate => {
                    self.set_status_if(id, CertificateStatus::Inactive, |s| {
                        *s == CertificateStatus::Active
                    })
                    .await?
                }
                Action::Revoke => {
                    self.set_status_if(id, CertificateStatus::Revoked, |s| {
                        *s != CertificateStatus::Revoked
                    })
                    .await?
                }
                Action::Decommission => self.decommission_certificate(thing, arn, id).await?,
            };
            if let Some(change) = change {
                summary.certificates.push(change);
            }
        }
        if command.action == Action::Decommission {
            self.delete_thing(thing).await?;
            summary.thing_deleted = true;
        }
        let changed =
            summary.thing_deleted || summary.certificates.iter().any(|c| c.before != c.after);
        summary.outcome = if changed { "Changed" } else { "NothingToDo" };
        Ok(summary)
    }

    /// The status now, or `None` if the certificate is gone.
    async fn status(&self, id: &str) -> Result<Option<CertificateStatus>, JitrError> {
        gone_is_none(self.registry.describe_certificate(id).await).map(|d| d.map(|d| d.status))
    }

    /// INACTIVE → ACTIVE, and only with a policy attached (never ACTIVE without one).
    async fn activate(&self, id: &str, arn: &str) -> Result<Option<CertificateChange>, JitrError> {
        let Some(status) = self.status(id).await? else {
            return Ok(None);
        };
        let note = match status {
            CertificateStatus::Inactive => {
                if self.registry.list_attached_policies(arn).await?.is_empty() {
                    Some("NoPolicyAttached")
                } else {
                    self.registry
                        .update_certificate_status(id, &CertificateStatus::Active)
                        .await?;
                    return Ok(Some(change(
                        id,
                        &status,
                        CertificateStatus::Active.as_str(),
                        None,
                    )));
                }
            }
            CertificateStatus::Revoked => Some("RevokedStaysRevoked"),
            CertificateStatus::PendingActivation => Some("PendingIsForRegistration"),
            _ => None,
        };
        Ok(Some(change(id, &status, status.as_str(), note)))
    }

    async fn set_status_if(
        &self,
        id: &str,
        to: CertificateStatus,
        applies: impl Fn(&CertificateStatus) -> bool,
    ) -> Result<Option<CertificateChange>, JitrError> {
        let Some(status) = self.status(id).await? else {
            return Ok(None);
        };
        if !applies(&status) {
            let note = (status == CertificateStatus::Revoked).then_some("RevokedStaysRevoked");
            return Ok(Some(change(id, &status, status.as_str(), note)));
        }
        self.registry.update_certificate_status(id, &to).await?;
        Ok(Some(change(id, &status, to.as_str(), None)))
    }

    /// A certificate only this Thing uses: deactivate it (REVOKED stays REVOKED), detach its
    /// policies, then detach it from the Thing and delete it. The Thing attachment goes last
    /// because it is how a retry finds the certificate: a failure at any earlier step leaves it
    /// findable, and the retry finishes the job. A certificate another Thing also uses is only
    /// detached from this one; its status and policies are the other device's.
    async fn decommission_certificate(
        &self,
        thing: &str,
        arn: &str,
        id: &str,
    ) -> Result<Option<CertificateChange>, JitrError> {
        let Some(before) = self.status(id).await? else {
            return Ok(None);
        };
        let Some(users) = gone_is_none(self.registry.list_principal_things(arn).await)? else {
            return Ok(None);
        };
        if users.iter().any(|other| other != thing) {
            gone_is_none(self.registry.detach_thing_principal(thing, arn).await)?;
            self.wait_until_detached(thing, arn).await?;
            return Ok(Some(change(
                id,
                &before,
                "DETACHED",
                Some("SharedWithAnotherThing"),
            )));
        }
        if self.config.decommission_deletes_certificates {
            // Before anything changes: once deleted, the certificate is unknown to IoT and the
            // device's next connect would register it again through JITR.
            self.decommissioned.record(id, thing, unix_now()).await?;
        }
        let mut after = before.clone();
        if !matches!(
            before,
            CertificateStatus::Revoked | CertificateStatus::Inactive
        ) {
            gone_is_none(
                self.registry
                    .update_certificate_status(id, &CertificateStatus::Inactive)
                    .await,
            )?;
            after = CertificateStatus::Inactive;
        }
        for policy in self.registry.list_attached_policies(arn).await? {
            self.registry.detach_policy(&policy, arn).await?;
        }
        gone_is_none(self.registry.detach_thing_principal(thing, arn).await)?;
        self.wait_until_detached(thing, arn).await?;
        if !self.config.decommission_deletes_certificates {
            return Ok(Some(change(
                id,
                &before,
                after.as_str(),
                Some("KeptByConfiguration"),
            )));
        }
        let deleted = match self.registry.delete_certificate(id).await {
            // INACTIVE, policies detached, detach seen: a conflict is IoT Core catching up.
            Err(e) if e.kind() == RegistryErrorKind::Conflict => {
                Err(JitrError::not_yet_consistent(e))
            }
            other => gone_is_none(other).map(drop),
        };
        if let Err(err) = deleted {
            // Detached, the certificate is invisible to a retry (it is found through the
            // Thing). Re-attach it (it is INACTIVE with no policy, so harmless) so the retry
            // finds it; if even that fails, name it for an operator.
            if let Err(reattach) = self.registry.attach_thing_principal(thing, arn).await {
                tracing::error!(certificate_id = %id, thing_name = %thing, error = %reattach,
                    "certificate left INACTIVE and detached after a failed delete; delete it by hand");
            }
            return Err(err);
        }
        Ok(Some(change(id, &before, "DELETED", None)))
    }

    /// DeleteThing right after the detaches: "still attached" is IoT Core catching up (retryable)
    /// unless a principal this function does not manage (not a certificate) is still there.
    async fn delete_thing(&self, thing: &str) -> Result<(), JitrError> {
        match self.registry.delete_thing(thing).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == RegistryErrorKind::InvalidRequest => {
                let principals = gone_is_none(self.registry.list_thing_principals(thing).await)?
                    .unwrap_or_default();
                if principals
                    .iter()
                    .any(|p| certificate_id_from_arn(p).is_none())
                {
                    Err(e.into())
                } else {
                    Err(JitrError::not_yet_consistent(e))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Bounded polling with backoff until `arn` is no longer listed on `thing`.
    async fn wait_until_detached(&self, thing: &str, arn: &str) -> Result<(), JitrError> {
        for delay in DETACH_POLL_DELAYS_MS {
            match gone_is_none(self.registry.list_thing_principals(thing).await)? {
                Some(principals) if principals.iter().any(|p| p == arn) => {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                _ => return Ok(()),
            }
        }
        Err(JitrError::DetachPending {
            thing: thing.to_owned(),
            principal: arn.to_owned(),
        })
    }
}

fn change(
    id: &str,
    before: &CertificateStatus,
    after: &str,
    note: Option<&'static str>,
) -> CertificateChange {
    CertificateChange {
        certificate_id: id.to_owned(),
        before: before.as_str().to_owned(),
        after: after.to_owned(),
        note,
    }
}

/// `Ok(None)` for NotFound: what is already gone needs nothing more.
fn gone_is_none<T>(result: Result<T, RegistryError>) -> Result<Option<T>, JitrError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
