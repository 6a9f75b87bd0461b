//! Regenerates `events/registration/` and `events/lifecycle/`: the sample CAs, device
//! certificates, CRL, the registry manifests the demo seeds from, and one event file per
//! scenario (lifecycle webhooks signed with the documented test secret).
//!
//! Run with `make fixtures` (or `cargo run -p jitr-tests --bin generate-fixtures -- EVENTS_DIR
//! [FOLDER...]` to regenerate only some of `registration`, `lifecycle`, `fleet`).
//! Needs `openssl` for the one key rcgen cannot make, an RSA-1024 key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use jitr_testkit::pki::{Ca, Device, DeviceSpec};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const ACCOUNT: &str = "123456789012";
const OTHER_ACCOUNT: &str = "210987654321";
const EVENT_TIME_MS: i64 = 1_763_800_000_000;

/// The webhook secret the lifecycle samples are signed with (a public test value).
const DEMO_WEBHOOK_SECRET: &str = "jitr-demo-webhook-secret";
/// The clock the lifecycle samples are made for.
const LIFECYCLE_NOW: &str = "2026-11-22T12:00:00Z";

fn main() {
    let mut args = std::env::args().skip(1);
    let events = PathBuf::from(args.next().unwrap_or_else(|| "events".into()));
    let only: Vec<String> = args.collect();
    let wanted = |folder: &str| only.is_empty() || only.iter().any(|f| f == folder);
    if wanted("registration") {
        registration(&events.join("registration"));
    }
    if wanted("lifecycle") {
        lifecycle(&events.join("lifecycle"));
    }
    if wanted("fleet") {
        fleet(&events.join("fleet"));
    }
}

/// Issues a device certificate and writes it to `dir` as `file`, with its key beside it. Keys
/// are kept (public test material) so the samples can connect to an emulator.
fn write_device(dir: &Path, ca: &Ca, file: &str, spec: &DeviceSpec) -> Device {
    let device = ca.issue(spec).unwrap();
    std::fs::write(dir.join(file), &device.cert_pem).unwrap();
    if let Some(key) = &device.key_pem {
        std::fs::write(dir.join(file.replace(".pem", ".key.pem")), key).unwrap();
    }
    device
}

/// Two CAs with their own profiles, a retired third, and a cross-CA takeover attempt.
fn fleet(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let factory = Ca::new("Acme Factory CA", "Acme Devices").unwrap();
    let partner = Ca::new("Partner Devices CA", "Partner").unwrap();
    let retired = Ca::new("Acme Legacy CA", "Acme Devices").unwrap();
    for (file, ca) in [
        ("factory-ca", &factory),
        ("partner-ca", &partner),
        ("retired-ca", &retired),
    ] {
        write(&format!("{file}.pem"), &ca.pem);
        write(&format!("{file}.key.pem"), &ca.key_pem());
    }
    let device = |ca: &Ca, file: &str, spec: DeviceSpec| write_device(dir, ca, file, &spec);
    let with_serial = |cn: &str, serial: &str| DeviceSpec {
        subject_serial_number: Some(serial.into()),
        ..DeviceSpec::named(cn)
    };
    let made = device(
        &factory,
        "factory-0001.pem",
        with_serial("factory-0001", "SN0001"),
    );
    let bought = device(
        &partner,
        "partner-0001.pem",
        DeviceSpec::named("partner-0001"),
    );
    // A partner certificate whose CN names the factory device's Thing.
    let takeover = device(
        &partner,
        "partner-takeover.pem",
        DeviceSpec::named("acme-SN0001"),
    );
    let revoked = device(
        &factory,
        "factory-0002.pem",
        with_serial("factory-0002", "SN0002"),
    );
    let legacy = device(
        &retired,
        "legacy-0001.pem",
        DeviceSpec::named("legacy-0001"),
    );
    let now = OffsetDateTime::now_utc();
    write(
        "factory-crl.pem",
        &factory
            .crl(
                std::slice::from_ref(&revoked.serial),
                now - Duration::days(1),
                now + Duration::days(365 * 50),
            )
            .unwrap(),
    );
    let profiles = json!({
        "version": 1,
        "unlistedCas": "reject",
        "profiles": {
            factory.id(): {
                "name": "factory",
                "policies": ["factory-device"],
                "thingType": "sensor",
                "thingName": "acme-{serialNumber}",
                "attributes": {"commonName": "{CN}", "organization": "{O}"},
                "thingBinding": "strict"
            },
            partner.id(): {
                "name": "partner",
                "policies": ["partner-device"],
                "thingGroups": ["partner-fleet"],
                "revocation": {"sources": []}
            },
            retired.id(): {"name": "legacy", "enabled": false}
        }
    });
    write(
        "profiles.json",
        &(serde_json::to_string_pretty(&profiles).unwrap() + "\n"),
    );
    let cert = |file: &str, ca_file: &str| json!({"file": file, "caFile": ca_file, "status": "PENDING_ACTIVATION"});
    let manifest = json!({
        "account": ACCOUNT,
        "region": "eu-west-1",
        "config": {
            "DEVICE_POLICY_NAME": "jitr-device",
            "REVOCATION_LIST": "factory-crl.pem",
            "REGISTRATION_PROFILES": "profiles.json"
        },
        "policies": ["jitr-device", "factory-device", "partner-device"],
        "thingTypes": ["sensor"],
        "thingGroups": ["partner-fleet"],
        "cas": [
            {"file": "factory-ca.pem", "active": true},
            {"file": "partner-ca.pem", "active": true},
            {"file": "retired-ca.pem", "active": true}
        ],
        "certificates": [
            cert("factory-0001.pem", "factory-ca.pem"),
            cert("partner-0001.pem", "partner-ca.pem"),
            cert("partner-takeover.pem", "partner-ca.pem"),
            cert("factory-0002.pem", "factory-ca.pem"),
            cert("legacy-0001.pem", "retired-ca.pem")
        ]
    });
    write(
        "registry.json",
        &(serde_json::to_string_pretty(&manifest).unwrap() + "\n"),
    );
    let event = |device: &Device, ca: &Ca| {
        serde_json::to_string_pretty(&json!({
            "certificateId": device.id,
            "caCertificateId": ca.id(),
            "timestamp": EVENT_TIME_MS,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": ACCOUNT,
            "certificateRegistrationTimestamp": null,
            "sourceIp": "198.51.100.7"
        }))
        .unwrap()
            + "\n"
    };
    write("01-factory-device.json", &event(&made, &factory));
    write("02-partner-device.json", &event(&bought, &partner));
    write("03-partner-takeover.json", &event(&takeover, &partner));
    write("04-factory-revoked.json", &event(&revoked, &factory));
    write("05-retired-ca.json", &event(&legacy, &retired));
}

