//! `jitr ca register`: onboard a device CA the way AWS IoT asks, with the CA's key staying on
//! this machine: GetRegistrationCode, a verification certificate (CN = the code) signed here by
//! the CA key, RegisterCACertificate ACTIVE with auto-registration on. Prints the CA id.

use std::path::Path;

use jitr_core::pki::Ca;
use jitr_core::registry::IotRegistry;
use jitr_core::registry::iot::{load_sdk_config, load_sdk_config_for_endpoint};

use crate::output::{Failure, line};

pub async fn run(endpoint_url: Option<&str>, ca_cert: &Path, ca_key: &Path) -> Result<(), Failure> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let ca = Ca::from_pem(&read(ca_cert)?, &read(ca_key)?)
        .map_err(|e| format!("{} / {}: {e}", ca_cert.display(), ca_key.display()))?;
    let sdk = match endpoint_url {
        Some(url) => load_sdk_config_for_endpoint(url).await,
        None => load_sdk_config().await,
    };
    let iot = IotRegistry::from_sdk_config(&sdk);
    let id = register(&iot, &ca).await?;
    line(format!("CA {id} registered: ACTIVE, auto-registration on"))?;
    // What JITR needs is the auto-registration above; the registry event configurations are
    // shown so nobody switches them on for it (AWS IoT developer guide, auto-register-device-cert).
    let events = match iot.enabled_event_types().await {
        Ok(on) if on.is_empty() => "none enabled".to_owned(),
        Ok(on) => format!("enabled {}", on.join(", ")),
        Err(e) => format!("unreadable ({e})"),
    };
    line(format!(
        "event configurations: {events}; JITR needs none of them (its event follows the CA's auto-registration)"
    ))?;
    line(format!(
        "admit its devices: add {id} to ALLOWED_CA_CERTIFICATE_IDS (AllowedCaCertificateIds), or give it a registration profile"
    ))
}

/// Registers `ca` ACTIVE with auto-registration on (an already registered CA is success);
/// returns its id. Only the CA certificate and the verification certificate leave the machine.
pub async fn register(iot: &IotRegistry, ca: &Ca) -> Result<String, Failure> {
    let code = iot
        .registration_code()
        .await
        .map_err(|e| format!("GetRegistrationCode: {e}"))?;
    let verification = ca
        .verification_certificate(&code)
        .map_err(|e| e.to_string())?;
    Ok(iot
        .register_ca(&ca.pem, &verification, true)
        .await
        .map_err(|e| format!("RegisterCACertificate: {e}"))?)
}
