//! The real `registration` binary, run as Lambda runs it (behind a local Runtime API) and
//! pointed at ministack by the SDK's standard variables alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use jitr_domain::registry::CertificateStatus;
use jitr_testkit::pki::DeviceSpec;
use jitr_tests::device::Connect;
use jitr_tests::fleet::{Fleet, POLICY};
use jitr_tests::ministack::workspace_binary;
use jitr_tests::runtime_api::{self, Invocation, serve_one};
use tokio::process::Command;

fn lambda_command(fleet: &Fleet, runtime_api: &str) -> Command {
    function_command("registration", fleet, runtime_api)
}

/// One of the workspace's Lambda binaries, with only the SDK's and Lambda's variables set.
fn function_command(binary: &str, fleet: &Fleet, runtime_api: &str) -> Command {
    runtime_api::function_command(&workspace_binary(binary), binary, fleet, runtime_api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_activates_a_jitr_certificate_and_the_device_connects() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-binary"))
        .await;
    let (runtime_api, mut invocations) =
        serve_one(fleet.event(&device), function_arn(&fleet, "registration")).await;
    let mut command = lambda_command(&fleet, &runtime_api);
    command.env("DEVICE_POLICY_NAME", POLICY);
    let (response, stdout) = answer(command, &mut invocations).await;
    assert_eq!(response["outcome"], "Activated", "{response}");
    assert_eq!(response["thingName"], "sensor-binary");

    // One JSON log line and one EMF metric line for the invocation, and no PEM anywhere.
    let log = stdout
        .lines()
        .find(|l| l.contains("registration event handled"))
        .expect("log line");
    let log: serde_json::Value = serde_json::from_str(log).unwrap();
    assert_eq!(log["fields"]["outcome"], "Activated");
    assert_eq!(log["fields"]["certificate_id"], device.id.as_str());
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"CloudWatchMetrics\"") && l.contains("\"Activated\""))
    );
    assert!(!stdout.contains("BEGIN CERTIFICATE"), "no PEM in logs");

    assert_eq!(fleet.status(&device).await, CertificateStatus::Active);
    assert_eq!(fleet.connect(&device).await, Connect::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_policy_variable_fails_the_cold_start_naming_it() {
    let fleet = Fleet::new().await;
    let (runtime_api, mut invocations) = serve_one(serde_json::json!({}), String::new()).await;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        lambda_command(&fleet, &runtime_api).output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // One sentence naming the variable, not the error's Debug form (issue 20, item 4).
    assert!(stderr.contains("DEVICE_POLICY_NAME"), "{output:?}");
    assert!(!stderr.contains("Config {"), "{stderr}");
    // Told to the Runtime API too, so Lambda and `cargo lambda invoke` answer with it.
    let reported = tokio::time::timeout(Duration::from_secs(5), invocations.recv())
        .await
        .expect("an init error reported")
        .expect("the stub still runs");
    let Invocation::InitError(body) = reported else {
        panic!("expected an init error, got {reported:?}");
    };
    assert_eq!(body["errorType"], "Permanent.Config", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("DEVICE_POLICY_NAME") && m.contains("required")),
        "{body}"
    );
}

/// Issue 20, item 4: without a region the cold start fails at once, naming AWS_REGION, instead
/// of every event failing later as a retryable dispatch failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_region_fails_the_cold_start_naming_it() {
    let fleet = Fleet::new().await;
    let (runtime_api, mut invocations) = serve_one(serde_json::json!({}), String::new()).await;
    let mut command = lambda_command(&fleet, &runtime_api);
    command
        .env("DEVICE_POLICY_NAME", POLICY)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        // No profile file to find a region in either.
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AWS_REGION"), "{stderr}");
    let reported = tokio::time::timeout(Duration::from_secs(5), invocations.recv())
        .await
        .expect("an init error reported")
        .expect("the stub still runs");
    assert!(
        matches!(&reported, Invocation::InitError(body)
            if body["errorType"] == "Permanent.Config"
                && body["errorMessage"].as_str().is_some_and(|m| m.contains("AWS_REGION"))),
        "{reported:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_binary_answers_a_signed_webhook_and_logs_no_secret() {
    const SECRET: &str = "binary-test-webhook-secret";
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-webhook"))
        .await;
    fleet
        .registrar(fleet.config())
        .handle(&fleet.event(&device), &fleet.account.id)
        .await
        .unwrap();
    let (request, _, signature) = rejected_webhook(SECRET, "w-1", "sensor-webhook");
    let (runtime_api, mut invocations) =
        serve_one(request, function_arn(&fleet, "lifecycle")).await;
    let mut command = function_command("lifecycle", &fleet, &runtime_api);
    command.env("WEBHOOK_SECRET", SECRET);
    let (response, stdout) = answer(command, &mut invocations).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(fleet.status(&device).await, CertificateStatus::Inactive);
    assert!(stdout.contains("lifecycle event handled"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"CloudWatchMetrics\"") && l.contains("\"Changed\"")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(SECRET) && !stdout.contains(&signature),
        "no secret or signature in logs"
    );
}

fn function_arn(fleet: &Fleet, name: &str) -> String {
    format!(
        "arn:aws:lambda:us-east-1:{}:function:{name}",
        fleet.account.id
    )
}