fn registration(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();

    let ca = Ca::new("Acme Devices Root CA", "Acme Devices").unwrap();
    let partner = Ca::new("Partner Devices CA", "Partner").unwrap();
    let unregistered = Ca::new("Unregistered CA", "Nobody").unwrap();
    // Same subject as the real CA, different key: what a forger would try.
    let impostor = Ca::new("Acme Devices Root CA", "Acme Devices").unwrap();
    write("ca.pem", &ca.pem);
    write("ca.key.pem", &ca.key_pem());
    write("partner-ca.pem", &partner.pem);
    write("partner-ca.key.pem", &partner.key_pem());
    write("unregistered-ca.pem", &unregistered.pem);

    let device = |ca: &Ca, file: &str, spec: DeviceSpec| write_device(dir, ca, file, &spec);
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

fn lifecycle(dir: &Path) {
    use jitr_domain::webhook::sign;
    use time::format_description::well_known::Rfc3339;

    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let ca = Ca::new("Acme Devices Root CA", "Acme Devices").unwrap();
    write("ca.pem", &ca.pem);
    write("ca.key.pem", &ca.key_pem());
    for name in [
        "sensor-0100-a",
        "sensor-0100-b",
        "gateway-0200",
        "sensor-0300",
    ] {
        write(
            &format!("{name}.pem"),
            &ca.issue(&DeviceSpec::named(name)).unwrap().cert_pem,
        );
    }
    let cert = |file: &str, status: &str, things: &[&str]| json!({"file": file, "caFile": "ca.pem", "status": status, "things": things, "policies": ["jitr-device"]});
    let manifest = json!({
        "account": ACCOUNT,
        "region": "eu-west-1",
        "now": LIFECYCLE_NOW,
        "config": {
            "WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
            "WEBHOOK_MAX_AGE_SECONDS": "900",
            "DECOMMISSION_DELETES_CERTIFICATES": "true"
        },
        "policies": ["jitr-device"],
        "cas": [{"file": "ca.pem", "active": true}],
        "things": ["sensor-0100", "gateway-0200", "sensor-0300"],
        "certificates": [
            cert("sensor-0100-a.pem", "INACTIVE", &["sensor-0100"]),
            cert("sensor-0100-b.pem", "INACTIVE", &["sensor-0100", "gateway-0200"]),
            cert("gateway-0200.pem", "ACTIVE", &["gateway-0200"]),
            cert("sensor-0300.pem", "REVOKED", &["sensor-0300"])
        ]
    });
    write(
        "registry.json",
        &(serde_json::to_string_pretty(&manifest).unwrap() + "\n"),
    );

    let now = OffsetDateTime::parse(LIFECYCLE_NOW, &Rfc3339).unwrap();
    let at = |seconds_before: i64| {
        (now - Duration::seconds(seconds_before))
            .format(&Rfc3339)
            .unwrap()
    };
    let mender = |id: &str, kind: &str, device: &str, status: Option<&str>, time: String| {
        let mut data = json!({"id": device});
        if let Some(status) = status {
            data["status"] = status.into();
        }
        json!({"id": id, "type": kind, "data": data, "time": time}).to_string()
    };
    // A Function URL request as Lambda delivers it; `signature` None signs correctly.
    let request = |body: &str, signature: Option<&str>, base64: bool, upper: bool| {
        let signature = signature.map_or_else(
            || sign(DEMO_WEBHOOK_SECRET.as_bytes(), body.as_bytes()),
            str::to_owned,
        );
        let (sig_header, alg_header) = if upper {
            ("X-Men-Signature", "X-Men-Algorithm")
        } else {
            ("x-men-signature", "x-men-algorithm")
        };
        let encoded = if base64 {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body)
        } else {
            body.to_owned()
        };
        let event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"content-type": "application/json", sig_header: signature, alg_header: "MEN-HMAC-SHA256-Payload", "user-agent": "mender-webhooks"},
            "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "198.51.100.9"}, "requestId": "req-1", "timeEpoch": 0},
            "body": encoded, "isBase64Encoded": base64
        });
        serde_json::to_string_pretty(&event).unwrap() + "\n"
    };
    let accepted = mender(
        "0b3a2f9e-0001-4c6a-9d3e-6f1a2b3c4d01",
        "device-status-changed",
        "sensor-0100",
        Some("accepted"),
        at(60),
    );
    let rejected = mender(
        "0b3a2f9e-0002-4c6a-9d3e-6f1a2b3c4d02",
        "device-status-changed",
        "sensor-0100",
        Some("rejected"),
        at(50),
    );
    let forged = mender(
        "0b3a2f9e-0003-4c6a-9d3e-6f1a2b3c4d03",
        "device-status-changed",
        "sensor-0100",
        Some("accepted"),
        at(40),
    );
    let replayed = mender(
        "0b3a2f9e-0004-4c6a-9d3e-6f1a2b3c4d04",
        "device-status-changed",
        "sensor-0100",
        Some("accepted"),
        at(7200),
    );
    let decommissioned = mender(
        "0b3a2f9e-0005-4c6a-9d3e-6f1a2b3c4d05",
        "device-decommissioned",
        "sensor-0100",
        None,
        at(20),
    );
    let again = mender(
        "0b3a2f9e-0006-4c6a-9d3e-6f1a2b3c4d06",
        "device-decommissioned",
        "sensor-0100",
        None,
        at(10),
    );
    write(
        "01-webhook-accepted.json",
        &request(&accepted, None, false, false),
    );
    write(
        "02-webhook-rejected-base64.json",
        &request(&rejected, None, true, true),
    );
    write(
        "03-webhook-bad-signature.json",
        &request(
            &forged,
            Some(&sign(b"not-the-secret-at-all", forged.as_bytes())),
            false,
            false,
        ),
    );
    write(
        "04-webhook-replayed.json",
        &request(&replayed, None, false, false),
    );
    write(
        "05-direct-activate-revoked.json",
        &(serde_json::to_string_pretty(
            &json!({"deviceId": "sensor-0300", "action": "activate", "reason": "operator retry"}),
        )
        .unwrap()
            + "\n"),
    );
    write("06-eventbridge-deactivate.json", &(serde_json::to_string_pretty(&json!({
        "version": "0", "id": "7d1e-eventbridge", "detail-type": "DeviceLifecycle", "source": "acme.device-management",
        "account": ACCOUNT, "time": LIFECYCLE_NOW, "region": "eu-west-1", "resources": [],
        "detail": {"deviceId": "gateway-0200", "action": "deactivate", "reason": "maintenance"}
    })).unwrap() + "\n"));
    write("07-sqs-batch.json", &(serde_json::to_string_pretty(&json!({"Records": [
        {"messageId": "msg-1", "receiptHandle": "rh-1", "eventSource": "aws:sqs", "body": json!({"deviceId": "gateway-0200", "action": "activate"}).to_string()},
        {"messageId": "msg-2", "receiptHandle": "rh-2", "eventSource": "aws:sqs", "body": "{not json"},
        {"messageId": "msg-3", "receiptHandle": "rh-3", "eventSource": "aws:sqs", "body": json!({"deviceId": "sensor-0300", "action": "revoke"}).to_string()}
    ]})).unwrap() + "\n"));
    write(
        "08-webhook-decommissioned.json",
        &request(&decommissioned, None, false, false),
    );
    write(
        "09-webhook-decommissioned-again.json",
        &request(&again, None, false, false),
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
