//! `decide`: (event, facts, config) → what to do. Pure and synchronous, so nearly every rule
//! of admission is table-tested here without a registry. By concern: the checks in order here
//! (event against registry, CA and profile, the certificate, revocation, naming and the device
//! id); the plan and the Thing's attributes in `plan`; the device ledger's say in `standing`;
//! the reason codes in `crate::reasons`; the Thing-to-CA rule in `crate::binding`.

use std::sync::Arc;

use crate::certificate::{CaCertificate, inspect};
use crate::config::Config;
use crate::error::JitrError;
use crate::event::{RegistrationEvent, escape};
use crate::ledger::device_key;
use crate::naming::{is_valid_device_id, is_valid_thing_name};
use crate::profiles::Profile;
use crate::profiles::template::FieldValues;
use crate::registry::{CaDescription, CertificateDescription, CertificateStatus, ThingSpec};
use crate::revocation::RevocationList;

mod plan;
mod standing;
#[cfg(test)]
mod world;

pub use crate::reasons::{RejectReason, RevokeReason};
pub use plan::ProvisionPlan;
use plan::{profile_names, thing_attributes};
pub use standing::standing;

/// What the revocation check could rely on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevocationFacts<'a> {
    /// The verified, fresh lists of the profile's sources (none when it has no sources).
    pub lists: &'a [Arc<RevocationList>],
    /// A source was unusable and the profile fails open: the lists above are all there is.
    pub unchecked: bool,
}

impl<'a> RevocationFacts<'a> {
    /// No revocation source is configured.
    pub const NOT_CONFIGURED: Self = Self {
        lists: &[],
        unchecked: false,
    };

    /// Every source was read.
    pub fn checked(lists: &'a [Arc<RevocationList>]) -> Self {
        Self {
            lists,
            unchecked: false,
        }
    }
}

