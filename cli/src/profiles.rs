//! `jitr profiles check FILE`: validates a registration profiles document offline, as the
//! registration function would, and prints the effective profile of each CA.

use std::path::Path;

use jitr_domain::Config;
use jitr_domain::profiles::{Profiles, Unlisted, parse_document};

use crate::output::{Failure, line};

/// The default profile comes from the registration variables in this shell, as in the function;
/// without `DEVICE_POLICY_NAME` it is shown with the policy `jitr-device` (the template's).
pub fn check(file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (config, from_env) = match std::env::var("DEVICE_POLICY_NAME") {
        Ok(_) => (
            jitr_aws::environment::config().map_err(|e| e.to_string())?,
            true,
        ),
        Err(_) => (Config::with_policy("jitr-device"), false),
    };
    let profiles = parse_document(&bytes, &config.default_profile())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    print(file, &profiles, from_env)?;
    for line_text in typed_thing_notes(&profiles, config.device_id_attribute.as_deref()) {
        line(line_text)?;
    }
    Ok(())
}

/// IoT's ListThings finds a typed Thing by an attribute only when its thing type lists that
/// attribute as searchable: with `DEVICE_ID_ATTRIBUTE`, every thing type a profile names must.
/// Offline the types cannot be read, so this says what to check (`jitr doctor` reads them).
fn typed_thing_notes(profiles: &Profiles, device_id_attribute: Option<&str>) -> Vec<String> {
    let Some(attribute) = device_id_attribute else {
        return Vec::new();
    };
    let mut types: Vec<&str> = std::iter::once(&profiles.default)
        .chain(profiles.by_ca.values())
        .filter_map(|p| p.thing_type.as_deref())
        .collect();
    types.sort_unstable();
    types.dedup();
    types
        .into_iter()
        .map(|name| {
            format!(
                "note: thing type {name} must list {attribute} (DEVICE_ID_ATTRIBUTE) among its searchable attributes, or webhooks cannot find its Things; jitr doctor checks it"
            )
        })
        .collect()
}

fn print(file: &Path, profiles: &Profiles, from_env: bool) -> Result<(), Failure> {
    line(format!(
        "{}: valid, {} CA profile(s); CAs without one: {}",
        file.display(),
        profiles.by_ca.len(),
        match profiles.unlisted {
            Unlisted::UseDefault => "the default profile",
            Unlisted::Reject => "refused (NoProfile)",
        }
    ))?;
    line("")?;
    line(format!(
        "default  (from {})",
        if from_env {
            "the registration variables in this shell"
        } else {
            "DEVICE_POLICY_NAME=jitr-device; set the function's variables to see yours"
        }
    ))?;
    line(&profiles.default)?;
    for (ca_id, profile) in &profiles.by_ca {
        line("")?;
        line(format!("CA {ca_id}  profile {}", profile.name))?;
        line(profile)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_profiles_get_a_note_only_with_a_device_id_attribute() {
        let document = br#"{"version": 1, "profiles": {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": {"thingType": "sensor"}}}"#;
        let profiles = parse_document(
            document,
            &Config::with_policy("jitr-device").default_profile(),
        )
        .unwrap();
        assert!(typed_thing_notes(&profiles, None).is_empty());
        let notes = typed_thing_notes(&profiles, Some("menderId"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("thing type sensor must list menderId"));
    }
}
