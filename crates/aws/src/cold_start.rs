//! A cold start that cannot finish, said once, as a sentence, where people look: the function's
//! log, stderr, and the Runtime API's init-error endpoint, so Lambda (and `cargo lambda invoke`
//! locally) answers the invocation with the message instead of waiting for a runtime that
//! never polls (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html, "Initialization
//! error"). Never the error's Debug form.

use std::process::ExitCode;

use aws_config::SdkConfig;

use jitr_domain::JitrError;
use jitr_domain::config::config_error;

/// Reports `err` and returns the exit code the process ends with.
pub async fn fail(err: &JitrError) -> ExitCode {
    fail_with(&err.error_type(), &err.to_string()).await
}

/// [`fail`] for an error that is not a [`JitrError`] (the webhook secret's first read).
pub async fn fail_with(error_type: &str, message: &str) -> ExitCode {
    tracing::error!(error_type, error = message, "cold start failed");
    eprintln!("cold start failed: {message}");
    if let Err(e) = report(error_type, message).await {
        tracing::warn!(error = %e, "the init error could not be reported to the Runtime API");
    }
    ExitCode::FAILURE
}

/// The process's exit code once the runtime loop has ended (it only ends on a runtime failure).
pub fn exit_code<E: std::fmt::Display>(served: Result<(), E>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the runtime loop stopped");
            ExitCode::FAILURE
        }
    }
}

/// The SDK needs a region for every call; without one, every event would fail late, as a
/// retryable dispatch failure. Lambda always sets AWS_REGION: this catches local runs.
pub fn require_region(sdk: &SdkConfig) -> Result<(), JitrError> {
    match sdk.region() {
        Some(_) => Ok(()),
        None => Err(config_error(
            "AWS_REGION",
            "not set: every AWS call needs a region (Lambda sets it; set it for a local run, e.g. AWS_REGION=eu-west-1)",
        )),
    }
}

/// POST /2018-06-01/runtime/init/error, when there is a Runtime API to tell.
async fn report(
    error_type: &str,
    message: &str,
) -> Result<(), lambda_runtime_api_client::BoxError> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Ok(());
    }
    let client = lambda_runtime_api_client::PooledClient::builder().build();
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", error_type)
        .header("content-type", "application/json")
        .body(lambda_runtime_api_client::body::Body::from(body))?;
    client.call(request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_region_is_a_permanent_configuration_error_naming_the_variable() {
        let sdk = SdkConfig::builder().build();
        let err = require_region(&sdk).unwrap_err();
        assert_eq!(err.error_type(), "Permanent.Config");
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
        let with_region = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        assert!(require_region(&with_region).is_ok());
    }
}
