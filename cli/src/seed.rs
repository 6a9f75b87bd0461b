//! `jitr seed`: the sample world of a folder's `registry.json`, loaded into an emulator (or any
//! IoT endpoint): CAs registered the real way (registration code, verification certificate,
//! auto-registration on), policies, Things, certificates with their status and attachments,
//! and the CRL published to S3. PENDING_ACTIVATION certificates are left out: only a device's
//! connect makes one.

use std::path::Path;

use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::iot::load_sdk_config_for_endpoint;
use jitr_aws::source::S3Fetcher;
use jitr_domain::registry::{CertificateStatus, Registry, RegistryError, ThingSpec};
use jitr_domain::samples::read_manifest;
use jitr_pki::Ca;

use crate::output::{Failure, line};

pub async fn run(
    endpoint_url: &str,
    samples: &Path,
    policy_path: &Path,
    bucket: &str,
    ledger_table: &str,
) -> Result<(), Failure> {
    let read = |name: &str| {
        let path = samples.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let failed = |what: &str, e: RegistryError| Failure::Message(format!("{what}: {e}"));
    let manifest = read_manifest(samples)?;
    let policy = std::fs::read_to_string(policy_path)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let sdk = load_sdk_config_for_endpoint(endpoint_url).await;
    let iot = IotRegistry::from_sdk_config(&sdk);

    for entry in &manifest.cas {
        let key_file = entry.file.replace(".pem", ".key.pem");
        let ca = Ca::from_pem(&read(&entry.file)?, &read(&key_file)?).map_err(|e| e.to_string())?;
        let id = crate::ca::register(&iot, &ca).await?;
        if !entry.active {
            iot.set_ca_active(&id, false)
                .await
                .map_err(|e| failed(&entry.file, e))?;
        }
        let status = if entry.active { "ACTIVE" } else { "INACTIVE" };
        line(format!(
            "CA {}: {id} ({status}, auto-registration on)",
            entry.file
        ))?;
    }
    for name in &manifest.policies {
        iot.create_policy(name, &policy)
            .await
            .map_err(|e| failed(name, e))?;
        line(format!("policy: {name} ({})", policy_path.display()))?;
    }
    for thing in &manifest.things {
        let spec = ThingSpec {
            name: thing.clone(),
            ..ThingSpec::default()
        };
        match iot.create_thing(&spec).await {
            Err(e) if e.kind() != jitr_domain::registry::RegistryErrorKind::AlreadyExists => {
                return Err(failed(thing, e));
            }
            _ => line(format!("thing: {thing}"))?,
        }
    }
    for cert in &manifest.certificates {
        let status = CertificateStatus::parse(&cert.status);
        if status == CertificateStatus::PendingActivation {
            line(format!(
                "certificate {}: left out (PENDING_ACTIVATION comes from a device's connect)",
                cert.file
            ))?;
            continue;
        }
        let id = iot
            .register_certificate(&read(&cert.file)?, &read(&cert.ca_file)?, &status)
            .await
            .map_err(|e| failed(&cert.file, e))?;
        let arn = iot
            .describe_certificate(&id)
            .await
            .map_err(|e| failed(&cert.file, e))?
            .arn;
        for thing in &cert.things {
            iot.attach_thing_principal(thing, &arn)
                .await
                .map_err(|e| failed(&cert.file, e))?;
        }
        for policy in &cert.policies {
            iot.attach_policy(policy, &arn)
                .await
                .map_err(|e| failed(&cert.file, e))?;
        }
        line(format!(
            "certificate {}: {status}, things [{}], policies [{}]",
            cert.file,
            cert.things.join(","),
            cert.policies.join(",")
        ))?;
    }
    if let Some(list) = manifest
        .config
        .get("REVOCATION_LIST")
        .filter(|l| !l.contains("://"))
    {
        let crl = std::fs::read(samples.join(list)).map_err(|e| e.to_string())?;
        S3Fetcher::from_sdk_config(&sdk)
            .publish(bucket, list, crl)
            .await?;
        line(format!("CRL: s3://{bucket}/{list}"))?;
    }
    // The device ledger, so `jitr history` and ledger-backed local runs work (an existing
    // table is kept).
    DynamoLedger::from_sdk_config(&sdk, ledger_table)
        .create_table()
        .await
        .map_err(|e| e.to_string())?;
    line(format!(
        "ledger table: {ledger_table} (DEVICE_LEDGER_TABLE={ledger_table} for jitr history and the functions)"
    ))?;
    Ok(())
}