/// Everything looked up for one event.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub certificate: &'a CertificateDescription,
    /// `None` when the CA is not registered in the account.
    pub ca: Option<&'a CaDescription>,
    /// The CA certificate decoded; `None` when its PEM is not a certificate.
    pub ca_certificate: Option<&'a CaCertificate>,
    /// The profile for the event's CA; `None` when the profiles refuse that CA.
    pub profile: Option<&'a Profile>,
    pub revocation: RevocationFacts<'a>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// What to do with the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Provision(Box<ProvisionPlan>),
    /// Set INACTIVE.
    Reject {
        reason: RejectReason,
    },
    /// Set REVOKED.
    Revoke {
        reason: RevokeReason,
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
    let Some(profile) = facts.profile else {
        return reject(RejectReason::NoProfile);
    };
    if !profile.enabled {
        return reject(RejectReason::ProfileDisabled);
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
    let serial_hex = hex::encode(&inspected.serial);
    if facts
        .revocation
        .lists
        .iter()
        .any(|list| list.is_revoked(&inspected.serial))
    {
        return Ok(Decision::Revoke {
            reason: RevokeReason::SerialRevoked { serial_hex },
        });
    }
    let values = FieldValues {
        subject: &inspected.subject,
        certificate_id: &certificate.id,
        certificate_serial_hex: &serial_hex,
    };
    let name = match profile.thing_name.render(&values) {
        Ok(name) if is_valid_thing_name(&name) => name,
        Ok(name) => return reject(RejectReason::ThingNameInvalid(escape(&name))),
        Err(_) => return reject(RejectReason::ThingNameMissing),
    };
    let attributes = thing_attributes(profile, &values, &event.ca_certificate_id);
    let device_key = match config.device_id_attribute.as_deref() {
        Some(attribute)
            if profile_names(profile, attribute) && !attributes.contains_key(attribute) =>
        {
            return reject(RejectReason::DeviceIdMissing);
        }
        Some(attribute)
            if attributes
                .get(attribute)
                .is_some_and(|id| !is_valid_device_id(id)) =>
        {
            return reject(RejectReason::DeviceIdInvalid);
        }
        id_attribute => device_key(&name, &attributes, id_attribute),
    };
    Ok(Decision::Provision(Box::new(ProvisionPlan {
        certificate_id: certificate.id.clone(),
        certificate_arn: certificate.arn.clone(),
        ca_certificate_id: event.ca_certificate_id.clone(),
        binding_rule: profile.thing_binding,
        thing: ThingSpec {
            name,
            type_name: profile.thing_type.clone(),
            attributes,
        },
        device_key,
        thing_groups: profile.thing_groups.clone(),
        policies: profile.policies.clone(),
        profile_name: profile.name.clone(),
        serial_hex,
        not_before: inspected.not_before,
        rotation: profile.rotation,
        activate,
        revocation_unchecked: facts.revocation.unchecked,
    })))
}

#[cfg(test)]
mod tests {
    use super::world::*;
    use super::*;
    use crate::binding::BINDING_ATTRIBUTE;
    use crate::naming::ThingNameSource;
    use crate::profiles::template::{Field, Template};
    use jitr_pki::{Ca, CaSpec, Device, DeviceSpec};
    use time::{Duration, OffsetDateTime};

    #[test]
    fn admits_a_valid_pending_certificate_with_a_full_plan() {
        let w = world();
        let device = sensor_7(&w);
        let mut config = Config::with_policy("device-policy");
        config.thing_group_names = vec!["fleet".into()];
        let Ok(Decision::Provision(plan)) = run(
            &w,
            &device,
            CertificateStatus::PendingActivation,
            &config,
            Tweak::default(),
        ) else {
            panic!("expected a provision plan");
        };
        assert!(plan.activate);
        assert_eq!(plan.thing.name, "sensor-7");
        assert_eq!(plan.policies, ["device-policy"]);
        assert_eq!(plan.profile_name, "default");
        assert_eq!(plan.thing_groups, ["fleet"]);
        assert_eq!(
            plan.thing.attributes.len(),
            3,
            "untyped things get at most 3 attributes"
        );
        assert_eq!(plan.thing.attributes[BINDING_ATTRIBUTE], w.ca.id());
        assert_eq!(plan.ca_certificate_id, w.ca.id());
        assert_eq!(plan.thing.attributes["commonName"], "sensor-7");
        assert_eq!(
            plan.thing.attributes["certificateSerial"],
            hex::encode(&device.serial)
        );
        assert!(plan.certificate_arn.ends_with(&device.id));
    }

    /// `DEVICE_ID_ATTRIBUTE`: the device is keyed in the ledger by the id its certificate
    /// carries (where the profile takes it from), never by a name a Thing could have; a
    /// certificate without it is refused; without the variable the Thing's name is the key.
    #[test]
    fn a_device_known_by_its_management_id_is_keyed_by_it() {
        let w = world();
        let with_id =
            w.ca.issue(&DeviceSpec {
                subject_serial_number: Some("5f3c0e2a-mender".into()),
                ..DeviceSpec::named("sensor-9")
            })
            .unwrap();
        let without_id = w.ca.issue(&DeviceSpec::named("sensor-10")).unwrap();
        let mut by_id = Config::with_policy("p");
        by_id.device_id_attribute = Some("menderId".into());
        by_id.device_id_template = Some(Template::field(Field::SerialNumber));
        let by_name = Config::with_policy("p");
        let key = |device: &Device, config: &Config| match run(
            &w,
            device,
            CertificateStatus::PendingActivation,
            config,
            Tweak::default(),
        ) {
            Ok(Decision::Provision(plan)) => Ok((plan.device_key, plan.thing.attributes)),
            other => Err(reason(other)),
        };
        let (device_key, attributes) = key(&with_id, &by_id).unwrap();
        assert_eq!(device_key, "menderId=5f3c0e2a-mender");
        assert_eq!(attributes["menderId"], "5f3c0e2a-mender");
        assert_eq!(attributes["commonName"], "sensor-9");
        assert_eq!(attributes.len(), 3, "an untyped Thing carries at most 3");
        assert_eq!(key(&without_id, &by_id).unwrap_err(), "DeviceIdMissing");
        // Issue 18, defect 4: any id in the one alphabet is admitted and keyed as it is; one
        // outside it (too long for the lifecycle function) is refused.
        for (id, expected) in [
            ("SN.0001", Ok("menderId=SN.0001")),
            ("a/b@c#d=[e]", Ok("menderId=a/b@c#d=[e]")),
            (&*"n".repeat(129), Err("DeviceIdInvalid")),
        ] {
            let device =
                w.ca.issue(&DeviceSpec {
                    subject_serial_number: Some(id.to_owned()),
                    ..DeviceSpec::named("sensor-11")
                })
                .unwrap();
            assert_eq!(
                key(&device, &by_id).map(|(key, _)| key),
                expected.map(str::to_owned).map_err(str::to_owned),
                "{id}"
            );
        }
        assert_eq!(key(&with_id, &by_name).unwrap().0, "sensor-9");
        assert_eq!(key(&without_id, &by_name).unwrap().0, "sensor-10");
    }

    #[test]
    fn an_active_certificate_is_reconciled_not_reactivated() {
        let w = world();
        let device = w.ca.issue(&DeviceSpec::named("sensor-8")).unwrap();
        let Ok(Decision::Provision(plan)) = run(
            &w,
            &device,
            CertificateStatus::Active,
            &Config::with_policy("p"),
            Tweak::default(),
        ) else {
            panic!("expected a reconcile plan");
        };
        assert!(!plan.activate);
    }

    #[test]
    fn operator_statuses_are_left_alone_whatever_the_certificate() {
        let w = world();
        let expired =
            w.ca.issue(&DeviceSpec {
                not_after: OffsetDateTime::now_utc() - Duration::days(1),
                ..DeviceSpec::named("x")
            })
            .unwrap();
        for status in [
            CertificateStatus::Revoked,
            CertificateStatus::Inactive,
            CertificateStatus::PendingTransfer,
            CertificateStatus::Other("NEW".into()),
        ] {
            let decision = run(
                &w,
                &expired,
                status.clone(),
                &Config::with_policy("p"),
                Tweak::default(),
            )
            .unwrap();
            assert_eq!(decision, Decision::AlreadyDone(status));
        }
    }

    #[test]
    fn rejection_table() {
        let w = world();
        let other_ca = Ca::new("Table CA", "Acme").unwrap(); // same subject, other key
        let unrelated_ca = Ca::new("Unrelated CA", "Else").unwrap();
        let now = OffsetDateTime::now_utc();
        let issue = |ca: &Ca, spec: DeviceSpec| ca.issue(&spec).unwrap();
        let named = DeviceSpec::named;
        let pending = CertificateStatus::PendingActivation;
        let policy = Config::with_policy("p");
        let allow_other = {
            let mut c = Config::with_policy("p");
            c.allowed_ca_certificate_ids.insert("f".repeat(64));
            c
        };
        let by_serial = {
            let mut c = Config::with_policy("p");
            c.thing_name_source = ThingNameSource::SerialNumber;
            c
        };
        let inactive_ca = CaDescription {
            active: false,
            ..w.ca_description.clone()
        };
        let valid = issue(&w.ca, named("ok-1"));

        let cases: Vec<(&str, Result<Decision, JitrError>, &str)> = vec![
            (
                "CA not in the allow-list",
                run(&w, &valid, pending.clone(), &allow_other, Tweak::default()),
                "CaNotAllowed",
            ),
            (
                "CA unknown",
                run(
                    &w,
                    &valid,
                    pending.clone(),
                    &policy,
                    Tweak {
                        ca: Some(None),
                        ..Tweak::default()
                    },
                ),
                "CaUnknown",
            ),
            (
                "CA inactive",
                run(
                    &w,
                    &valid,
                    pending.clone(),
                    &policy,
                    Tweak {
                        ca: Some(Some(&inactive_ca)),
                        ..Tweak::default()
                    },
                ),
                "CaInactive",
            ),
            (
                "CA PEM undecodable",
                run(
                    &w,
                    &valid,
                    pending.clone(),
                    &policy,
                    Tweak {
                        no_ca_certificate: true,
                        ..Tweak::default()
                    },
                ),
                "CaUnparseable",
            ),
            (
                "signed by another key, same subject",
                run(
                    &w,
                    &issue(&other_ca, named("f-1")),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "SignatureInvalid",
            ),
            (
                "issued by an unrelated CA",
                run(
                    &w,
                    &issue(&unrelated_ca, named("f-2")),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "IssuerMismatch",
            ),
            (
                "expired",
                run(
                    &w,
                    &issue(
                        &w.ca,
                        DeviceSpec {
                            not_before: now - Duration::days(30),
                            not_after: now - Duration::days(1),
                            ..named("old")
                        },
                    ),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "Expired",
            ),
            (
                "not yet valid",
                run(
                    &w,
                    &issue(
                        &w.ca,
                        DeviceSpec {
                            not_before: now + Duration::days(1),
                            ..named("new")
                        },
                    ),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "NotYetValid",
            ),
            (
                "checked before notBefore (the CA's too: it is checked first)",
                run(
                    &w,
                    &valid,
                    pending.clone(),
                    &policy,
                    Tweak {
                        seconds_earlier: 3 * 86_400,
                        ..Tweak::default()
                    },
                ),
                "CaNotYetValid",
            ),
            (
                "CN not a thing name",
                run(
                    &w,
                    &issue(&w.ca, named("bad name/../x")),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "ThingNameInvalid",
            ),
            (
                "CN too long",
                run(
                    &w,
                    &issue(&w.ca, named(&"x".repeat(129))),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "ThingNameInvalid",
            ),
            (
                "no CN",
                run(
                    &w,
                    &issue(
                        &w.ca,
                        DeviceSpec {
                            common_name: None,
                            ..named("")
                        },
                    ),
                    pending.clone(),
                    &policy,
                    Tweak::default(),
                ),
                "ThingNameMissing",
            ),
            (
                "no subject serialNumber",
                run(&w, &valid, pending.clone(), &by_serial, Tweak::default()),
                "ThingNameMissing",
            ),
            (
                "PEM garbage",
                {
                    let mut garbage = valid.clone();
                    garbage.cert_pem =
                        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
                    run(&w, &garbage, pending.clone(), &policy, Tweak::default())
                },
                "CertificateUnparseable",
            ),
        ];
        for (name, decision, expected) in cases {
            assert_eq!(reason(decision), expected, "{name}");
        }
    }

    /// Defect found in review: a device signed by a CA certificate that expired last month was
    /// admitted. The CA must itself be valid now, a CA, and allowed to sign certificates.
    #[test]
    fn a_ca_that_cannot_vouch_for_its_devices_rejects_them() {
        let now = OffsetDateTime::now_utc();
        let spec = CaSpec::named("Vouching CA", "Acme");
        let cases = [
            (
                "CA expired last month (device still valid)",
                CaSpec {
                    not_before: now - Duration::days(400),
                    not_after: now - Duration::days(30),
                    ..spec.clone()
                },
                "CaExpired",
            ),
            (
                "CA not valid yet",
                CaSpec {
                    not_before: now + Duration::days(2),
                    ..spec.clone()
                },
                "CaNotYetValid",
            ),
            (
                "basicConstraints cA=FALSE",
                CaSpec {
                    is_ca: false,
                    ..spec.clone()
                },
                "CaNotCertificateAuthority",
            ),
            (
                "keyUsage without keyCertSign",
                CaSpec {
                    key_cert_sign: false,
                    ..spec.clone()
                },
                "CaCannotSignCertificates",
            ),
        ];
        for (name, ca_spec, expected) in cases {
            let w = world_with(Ca::with_spec(&ca_spec).unwrap());
            let device = w.ca.issue(&DeviceSpec::named("vouched")).unwrap();
            for status in [
                CertificateStatus::PendingActivation,
                CertificateStatus::Active,
            ] {
                let decision = run(
                    &w,
                    &device,
                    status,
                    &Config::with_policy("p"),
                    Tweak::default(),
                );
                assert_eq!(reason(decision), expected, "{name}");
            }
        }
        // The same spec, valid, admits.
        let w = world_with(Ca::with_spec(&spec).unwrap());
        let device = w.ca.issue(&DeviceSpec::named("vouched")).unwrap();
        let decision = run(
            &w,
            &device,
            CertificateStatus::PendingActivation,
            &Config::with_policy("p"),
            Tweak::default(),
        );
        assert!(
            matches!(decision, Ok(Decision::Provision(_))),
            "{decision:?}"
        );
    }

    #[test]
    fn an_active_certificate_that_now_fails_is_rejected() {
        let w = world();
        let device = w.ca.issue(&DeviceSpec::named("sensor-9")).unwrap();
        let inactive_ca = CaDescription {
            active: false,
            ..w.ca_description.clone()
        };
        let decision = run(
            &w,
            &device,
            CertificateStatus::Active,
            &Config::with_policy("p"),
            Tweak {
                ca: Some(Some(&inactive_ca)),
                ..Tweak::default()
            },
        );
        assert_eq!(reason(decision), "CaInactive");
    }

    #[test]
    fn revoked_serials_are_revoked_and_others_admitted() {
        let w = world();
        let revoked = w.ca.issue(&DeviceSpec::named("r-1")).unwrap();
        let fine = w.ca.issue(&DeviceSpec::named("r-2")).unwrap();
        let now = OffsetDateTime::now_utc();
        let crl_pem =
            w.ca.crl(
                std::slice::from_ref(&revoked.serial),
                now - Duration::hours(1),
                now + Duration::days(1),
            )
            .unwrap();
        let lists = [Arc::new(
            RevocationList::parse(crl_pem.as_bytes(), &w.ca_certificate).unwrap(),
        )];
        let policy = Config::with_policy("p");
        let decision = run(
            &w,
            &revoked,
            CertificateStatus::PendingActivation,
            &policy,
            Tweak {
                revocation: Some(RevocationFacts::checked(&lists)),
                ..Tweak::default()
            },
        )
        .unwrap();
        assert_eq!(
            decision,
            Decision::Revoke {
                reason: RevokeReason::SerialRevoked {
                    serial_hex: hex::encode(&revoked.serial)
                }
            }
        );
        let decision = run(
            &w,
            &fine,
            CertificateStatus::PendingActivation,
            &policy,
            Tweak {
                revocation: Some(RevocationFacts::checked(&lists)),
                ..Tweak::default()
            },
        )
        .unwrap();
        assert!(
            matches!(decision, Decision::Provision(ref p) if !p.revocation_unchecked),
            "{decision:?}"
        );
        let decision = run(
            &w,
            &revoked,
            CertificateStatus::PendingActivation,
            &policy,
            Tweak {
                revocation: Some(RevocationFacts {
                    lists: &[],
                    unchecked: true,
                }),
                ..Tweak::default()
            },
        )
        .unwrap();
        assert!(
            matches!(decision, Decision::Provision(ref p) if p.revocation_unchecked),
            "{decision:?}"
        );
    }

    #[test]
    fn an_event_that_disagrees_with_the_registry_changes_nothing() {
        let w = world();
        let device = w.ca.issue(&DeviceSpec::named("m-1")).unwrap();
        let ca_id = w.ca.id();
        let other_ca = description(
            &device,
            &"e".repeat(64),
            CertificateStatus::PendingActivation,
        );
        let no_ca = CertificateDescription {
            ca_certificate_id: None,
            ..other_ca.clone()
        };
        let profile = Config::with_policy("p").default_profile();
        for cert in [&other_ca, &no_ca] {
            let facts = Facts {
                certificate: cert,
                ca: Some(&w.ca_description),
                ca_certificate: Some(&w.ca_certificate),
                profile: Some(&profile),
                revocation: RevocationFacts::NOT_CONFIGURED,
                now: now(),
            };
            let err =
                decide(&event(&device, &ca_id), &facts, &Config::with_policy("p")).unwrap_err();
            assert_eq!(err.error_type(), "Permanent.EventMismatch");
        }
    }
}
