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

/// The cause of a transport-level failure (no service answer), as one short sentence; the
/// chain of error messages is logged at DEBUG. Never the error's Debug form: for a response that
/// failed to parse it holds the raw response, whose body can be a certificate PEM or a
/// SecretString (invariant 5).
pub(crate) fn cause<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: Error + 'static,
    R: std::fmt::Debug,
{
    let mut innermost: &dyn Error = err;
    let mut chain = err.to_string();
    while let Some(source) = innermost.source() {
        innermost = source;
        chain.push_str(": ");
        chain.push_str(&source.to_string());
    }
    tracing::debug!(operation, error = %chain, "AWS call failed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use std::sync::{Arc, Mutex};

    /// Everything logged, at every level, while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    /// Issue 18: a response that fails to parse carries the raw response; at DEBUG its body (a
    /// PEM from DescribeCertificate, a SecretString) must not reach the log.
    #[test]
    fn a_response_that_failed_to_parse_logs_no_body() {
        let body = r#"{"certificateDescription":{"certificatePem":"-----BEGIN CERTIFICATE-----\nMIIB","SecretString":"s3cr3t-value"}"#;
        let raw = Response::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body));
        let err: SdkError<std::io::Error, Response> =
            SdkError::response_error(std::io::Error::other("unexpected token at offset 12"), raw);
        let mut said = String::new();
        let log = logged(|| said = cause("DescribeCertificate", &err));
        assert!(log.contains("AWS call failed"), "{log}");
        assert!(
            log.contains("unexpected token"),
            "the cause is logged: {log}"
        );
        for secret in ["BEGIN CERTIFICATE", "s3cr3t-value", "MIIB"] {
            assert!(!log.contains(secret), "{secret} in {log}");
            assert!(!said.contains(secret), "{secret} in {said}");
        }
    }
}
