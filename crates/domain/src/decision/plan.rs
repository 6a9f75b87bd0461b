//! The provisioning plan of an admissible certificate, and the Thing's attributes: the CA
//! binding first, then the profile's or the certificate's facts within IoT Core's limits.

use std::collections::BTreeMap;

use crate::binding::{BINDING_ATTRIBUTE, BindingRule};
use crate::naming::is_valid_attribute_value;
use crate::profiles::Profile;
use crate::profiles::template::FieldValues;
use crate::registry::ThingSpec;
use crate::rotation::RotationPolicy;

/// The provisioning steps for an admissible certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionPlan {
    pub certificate_id: String,
    pub certificate_arn: String,
    /// The CA the Thing is bound to (its `caCertificateId` attribute).
    pub ca_certificate_id: String,
    /// What to do when the Thing exists without a binding.
    pub binding_rule: BindingRule,
    pub thing: ThingSpec,
    /// The device's key in the device ledger: its device-management id when `DEVICE_ID_ATTRIBUTE`
    /// names an attribute the Thing carries (see `ledger::device_key`), else the Thing's name.
    pub device_key: String,
    pub thing_groups: Vec<String>,
    /// Every policy of the profile, attached to the certificate.
    pub policies: Vec<String>,
    /// The profile that admitted it.
    pub profile_name: String,
    /// The certificate serial, hex without leading zero bytes (the serial index key).
    pub serial_hex: String,
    /// notBefore, seconds since the epoch: orders the device's certificates.
    pub not_before: i64,
    /// What happens to the device's other certificates once this one is ACTIVE.
    pub rotation: RotationPolicy,
    /// True for a PENDING_ACTIVATION certificate; false reconciles an ACTIVE one.
    pub activate: bool,
    /// True when admitted without a revocation check (fail-open).
    pub revocation_unchecked: bool,
}

/// Whether the profile's attribute templates fill `attribute`.
pub(super) fn profile_names(profile: &Profile, attribute: &str) -> bool {
    profile
        .attributes
        .as_ref()
        .is_some_and(|templates| templates.contains_key(attribute))
}

/// IoT Core allows 3 attributes on a Thing without a type, 50 with one.
const MAX_UNTYPED_ATTRIBUTES: usize = 3;

/// The CA binding first (it must fit even IoT Core's 3 attributes of an untyped Thing), then the
/// profile's attributes or, when it names none, searchable facts about the device in priority
/// order, within IoT Core's limits. Values IoT Core would refuse (spaces, say) or that the
/// certificate lacks are left out rather than altered.
pub(super) fn thing_attributes(
    profile: &Profile,
    values: &FieldValues<'_>,
    ca_certificate_id: &str,
) -> BTreeMap<String, String> {
    let mut attributes =
        BTreeMap::from([(BINDING_ATTRIBUTE.to_owned(), ca_certificate_id.to_owned())]);
    let usable = |v: &str| !v.is_empty() && is_valid_attribute_value(v);
    if let Some(templates) = &profile.attributes {
        for (name, template) in templates {
            if let Ok(value) = template.render(values).map(|v| v.to_owned())
                && usable(&value)
            {
                attributes.insert(name.clone(), value);
            }
        }
        return attributes;
    }
    let subject = values.subject;
    let candidates = [
        ("commonName", subject.common_name.as_deref()),
        ("certificateSerial", Some(values.certificate_serial_hex)),
        ("organization", subject.organization.as_deref()),
        ("subjectSerialNumber", subject.serial_number.as_deref()),
        ("organizationalUnit", subject.organizational_unit.as_deref()),
        ("country", subject.country.as_deref()),
    ];
    let limit = if profile.thing_type.is_some() {
        candidates.len()
    } else {
        MAX_UNTYPED_ATTRIBUTES - 1
    };
    attributes.extend(
        candidates
            .into_iter()
            .filter_map(|(name, value)| {
                value
                    .filter(|v| usable(v))
                    .map(|v| (name.to_owned(), v.to_owned()))
            })
            .take(limit),
    );
    attributes
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::decision::world::{Tweak, World, run, sensor_7, world};
    use crate::decision::{Decision, ProvisionPlan};
    use crate::registry::CertificateStatus;

    /// The plan for a pending `device` under `config`; anything else fails the test, naming it.
    fn provision(w: &World, device: &jitr_pki::Device, config: &Config) -> Box<ProvisionPlan> {
        match run(
            w,
            device,
            CertificateStatus::PendingActivation,
            config,
            Tweak::default(),
        ) {
            Ok(Decision::Provision(plan)) => plan,
            other => panic!("expected a provision plan, got {other:?}"),
        }
    }

    #[test]
    fn typed_things_get_every_valid_attribute() {
        let w = world();
        let mut config = Config::with_policy("p");
        config.thing_type_name = Some("sensor".into());
        let plan = provision(&w, &sensor_7(&w), &config);
        assert_eq!(plan.thing.type_name.as_deref(), Some("sensor"));
        assert_eq!(plan.thing.attributes["subjectSerialNumber"], "SN-7");
        assert_eq!(plan.thing.attributes["organization"], "Acme-Devices");
    }

    #[test]
    fn a_value_iot_core_would_refuse_is_left_out_not_altered() {
        let w = world();
        let device =
            w.ca.issue(&jitr_pki::DeviceSpec {
                organization: Some("Acme Devices".into()),
                ..jitr_pki::DeviceSpec::named("sensor-8")
            })
            .unwrap();
        let mut config = Config::with_policy("p");
        config.thing_type_name = Some("sensor".into());
        let plan = provision(&w, &device, &config);
        assert_eq!(plan.thing.attributes["commonName"], "sensor-8");
        assert!(
            !plan.thing.attributes.contains_key("organization"),
            "{:?}",
            plan.thing.attributes
        );
    }

    /// Provisioned, not refused as DeviceIdMissing.
    #[test]
    fn a_device_id_the_profile_does_not_name_falls_back_to_the_thing() {
        let w = world();
        let mut config = Config::with_policy("p");
        config.device_id_attribute = Some("menderId".into());
        let plan = provision(&w, &sensor_7(&w), &config);
        assert!(!plan.thing.attributes.contains_key("menderId"));
    }
}
