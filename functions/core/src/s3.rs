//! What S3 access (revocation lists, profiles, `jitr` tooling) shares: the client and
//! how an S3 failure is described and told apart by status.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// A client from shared SDK configuration. A custom endpoint (an emulator or an
/// S3-compatible store) gets path-style addressing, which such endpoints need.
pub(crate) fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// `Code: message` for a service error, the transport failure otherwise; never the raw body.
pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> String {
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        ),
        None => crate::sdk_error::cause("S3", err),
    }
}

/// The HTTP status of the response, when there was one.
pub(crate) fn status<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}
