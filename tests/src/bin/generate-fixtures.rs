//! Regenerates `events/registration/`: the sample CAs, device certificates, CRL, the
//! registry manifest the demo seeds from, and one event file per scenario.
//!
//! Run with `make fixtures` (or `cargo run -p jitr-tests --bin generate-fixtures -- DIR`).
//! Needs `openssl` for the one key rcgen cannot make, an RSA-1024 key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use jitr_tests::pki::{Ca, DeviceSpec};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ACCOUNT: &str = "123456789012";
const OTHER_ACCOUNT: &str = "210987654321";
const EVENT_TIME_MS: i64 = 1_763_800_000_000;

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "events/registration".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();

    let ca = Ca::new("Acme Devices Root CA", "Acme Devices").unwrap();
    let partner = Ca::new("Partner Devices CA", "Partner").unwrap();
    let unregistered = Ca::new("Unregistered CA", "Nobody").unwrap();
    // Same subject as the real CA, different key: what a forger would try.
    let impostor = Ca::new("Acme Devices Root CA", "Acme Devices").unwrap();
    write("ca.pem", &ca.pem);
    write("ca.key.pem", &ca.key_pem());
    write("partner-ca.pem", &partner.pem);
    write("unregistered-ca.pem", &unregistered.pem);

    // Keys are kept (public test material) so the samples can connect to an emulator.
    let device = |ca: &Ca, file: &str, spec: DeviceSpec| {
        let device = ca.issue(&spec).unwrap();
        write(file, &device.cert_pem);
        if let Some(key) = &device.key_pem {
            write(&file.replace(".pem", ".key.pem"), key);
        }
        device
    };
    let named = DeviceSpec::named;
    let happy = device(
        &ca,
        "sensor-0001.pem",
        DeviceSpec {
            subject_serial_number: Some("SN-0001".into()),
            ..named("sensor-0001")
        },
    );
    let revoked = device(&ca, "sensor-0002.pem", named("sensor-0002"));
    let unknown_ca = device(&unregistered, "sensor-0003.pem", named("sensor-0003"));
    let not_allowed = device(&partner, "sensor-0004.pem", named("sensor-0004"));
    let expired = device(
        &ca,
        "sensor-0005.pem",
        DeviceSpec {
            not_before: datetime!(2020-01-01 0:00 UTC),
            not_after: datetime!(2021-01-01 0:00 UTC),
            ..named("sensor-0005")
        },
    );
    let forged = device(&impostor, "sensor-0006.pem", named("sensor-0006"));
    let weak = device(
        &ca,
        "sensor-0007.pem",
        DeviceSpec {
            public_key: Some(rsa_1024_public_key()),
            ..named("sensor-0007")
        },
    );
    let bad_name = device(&ca, "sensor-0008.pem", named("sensor 0008/../admin"));
    let active = device(&ca, "sensor-0009.pem", named("sensor-0009"));

    // The fixture must stay current for years, so nextUpdate is far out; real CRLs say days.
    let now = OffsetDateTime::now_utc();
    write(
        "crl.pem",
        &ca.crl(
            std::slice::from_ref(&revoked.serial),
            now - Duration::days(1),
            now + Duration::days(365 * 50),
        )
        .unwrap(),
    );

    let cert = |file: &str, ca_file: &str, status: &str| json!({"file": file, "caFile": ca_file, "status": status});
    let manifest = json!({
        "account": ACCOUNT,
        "region": "eu-west-1",
        "config": {
            "DEVICE_POLICY_NAME": "jitr-device",
            "ALLOWED_CA_CERTIFICATE_IDS": format!("{},{}", ca.id(), unregistered.id()),
            "THING_NAME_SOURCE": "common-name",
            "REVOCATION_LIST": "crl.pem"
        },
        "policies": ["jitr-device"],
        "cas": [{"file": "ca.pem", "active": true}, {"file": "partner-ca.pem", "active": true}],
        "certificates": [
            cert("sensor-0001.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0002.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0003.pem", "unregistered-ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0004.pem", "partner-ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0005.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0006.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0007.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0008.pem", "ca.pem", "PENDING_ACTIVATION"),
            cert("sensor-0009.pem", "ca.pem", "ACTIVE")
        ]
    });
    write(
        "registry.json",
        &(serde_json::to_string_pretty(&manifest).unwrap() + "\n"),
    );

    let event = |cert_id: &str, ca_id: &str, account: &str, registered: serde_json::Value| {
        serde_json::to_string_pretty(&json!({
            "certificateId": cert_id,
            "caCertificateId": ca_id,
            "timestamp": EVENT_TIME_MS,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": account,
            "certificateRegistrationTimestamp": registered,
            "sourceIp": "198.51.100.7"
        }))
        .unwrap()
            + "\n"
    };
    let ca_id = ca.id();
    write(
        "01-happy-path.json",
        &event(&happy.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "02-duplicate.json",
        &event(&happy.id, &ca_id, ACCOUNT, json!(EVENT_TIME_MS.to_string())),
    );
    write(
        "03-revoked-serial.json",
        &event(&revoked.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "04-unknown-ca.json",
        &event(&unknown_ca.id, &unregistered.id(), ACCOUNT, json!(null)),
    );
    write(
        "05-ca-not-allowed.json",
        &event(&not_allowed.id, &partner.id(), ACCOUNT, json!(null)),
    );
    write(
        "06-expired.json",
        &event(&expired.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "07-wrong-signature.json",
        &event(&forged.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "08-rsa-1024-key.json",
        &event(&weak.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "09-invalid-thing-name.json",
        &event(&bad_name.id, &ca_id, ACCOUNT, json!(null)),
    );
    write(
        "10-malformed.json",
        "{\"certificateId\": \"not-hex\", \"caCertificateId\": 42, \"timestamp\": \n",
    );
    write(
        "11-wrong-account.json",
        &event(&happy.id, &ca_id, OTHER_ACCOUNT, json!(null)),
    );
    write(
        "12-already-active.json",
        &event(&active.id, &ca_id, ACCOUNT, json!(null)),
    );
    println!("wrote fixtures to {}", dir.display());
}

/// rcgen cannot generate an RSA key under 2048 bits (by design); openssl can.
fn rsa_1024_public_key() -> String {
    let tmp = std::env::temp_dir().join(format!("jitr-rsa1024-{}.pem", std::process::id()));
    run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            path(&tmp),
        ],
    );
    let public =
        String::from_utf8(run("openssl", &["pkey", "-in", path(&tmp), "-pubout"])).unwrap();
    std::fs::remove_file(&tmp).ok();
    public
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
