//! `jitr seed`: the sample CA (registered with a verification certificate, auto-registration
//! on), the device policy, and the CRL in S3, loaded into an emulator.

use std::path::Path;

use jitr_core::pki::Ca;

use crate::output::{Failure, line};
use jitr_core::registry::IotRegistry;
use jitr_core::registry::iot::load_sdk_config_for_endpoint;
use jitr_core::revocation::S3CrlFetcher;

pub async fn run(
    endpoint_url: &str,
    samples: &Path,
    policy_path: &Path,
    bucket: &str,
) -> Result<(), Failure> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let ca = Ca::from_pem(
        &read(&samples.join("ca.pem"))?,
        &read(&samples.join("ca.key.pem"))?,
    )
    .map_err(|e| e.to_string())?;
    let policy = read(policy_path)?;

    let sdk = load_sdk_config_for_endpoint(endpoint_url).await;
    let iot = IotRegistry::from_sdk_config(&sdk);
    let code = iot.registration_code().await.map_err(|e| e.to_string())?;
    let verification = ca
        .verification_certificate(&code)
        .map_err(|e| e.to_string())?;
    let ca_id = iot
        .register_ca(&ca.pem, &verification, true)
        .await
        .map_err(|e| e.to_string())?;
    line(format!(
        "CA registered: {ca_id} (ACTIVE, auto-registration on)"
    ))?;
    // The policy name the samples' configuration expects.
    let policy_name = jitr_core::samples::load(samples)
        .await?
        .variable("DEVICE_POLICY_NAME")
        .ok_or("the samples name no DEVICE_POLICY_NAME")?;
    iot.create_policy(&policy_name, &policy)
        .await
        .map_err(|e| e.to_string())?;
    line(format!("policy: {policy_name}"))?;
    let crl = std::fs::read(samples.join("crl.pem")).map_err(|e| e.to_string())?;
    S3CrlFetcher::from_sdk_config(&sdk)
        .publish(bucket, "crl.pem", crl)
        .await?;
    line(format!("CRL: s3://{bucket}/crl.pem"))?;
    Ok(())
}
