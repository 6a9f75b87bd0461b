//! A sample registry (`registry.json` and the certificates beside it, one per folder under
//! `events/`), loaded into the in-memory registry for the offline demo and handler tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::registry::memory::certificate_id_of;
use crate::registry::{CertificateStatus, MemoryRegistry, Registry, ThingSpec};

/// `registry.json`: the sample world, read by the in-memory loader and by `jitr seed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub account: String,
    pub region: String,
    pub config: BTreeMap<String, String>,
    /// The clock the samples were made for (RFC 3339), for events that carry their own time.
    #[serde(default)]
    pub now: Option<String>,
    pub policies: Vec<String>,
    #[serde(default)]
    pub thing_types: Vec<String>,
    #[serde(default)]
    pub thing_groups: Vec<String>,
    pub cas: Vec<CaEntry>,
    #[serde(default)]
    pub things: Vec<String>,
    pub certificates: Vec<CertificateEntry>,
}

/// A registered CA; its key, where the samples have it, is `<stem>.key.pem` beside it.
#[derive(Debug, Clone, Deserialize)]
pub struct CaEntry {
    pub file: String,
    pub active: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEntry {
    pub file: String,
    pub ca_file: String,
    pub status: String,
    /// Things the certificate is attached to.
    #[serde(default)]
    pub things: Vec<String>,
    /// Policies attached to it.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// Reads `dir/registry.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("registry.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A seeded in-memory registry with the configuration the samples are meant for.
#[derive(Debug)]
pub struct SampleRegistry {
    pub registry: MemoryRegistry,
    /// The account the sample events are for (the function's own account in the demo).
    pub account: String,
    pub region: String,
    /// The configuration variables as the manifest gives them (file paths made absolute).
    pub variables: BTreeMap<String, String>,
    /// The manifest's clock, RFC 3339, if it has one.
    pub now: Option<String>,
    /// The ids of the sample certificates, in manifest order.
    pub certificate_ids: Vec<String>,
    /// The Things the manifest creates.
    pub things: Vec<String>,
}

impl SampleRegistry {
    /// A configuration variable, for `Config::from_lookup`.
    pub fn variable(&self, name: &str) -> Option<String> {
        self.variables.get(name).cloned()
    }
}

/// Loads `dir/registry.json` and the files it names.
pub async fn load(dir: &Path) -> Result<SampleRegistry, String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let read = |name: &str| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let manifest = read_manifest(&dir)?;

    let registry = MemoryRegistry::new(&manifest.account, &manifest.region);
    for policy in &manifest.policies {
        registry.create_policy(policy);
    }
    for thing_type in &manifest.thing_types {
        registry.create_thing_type(thing_type);
    }
    for group in &manifest.thing_groups {
        registry.create_thing_group(group);
    }
    for ca in &manifest.cas {
        registry
            .register_ca(&read(&ca.file)?, ca.active)
            .map_err(|e| format!("{}: {e}", ca.file))?;
    }
    for thing in &manifest.things {
        let spec = ThingSpec {
            name: thing.clone(),
            ..ThingSpec::default()
        };
        registry
            .create_thing(&spec)
            .await
            .map_err(|e| format!("thing {thing}: {e}"))?;
    }
    let mut certificate_ids = Vec::new();
    for cert in &manifest.certificates {
        let failed = |e: crate::registry::RegistryError| format!("{}: {e}", cert.file);
        let ca_id =
            certificate_id_of(&read(&cert.ca_file)?, "RegisterCertificate").map_err(failed)?;
        let status = CertificateStatus::parse(&cert.status);
        let id = registry
            .register_certificate(&read(&cert.file)?, Some(&ca_id), status)
            .map_err(failed)?;
        let arn = registry.certificate_arn(&id);
        certificate_ids.push(id);
        for thing in &cert.things {
            registry
                .attach_thing_principal(thing, &arn)
                .await
                .map_err(failed)?;
        }
        for policy in &cert.policies {
            registry.attach_policy(policy, &arn).await.map_err(failed)?;
        }
    }

    // Files named in the configuration are relative to the sample folder.
    let mut variables = manifest.config;
    for variable in ["REVOCATION_LIST", "REGISTRATION_PROFILES"] {
        if let Some(value) = variables.get_mut(variable)
            && !value.contains("://")
            && value != crate::revocation::DISTRIBUTION_POINT
        {
            *value = format!("file://{}", dir.join(&*value).display());
        }
    }
    Ok(SampleRegistry {
        registry,
        account: manifest.account,
        region: manifest.region,
        variables,
        now: manifest.now,
        certificate_ids,
        things: manifest.things,
    })
}
