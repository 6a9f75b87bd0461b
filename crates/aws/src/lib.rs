//! jitr-aws: the domain's ports on AWS, and what a Lambda function reads from its world.
//!
//! Each adapter is the only place its SDK's types appear: the registry on IoT Core (`iot`), the
//! device ledger on DynamoDB (`dynamodb`), documents from files, S3 and bounded HTTP(S)
//! (`source`). Beside them: the one HTTPS client every AWS client and fetch uses
//! (`iot::https_client`), what an SDK failure says to a person (`sdk_error`), logs and metrics
//! (`telemetry`), a cold start that cannot finish (`cold_start`), and the two reads the domain
//! never makes itself: the environment (`environment`) and the clock ([`unix_now`]).

pub mod cold_start;
pub mod dynamodb;
pub mod environment;
pub mod iot;
mod s3;
pub mod sdk_error;
pub mod source;
pub mod telemetry;

pub use dynamodb::DynamoLedger;
pub use iot::IotRegistry;
pub use source::SourceFetcher;

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
