//! jitr-tests: integration tests against ministack, a local AWS emulator whose IoT service
//! does real just-in-time registration over mTLS, plus the PKI factory the tests and the
//! fixture generator share.
//!
//! The key decision: tests never fake the pending certificate. A device connects over mTLS
//! and the emulator registers it, as IoT Core would; only then does the real handler run,
//! through the real `aws-sdk-iot` client configured by the SDK's own variables.

pub use jitr_core::pki;
