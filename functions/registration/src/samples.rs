//! The sample registry under `events/registration/` (`registry.json` and the certificates
//! beside it), loaded into the in-memory registry for the offline demo and handler tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jitr_core::Config;
use jitr_core::registry::memory::certificate_id_of;
use jitr_core::registry::{CertificateStatus, MemoryRegistry};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    account: String,
    region: String,
    config: BTreeMap<String, String>,
    policies: Vec<String>,
    cas: Vec<CaEntry>,
    certificates: Vec<CertificateEntry>,
}

#[derive(Debug, Deserialize)]
struct CaEntry {
    file: String,
    active: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateEntry {
    file: String,
    ca_file: String,
    status: String,
}

/// A seeded in-memory registry with the configuration the samples are meant for.
#[derive(Debug)]
pub struct SampleRegistry {
    pub registry: MemoryRegistry,
    pub config: Config,
    /// The account the sample events are for (the function's own account in the demo).
    pub account: String,
    pub region: String,
    /// The configuration variables as the manifest gives them (paths made absolute).
    pub variables: BTreeMap<String, String>,
}

/// Loads `dir/registry.json` and the files it names.
pub fn load(dir: &Path) -> Result<SampleRegistry, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let read = |name: &str| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let manifest: Manifest =
        serde_json::from_str(&read("registry.json")?).map_err(|e| format!("registry.json: {e}"))?;

    let registry = MemoryRegistry::new(&manifest.account, &manifest.region);
    for policy in &manifest.policies {
        registry.create_policy(policy);
    }
    for ca in &manifest.cas {
        registry
            .register_ca(&read(&ca.file)?, ca.active)
            .map_err(|e| format!("{}: {e}", ca.file))?;
    }
    for cert in &manifest.certificates {
        let ca_id = certificate_id_of(&read(&cert.ca_file)?, "RegisterCertificate")
            .map_err(|e| e.to_string())?;
        registry
            .register_certificate(
                &read(&cert.file)?,
                Some(&ca_id),
                CertificateStatus::parse(&cert.status),
            )
            .map_err(|e| format!("{}: {e}", cert.file))?;
    }

    let mut variables = manifest.config;
    if let Some(list) = variables.get_mut("REVOCATION_LIST")
        && !list.contains("://")
    {
        *list = format!("file://{}", absolute(&dir, list).display());
    }
    let config =
        Config::from_lookup(|name| variables.get(name).cloned()).map_err(|e| e.to_string())?;
    Ok(SampleRegistry {
        registry,
        config,
        account: manifest.account,
        region: manifest.region,
        variables,
    })
}

fn absolute(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}
