//! "Why can't device X connect?": the Thing, the CA it is bound to, each of its certificates, the
//! profile that applies, and what registration would decide for each certificate now. The real
//! lookups and the real decision code (`Registrar::assess`, the binding rule) on the real facts,
//! with reads only: nothing is created, attached or changed.

use jitr_domain::JitrError;
use jitr_domain::binding::{BINDING_ATTRIBUTE, Binding};
use jitr_domain::certificate::summary;
use jitr_domain::decision::{Decision, RejectReason};
use jitr_domain::event::RegistrationEvent;
use jitr_domain::ledger::{DeviceRecord, HistoryEntry, Ledger, device_key};
use jitr_domain::registry::{
    CertificateStatus, Registry, RegistryErrorKind, certificate_id_from_arn,
};
use jitr_domain::source::Fetcher;
use serde::Serialize;

use crate::provision::judge_binding;
use crate::registrar::Registrar;

/// What to explain.
#[derive(Debug, Clone)]
pub enum Target {
    Thing(String),
    Certificate(String),
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `None` when no Thing of that name exists (or the certificate has none).
    pub thing: Option<ThingFacts>,
    pub certificates: Vec<CertificateFacts>,
    /// What the device ledger holds for the Thing's name: the device-management decision and
    /// the certificates the device held (`None` without a ledger or a record).
    pub device: Option<DeviceRecord>,
    /// The device's decisions in time order (empty without a ledger).
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingFacts {
    pub name: String,
    pub type_name: Option<String>,
    /// Its `caCertificateId` attribute: the CA it is bound to.
    pub bound_to_ca: Option<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateFacts {
    pub certificate_id: String,
    pub status: String,
    pub ca_certificate_id: Option<String>,
    pub serial_hex: Option<String>,
    pub common_name: Option<String>,
    /// Seconds since the epoch.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub policies: Vec<String>,
    pub things: Vec<String>,
    /// The profile that applies, when the checks reach one.
    pub profile: Option<String>,
    /// `admit`, `reconcile`, `reject`, `revoke`, `left-alone` or `error`.
    pub verdict: String,
    /// The reason code (or error type).
    pub reason: Option<String>,
    /// One sentence for a person.
    pub detail: String,
    /// In the revocation sync's serial index; `None` without a ledger.
    pub indexed: Option<bool>,
}

impl<R: Registry, F: Fetcher, L: Ledger> Registrar<R, F, L> {
    /// Explains `target` at `now` (seconds), reading only.
    pub async fn explain(&self, target: &Target, now: i64) -> Result<Explanation, JitrError> {
        let registry = self.registry();
        let (thing_name, mut certificate_ids) = match target {
            Target::Thing(name) => (Some(name.clone()), Vec::new()),
            Target::Certificate(id) => {
                let arn = registry.describe_certificate(id).await?.arn;
                let things = registry.list_principal_things(&arn).await?;
                (things.into_iter().next(), vec![id.clone()])
            }
        };
        let thing = match &thing_name {
            Some(name) => match registry.describe_thing(name).await {
                Ok(t) => Some(ThingFacts {
                    name: t.name.clone(),
                    type_name: t.type_name.clone(),
                    bound_to_ca: t.attributes.get(BINDING_ATTRIBUTE).cloned(),
                    attributes: t.attributes,
                }),
                Err(e) if e.kind() == RegistryErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if let Some(thing) = &thing {
            for arn in registry.list_thing_principals(&thing.name).await? {
                if let Some(id) = certificate_id_from_arn(&arn)
                    && !certificate_ids.iter().any(|c| c == id)
                {
                    certificate_ids.push(id.to_owned());
                }
            }
        }
        let mut certificates = Vec::new();
        for id in certificate_ids {
            certificates.push(self.explain_certificate(&id, now).await?);
        }
        // The device's ledger key: by its device-management id when the Thing carries it.
        let device_key = thing_name.as_deref().map(|name| match &thing {
            Some(t) => device_key(
                name,
                &t.attributes,
                self.config().device_id_attribute.as_deref(),
            ),
            None => name.to_owned(),
        });
        let (device, history) = match &device_key {
            Some(key) => (
                self.ledger().device(key).await?,
                self.ledger().history(key).await?,
            ),
            None => (None, Vec::new()),
        };
        Ok(Explanation {
            thing,
            certificates,
            device,
            history,
        })
    }

    async fn explain_certificate(&self, id: &str, now: i64) -> Result<CertificateFacts, JitrError> {
        let registry = self.registry();
        let description = registry.describe_certificate(id).await?;
        let facts = summary(&description.pem);
        let policies = registry.list_attached_policies(&description.arn).await?;
        let things = registry.list_principal_things(&description.arn).await?;
        let mut out = CertificateFacts {
            certificate_id: id.to_owned(),
            status: description.status.to_string(),
            ca_certificate_id: description.ca_certificate_id.clone(),
            serial_hex: facts.as_ref().map(|f| f.serial_hex.clone()),
            common_name: facts.as_ref().and_then(|f| f.subject.common_name.clone()),
            not_before: facts.as_ref().map(|f| f.not_before),
            not_after: facts.as_ref().map(|f| f.not_after),
            policies,
            things,
            profile: None,
            verdict: String::new(),
            reason: None,
            detail: String::new(),
            indexed: None,
        };
        if let (Some(ca), Some(serial)) = (&out.ca_certificate_id, &out.serial_hex) {
            let entries = self.ledger().certificates_with_serial(ca, serial).await?;
            out.indexed = Some(entries.iter().any(|e| e.certificate_id == id));
        }
        let Some(ca_id) = description.ca_certificate_id.clone() else {
            out.verdict = "left-alone".into();
            out.detail = "registered without a CA: not a just-in-time registration".into();
            return Ok(out);
        };
        // The event IoT Core would publish for it (the account check is the handler's).
        let event = RegistrationEvent {
            certificate_id: id.to_owned(),
            ca_certificate_id: ca_id,
            timestamp_ms: now * 1000,
            account_id: String::new(),
            registration_timestamp_ms: None,
        };
        let assessment = match self.assess(&event, now).await {
            Ok(assessment) => assessment,
            Err(err) => {
                out.verdict = "error".into();
                out.reason = Some(err.error_type());
                out.detail = format!("registration would fail and be retried: {err}");
                return Ok(out);
            }
        };
        out.profile = assessment.profile.as_ref().map(|p| p.name.clone());
        match assessment.decision {
            Decision::Provision(plan) => {
                let binding = judge_binding(registry, &plan).await?;
                let name = &plan.thing.name;
                if let Some(reason) = binding.and_then(Binding::refusal) {
                    out.verdict = "reject".into();
                    out.detail = match reason {
                        RejectReason::ThingUnbound => format!(
                            "Thing {name} exists without a CA binding and the profile is strict"
                        ),
                        _ => format!("Thing {name} belongs to another CA"),
                    };
                    out.reason = Some(reason.as_str().into());
                } else {
                    let thing = match binding {
                        None => format!("create Thing {name}"),
                        Some(Binding::Adopt) => format!("adopt unbound Thing {name}"),
                        _ => format!("use Thing {name}"),
                    };
                    let (verdict, action) = if plan.activate {
                        ("admit", "activate")
                    } else {
                        ("reconcile", "keep ACTIVE")
                    };
                    out.verdict = verdict.into();
                    out.detail = format!("{thing}, attach {}, {action}", plan.policies.join(", "));
                }
            }
            Decision::Reject { reason } => {
                out.verdict = "reject".into();
                out.reason = Some(reason.as_str().into());
                out.detail = "set INACTIVE".into();
            }
            Decision::Revoke { reason } => {
                out.verdict = "revoke".into();
                out.reason = Some(reason.code());
                out.detail = "set REVOKED".into();
            }
            Decision::AlreadyDone(status) => {
                out.verdict = "left-alone".into();
                out.detail = format!("{status}: an operator's or the lifecycle's decision stands");
                // What the checks say today, had it been pending: often the reason it is not.
                let pending = self
                    .assess_as(
                        &event,
                        now,
                        Some(CertificateStatus::PendingActivation),
                        true,
                    )
                    .await;
                if let Ok(assessment) = pending {
                    out.profile = assessment.profile.as_ref().map(|p| p.name.clone());
                    let verdict = match assessment.decision {
                        Decision::Reject { reason } => format!("reject ({})", reason.as_str()),
                        Decision::Revoke { reason } => format!("revoke ({})", reason.code()),
                        Decision::Provision(plan) => {
                            match judge_binding(registry, &plan)
                                .await?
                                .and_then(Binding::refusal)
                            {
                                Some(reason) => format!("reject ({})", reason.as_str()),
                                None => "admit".into(),
                            }
                        }
                        Decision::AlreadyDone(_) => "left alone".into(),
                    };
                    out.detail
                        .push_str(&format!("; were it pending, the checks would {verdict}"));
                }
            }
        }
        Ok(out)
    }
}
