//! Applying an [`Action`] to a device: first recorded in the device ledger, then enforced on its
//! Thing and certificates through the registry port.
//!
//! Recording first is what makes a decision stand. The ledger's ordering rule refuses an event
//! older than the one recorded (`Stale`: a late webhook cannot undo a newer decision), and
//! registration reads the ledger before it writes and again right after it activates, so a
//! denial recorded here is seen by one side or the other whatever the interleaving. A device
//! that does not exist yet is recorded all the same; its first registration is refused.
//!
//! Every step is idempotent and every error is classified and surfaced, so a retry after a
//! partial failure finishes the job: the decision stays recorded but unapplied until the end,
//! and a decommission works from the certificate ids recorded before anything was torn down
//! (not from what is still attached), so an interruption at any step is completed by the retry.
//! A REVOKED certificate is never made ACTIVE or INACTIVE again.

use std::collections::BTreeSet;
use std::time::Duration;

use jitr_domain::JitrError;
use jitr_domain::ledger::{
    DeviceDecision, DeviceRecord, DeviceState, EventStamp, HistoryEntry, Holdings, Ledger,
    NoLedger, Recorded, id_key,
};
use jitr_domain::naming::is_valid_thing_name;
use jitr_domain::registry::{
    CertificateDescription, CertificateStatus, Registry, RegistryError, RegistryErrorKind,
    certificate_id_from_arn,
};
use serde::Serialize;

use crate::config::LifecycleConfig;
use crate::secret::WebhookSecrets;
use jitr_domain::command::{Action, DeviceCommand};

/// Waits between checks that a detached principal has left the Thing (AWS detaches
/// asynchronously); about 3 s in all before giving up with a retryable error.
const DETACH_POLL_DELAYS_MS: [u64; 7] = [25, 50, 100, 200, 400, 800, 1600];

/// How many times a run re-enforces what the ledger holds when another decision or certificate
/// arrived while it was enforcing its own.
const CONVERGE_ROUNDS: usize = 3;

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
    /// `Changed`, `NothingToDo`, `ThingNotFound` (nothing in IoT Core yet; the decision is
    /// recorded when a ledger is configured), `DeviceUnresolved` (the same for a device known by
    /// its device-management id: no Thing carries it yet) or `Stale` (an older or already
    /// applied event: nothing changed).
    pub outcome: &'static str,
    /// The Things the device id resolved to (`DEVICE_ID_ATTRIBUTE`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thing_names: Vec<String>,
    /// The decision is in the device ledger, so registration will honour it.
    pub recorded: bool,
    pub certificates: Vec<CertificateChange>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thing_deleted: bool,
}

/// The device-management state an action leaves the device in.
pub fn state_after(action: Action) -> DeviceState {
    match action {
        Action::Activate => DeviceState::Allowed,
        Action::Deactivate | Action::Revoke => DeviceState::Denied,
        Action::Decommission => DeviceState::Decommissioned,
    }
}

/// Applies commands for one container.
#[derive(Debug)]
pub struct Lifecycle<R, L = NoLedger> {
    registry: R,
    ledger: L,
    config: LifecycleConfig,
    secrets: WebhookSecrets,
}

impl<R: Registry> Lifecycle<R, NoLedger> {
    pub fn new(registry: R, config: LifecycleConfig) -> Self {
        let secrets = WebhookSecrets::fixed(config.webhook_secret.clone());
        Self {
            registry,
            ledger: NoLedger,
            config,
            secrets,
        }
    }

    /// Records every decision in `ledger` before enforcing it.
    pub fn with_ledger<L: Ledger>(self, ledger: L) -> Lifecycle<R, L> {
        Lifecycle {
            registry: self.registry,
            ledger,
            config: self.config,
            secrets: self.secrets,
        }
    }
}

