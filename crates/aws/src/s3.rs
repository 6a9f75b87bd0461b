//! What S3 access (revocation lists, profiles, `jitr` tooling) shares: the client and how an
//! S3 failure is told apart by status (`sdk_error::describe` says what it was).

use aws_sdk_s3::error::SdkError;

/// A client from shared SDK configuration. A custom endpoint (an emulator or an
/// S3-compatible store) gets path-style addressing, which such endpoints need.
pub(crate) fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The HTTP status of the response, when there was one.
pub(crate) fn status<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}
