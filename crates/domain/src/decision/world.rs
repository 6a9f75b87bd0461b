//! The table tests' world: a CA, its registered description, and `run`, which decides for a
//! device with one fact changed.

use super::*;
use jitr_pki::{Ca, Device};
use time::OffsetDateTime;

pub const ACCOUNT: &str = "123456789012";

pub struct World {
    pub ca: Ca,
    pub ca_certificate: CaCertificate,
    pub ca_description: CaDescription,
}

pub fn world() -> World {
    world_with(Ca::new("Table CA", "Acme").unwrap())
}

/// A device whose certificate carries a subject serial number besides its CN.
pub fn sensor_7(w: &World) -> Device {
    w.ca.issue(&jitr_pki::DeviceSpec {
        subject_serial_number: Some("SN-7".into()),
        ..jitr_pki::DeviceSpec::named("sensor-7")
    })
    .unwrap()
}

pub fn world_with(ca: Ca) -> World {
    let ca_certificate = CaCertificate::from_pem(&ca.pem).unwrap();
    let ca_description = CaDescription {
        id: ca.id(),
        active: true,
        pem: ca.pem.clone(),
    };
    World {
        ca,
        ca_certificate,
        ca_description,
    }
}

pub fn description(
    device: &Device,
    ca_id: &str,
    status: CertificateStatus,
) -> CertificateDescription {
    CertificateDescription {
        id: device.id.clone(),
        arn: format!("arn:aws:iot:eu-west-1:{ACCOUNT}:cert/{}", device.id),
        status,
        pem: device.cert_pem.clone(),
        ca_certificate_id: Some(ca_id.to_owned()),
    }
}

pub fn event(device: &Device, ca_id: &str) -> RegistrationEvent {
    RegistrationEvent {
        certificate_id: device.id.clone(),
        ca_certificate_id: ca_id.to_owned(),
        timestamp_ms: 0,
        account_id: ACCOUNT.into(),
        registration_timestamp_ms: None,
    }
}

pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Facts that differ from the default world.
#[derive(Default)]
pub struct Tweak<'a> {
    pub ca: Option<Option<&'a CaDescription>>,
    pub no_ca_certificate: bool,
    pub revocation: Option<RevocationFacts<'a>>,
    pub seconds_earlier: i64,
}

/// Decides for `device` with the world's CA, with `tweak` applied to the facts.
pub fn run(
    w: &World,
    device: &Device,
    status: CertificateStatus,
    config: &Config,
    tweak: Tweak<'_>,
) -> Result<Decision, JitrError> {
    let ca_id = w.ca.id();
    let cert = description(device, &ca_id, status);
    let profile = config.default_profile();
    let facts = Facts {
        certificate: &cert,
        ca: tweak.ca.unwrap_or(Some(&w.ca_description)),
        ca_certificate: if tweak.no_ca_certificate {
            None
        } else {
            Some(&w.ca_certificate)
        },
        profile: Some(&profile),
        revocation: tweak.revocation.unwrap_or(RevocationFacts::NOT_CONFIGURED),
        now: now() - tweak.seconds_earlier,
    };
    decide(&event(device, &ca_id), &facts, config)
}

pub fn reason(decision: Result<Decision, JitrError>) -> String {
    match decision {
        Ok(Decision::Reject { reason }) => reason.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}
