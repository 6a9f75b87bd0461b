//! The real `registration` binary, run as Lambda runs it (behind a local Runtime API) and
//! pointed at ministack by the SDK's standard variables alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use jitr_core::pki::DeviceSpec;
use jitr_core::registry::CertificateStatus;
use jitr_tests::device::Connect;
use jitr_tests::fleet::{Fleet, POLICY};
use jitr_tests::ministack::workspace_binary;
use jitr_tests::runtime_api::{Invocation, serve_one};
use tokio::process::Command;

fn lambda_command(fleet: &Fleet, runtime_api: &str) -> Command {
    function_command("registration", fleet, runtime_api)
}

/// One of the workspace's Lambda binaries, with only the SDK's and Lambda's variables set.
fn function_command(binary: &str, fleet: &Fleet, runtime_api: &str) -> Command {
    let mut command = Command::new(workspace_binary(binary));
    command
        .env_clear()
        .envs(fleet.ministack.sdk_variables(&fleet.account.id))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", binary)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_activates_a_jitr_certificate_and_the_device_connects() {
    let fleet = Fleet::new().await;
    let device = fleet
        .pending_device(DeviceSpec::named("sensor-binary"))
        .await;
    let arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:registration",
        fleet.account.id
    );
    let (runtime_api, mut invocations) = serve_one(fleet.event(&device), arn).await;

    let mut child = lambda_command(&fleet, &runtime_api)
        .env("DEVICE_POLICY_NAME", POLICY)
        .spawn()
        .unwrap();
    let invocation = tokio::time::timeout(Duration::from_secs(60), invocations.recv()).await;
    child.kill().await.ok();
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Ok(Some(Invocation::Response(response))) = invocation else {
        panic!(
            "no response: {invocation:?}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
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
    let (runtime_api, _invocations) = serve_one(serde_json::json!({}), String::new()).await;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        lambda_command(&fleet, &runtime_api).output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("DEVICE_POLICY_NAME"),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_binary_answers_a_signed_webhook_and_logs_no_secret() {
    use jitr_lifecycle::webhook::sign;
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
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = serde_json::json!({"id": "w-1", "type": "device-status-changed",
        "data": {"id": "sensor-webhook", "status": "rejected"}, "time": now})
    .to_string();
    let signature = sign(SECRET.as_bytes(), body.as_bytes());
    let request = serde_json::json!({"version": "2.0", "rawPath": "/", "headers": {"x-men-signature": signature},
        "requestContext": {"http": {"method": "POST"}}, "body": body, "isBase64Encoded": false});
    let arn = format!(
        "arn:aws:lambda:us-east-1:{}:function:lifecycle",
        fleet.account.id
    );
    let (runtime_api, mut invocations) = serve_one(request, arn).await;

    let mut child = function_command("lifecycle", &fleet, &runtime_api)
        .env("WEBHOOK_SECRET", SECRET)
        .spawn()
        .unwrap();
    let invocation = tokio::time::timeout(Duration::from_secs(60), invocations.recv()).await;
    child.kill().await.ok();
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Ok(Some(Invocation::Response(response))) = invocation else {
        panic!(
            "no response: {invocation:?}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(fleet.status(&device).await, CertificateStatus::Inactive);
    assert!(stdout.contains("lifecycle event handled"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"CloudWatchMetrics\"") && l.contains("\"Changed\"")),
        "{stdout}"
    );
    let everything = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        !everything.contains(SECRET) && !everything.contains(&signature),
        "no secret or signature in logs"
    );
}
