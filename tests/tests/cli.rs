//! `jitr seed` and `jitr replay --endpoint-url` against the emulator, with the sample devices
//! connecting for real: the same samples as `make demo`, on the real API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use jitr_domain::registry::{CertificateStatus, Registry};
use jitr_tests::device::{Connect, connect};
use jitr_tests::ministack::{shared, workspace_binary, workspace_root};
use tokio::process::Command;

const SAMPLE_ACCOUNT: &str = "123456789012";
const SAMPLE_REGION: &str = "eu-west-1";

fn samples() -> PathBuf {
    workspace_root().join("events/registration")
}

/// `jitr` against the shared emulator, as the samples' account, from the workspace root.
async fn jitr(args: &[&str]) -> (bool, String) {
    let _ministack = shared();
    let credentials = [
        ("AWS_ACCESS_KEY_ID", SAMPLE_ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", SAMPLE_REGION),
    ];
    jitr_in(&workspace_root(), args, &credentials).await
}

/// `jitr` run in `dir` with only `env` set: (succeeded, stdout then stderr).
async fn jitr_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(workspace_binary("jitr"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn connect_sample(name: &str) -> Connect {
    let ministack = shared();
    let read = |file: String| std::fs::read_to_string(samples().join(file)).unwrap();
    connect(
        ministack.mtls_port,
        &ministack.broker_ca_pem(),
        &read(format!("{name}.pem")),
        &read("ca.pem".into()),
        &read(format!("{name}.key.pem")),
        name,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_then_replay_against_the_emulator() {
    let endpoint = shared().endpoint.clone();
    let (ok, out) = jitr(&["seed", "--endpoint-url", &endpoint]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("CA ca.pem")
            && out.contains("CA partner-ca.pem")
            && out.contains("policy: jitr-device")
            && out.contains("s3://jitr-samples/crl.pem")
            && out.contains("ledger table: jitr-ledger"),
        "{out}"
    );
    let (ok, out) = jitr(&["seed", "--endpoint-url", &endpoint]).await;
    assert!(ok, "seeding twice is harmless: {out}");

    // The first connect, as a person tries it: `jitr device connect` with the chain.
    let device_connect = |name: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let port = shared().mtls_port.to_string();
            let (cert, key) = (
                format!("events/registration/{name}.pem"),
                format!("events/registration/{name}.key.pem"),
            );
            jitr(&[
                "device",
                "connect",
                "--endpoint-url",
                &endpoint,
                "--port",
                &port,
                "--cert",
                &cert,
                "--key",
                &key,
                "--ca",
                "events/registration/ca.pem",
            ])
            .await
        }
    };
    let (ok, out) = device_connect("sensor-0001").await;
    assert!(
        !ok && out.contains("closed the connection without a CONNACK")
            && out.contains("JITR at work"),
        "auto-registered, pending: {out}"
    );
    assert_eq!(
        connect_sample("sensor-0002").await,
        Connect::Closed,
        "auto-registered, pending"
    );

    let (ok, out) = jitr(&[
        "replay",
        "--endpoint-url",
        &endpoint,
        "events/registration/01-happy-path.json",
        "events/registration/02-duplicate.json",
        "events/registration/03-revoked-serial.json",
        "events/registration/11-wrong-account.json",
    ])
    .await;
    // The wrong-account event fails: replay says so and exits non-zero, for scripts.
    assert!(!ok && out.contains("jitr: 1 of 4 events failed"), "{out}");
    let outcome = |event: &str| {
        out.lines()
            .find(|l| l.starts_with(event))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
    };
    assert_eq!(
        outcome("01-happy-path.json").as_deref(),
        Some("Activated"),
        "{out}"
    );
    assert_eq!(
        outcome("02-duplicate.json").as_deref(),
        Some("AlreadyActive"),
        "{out}"
    );
    assert_eq!(
        outcome("03-revoked-serial.json").as_deref(),
        Some("Revoked"),
        "{out}"
    );
    assert_eq!(
        outcome("11-wrong-account.json").as_deref(),
        Some("Error"),
        "{out}"
    );
    assert!(
        out.contains("ACTIVE") && out.contains("REVOKED") && out.contains("sensor-0001"),
        "{out}"
    );

    let account = shared().account(SAMPLE_ACCOUNT, SAMPLE_REGION);
    let id = |name: &str| {
        jitr_testkit::pki::certificate_id(
            &std::fs::read_to_string(samples().join(format!("{name}.pem"))).unwrap(),
        )
    };
    assert_eq!(
        account
            .iot
            .describe_certificate(&id("sensor-0001"))
            .await
            .unwrap()
            .status,
        CertificateStatus::Active
    );
    assert_eq!(
        account
            .iot
            .describe_certificate(&id("sensor-0002"))
            .await
            .unwrap()
            .status,
        CertificateStatus::Revoked
    );
    let (ok, out) = device_connect("sensor-0001").await;
    assert!(ok && out.contains("sensor-0001: connected to"), "{out}");
    assert_ne!(connect_sample("sensor-0002").await, Connect::Accepted);

    // jitr explain: the real registry and decision code, reading only.
    let (ok, out) = jitr(&[
        "explain",
        "--endpoint-url",
        &endpoint,
        "--thing",
        "sensor-0001",
        "--json",
    ])
    .await;
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ca_id = jitr_testkit::pki::certificate_id(
        &std::fs::read_to_string(samples().join("ca.pem")).unwrap(),
    );
    assert_eq!(answer["thing"]["boundToCa"], ca_id.as_str(), "{out}");
    let certificate = &answer["certificates"][0];
    assert_eq!(certificate["certificateId"], id("sensor-0001").as_str());
    assert_eq!(certificate["status"], "ACTIVE");
    assert_eq!(certificate["verdict"], "reconcile", "{out}");
    assert_eq!(certificate["policies"][0], "jitr-device");
    let (ok, out) = jitr(&[
        "explain",
        "--endpoint-url",
        &endpoint,
        "--certificate",
        &id("sensor-0002"),
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("status           REVOKED"), "{out}");
    assert!(out.contains("registration now left-alone"), "{out}");
    assert_eq!(
        account
            .iot
            .describe_certificate(&id("sensor-0002"))
            .await
            .unwrap()
            .status,
        CertificateStatus::Revoked,
        "explain changed nothing"
    );
}

/// The lifecycle samples seeded into the emulator and replayed by endpoint: the same story as
/// `make demo` tells on the embedded registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_samples_replay_against_the_emulator() {
    let endpoint = shared().endpoint.clone();
    let (ok, out) = jitr(&[
        "seed",
        "--endpoint-url",
        &endpoint,
        "--samples",
        "events/lifecycle",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("certificate sensor-0100-b.pem: INACTIVE, things [sensor-0100,gateway-0200]"),
        "{out}"
    );
    let files: Vec<String> = std::fs::read_dir(workspace_root().join("events/lifecycle"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n.starts_with(|c: char| c.is_ascii_digit()))
        .map(|n| format!("events/lifecycle/{n}"))
        .collect();
    let mut files = files;
    files.sort();
    let mut args = vec![
        "replay",
        "--function",
        "lifecycle",
        "--endpoint-url",
        &endpoint,
    ];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = jitr(&args).await;
    assert!(ok, "{out}");
    let row = |event: &str| {
        out.lines()
            .find(|l| l.starts_with(event))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("01-webhook-accepted.json").contains("HTTP 200"),
        "{out}"
    );
    assert!(
        row("03-webhook-bad-signature.json").contains("HTTP 401"),
        "{out}"
    );
    assert!(
        row("04-webhook-replayed.json").contains("HTTP 400"),
        "{out}"
    );
    assert!(
        row("05-direct-activate-revoked.json").contains("RevokedStaysRevoked"),
        "{out}"
    );
    assert!(row("07-sqs-batch.json").contains("retry: msg-2"), "{out}");
    assert!(
        row("08-webhook-decommissioned.json").contains("thing deleted"),
        "{out}"
    );
    assert!(
        row("09-webhook-decommissioned-again.json").contains("ThingNotFound"),
        "{out}"
    );
    assert!(
        out.contains("(deleted)") && out.contains("SharedWithAnotherThing"),
        "{out}"
    );
}

/// `jitr profiles check`: a valid document prints each CA's effective profile; an invalid one
/// fails naming the field. Offline: no emulator needed.
#[tokio::test]
async fn profiles_check_validates_offline() {
    let run = |file: PathBuf| async move {
        let file = file.to_string_lossy().into_owned();
        jitr_in(&workspace_root(), &["profiles", "check", &file], &[]).await
    };
    let (ok, out) = run(workspace_root().join("events/fleet/profiles.json")).await;
    assert!(ok, "{out}");
    assert!(out.contains("valid, 3 CA profile(s)"), "{out}");
    assert!(
        out.contains("profile factory") && out.contains("acme-{serialNumber}"),
        "{out}"
    );
    assert!(out.contains("refused (NoProfile)"), "{out}");

    let dir = std::env::temp_dir().join(format!("jitr-profiles-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("profiles.json");
    let ca = "a".repeat(64);
    std::fs::write(
        &bad,
        format!(r#"{{"version": 1, "profiles": {{"{ca}": {{"thingName": "dev/{{CN}}"}}}}}}"#),
    )
    .unwrap();
    let (ok, out) = run(bad).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("profiles.{ca}.thingName")), "{out}");
}

/// `jitr replay` run inside the samples folder finds registry.json there; elsewhere, a missing
/// registry.json names --samples; PENDING_ACTIVATION fits its column. Offline.
#[tokio::test]
async fn replay_finds_its_samples_or_says_how() {
    let (ok, out) = jitr_in(&samples(), &["replay", "01-happy-path.json"], &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("Activated"), "{out}");
    let header = out.lines().find(|l| l.starts_with("CERTIFICATE")).unwrap();
    let pending = out
        .lines()
        .find(|l| l.contains("PENDING_ACTIVATION"))
        .unwrap();
    // In characters: the short ids end in '…', three bytes.
    let column = |line: &str, text: &str| line.find(text).map(|at| line[..at].chars().count());
    assert_eq!(
        column(pending, " - ").map(|at| at + 1),
        column(header, "THINGS"),
        "the STATUS column fits PENDING_ACTIVATION:\n{header}\n{pending}"
    );
    let (ok, out) = jitr_in(&workspace_root(), &["replay", "README.md"], &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("--samples"), "{out}");
    // An event that fails is a row and a non-zero exit, not a silent success.
    let (ok, out) = jitr_in(&samples(), &["replay", "10-malformed.json"], &[]).await;
    assert!(!ok && out.contains("jitr: 1 of 1 events failed"), "{out}");
}

/// `jitr history` and `jitr explain` show the device ledger: a device admitted by registration,
/// then rejected and accepted again by the device-management side, in time order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_a_devices_decisions_in_time_order() {
    use jitr_domain::ledger::EventStamp;
    use jitr_lifecycle::{Action, DeviceCommand, Lifecycle, LifecycleConfig};
    let fleet = jitr_tests::fleet::Fleet::new().await;
    let ledger = fleet.ledger().await;
    fleet.admitted("hist-1", ledger.clone()).await;
    let lifecycle = Lifecycle::new(
        fleet.iot().clone(),
        LifecycleConfig::from_lookup(|_| None).unwrap(),
    )
    .with_ledger(ledger);
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for (n, action) in [Action::Deactivate, Action::Activate]
        .into_iter()
        .enumerate()
    {
        let command = DeviceCommand::new("hist-1", action, Some(format!("ticket {n}"))).unwrap();
        let stamp = EventStamp {
            at_ms: now_ms + 1_000 * i64::try_from(n).unwrap(),
            id: format!("evt-{n}"),
        };
        lifecycle.apply(&command, &stamp, "direct").await.unwrap();
    }
    let env = [
        ("AWS_ACCESS_KEY_ID", fleet.account.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", jitr_tests::ministack::REGION),
        ("DEVICE_LEDGER_TABLE", "jitr-ledger"),
    ];
    let endpoint = fleet.ministack.endpoint.clone();
    let (ok, out) = jitr_in(
        &workspace_root(),
        &["history", "--endpoint-url", &endpoint, "--thing", "hist-1"],
        &env,
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("standing         allowed (by activate evt-1"),
        "{out}"
    );
    let table = &out[out.find("TIME").unwrap()..];
    let order: Vec<usize> = [
        "Activated",
        "deactivate",
        "ticket 0",
        " activate ",
        "ticket 1",
    ]
    .iter()
    .map(|what| {
        table
            .find(what)
            .unwrap_or_else(|| panic!("{what} in {out}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");

    let (ok, out) = jitr_in(
        &workspace_root(),
        &[
            "history",
            "--endpoint-url",
            &endpoint,
            "--thing",
            "hist-1",
            "--json",
        ],
        &env,
    )
    .await;
    assert!(ok, "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["device"]["decision"]["state"], "allowed");
    assert_eq!(answer["history"].as_array().unwrap().len(), 3, "{out}");

    let explain_env = [
        env.as_slice(),
        &[("DEVICE_POLICY_NAME", jitr_tests::fleet::POLICY)],
    ]
    .concat();
    let (ok, out) = jitr_in(
        &workspace_root(),
        &["explain", "--endpoint-url", &endpoint, "--thing", "hist-1"],
        &explain_env,
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("Device hist-1"), "{out}");
    assert!(out.contains("lifecycle:direct"), "{out}");

    let (ok, out) = jitr_in(
        &workspace_root(),
        &["history", "--endpoint-url", &endpoint, "--thing", "hist-1"],
        &env[..3],
    )
    .await;
    assert!(!ok && out.contains("DEVICE_LEDGER_TABLE"), "{out}");
}

/// Issue 10, item 2: `jitr webhook sign` makes a Function URL request the lifecycle function
/// accepts now (signature and replay window), for `cargo lambda invoke`. Offline.
#[tokio::test]
async fn webhook_sign_makes_a_request_the_function_accepts_now() {
    use jitr_domain::webhook::WebhookSecret;
    use jitr_domain::webhook::{WebhookRequest, parse_envelope};
    const SECRET: &str = "cli-test-webhook-secret";
    let (ok, out) = jitr_in(
        &workspace_root(),
        &[
            "webhook", "sign", "--device", "sensor-9", "--status", "rejected",
        ],
        &[("WEBHOOK_SECRET", SECRET)],
    )
    .await;
    assert!(ok, "{out}");
    let event: serde_json::Value = serde_json::from_str(&out).unwrap();
    let request = WebhookRequest::from_event(&event).unwrap();
    request
        .authenticate(Some(&WebhookSecret::new(SECRET)))
        .unwrap();
    assert!(
        request
            .authenticate(Some(&WebhookSecret::new("another-secret-entirely")))
            .is_err()
    );
    let body = event["body"].as_str().unwrap();
    let envelope = parse_envelope(body.as_bytes()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    envelope.check_fresh(now, 60).unwrap();
    assert_eq!(
        envelope.command().unwrap().action,
        jitr_lifecycle::Action::Deactivate
    );
    // Without a secret it says how to give one.
    let (ok, out) = jitr_in(
        &workspace_root(),
        &["webhook", "sign", "--device", "d", "--decommissioned"],
        &[],
    )
    .await;
    assert!(!ok && out.contains("WEBHOOK_SECRET"), "{out}");
}

/// Issue 10, item 12: a failure a person reads is one line naming the cause, not the SDK's
/// Debug chain. Offline: a closed port, and no region.
#[tokio::test]
async fn errors_are_one_line_naming_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("DEVICE_POLICY_NAME", "jitr-device"),
    ];
    let with_region: Vec<_> = credentials
        .iter()
        .copied()
        .chain([("AWS_REGION", "eu-west-1")])
        .collect();
    let cases = [
        (
            vec![
                "explain",
                "--thing",
                "t",
                "--endpoint-url",
                endpoint.as_str(),
            ],
            &with_region[..],
            format!("DescribeThing failed: connection refused ({endpoint})"),
        ),
        (
            vec!["explain", "--thing", "t"],
            &credentials[..],
            "no AWS region configured: set AWS_REGION".to_owned(),
        ),
    ];
    for (args, env, cause) in cases {
        let (ok, out) = jitr_in(&workspace_root(), &args, env).await;
        assert!(!ok, "{out}");
        assert_eq!(out.trim().lines().count(), 1, "one line:\n{out}");
        assert!(out.contains(&cause), "{cause}:\n{out}");
        assert!(!out.contains("DispatchFailure"), "{out}");
    }
}
