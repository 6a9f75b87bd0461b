//! The registration function's configuration, read once at cold start.
//! Variable names are fixed by the design; an invalid value fails the cold start with a
//! message naming the variable, never a request.

use std::collections::{BTreeMap, BTreeSet};

use crate::binding::{BINDING_ATTRIBUTE, BindingRule};
use crate::error::JitrError;
pub use crate::ledger::{DEFAULT_HISTORY_DAYS, LedgerSettings};
use crate::naming::is_certificate_id;
use crate::naming::{
    ThingNameSource, is_valid_attribute_name, is_valid_policy_name, is_valid_thing_name,
};
use crate::profiles::Profile;
use crate::profiles::template::{Field, Template, attribute_value_char};
use crate::revocation::RevocationSource;
use crate::rotation::RotationPolicy;
use crate::source::ObjectSource;

/// Validated configuration of the registration function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `DEVICE_POLICY_NAME`: the IoT policy attached to every admitted certificate.
    pub device_policy_name: String,
    /// `ALLOWED_CA_CERTIFICATE_IDS`: empty means any CA that is registered and ACTIVE.
    pub allowed_ca_certificate_ids: BTreeSet<String>,
    /// `THING_NAME_SOURCE`.
    pub thing_name_source: ThingNameSource,
    /// `THING_TYPE_NAME`.
    pub thing_type_name: Option<String>,
    /// `THING_GROUP_NAMES`.
    pub thing_group_names: Vec<String>,
    /// `REVOCATION_LIST`: `s3://`, `file://`, `http(s)://` or `distribution-point`.
    pub revocation_list: Option<RevocationSource>,
    /// `REVOCATION_FAIL_OPEN`.
    pub revocation_fail_open: bool,
    /// `REVOCATION_ALLOW_PRIVATE_NETWORKS` (false): HTTP revocation sources and distribution
    /// points may reach private addresses (an on-premises PKI through the function's VPC).
    /// Loopback and link-local (metadata) addresses are refused whatever it says.
    pub revocation_private_networks: bool,
    /// What to do with an existing Thing that carries no CA binding (profiles can override).
    pub thing_binding: BindingRule,
    /// `REGISTRATION_PROFILES`: the per-CA profiles document, if any.
    pub registration_profiles: Option<ObjectSource>,
    /// `DEVICE_LEDGER_TABLE` and `DEVICE_LEDGER_HISTORY_DAYS`: the DynamoDB device ledger.
    pub device_ledger: Option<LedgerSettings>,
    /// `REVOCATION_SYNC_RATE`: UpdateCertificate calls per second the revocation sync may make.
    pub revocation_sync_rate: u32,
    /// `ROTATION_POLICY`: what happens to a device's other certificates when a new one is
    /// activated (profiles can override).
    pub rotation_policy: RotationPolicy,
    /// `EXPECTED_ACCOUNT_ID`: the account events must be for when the runtime names none (local
    /// runs); when it does, the two must agree.
    pub expected_account_id: Option<String>,
    /// `DEVICE_ID_ATTRIBUTE`: the Thing attribute carrying the device-management system's own id
    /// for the device (profiles fill it from the certificate); devices are then known by it.
    pub device_id_attribute: Option<String>,
    /// `DEVICE_ID_TEMPLATE` (with `DEVICE_ID_ATTRIBUTE`; default `{serialNumber}`): where the
    /// default profile takes that id from in the certificate. A profiles document says it in
    /// each profile's `attributes`.
    pub device_id_template: Option<Template>,
}

