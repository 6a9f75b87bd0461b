//! The `REGISTRATION_PROFILES` document (JSON; schema in the README), parsed strictly: unknown
//! fields are refused and every value is checked against IoT Core's rules, each error naming the
//! path of the field at fault.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::{Template, attribute_value_char, thing_name_char};
use super::{MAX_POLICIES, Profile, Profiles, ProfilesError, Unlisted};
use crate::binding::{BINDING_ATTRIBUTE, BindingRule};
use crate::naming::is_certificate_id;
use crate::naming::is_valid_policy_name;
use crate::naming::{is_valid_attribute_name, is_valid_thing_name};
use crate::revocation::RevocationSource;
use crate::rotation::RotationPolicy;

/// IoT Core: 3 attributes on a Thing without a type, 50 with one; one is the CA binding.
const MAX_UNTYPED_EXTRA_ATTRIBUTES: usize = 2;
const MAX_TYPED_EXTRA_ATTRIBUTES: usize = 49;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    /// The schema version; only 1 exists.
    version: u32,
    #[serde(default)]
    unlisted_cas: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProfileEntry {
    name: Option<String>,
    enabled: Option<bool>,
    policies: Option<Vec<String>>,
    thing_type: Option<String>,
    thing_groups: Option<Vec<String>>,
    thing_name: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    revocation: Option<RevocationEntry>,
    thing_binding: Option<String>,
    rotation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RevocationEntry {
    sources: Vec<String>,
    #[serde(default)]
    fail_open: bool,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ProfilesError {
    ProfilesError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parses and validates a document; CA profiles inherit what they omit from `default`.
pub fn parse_document(bytes: &[u8], default: &Profile) -> Result<Profiles, ProfilesError> {
    let document: Document = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json names the offending field in its message and ends it with the position,
        // which is already the `field`: said once.
        let at = format!("line {} column {}", e.line(), e.column());
        let message = e.to_string();
        let problem = message
            .strip_suffix(&format!(" at {at}"))
            .unwrap_or(&message)
            .to_owned();
        invalid(at, problem)
    })?;
    if document.version != 1 {
        return Err(invalid(
            "version",
            format!("version {} is not known; use 1", document.version),
        ));
    }
    let unlisted = match document.unlisted_cas.as_deref() {
        None | Some("default") => Unlisted::UseDefault,
        Some("reject") => Unlisted::Reject,
        Some(other) => {
            return Err(invalid(
                "unlistedCas",
                format!("expected \"default\" or \"reject\", got {other:?}"),
            ));
        }
    };
    let mut by_ca = BTreeMap::new();
    for (ca_id, entry) in document.profiles {
        let path = format!("profiles.{ca_id}");
        if !is_certificate_id(&ca_id) {
            return Err(invalid(
                &path,
                "the key must be a 64-character lowercase hex CA certificate id",
            ));
        }
        let profile = entry.resolve(&path, &ca_id, default)?;
        by_ca.insert(ca_id, profile);
    }
    Ok(Profiles {
        default: default.clone(),
        by_ca,
        unlisted,
    })
}

impl ProfileEntry {
    fn resolve(self, path: &str, ca_id: &str, default: &Profile) -> Result<Profile, ProfilesError> {
        let at = |field: &str| format!("{path}.{field}");
        let name = match self.name {
            Some(name) if is_valid_thing_name(&name) => name,
            Some(_) => return Err(invalid(at("name"), "must match [a-zA-Z0-9:_-]{1,128}")),
            None => ca_id.to_owned(),
        };
        let policies = match self.policies {
            None => default.policies.clone(),
            Some(policies) => {
                if policies.is_empty() || policies.len() > MAX_POLICIES {
                    return Err(invalid(
                        at("policies"),
                        format!(
                            "1 to {MAX_POLICIES} policy names (IoT Core's limit per certificate)"
                        ),
                    ));
                }
                for (i, policy) in policies.iter().enumerate() {
                    if !is_valid_policy_name(policy) {
                        return Err(invalid(
                            format!("{path}.policies[{i}]"),
                            format!("{policy:?} is not a valid IoT policy name"),
                        ));
                    }
                }
                policies
            }
        };
        let thing_type = match self.thing_type {
            None => default.thing_type.clone(),
            Some(t) if is_valid_thing_name(&t) => Some(t),
            Some(_) => return Err(invalid(at("thingType"), "must match [a-zA-Z0-9:_-]{1,128}")),
        };
        let thing_groups = match self.thing_groups {
            None => default.thing_groups.clone(),
            Some(groups) => {
                for (i, group) in groups.iter().enumerate() {
                    if !is_valid_thing_name(group) {
                        return Err(invalid(
                            format!("{path}.thingGroups[{i}]"),
                            "must match [a-zA-Z0-9:_-]{1,128}",
                        ));
                    }
                }
                groups
            }
        };
        let thing_name = match self.thing_name {
            None => default.thing_name.clone(),
            Some(text) => {
                Template::parse(&text, thing_name_char).map_err(|e| invalid(at("thingName"), e))?
            }
        };
        let attributes = match self.attributes {
            None => default.attributes.clone(),
            Some(map) => {
                let limit = if thing_type.is_some() {
                    MAX_TYPED_EXTRA_ATTRIBUTES
                } else {
                    MAX_UNTYPED_EXTRA_ATTRIBUTES
                };
                if map.len() > limit {
                    return Err(invalid(
                        at("attributes"),
                        format!(
                            "at most {limit} attributes: IoT Core allows {} on a Thing {} a type, \
                             and one is the CA binding ({BINDING_ATTRIBUTE})",
                            limit + 1,
                            if thing_type.is_some() {
                                "with"
                            } else {
                                "without"
                            }
                        ),
                    ));
                }
                let mut parsed = BTreeMap::new();
                for (attribute, text) in map {
                    let field = format!("{path}.attributes.{attribute}");
                    if attribute == BINDING_ATTRIBUTE {
                        return Err(invalid(field, "reserved for the CA binding"));
                    }
                    if !is_valid_attribute_name(&attribute) {
                        return Err(invalid(field, "not a valid IoT attribute name"));
                    }
                    let template = Template::parse(&text, attribute_value_char)
                        .map_err(|e| invalid(&field, e))?;
                    parsed.insert(attribute, template);
                }
                Some(parsed)
            }
        };
        let (revocation, revocation_fail_open) = match self.revocation {
            None => (default.revocation.clone(), default.revocation_fail_open),
            Some(entry) => {
                let mut sources = Vec::new();
                for (i, text) in entry.sources.iter().enumerate() {
                    let source = text
                        .parse::<RevocationSource>()
                        .map_err(|e| invalid(format!("{path}.revocation.sources[{i}]"), e))?;
                    sources.push(source);
                }
                (sources, entry.fail_open)
            }
        };
        let thing_binding = match self.thing_binding {
            None => default.thing_binding,
            Some(text) => text
                .parse::<BindingRule>()
                .map_err(|e| invalid(at("thingBinding"), e))?,
        };
        let rotation = match self.rotation {
            None => default.rotation,
            Some(text) => text
                .parse::<RotationPolicy>()
                .map_err(|e| invalid(at("rotation"), e))?,
        };
        Ok(Profile {
            name,
            enabled: self.enabled.unwrap_or(true),
            policies,
            thing_type,
            thing_groups,
            thing_name,
            attributes,
            revocation,
            revocation_fail_open,
            thing_binding,
            rotation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::ObjectSource;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn default() -> Profile {
        let mut config = Config::with_policy("jitr-device");
        config.thing_group_names = vec!["fleet".into()];
        config.default_profile()
    }

    fn parse(json: &str) -> Result<Profiles, ProfilesError> {
        parse_document(json.as_bytes(), &default())
    }

    #[test]
    fn profiles_inherit_from_the_default_and_override_per_ca() {
        let doc = format!(
            r#"{{"version": 1, "profiles": {{
                "{A}": {{"name": "factory", "policies": ["factory-device", "telemetry"],
                        "thingType": "sensor", "thingName": "acme-{{serialNumber}}",
                        "attributes": {{"model": "{{OU}}", "batch": "{{O}}"}},
                        "revocation": {{"sources": ["s3://pki/factory.crl", "distribution-point"],
                                        "failOpen": true}},
                        "thingBinding": "strict", "rotation": "revoke-previous"}},
                "{B}": {{"enabled": false}}
            }}}}"#
        );
        let profiles = parse(&doc).unwrap();
        let factory = profiles.for_ca(A).unwrap();
        assert_eq!(factory.name, "factory");
        assert_eq!(factory.policies, ["factory-device", "telemetry"]);
        assert_eq!(factory.thing_type.as_deref(), Some("sensor"));
        assert_eq!(factory.thing_groups, ["fleet"], "inherited");
        assert_eq!(factory.thing_name.to_string(), "acme-{serialNumber}");
        assert_eq!(factory.attributes.as_ref().unwrap().len(), 2);
        assert_eq!(
            factory.revocation,
            [
                RevocationSource::Object(ObjectSource::S3 {
                    bucket: "pki".into(),
                    key: "factory.crl".into()
                }),
                RevocationSource::DistributionPoint
            ]
        );
        assert!(factory.revocation_fail_open);
        assert_eq!(factory.thing_binding, BindingRule::Strict);
        assert_eq!(factory.rotation, RotationPolicy::RevokePrevious);
        let retired = profiles.for_ca(B).unwrap();
        assert_eq!(
            retired.rotation,
            RotationPolicy::DeactivatePrevious,
            "inherited"
        );
        assert!(!retired.enabled);
        assert_eq!(retired.name, B);
        assert_eq!(retired.policies, ["jitr-device"]);
        let other = "c".repeat(64);
        assert_eq!(profiles.for_ca(&other), Some(&default()));

        let strict = parse(&format!(
            r#"{{"version": 1, "unlistedCas": "reject", "profiles": {{"{A}": {{}}}}}}"#
        ))
        .unwrap();
        assert!(strict.for_ca(A).is_some());
        assert!(strict.for_ca(&other).is_none());
    }

    #[test]
    fn every_error_names_its_field() {
        let p = |body: &str| format!(r#"{{"version": 1, "profiles": {{"{A}": {body}}}}}"#);
        let a = format!("profiles.{A}");
        let cases = [
            (r#"{"version": 2}"#.to_owned(), "version".to_owned()),
            (
                r#"{"version": 1, "unlistedCas": "no"}"#.into(),
                "unlistedCas".into(),
            ),
            (
                r#"{"version": 1, "profiles": {"short": {}}}"#.into(),
                "profiles.short".into(),
            ),
            (p(r#"{"policy": "x"}"#), "line 1".into()),
            (p(r#"{"name": "bad name"}"#), format!("{a}.name")),
            (p(r#"{"policies": []}"#), format!("{a}.policies")),
            (
                p(r#"{"policies": ["a","b","c","d","e","f","g","h","i","j","k"]}"#),
                format!("{a}.policies"),
            ),
            (
                p(r#"{"policies": ["ok", "bad name"]}"#),
                format!("{a}.policies[1]"),
            ),
            (p(r#"{"thingType": "a/b"}"#), format!("{a}.thingType")),
            (
                p(r#"{"thingGroups": ["ok", "x y"]}"#),
                format!("{a}.thingGroups[1]"),
            ),
            (p(r#"{"thingName": "dev/{CN}"}"#), format!("{a}.thingName")),
            (
                p(r#"{"thingName": "{commonName}"}"#),
                format!("{a}.thingName"),
            ),
            (
                p(r#"{"attributes": {"a": "{CN}", "b": "{O}", "c": "{OU}"}}"#),
                format!("{a}.attributes"),
            ),
            (
                p(r#"{"attributes": {"caCertificateId": "{CN}"}}"#),
                format!("{a}.attributes.caCertificateId"),
            ),
            (
                p(r#"{"attributes": {"a": "{nope}"}}"#),
                format!("{a}.attributes.a"),
            ),
            (
                p(r#"{"revocation": {"sources": ["ftp://x/y"]}}"#),
                format!("{a}.revocation.sources[0]"),
            ),
            (p(r#"{"revocation": {"failOpen": true}}"#), "line 1".into()),
            (
                p(r#"{"thingBinding": "loose"}"#),
                format!("{a}.thingBinding"),
            ),
            (p(r#"{"rotation": "revoke"}"#), format!("{a}.rotation")),
            ("not json".into(), "line 1".into()),
        ];
        for (doc, field) in cases {
            match parse(&doc) {
                Err(ProfilesError::Invalid {
                    field: got,
                    problem,
                }) => {
                    assert!(got.starts_with(&field), "{doc}: {got} ({problem})");
                }
                other => panic!("{doc}: expected an error at {field}, got {other:?}"),
            }
        }
        // Unknown fields are named in serde's message.
        let Err(ProfilesError::Invalid { problem, .. }) = parse(&p(r#"{"policy": "x"}"#)) else {
            panic!("expected an error");
        };
        assert!(problem.contains("unknown field `policy`"), "{problem}");
    }

    /// Issue 20, item 5: the position is said once.
    #[test]
    fn a_json_error_names_its_position_once() {
        let err = parse(r#"{"profiles": {}}"#).unwrap_err().to_string();
        assert_eq!(err.matches("line 1 column").count(), 1, "{err}");
        assert!(err.contains("missing field `version`"), "{err}");
    }

    #[test]
    fn limits_are_inclusive() {
        let p = |body: String| format!(r#"{{"version": 1, "profiles": {{"{A}": {body}}}}}"#);
        let names = |n: usize, prefix: &str| {
            (0..n)
                .map(|i| format!(r#""{prefix}{i}""#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let attributes = |n: usize| {
            (0..n)
                .map(|i| format!(r#""a{i}": "{{CN}}""#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let policies = p(format!(r#"{{"policies": [{}]}}"#, names(MAX_POLICIES, "p")));
        assert!(parse(&policies).is_ok(), "{MAX_POLICIES} policies");
        let untyped = p(format!(
            r#"{{"attributes": {{{}}}}}"#,
            attributes(MAX_UNTYPED_EXTRA_ATTRIBUTES)
        ));
        assert!(parse(&untyped).is_ok(), "untyped");
        let typed = |n: usize| {
            p(format!(
                r#"{{"thingType": "sensor", "attributes": {{{}}}}}"#,
                attributes(n)
            ))
        };
        assert!(parse(&typed(MAX_TYPED_EXTRA_ATTRIBUTES)).is_ok(), "typed");
        assert!(
            parse(&typed(MAX_TYPED_EXTRA_ATTRIBUTES + 1)).is_err(),
            "typed + 1"
        );
    }
}
