//! What an AWS SDK call's failure says to a person: one short sentence naming the cause
//! (`connection refused (http://127.0.0.1:4566)`, `no AWS region configured: set AWS_REGION`)
//! rather than the SDK's whole Debug chain, which goes to the DEBUG log instead.

use std::error::Error;
use std::sync::OnceLock;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The endpoint the process's SDK configuration names (an emulator, say), for messages.
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// Remembers the configured endpoint (`load_sdk_config*` call this).
pub(crate) fn remember_endpoint(endpoint: Option<&str>) {
    if let Some(endpoint) = endpoint {
        let _ = ENDPOINT.set(endpoint.to_owned());
    }
}

/// `Code: message` for a service's answer, the [`cause`] of a transport failure otherwise; never
/// the raw body.
pub fn describe<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        ),
        None => cause(operation, err),
    }
}

/// The cause of a transport-level failure (no service answer), as one short sentence; the whole
/// chain is logged at DEBUG.
pub(crate) fn cause<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: Error + 'static,
    R: std::fmt::Debug,
{
    tracing::debug!(operation, error = ?err, "AWS call failed");
    let mut innermost: &dyn Error = err;
    let mut chain = err.to_string();
    while let Some(source) = innermost.source() {
        innermost = source;
        chain.push_str(": ");
        chain.push_str(&source.to_string());
    }
    let text = innermost.to_string();
    let lower = chain.to_lowercase();
    let at = || {
        ENDPOINT
            .get()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    };
    if lower.contains("missing region") {
        "no AWS region configured: set AWS_REGION".to_owned()
    } else if lower.contains("credentials") {
        "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            .to_owned()
    } else if lower.contains("connection refused") {
        format!("connection refused{}", at())
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        format!("cannot resolve the endpoint's host{}", at())
    } else if matches!(err, SdkError::TimeoutError(_)) || lower.contains("timed out") {
        format!("timed out{}", at())
    } else {
        let short: String = text.chars().take(200).collect();
        format!("{short}{}", at())
    }
}
