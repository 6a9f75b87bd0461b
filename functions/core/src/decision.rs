//! `decide`: (event, facts, config) → what to do. Pure and synchronous, so nearly every rule
//! of admission is table-tested here without a registry.

use std::collections::BTreeMap;

use crate::certificate::{CaCertificate, CertificateProblem, InspectedCertificate, inspect};
use crate::config::Config;
use crate::error::JitrError;
use crate::event::{RegistrationEvent, escape};
use crate::naming::{ThingNameSource, is_valid_attribute_value, is_valid_thing_name};
use crate::registry::{CaDescription, CertificateDescription, CertificateStatus, ThingSpec};
use crate::revocation::RevocationList;

/// What the revocation check could rely on.
#[derive(Debug, Clone, Copy)]
pub enum RevocationFacts<'a> {
    /// `REVOCATION_LIST` is not set.
    NotConfigured,
    /// A verified, fresh list.
    Checked(&'a RevocationList),
    /// The list was unusable and `REVOCATION_FAIL_OPEN=true`: admitted unchecked.
    FailedOpen,
}

/// Everything looked up for one event.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub certificate: &'a CertificateDescription,
    /// `None` when the CA is not registered in the account.
    pub ca: Option<&'a CaDescription>,
    /// The CA certificate decoded; `None` when its PEM is not a certificate.
    pub ca_certificate: Option<&'a CaCertificate>,
    pub revocation: RevocationFacts<'a>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// Why a certificate is refused; `as_str` is the reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    CaUnknown,
    CaNotAllowed,
    CaInactive,
    CaUnparseable,
    Certificate(CertificateProblem),
    ThingNameMissing,
    /// The derived name, escaped for logs.
    ThingNameInvalid(String),
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CaUnknown => "CaUnknown",
            Self::CaNotAllowed => "CaNotAllowed",
            Self::CaInactive => "CaInactive",
            Self::CaUnparseable => "CaUnparseable",
            Self::Certificate(problem) => problem.as_str(),
            Self::ThingNameMissing => "ThingNameMissing",
            Self::ThingNameInvalid(_) => "ThingNameInvalid",
        }
    }
}

/// The provisioning steps for an admissible certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionPlan {
    pub certificate_id: String,
    pub certificate_arn: String,
    pub thing: ThingSpec,
    pub thing_groups: Vec<String>,
    pub policy_name: String,
    /// True for a PENDING_ACTIVATION certificate; false reconciles an ACTIVE one.
    pub activate: bool,
    /// True when admitted without a revocation check (fail-open).
    pub revocation_unchecked: bool,
}

/// What to do with the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Provision(ProvisionPlan),
    /// Set INACTIVE.
    Reject {
        reason: RejectReason,
    },
    /// Set REVOKED: the serial is in the CRL.
    Revoke {
        serial_hex: String,
    },
    /// INACTIVE, REVOKED or a transfer state: an operator's decision, never overridden.
    AlreadyDone(CertificateStatus),
}

/// Decides. An event that disagrees with the registry is an error: nothing is changed.
pub fn decide(
    event: &RegistrationEvent,
    facts: &Facts<'_>,
    config: &Config,
) -> Result<Decision, JitrError> {
    let certificate = facts.certificate;
    if certificate.id != event.certificate_id {
        return Err(JitrError::EventMismatch(format!(
            "registry returned certificate {} for {}",
            escape(&certificate.id),
            event.certificate_id
        )));
    }
    if certificate.ca_certificate_id.as_deref() != Some(event.ca_certificate_id.as_str()) {
        return Err(JitrError::EventMismatch(format!(
            "certificate is registered under CA {}, the event names {}",
            certificate
                .ca_certificate_id
                .as_deref()
                .map_or_else(|| "none".to_owned(), escape),
            event.ca_certificate_id
        )));
    }
    let activate = match &certificate.status {
        CertificateStatus::PendingActivation => true,
        CertificateStatus::Active => false,
        other => return Ok(Decision::AlreadyDone(other.clone())),
    };
    let reject = |reason| Ok(Decision::Reject { reason });

    if !config.allowed_ca_certificate_ids.is_empty()
        && !config
            .allowed_ca_certificate_ids
            .contains(&event.ca_certificate_id)
    {
        return reject(RejectReason::CaNotAllowed);
    }
    let Some(ca) = facts.ca else {
        return reject(RejectReason::CaUnknown);
    };
    if !ca.active {
        return reject(RejectReason::CaInactive);
    }
    let Some(ca_certificate) = facts.ca_certificate else {
        return reject(RejectReason::CaUnparseable);
    };
    let inspected = match inspect(&certificate.pem, ca_certificate, facts.now) {
        Ok(inspected) => inspected,
        Err(problem) => return reject(RejectReason::Certificate(problem)),
    };
    if let RevocationFacts::Checked(list) = facts.revocation {
        if list.is_revoked(&inspected.serial) {
            return Ok(Decision::Revoke {
                serial_hex: hex::encode(&inspected.serial),
            });
        }
    }
    let name = match thing_name(config.thing_name_source, &inspected, &certificate.id) {
        Some(name) if is_valid_thing_name(name) => name.to_owned(),
        Some(name) => return reject(RejectReason::ThingNameInvalid(escape(name))),
        None => return reject(RejectReason::ThingNameMissing),
    };
    let attributes = thing_attributes(
        &inspected,
        &event.ca_certificate_id,
        config.thing_type_name.is_some(),
    );
    Ok(Decision::Provision(ProvisionPlan {
        certificate_id: certificate.id.clone(),
        certificate_arn: certificate.arn.clone(),
        thing: ThingSpec {
            name,
            type_name: config.thing_type_name.clone(),
            attributes,
        },
        thing_groups: config.thing_group_names.clone(),
        policy_name: config.device_policy_name.clone(),
        activate,
        revocation_unchecked: matches!(facts.revocation, RevocationFacts::FailedOpen),
    }))
}

fn thing_name<'a>(
    source: ThingNameSource,
    inspected: &'a InspectedCertificate,
    certificate_id: &'a str,
) -> Option<&'a str> {
    match source {
        ThingNameSource::CommonName => inspected.subject.common_name.as_deref(),
        ThingNameSource::SerialNumber => inspected.subject.serial_number.as_deref(),
        ThingNameSource::CertificateId => Some(certificate_id),
    }
}

/// IoT Core allows 3 attributes on a Thing without a type, 50 with one.
const MAX_UNTYPED_ATTRIBUTES: usize = 3;

/// Searchable facts about the device, in priority order, within IoT Core's limits. Values
/// IoT Core would refuse (spaces, say) are left out rather than altered.
fn thing_attributes(
    inspected: &InspectedCertificate,
    ca_certificate_id: &str,
    typed: bool,
) -> BTreeMap<String, String> {
    let subject = &inspected.subject;
    let serial = hex::encode(&inspected.serial);
    let candidates = [
        ("commonName", subject.common_name.as_deref()),
        ("organization", subject.organization.as_deref()),
        ("certificateSerial", Some(serial.as_str())),
        ("caCertificateId", Some(ca_certificate_id)),
        ("subjectSerialNumber", subject.serial_number.as_deref()),
        ("organizationalUnit", subject.organizational_unit.as_deref()),
        ("country", subject.country.as_deref()),
    ];
    let limit = if typed {
        candidates.len()
    } else {
        MAX_UNTYPED_ATTRIBUTES
    };
    candidates
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .filter(|v| !v.is_empty() && is_valid_attribute_value(v))
                .map(|v| (name.to_owned(), v.to_owned()))
        })
        .take(limit)
        .collect()
}
