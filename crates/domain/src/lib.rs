//! jitr-domain: what just-in-time registration decides, and the ports it decides through.
//!
//! Pure code with table tests beside it: parsing events (`event`), inspecting certificates
//! (`certificate`), reading device-management webhooks and commands (`webhook`, `command`),
//! checking revocation (`revocation`), binding Things to their CA (`binding`),
//! choosing a CA's profile (`profiles`), naming Things (`naming`), rotation (`rotation`) and
//! deciding what to do (`decision`); the configuration's rules (`config`, read from a lookup the
//! caller passes) and the error classes (`error`, `error_class`, `reasons`).
//!
//! The ports: [`registry::Registry`] (IoT Core), [`ledger::Ledger`] (the device ledger) and
//! [`source::Fetcher`] (documents). Their in-memory adapters live here too (the offline demo and
//! the unit tests); the AWS adapters are in `jitr-aws`, the contract suites that prove both
//! answer alike in `jitr-testkit`.
//!
//! Nothing here reads the clock or the environment, opens a connection or links the AWS SDK:
//! times and settings are passed in. The one file read is the sample fleet (`samples`), from a
//! folder the caller names.

pub mod binding;
pub mod certificate;
pub mod command;
pub mod config;
pub mod decision;
pub mod error;
pub mod error_class;
pub mod event;
pub mod ledger;
pub mod naming;
pub mod profiles;
pub mod reasons;
pub mod registry;
pub mod revocation;
pub mod rotation;
pub mod samples;
pub mod source;
pub mod sync;
pub mod webhook;

pub use config::Config;
pub use error::{ErrorClass, JitrError};
