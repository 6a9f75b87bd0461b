//! jitr-core: the parts of just-in-time registration that do not depend on Lambda.
//!
//! The key decision is the split between *pure* code and *ports*: parsing events, inspecting
//! certificates, checking revocation, binding Things to CAs, choosing a CA's profile, naming
//! Things and deciding what to do are plain functions with table tests (`event`, `certificate`,
//! `revocation`, `binding`, `profiles`, `naming`, `decision`); everything that talks to AWS goes
//! through a port: [`registry::Registry`] (IoT Core), [`ledger::Ledger`] (DynamoDB) and
//! [`source::Fetcher`] (S3, files, HTTP). Each AWS adapter is the only place its SDK types
//! appear, and each in-memory adapter is proven by the same contract suite to answer like the
//! emulator.

pub mod binding;
pub mod certificate;
pub mod cold_start;
pub mod config;
#[cfg(feature = "pki")]
pub mod crl_server;
pub mod decision;
pub mod error;
pub mod error_class;
pub mod event;
pub mod interpose;
pub mod ledger;
#[cfg(feature = "pki")]
pub mod mqtt_connect;
pub mod naming;
#[cfg(feature = "pki")]
pub mod pki;
pub mod profiles;
pub mod reasons;
pub mod registry;
pub mod revocation;
pub mod rotation;
mod s3;
pub mod samples;
pub mod sdk_error;
pub mod source;
pub mod sync;
pub mod telemetry;

pub use config::Config;
pub use error::{ErrorClass, JitrError};

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