impl<R: Registry, L: Ledger> Lifecycle<R, L> {
    pub fn registry(&self) -> &R {
        &self.registry
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// The webhook secret, kept in Secrets Manager (read again on a mismatch) instead of the
    /// configuration's.
    pub fn with_webhook_secrets(mut self, secrets: WebhookSecrets) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn webhook_secrets(&self) -> &WebhookSecrets {
        &self.secrets
    }

    /// `apply` with the command's own stamp, or its arrival time: for callers without an
    /// envelope (tests, `jitr`).
    pub async fn apply_now(&self, command: &DeviceCommand) -> Result<Summary, JitrError> {
        let stamp = command
            .stamp
            .clone()
            .unwrap_or_else(|| EventStamp::arrival(jitr_aws::unix_now_ms()));
        self.apply(command, &stamp, "direct").await
    }

    /// Records `command` (stamped `event`, from `source`) and enforces it on the device's Things:
    /// the one named by its device id, or with `DEVICE_ID_ATTRIBUTE` those carrying that id.
    pub async fn apply(
        &self,
        command: &DeviceCommand,
        event: &EventStamp,
        source: &str,
    ) -> Result<Summary, JitrError> {
        let device = command.device_id.as_str();
        // The ledger's key for the device: the same rule registration keys by. Without
        // DEVICE_ID_ATTRIBUTE the id is the Thing's name, so it must be one.
        let key = match &self.config.device_id_attribute {
            Some(attribute) => id_key(attribute, device),
            None if is_valid_thing_name(device) => device.to_owned(),
            None => {
                return Err(JitrError::MalformedEvent {
                    field: "deviceId",
                    problem: format!(
                        "{} is not a thing name (ids that are not need DEVICE_ID_ATTRIBUTE)",
                        jitr_domain::event::escape(device)
                    ),
                });
            }
        };
        let key = key.as_str();
        let decision = DeviceDecision {
            state: state_after(command.action),
            action: command.action.as_str().to_owned(),
            event: event.clone(),
        };
        let mut summary = Summary {
            device_id: device.to_owned(),
            action: command.action,
            outcome: "Stale",
            thing_names: Vec::new(),
            recorded: false,
            certificates: Vec::new(),
            thing_deleted: false,
        };
        let record = match self.ledger.record_decision(key, &decision).await? {
            Recorded::Stale(_) => return Ok(summary),
            Recorded::New(record) | Recorded::Unfinished(record) => {
                summary.recorded = true;
                Some(record)
            }
            Recorded::NotKept => None,
        };
        let mut enforced = self
            .enforce(device, key, command.action, record.as_ref(), &mut summary)
            .await?;
        // Another decision, or a certificate registration just admitted, may have arrived while
        // this one was enforced: enforce what the ledger holds now, so the newest decision wins
        // whichever run finishes last.
        for _ in 0..CONVERGE_ROUNDS {
            let Some(now) = self.ledger.device(key).await? else {
                break;
            };
            let action = now
                .decision
                .as_ref()
                .and_then(|d| Action::parse(&d.action))
                .unwrap_or(command.action);
            let newer = now.decision.as_ref().map(|d| &d.event) != Some(event);
            let grew = !now.certificates.is_subset(&enforced);
            if !newer && !grew {
                break;
            }
            let mut again = Summary {
                certificates: Vec::new(),
                ..summary.clone()
            };
            enforced = self
                .enforce(device, key, action, Some(&now), &mut again)
                .await?;
            if !newer {
                summary.certificates.extend(again.certificates);
                summary.thing_deleted |= again.thing_deleted;
            }
        }
        let changed =
            summary.thing_deleted || summary.certificates.iter().any(|c| c.before != c.after);
        if !unresolved(summary.outcome) || changed {
            summary.outcome = if changed { "Changed" } else { "NothingToDo" };
        }
        self.ledger.mark_applied(key, event).await?;
        let entry = HistoryEntry {
            at_ms: event.at_ms,
            source: format!("lifecycle:{source}"),
            what: command.action.as_str().to_owned(),
            certificate_id: None,
            reason: command.reason.clone(),
            event_id: Some(event.id.clone()),
        };
        self.ledger.append_history(key, &entry).await?;
        Ok(summary)
    }

    /// The device's Things that exist now: by name, or by device-management id.
    async fn things_of(&self, device: &str) -> Result<Vec<String>, JitrError> {
        match &self.config.device_id_attribute {
            Some(attribute) => Ok(self
                .registry
                .things_with_attribute(attribute, device)
                .await?),
            None => Ok(vec![device.to_owned()]),
        }
    }

    /// Enforces `action` on every certificate of the device (ledger key `key`): those attached to
    /// its Things and those the ledger says it held. Returns the certificate ids it knew of.
    async fn enforce(
        &self,
        device: &str,
        key: &str,
        action: Action,
        record: Option<&DeviceRecord>,
        summary: &mut Summary,
    ) -> Result<BTreeSet<String>, JitrError> {
        let mut things = BTreeSet::new();
        let mut attached = BTreeSet::new();
        for thing in self.things_of(device).await? {
            let Some(principals) = gone_is_none(self.registry.list_thing_principals(&thing).await)?
            else {
                continue;
            };
            // Only certificates are ours to manage (a Thing may also have Cognito principals).
            attached.extend(
                principals
                    .iter()
                    .filter_map(|arn| certificate_id_from_arn(arn).map(str::to_owned)),
            );
            things.insert(thing);
        }
        if things.is_empty() {
            summary.outcome = if self.config.device_id_attribute.is_some() {
                "DeviceUnresolved"
            } else {
                "ThingNotFound"
            };
        } else if self.config.device_id_attribute.is_some() {
            summary.thing_names = things.iter().cloned().collect();
        }
        let held = record.map(|r| r.certificates.clone()).unwrap_or_default();
        let retired = record.map(|r| r.retired.clone()).unwrap_or_default();
        if action == Action::Decommission {
            // The intent first: once a certificate is detached, only this record finds it.
            let unrecorded: Vec<String> = attached.difference(&held).cloned().collect();
            if !unrecorded.is_empty() {
                let holdings = Holdings {
                    held: unrecorded,
                    ..Holdings::default()
                };
                self.ledger.add_certificates(key, &holdings).await?;
            }
        }
        let targets: BTreeSet<String> = match action {
            // Only what the device uses now: a certificate rotation set aside stays aside.
            Action::Activate => attached.difference(&retired).cloned().collect(),
            // Also what it held but is not attached (a registration in flight, a teardown
            // interrupted after the detach), unless another Thing uses it now.
            _ => attached.union(&held).cloned().collect(),
        };
        for id in &targets {
            let Some(certificate) = self.describe(id).await? else {
                continue;
            };
            if !attached.contains(id) && self.used_elsewhere(&things, &certificate.arn).await? {
                continue;
            }
            let change = match action {
                Action::Activate => self.activate(&certificate).await?,
                Action::Deactivate => {
                    self.set_status_if(&certificate, CertificateStatus::Inactive, |s| {
                        matches!(
                            s,
                            CertificateStatus::Active | CertificateStatus::PendingActivation
                        )
                    })
                    .await?
                }
                Action::Revoke => {
                    self.set_status_if(&certificate, CertificateStatus::Revoked, |s| {
                        *s != CertificateStatus::Revoked
                    })
                    .await?
                }
                Action::Decommission => {
                    self.decommission_certificate(&things, &certificate).await?
                }
            };
            summary.certificates.extend(change);
        }
        if action == Action::Activate {
            let refused = record.map(|r| r.refused.clone()).unwrap_or_default();
            for id in refused.difference(&attached) {
                summary.certificates.extend(self.release_refused(id).await?);
            }
        }
        if action == Action::Decommission {
            for thing in &things {
                self.delete_thing(thing).await?;
                summary.thing_deleted = true;
            }
        }
        Ok(attached.union(&held).cloned().collect())
    }

    /// A certificate registration refused for the device's standing (denied, decommissioned)
    /// is INACTIVE or REVOKED and was never provisioned, and IoT Core publishes no registration
    /// event for it again: deleting it lets the device's next connect register it afresh, now
    /// to be admitted. Only while it is still unprovisioned: no Thing, no policy.
    async fn release_refused(&self, id: &str) -> Result<Option<CertificateChange>, JitrError> {
        let Some(certificate) = self.describe(id).await? else {
            return Ok(None);
        };
        let status = &certificate.status;
        if !matches!(
            status,
            CertificateStatus::Inactive | CertificateStatus::Revoked
        ) {
            return Ok(None);
        }
        let Some(users) =
            gone_is_none(self.registry.list_principal_things(&certificate.arn).await)?
        else {
            return Ok(None);
        };
        let Some(policies) =
            gone_is_none(self.registry.list_attached_policies(&certificate.arn).await)?
        else {
            return Ok(None);
        };
        if !users.is_empty() || !policies.is_empty() {
            return Ok(None);
        }
        // Forgotten before the delete: once the certificate is gone a retry skips it, so a
        // failed forget after it would leave the re-registered certificate a "duplicate".
        self.ledger.forget_admission(id).await?;
        gone_is_none(self.registry.delete_certificate(id).await)?;
        Ok(Some(change(
            id,
            status,
            "DELETED",
            Some("RegistersAgainOnNextConnect"),
        )))
    }

    /// Whether a Thing other than the device's `things` uses the certificate.
    async fn used_elsewhere(
        &self,
        things: &BTreeSet<String>,
        arn: &str,
    ) -> Result<bool, JitrError> {
        let users = gone_is_none(self.registry.list_principal_things(arn).await)?;
        Ok(users
            .unwrap_or_default()
            .iter()
            .any(|user| !things.contains(user)))
    }

    /// The certificate now, or `None` if it is gone.
    async fn describe(&self, id: &str) -> Result<Option<CertificateDescription>, JitrError> {
        gone_is_none(self.registry.describe_certificate(id).await)
    }

    /// INACTIVE → ACTIVE, and only with a policy attached (never ACTIVE without one).
    async fn activate(
        &self,
        certificate: &CertificateDescription,
    ) -> Result<Option<CertificateChange>, JitrError> {
        let (id, status) = (certificate.id.as_str(), &certificate.status);
        let note = match status {
            CertificateStatus::Inactive => {
                if self
                    .registry
                    .list_attached_policies(&certificate.arn)
                    .await?
                    .is_empty()
                {
                    Some("NoPolicyAttached")
                } else {
                    self.registry
                        .update_certificate_status(id, &CertificateStatus::Active)
                        .await?;
                    return Ok(Some(change(
                        id,
                        status,
                        CertificateStatus::Active.as_str(),
                        None,
                    )));
                }
            }
            CertificateStatus::Revoked => Some("RevokedStaysRevoked"),
            CertificateStatus::PendingActivation => Some("PendingIsForRegistration"),
            _ => None,
        };
        Ok(Some(change(id, status, status.as_str(), note)))
    }

    async fn set_status_if(
        &self,
        certificate: &CertificateDescription,
        to: CertificateStatus,
        applies: impl Fn(&CertificateStatus) -> bool,
    ) -> Result<Option<CertificateChange>, JitrError> {
        let (id, status) = (certificate.id.as_str(), &certificate.status);
        if !applies(status) {
            let note = (*status == CertificateStatus::Revoked).then_some("RevokedStaysRevoked");
            return Ok(Some(change(id, status, status.as_str(), note)));
        }
        gone_is_none(self.registry.update_certificate_status(id, &to).await)?;
        Ok(Some(change(id, status, to.as_str(), None)))
    }

    /// A certificate only this device uses: deactivate it (REVOKED stays REVOKED), detach its
    /// policies, detach it from the device's Things, delete it. Each step is skipped when already
    /// done, so the retry of an interrupted run (the certificate found through the ledger,
    /// attached or not) carries on where it stopped. A certificate another Thing also uses is
    /// only detached from the device's; its status and policies are the other device's.
    async fn decommission_certificate(
        &self,
        things: &BTreeSet<String>,
        certificate: &CertificateDescription,
    ) -> Result<Option<CertificateChange>, JitrError> {
        let (id, arn, before) = (
            certificate.id.as_str(),
            certificate.arn.as_str(),
            &certificate.status,
        );
        let Some(users) = gone_is_none(self.registry.list_principal_things(arn).await)? else {
            return Ok(None);
        };
        let ours: Vec<&String> = users.iter().filter(|user| things.contains(*user)).collect();
        if ours.len() < users.len() {
            for thing in ours {
                gone_is_none(self.registry.detach_thing_principal(thing, arn).await)?;
                self.wait_until_detached(thing, arn).await?;
            }
            return Ok(Some(change(
                id,
                before,
                "DETACHED",
                Some("SharedWithAnotherThing"),
            )));
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
        for policy in
            gone_is_none(self.registry.list_attached_policies(arn).await)?.unwrap_or_default()
        {
            gone_is_none(self.registry.detach_policy(&policy, arn).await)?;
        }
        for thing in ours {
            gone_is_none(self.registry.detach_thing_principal(thing, arn).await)?;
            self.wait_until_detached(thing, arn).await?;
        }
        if !self.config.decommission_deletes_certificates {
            return Ok(Some(change(
                id,
                before,
                after.as_str(),
                Some("KeptByConfiguration"),
            )));
        }
        // Its next connect registers it afresh: not a duplicate of the old admission. Forgotten
        // before the delete: once the certificate is gone a retry skips it, so a failed forget
        // after it would leave the admission answering for up to an hour.
        self.ledger.forget_admission(id).await?;
        match self.registry.delete_certificate(id).await {
            // INACTIVE, policies detached, detach seen: a conflict is IoT Core catching up.
            Err(e) if e.kind() == RegistryErrorKind::Conflict => {
                Err(JitrError::not_yet_consistent(e))
            }
            other => gone_is_none(other).map(drop),
        }?;
        Ok(Some(change(id, before, "DELETED", None)))
    }

    /// DeleteThing right after the detaches: "still attached" is IoT Core catching up (retryable)
    /// unless a principal this function does not manage (not a certificate) is still there.
    async fn delete_thing(&self, thing: &str) -> Result<(), JitrError> {
        match self.registry.delete_thing(thing).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(()),
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

/// Nothing of the device exists in IoT Core (yet).
fn unresolved(outcome: &str) -> bool {
    matches!(outcome, "ThingNotFound" | "DeviceUnresolved")
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
