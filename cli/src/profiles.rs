//! `jitr profiles check FILE`: validates a registration profiles document offline, as the
//! registration function would, and prints the effective profile of each CA.

use std::path::Path;

use jitr_core::Config;
use jitr_core::profiles::{Profiles, Unlisted, parse_document};

use crate::output::{Failure, line};

/// The default profile comes from the registration variables in this shell, as in the function;
/// without `DEVICE_POLICY_NAME` it is shown with the policy `jitr-device` (the template's).
pub fn check(file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (config, from_env) = match std::env::var("DEVICE_POLICY_NAME") {
        Ok(_) => (Config::from_env().map_err(|e| e.to_string())?, true),
        Err(_) => (Config::with_policy("jitr-device"), false),
    };
    let profiles = parse_document(&bytes, &config.default_profile())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    print(file, &profiles, from_env)
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
