//! jitr-tests: integration tests against ministack, a local AWS emulator whose IoT service
//! does real just-in-time registration over mTLS, plus the helpers they share.
//!
//! The key decision: tests never fake the pending certificate. A device connects over mTLS
//! and the emulator registers it, as IoT Core would; only then does the real handler run,
//! through the real `aws-sdk-iot` client.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod device;
pub mod failure_log;
pub mod fleet;
pub mod ministack;
pub mod runtime_api;