/// A Function URL request carrying a Mender `rejected` webhook for `device`, signed now with
/// `secret`: (request, body, signature).
fn rejected_webhook(secret: &str, id: &str, device: &str) -> (serde_json::Value, String, String) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = serde_json::json!({"id": id, "type": "device-status-changed",
        "data": {"id": device, "status": "rejected"}, "time": now})
    .to_string();
    let signature = jitr_domain::webhook::sign(secret.as_bytes(), body.as_bytes());
    let request = serde_json::json!({"version": "2.0", "rawPath": "/", "headers": {"x-men-signature": signature},
        "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0}, "body": body, "isBase64Encoded": false});
    (request, body, signature)
}

/// Runs `command` (a function binary behind `serve_one`) until it answers; (response, stdout and
/// stderr).
async fn answer(
    mut command: Command,
    invocations: &mut tokio::sync::mpsc::Receiver<Invocation>,
) -> (serde_json::Value, String) {
    let mut child = command.spawn().unwrap();
    let invocation = tokio::time::timeout(Duration::from_secs(60), invocations.recv()).await;
    child.kill().await.ok();
    let output = child.wait_with_output().await.unwrap();
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let Ok(Some(Invocation::Response(response))) = invocation else {
        panic!("no response: {invocation:?}\n{everything}");
    };
    (response, everything)
}

/// What the Runtime API stub sends with every invocation.
const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";
const TRACE_ID: &str = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700";
const SESSION_TOKEN: &str = "jitr-test-session-token-never-logged";

/// Issue 10, item 5: Lambda's level variable wins over RUST_LOG; at TRACE no certificate PEM,
/// webhook body or signature, secret, SigV4 signature or session token reaches the log (the SDK
/// and runtime crates log those below INFO); every line carries the request and trace ids; the
/// metric line has a level Lambda's filtering keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_trace_both_binaries_log_no_payload_or_credential() {
    const SECRET: &str = "trace-test-webhook-secret";
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-trace"))
        .await;
    let at_trace = |mut command: Command| {
        command
            .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
            .env("RUST_LOG", "error")
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
        command
    };

    let (runtime_api, mut invocations) =
        serve_one(fleet.event(&device), function_arn(&fleet, "registration")).await;
    let mut command = at_trace(lambda_command(&fleet, &runtime_api));
    command.env("DEVICE_POLICY_NAME", POLICY);
    let (response, registration_log) = answer(command, &mut invocations).await;
    assert_eq!(response["outcome"], "Activated", "{response}");

    let (request, body, signature) = rejected_webhook(SECRET, "w-trace", "sensor-trace");
    let (runtime_api, mut invocations) =
        serve_one(request, function_arn(&fleet, "lifecycle")).await;
    let mut command = at_trace(function_command("lifecycle", &fleet, &runtime_api));
    command.env("WEBHOOK_SECRET", SECRET);
    let (response, lifecycle_log) = answer(command, &mut invocations).await;
    assert_eq!(response["statusCode"], 200, "{response}");

    for (function, log, handled) in [
        (
            "registration",
            &registration_log,
            "registration event handled",
        ),
        ("lifecycle", &lifecycle_log, "lifecycle event handled"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(handled))
            .unwrap_or_else(|| panic!("{function}: RUST_LOG=error must not win\n{log}"));
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["span"]["request_id"], REQUEST_ID, "{function}: {line}");
        assert!(
            line["span"]["xray_trace_id"]
                .as_str()
                .is_some_and(|t| t.starts_with(TRACE_ID)),
            "{function}: {line}"
        );
        // Lambda's level filter files a JSON line without an RFC 3339 `timestamp` (or without a
        // valid `level`) as INFO: at WARN or ERROR it would drop errors and metrics alike.
        for text in log.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(text)
                .unwrap_or_else(|_| panic!("{function}: not a JSON line: {text}"));
            let stamp = value["timestamp"].as_str().unwrap_or_default();
            assert!(
                time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
                "{function}: no RFC 3339 timestamp: {text}"
            );
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&value["level"].as_str().unwrap_or_default()),
                "{function}: no level: {text}"
            );
        }
        let metric = log
            .lines()
            .find(|l| l.contains("\"CloudWatchMetrics\""))
            .unwrap_or_else(|| panic!("{function}: no metric line\n{log}"));
        assert!(
            metric.contains("\"level\":\"INFO\""),
            "{function}: {metric}"
        );
        for secret in [
            "BEGIN CERTIFICATE",
            SESSION_TOKEN,
            "Signature=",
            SECRET,
            signature.as_str(),
            body.as_str(),
        ] {
            assert!(
                !log.contains(secret),
                "{function} logged {secret:?}:\n{log}"
            );
        }
    }
}

/// `AWS_LAMBDA_LOG_FORMAT=Text` (the template's other LogFormat) gives plain lines, still with
/// the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_log_format_is_plain_lines() {
    let fleet = Fleet::new().await;
    let device = fleet.pending_device(DeviceSpec::named("sensor-text")).await;
    let (runtime_api, mut invocations) =
        serve_one(fleet.event(&device), function_arn(&fleet, "registration")).await;
    let mut command = lambda_command(&fleet, &runtime_api);
    command
        .env("DEVICE_POLICY_NAME", POLICY)
        .env("AWS_LAMBDA_LOG_FORMAT", "Text");
    let (response, log) = answer(command, &mut invocations).await;
    assert_eq!(response["outcome"], "Activated", "{response}");
    let line = log
        .lines()
        .find(|l| l.contains("registration event handled"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!line.trim_start().starts_with('{'), "{line}");
    assert!(
        line.contains(REQUEST_ID) && line.contains("Activated"),
        "{line}"
    );
}