impl Config {
    /// The addresses HTTP revocation sources may reach under this configuration.
    pub fn address_policy(&self) -> crate::source::AddressPolicy {
        if self.revocation_private_networks {
            crate::source::AddressPolicy::AllowPrivate
        } else {
            crate::source::AddressPolicy::PublicOnly
        }
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, JitrError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let device_policy_name = get("DEVICE_POLICY_NAME").ok_or_else(|| {
            config_error(
                "DEVICE_POLICY_NAME",
                "required: the IoT policy to attach to every admitted certificate",
            )
        })?;
        if !is_valid_policy_name(&device_policy_name) {
            return Err(config_error(
                "DEVICE_POLICY_NAME",
                "not a valid IoT policy name",
            ));
        }

        let mut allowed_ca_certificate_ids = BTreeSet::new();
        for id in list(get("ALLOWED_CA_CERTIFICATE_IDS")) {
            if !is_certificate_id(&id) {
                return Err(config_error(
                    "ALLOWED_CA_CERTIFICATE_IDS",
                    &format!("{id:?} is not a 64-character lowercase hex CA certificate id"),
                ));
            }
            allowed_ca_certificate_ids.insert(id);
        }

        let thing_name_source = match get("THING_NAME_SOURCE") {
            None => ThingNameSource::default(),
            Some(v) => v
                .parse()
                .map_err(|e: String| config_error("THING_NAME_SOURCE", &e))?,
        };

        let thing_type_name = get("THING_TYPE_NAME");
        if let Some(name) = &thing_type_name
            && !is_valid_thing_name(name)
        {
            return Err(config_error(
                "THING_TYPE_NAME",
                "must match [a-zA-Z0-9:_-]{1,128}",
            ));
        }
        let thing_group_names = list(get("THING_GROUP_NAMES"));
        if let Some(bad) = thing_group_names.iter().find(|g| !is_valid_thing_name(g)) {
            return Err(config_error(
                "THING_GROUP_NAMES",
                &format!("{bad:?} must match [a-zA-Z0-9:_-]{{1,128}}"),
            ));
        }

        let revocation_list = get("REVOCATION_LIST")
            .map(|v| v.parse::<RevocationSource>())
            .transpose()
            .map_err(|e| config_error("REVOCATION_LIST", &e))?;
        let revocation_fail_open =
            bool_variable("REVOCATION_FAIL_OPEN", get("REVOCATION_FAIL_OPEN"), false)?;
        let revocation_private_networks = bool_variable(
            "REVOCATION_ALLOW_PRIVATE_NETWORKS",
            get("REVOCATION_ALLOW_PRIVATE_NETWORKS"),
            false,
        )?;
        let registration_profiles = get("REGISTRATION_PROFILES")
            .map(|v| v.parse::<ObjectSource>())
            .transpose()
            .map_err(|e| config_error("REGISTRATION_PROFILES", &e))?;
        let device_ledger = LedgerSettings::from_lookup(&get)?;
        let revocation_sync_rate = match get("REVOCATION_SYNC_RATE") {
            None => DEFAULT_REVOCATION_SYNC_RATE,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|r| (1..=1000).contains(r))
                .ok_or_else(|| {
                    config_error("REVOCATION_SYNC_RATE", "calls per second, 1 to 1000")
                })?,
        };
        let rotation_policy = get("ROTATION_POLICY")
            .map(|v| v.parse::<RotationPolicy>())
            .transpose()
            .map_err(|e| config_error("ROTATION_POLICY", &e))?
            .unwrap_or_default();
        let expected_account_id = get("EXPECTED_ACCOUNT_ID")
            .map(|id| {
                if crate::naming::is_account_id(&id) {
                    Ok(id)
                } else {
                    Err(config_error("EXPECTED_ACCOUNT_ID", "twelve digits"))
                }
            })
            .transpose()?;
        let device_id_attribute = device_id_attribute(&get)?;
        let device_id_template = match (&device_id_attribute, get("DEVICE_ID_TEMPLATE")) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(config_error(
                    "DEVICE_ID_TEMPLATE",
                    "only with DEVICE_ID_ATTRIBUTE (the attribute it fills)",
                ));
            }
            (Some(_), None) => Some(Template::field(Field::SerialNumber)),
            (Some(_), Some(text)) => Some(
                Template::parse(&text, attribute_value_char)
                    .map_err(|e| config_error("DEVICE_ID_TEMPLATE", &e))?,
            ),
        };

        Ok(Self {
            device_policy_name,
            allowed_ca_certificate_ids,
            thing_name_source,
            thing_type_name,
            thing_group_names,
            revocation_list,
            revocation_fail_open,
            revocation_private_networks,
            thing_binding: BindingRule::default(),
            registration_profiles,
            device_ledger,
            revocation_sync_rate,
            rotation_policy,
            expected_account_id,
            device_id_attribute,
            device_id_template,
        })
    }

    /// A configuration with only the required variable set; for tests and the demo.
    pub fn with_policy(device_policy_name: &str) -> Self {
        Self {
            device_policy_name: device_policy_name.to_owned(),
            allowed_ca_certificate_ids: BTreeSet::new(),
            thing_name_source: ThingNameSource::default(),
            thing_type_name: None,
            thing_group_names: Vec::new(),
            revocation_list: None,
            revocation_fail_open: false,
            revocation_private_networks: false,
            thing_binding: BindingRule::default(),
            registration_profiles: None,
            device_ledger: None,
            revocation_sync_rate: DEFAULT_REVOCATION_SYNC_RATE,
            rotation_policy: RotationPolicy::default(),
            expected_account_id: None,
            device_id_attribute: None,
            device_id_template: None,
        }
    }

    /// The `default` profile the variables describe: the profile of every CA without one.
    pub fn default_profile(&self) -> Profile {
        let field = match self.thing_name_source {
            ThingNameSource::CommonName => Field::CommonName,
            ThingNameSource::SerialNumber => Field::SerialNumber,
            ThingNameSource::CertificateId => Field::CertificateId,
        };
        Profile {
            name: "default".to_owned(),
            enabled: true,
            policies: vec![self.device_policy_name.clone()],
            thing_type: self.thing_type_name.clone(),
            thing_groups: self.thing_group_names.clone(),
            thing_name: Template::field(field),
            // Known by a device-management id: the id and the CN (with the CA binding, the 3
            // attributes an untyped Thing may carry); otherwise the default searchable facts.
            attributes: self
                .device_id_attribute
                .clone()
                .zip(self.device_id_template.clone())
                .map(|(attribute, template)| {
                    let mut attributes = BTreeMap::from([(
                        "commonName".to_owned(),
                        Template::field(Field::CommonName),
                    )]);
                    // Inserted last: the id wins should it be named commonName itself.
                    attributes.insert(attribute, template);
                    attributes
                }),
            revocation: self.revocation_list.iter().cloned().collect(),
            revocation_fail_open: self.revocation_fail_open,
            thing_binding: self.thing_binding,
            rotation: self.rotation_policy,
        }
    }
}

