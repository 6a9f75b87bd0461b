//! `jitr ca register`: onboard a device CA the way AWS IoT asks, with the CA's key staying on
//! this machine: GetRegistrationCode, a verification certificate (CN = the code) signed here by
//! the CA key, RegisterCACertificate ACTIVE with auto-registration on. Prints the CA id.

use std::path::Path;

use jitr_aws::IotRegistry;
use jitr_aws::iot::{load_sdk_config, load_sdk_config_for_endpoint};
use jitr_domain::certificate::{CaCertificate, CertificateProblem};
use jitr_pki::Ca;

use crate::output::{Failure, line};

pub async fn run(endpoint_url: Option<&str>, ca_cert: &Path, ca_key: &Path) -> Result<(), Failure> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let ca = Ca::from_pem(&read(ca_cert)?, &read(ca_key)?)
        .map_err(|e| format!("{} / {}: {e}", ca_cert.display(), ca_key.display()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    refuse_unusable(&ca, now)
        .map_err(|why| format!("{}: not registered: {why}", ca_cert.display()))?;
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
        "its devices are admitted while AllowedCaCertificateIds (ALLOWED_CA_CERTIFICATE_IDS) is empty; to admit only listed CAs add {id} there, or give it a registration profile"
    ))
}

/// Registers `ca` ACTIVE with auto-registration on (an already registered CA is success);
/// returns its id. Only the CA certificate and the verification certificate leave the machine.
pub async fn register(iot: &IotRegistry, ca: &Ca) -> Result<String, Failure> {
    // A RegistryError names its operation ("GetRegistrationCode failed: ...") already.
    let code = iot.registration_code().await.map_err(|e| e.to_string())?;
    let verification = ca
        .verification_certificate(&code)
        .map_err(|e| e.to_string())?;
    Ok(iot
        .register_ca(&ca.pem, &verification, true)
        .await
        .map_err(|e| e.to_string())?)
}

/// Why `ca` cannot be a device CA now, in a sentence, before anything is sent to IoT: IoT
/// would register a device certificate or an expired CA, and no device would ever be admitted.
fn refuse_unusable(ca: &Ca, now: i64) -> Result<(), String> {
    let certificate =
        CaCertificate::from_pem(&ca.pem).ok_or("it is not a readable X.509 certificate")?;
    certificate.check_authority(now).map_err(|problem| {
        match problem {
            CertificateProblem::CaNotAuthority => {
                "it is not a CA certificate (basicConstraints cA is not TRUE): give the certificate of the CA that signs your devices, not a device's"
            }
            CertificateProblem::CaCannotSignCertificates => {
                "its keyUsage does not allow signing certificates (keyCertSign)"
            }
            CertificateProblem::CaExpired => "it has expired (notAfter is past)",
            CertificateProblem::CaNotYetValid => "it is not valid yet (notBefore is ahead)",
            _ => "it is not a readable X.509 certificate",
        }
        .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitr_pki::CaSpec;

    #[test]
    fn only_a_valid_signing_ca_is_registered() {
        let now = time::OffsetDateTime::now_utc();
        let spec = CaSpec::named("Fleet CA", "Acme");
        type Case = (
            &'static str,
            fn(&mut CaSpec, time::OffsetDateTime),
            Option<&'static str>,
        );
        let cases: [Case; 5] = [
            ("a CA", |_, _| {}, None),
            (
                "a leaf",
                |s, _| s.is_ca = false,
                Some("not a CA certificate"),
            ),
            (
                "no keyCertSign",
                |s, _| s.key_cert_sign = false,
                Some("keyCertSign"),
            ),
            (
                "expired",
                |s, now| {
                    s.not_before = now - time::Duration::days(30);
                    s.not_after = now - time::Duration::days(1);
                },
                Some("expired"),
            ),
            (
                "not yet valid",
                |s, now| {
                    s.not_before = now + time::Duration::days(1);
                    s.not_after = now + time::Duration::days(30);
                },
                Some("not valid yet"),
            ),
        ];
        for (label, change, refused) in cases {
            let mut spec = spec.clone();
            change(&mut spec, now);
            let ca = Ca::with_spec(&spec).unwrap();
            let verdict = refuse_unusable(&ca, now.unix_timestamp());
            match refused {
                None => assert_eq!(verdict, Ok(()), "{label}"),
                Some(words) => assert!(
                    verdict.as_ref().is_err_and(|why| why.contains(words)),
                    "{label}: {verdict:?}"
                ),
            }
        }
    }
}
