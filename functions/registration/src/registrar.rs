//! The registration handler: parse → look up → decide → apply, generic over the registry
//! port and the CRL fetcher so the same code runs on AWS, the emulator and in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use jitr_core::certificate::CaCertificate;
use jitr_core::decision::{Decision, Facts, RejectReason, RevocationFacts, decide};
use jitr_core::decommissioned::DecommissionedList;
use jitr_core::event::RegistrationEvent;
use jitr_core::registry::{CaDescription, CertificateStatus, Registry, RegistryErrorKind};
use jitr_core::revocation::{CrlFetcher, RevocationCache};
pub use jitr_core::unix_now;
use jitr_core::{Config, JitrError};
use serde_json::Value;

use crate::provision::{Provisioned, provision};
use crate::report::{Outcome, Report};

/// How long a CA description is trusted before it is looked up again, so a CA deactivated
/// by an operator stops admitting devices within minutes even in a warm container.
pub const CA_CACHE_TTL_SECS: i64 = 300;

#[derive(Debug, Clone)]
struct CachedCa {
    description: CaDescription,
    certificate: Option<CaCertificate>,
    fetched_at: i64,
}

/// One container's registration handler: configuration, registry, and the per-container
/// caches (CA descriptions, revocation list).
#[derive(Debug)]
pub struct Registrar<R, F> {
    registry: R,
    config: Config,
    revocation: Option<RevocationCache<F>>,
    decommissioned: DecommissionedList,
    cas: Mutex<HashMap<String, CachedCa>>,
}

impl<R: Registry, F: CrlFetcher> Registrar<R, F> {
    pub fn new(registry: R, config: Config, fetcher: F) -> Self {
        let revocation = config
            .revocation_list
            .clone()
            .map(|source| RevocationCache::new(source, fetcher));
        Self {
            registry,
            config,
            revocation,
            decommissioned: DecommissionedList::Off,
            cas: Mutex::default(),
        }
    }

    /// Consults `list` so a certificate the lifecycle function deleted is never re-admitted.
    #[must_use]
    pub fn with_decommissioned(mut self, list: DecommissionedList) -> Self {
        self.decommissioned = list;
        self
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one event for the function running in `function_account`, now.
    pub async fn handle(
        &self,
        payload: &Value,
        function_account: &str,
    ) -> Result<Report, JitrError> {
        self.handle_at(payload, function_account, unix_now()).await
    }

    /// Handles one event at `now` (seconds since the epoch).
    pub async fn handle_at(
        &self,
        payload: &Value,
        function_account: &str,
        now: i64,
    ) -> Result<Report, JitrError> {
        let event = RegistrationEvent::from_value(payload)?;
        event.check_account(function_account)?;
        let certificate = self
            .registry
            .describe_certificate(&event.certificate_id)
            .await?;

        // Only a pending or active certificate needs its CA and the CRL; an allow-list miss
        // needs neither (decide rejects it before looking).
        let needs_checks = matches!(
            certificate.status,
            CertificateStatus::PendingActivation | CertificateStatus::Active
        );
        let listed = self.config.allowed_ca_certificate_ids.is_empty()
            || self
                .config
                .allowed_ca_certificate_ids
                .contains(&event.ca_certificate_id);
        let ca = if needs_checks && listed {
            self.ca(&event.ca_certificate_id, now).await?
        } else {
            None
        };
        let ca_certificate = ca.as_ref().and_then(|c| c.certificate.clone());
        let list = match (&self.revocation, &ca_certificate) {
            (Some(cache), Some(ca_cert)) if needs_checks => match cache.get(ca_cert, now).await {
                Ok(list) => Some(Ok(list)),
                Err(err) if self.config.revocation_fail_open => {
                    tracing::warn!(error = %err, error_type = err.kind(), "revocation list unusable; admitting unchecked (REVOCATION_FAIL_OPEN=true)");
                    Some(Err(()))
                }
                Err(err) => return Err(err.into()),
            },
            _ => None,
        };
        let revocation = match &list {
            None => RevocationFacts::NotConfigured,
            Some(Ok(list)) => RevocationFacts::Checked(list),
            Some(Err(())) => RevocationFacts::FailedOpen,
        };
        let decommissioned =
            needs_checks && self.decommissioned.contains(&event.certificate_id).await?;
        let facts = Facts {
            certificate: &certificate,
            ca: ca.as_ref().map(|c| &c.description),
            ca_certificate: ca_certificate.as_ref(),
            revocation,
            decommissioned,
            now,
        };
        let decision = decide(&event, &facts, &self.config)?;

        let mut report = Report {
            certificate_id: event.certificate_id.clone(),
            ca_certificate_id: event.ca_certificate_id.clone(),
            outcome: Outcome::LeftAlone,
            thing_name: None,
            reason: None,
            revocation_unchecked: false,
        };
        let decision = match decision {
            Decision::Provision(plan) => match provision(&self.registry, &plan).await? {
                Provisioned::Done(outcome) => {
                    report.outcome = outcome;
                    if outcome == Outcome::LeftAlone {
                        report.reason = Some("StatusChangedDuringProvisioning".into());
                    }
                    report.thing_name = Some(plan.thing.name);
                    report.revocation_unchecked = plan.revocation_unchecked;
                    return Ok(report);
                }
                Provisioned::Refused(reason) => {
                    tracing::warn!(certificate_id = %event.certificate_id, thing_name = %plan.thing.name, reason = reason.as_str(), "thing belongs to another CA; certificate refused");
                    report.thing_name = Some(plan.thing.name);
                    Decision::Reject { reason }
                }
            },
            other => other,
        };
        match decision {
            Decision::Provision(_) => {}
            Decision::Reject { reason } => {
                if let RejectReason::ThingNameInvalid(value) = &reason {
                    tracing::warn!(certificate_id = %event.certificate_id, thing_name = %value, "derived thing name is not valid");
                }
                self.registry
                    .update_certificate_status(&event.certificate_id, &CertificateStatus::Inactive)
                    .await?;
                report.outcome = Outcome::Rejected;
                report.reason = Some(reason.as_str().into());
            }
            Decision::Revoke { reason } => {
                self.registry
                    .update_certificate_status(&event.certificate_id, &CertificateStatus::Revoked)
                    .await?;
                report.outcome = Outcome::Revoked;
                report.reason = Some(reason.code());
            }
            Decision::AlreadyDone(status) => {
                report.reason = Some(format!("Status{}", pascal(status.as_str())));
            }
        }
        Ok(report)
    }

    /// The CA, from the per-container cache or DescribeCACertificate; `None` if not registered.
    async fn ca(&self, ca_certificate_id: &str, now: i64) -> Result<Option<CachedCa>, JitrError> {
        let cached = self
            .lock_cas()
            .get(ca_certificate_id)
            .filter(|c| now - c.fetched_at < CA_CACHE_TTL_SECS)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        match self
            .registry
            .describe_ca_certificate(ca_certificate_id)
            .await
        {
            Ok(description) => {
                let certificate = CaCertificate::from_pem(&description.pem);
                let entry = CachedCa {
                    description,
                    certificate,
                    fetched_at: now,
                };
                self.lock_cas()
                    .insert(ca_certificate_id.to_owned(), entry.clone());
                Ok(Some(entry))
            }
            Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn lock_cas(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedCa>> {
        self.cas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `PENDING_TRANSFER` → `PendingTransfer`.
fn pascal(status: &str) -> String {
    status
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect()
}