/// The revocation sync's default pace: a fifth of IoT's default UpdateCertificate quota
/// (10/s), which registration shares (one activation per device, one more per rotated
/// certificate). Raise `REVOCATION_SYNC_RATE` with the account's quota (README, "IoT quotas").
pub const DEFAULT_REVOCATION_SYNC_RATE: u32 = 2;

// The ledger's settings belong to the ledger (crate::ledger::LedgerSettings); reading them from
// the environment is configuration's job.
impl LedgerSettings {
    /// `None` when `DEVICE_LEDGER_TABLE` is unset: no ledger, nothing remembered.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, JitrError> {
        let Some(table) = get("DEVICE_LEDGER_TABLE") else {
            return Ok(None);
        };
        if !is_valid_table_name(&table) {
            return Err(config_error(
                "DEVICE_LEDGER_TABLE",
                "a DynamoDB table name matches [a-zA-Z0-9_.-]{3,255}",
            ));
        }
        let history_days = match get("DEVICE_LEDGER_HISTORY_DAYS") {
            None => DEFAULT_HISTORY_DAYS,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| config_error("DEVICE_LEDGER_HISTORY_DAYS", "days, 1 to 36500"))?,
        };
        Ok(Some(Self {
            table,
            history_days,
        }))
    }
}

/// `DEVICE_ID_ATTRIBUTE` (both functions): a valid IoT attribute name, not the CA binding's.
pub fn device_id_attribute(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, JitrError> {
    const VARIABLE: &str = "DEVICE_ID_ATTRIBUTE";
    let Some(name) = get(VARIABLE) else {
        return Ok(None);
    };
    if !is_valid_attribute_name(&name) {
        return Err(config_error(
            VARIABLE,
            "a Thing attribute name, [a-zA-Z0-9_.,@/:#-]{1,128}",
        ));
    }
    if name == BINDING_ATTRIBUTE {
        return Err(config_error(
            VARIABLE,
            "caCertificateId is the CA binding, not a device id",
        ));
    }
    Ok(Some(name))
}

fn is_valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A configuration error naming its variable (every function's configuration uses it).
pub fn config_error(variable: &'static str, problem: &str) -> JitrError {
    JitrError::Config {
        variable,
        problem: problem.to_owned(),
    }
}

/// A `true`/`false` variable; absent means `default`, anything else is an error naming it.
pub fn bool_variable(
    variable: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, JitrError> {
    match value.as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(config_error(
            variable,
            &format!("expected true or false, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CA: &str = "0bb6e39cbc3a3d2f4ef5ff4b7d4c9ef1c0ad4fe7c2a8b1b2c3d4e5f60718293a";

    fn load(vars: &[(&str, &str)]) -> Result<Config, JitrError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_with_only_the_policy() {
        let config = load(&[("DEVICE_POLICY_NAME", "jitr-device")]).unwrap();
        assert_eq!(config, Config::with_policy("jitr-device"));
    }

    #[test]
    fn reads_every_variable() {
        let config = load(&[
            ("DEVICE_POLICY_NAME", "jitr-device"),
            ("ALLOWED_CA_CERTIFICATE_IDS", &format!(" {CA} ,")),
            ("THING_NAME_SOURCE", "serial-number"),
            ("THING_TYPE_NAME", "sensor"),
            ("THING_GROUP_NAMES", "fleet-a, fleet-b"),
            ("REVOCATION_LIST", "s3://bucket/crl.pem"),
            ("REVOCATION_FAIL_OPEN", "true"),
            ("REGISTRATION_PROFILES", "file:///etc/jitr/profiles.json"),
            ("ROTATION_POLICY", "revoke-previous"),
            ("DEVICE_LEDGER_TABLE", "jitr-ledger"),
            ("DEVICE_ID_ATTRIBUTE", "menderId"),
            ("DEVICE_ID_TEMPLATE", "{OU}"),
        ])
        .unwrap();
        assert_eq!(config.device_id_attribute.as_deref(), Some("menderId"));
        let attributes = config.default_profile().attributes.unwrap();
        assert_eq!(attributes["menderId"].to_string(), "{OU}");
        assert_eq!(attributes["commonName"].to_string(), "{CN}");
        assert_eq!(config.rotation_policy, RotationPolicy::RevokePrevious);
        assert_eq!(
            config.default_profile().rotation,
            RotationPolicy::RevokePrevious
        );
        assert_eq!(
            config.device_ledger,
            Some(LedgerSettings {
                table: "jitr-ledger".into(),
                history_days: 400
            })
        );
        assert_eq!(
            config.registration_profiles,
            Some(ObjectSource::File("/etc/jitr/profiles.json".into()))
        );
        let profile = config.default_profile();
        assert_eq!(profile.thing_name.to_string(), "{serialNumber}");
        assert_eq!(profile.policies, ["jitr-device"]);
        assert_eq!(profile.thing_groups, ["fleet-a", "fleet-b"]);
        assert!(config.allowed_ca_certificate_ids.contains(CA));
        assert_eq!(config.thing_name_source, ThingNameSource::SerialNumber);
        assert_eq!(config.thing_type_name.as_deref(), Some("sensor"));
        assert_eq!(config.thing_group_names, ["fleet-a", "fleet-b"]);
        assert_eq!(
            config.revocation_list,
            Some(RevocationSource::Object(ObjectSource::S3 {
                bucket: "bucket".into(),
                key: "crl.pem".into()
            }))
        );
        assert!(config.revocation_fail_open);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "DEVICE_POLICY_NAME"),
            (&[("DEVICE_POLICY_NAME", "bad name")], "DEVICE_POLICY_NAME"),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("ALLOWED_CA_CERTIFICATE_IDS", "abc"),
                ],
                "ALLOWED_CA_CERTIFICATE_IDS",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("THING_NAME_SOURCE", "cn")],
                "THING_NAME_SOURCE",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("THING_TYPE_NAME", "a b")],
                "THING_TYPE_NAME",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("THING_GROUP_NAMES", "ok,bad/group"),
                ],
                "THING_GROUP_NAMES",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("REVOCATION_LIST", "ftp://x/crl"),
                ],
                "REVOCATION_LIST",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("REVOCATION_FAIL_OPEN", "yes")],
                "REVOCATION_FAIL_OPEN",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("REGISTRATION_PROFILES", "profiles.json"),
                ],
                "REGISTRATION_PROFILES",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("ROTATION_POLICY", "rotate")],
                "ROTATION_POLICY",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("DEVICE_LEDGER_TABLE", "t1")],
                "DEVICE_LEDGER_TABLE",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("DEVICE_ID_ATTRIBUTE", "mender id"),
                ],
                "DEVICE_ID_ATTRIBUTE",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("DEVICE_ID_ATTRIBUTE", "caCertificateId"),
                ],
                "DEVICE_ID_ATTRIBUTE",
            ),
            (
                &[("DEVICE_POLICY_NAME", "p"), ("DEVICE_ID_TEMPLATE", "{CN}")],
                "DEVICE_ID_TEMPLATE",
            ),
            (
                &[
                    ("DEVICE_POLICY_NAME", "p"),
                    ("DEVICE_ID_ATTRIBUTE", "menderId"),
                    ("DEVICE_ID_TEMPLATE", "{nope}"),
                ],
                "DEVICE_ID_TEMPLATE",
            ),
        ];
        for (vars, expected) in cases {
            match load(vars) {
                Err(JitrError::Config { variable, .. }) => assert_eq!(variable, *expected),
                other => panic!("{vars:?}: expected a Config error on {expected}, got {other:?}"),
            }
        }
    }
}
