//! jitr-testkit: what the tests share, never a dependency of a function or the CLI.
//!
//! - `contract`: each port's contract, written once and run against every adapter (the
//!   in-memory ones here, the AWS ones against the emulator in `tests/`);
//! - `faults` (a registry whose next call fails or acts first) and `interpose` (latency or a
//!   pause before any port call): decorators that work on any adapter;
//! - `fault_model`: IoT Core's quotas and faults as an SDK HTTP client, under the real adapters;
//! - `crl_server`: a loopback CRL distribution point;
//! - `pki`: the test PKI (`jitr-pki`, with a device's connect).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod contract;
pub mod crl_server;
pub mod fault_model;
pub mod faults;
pub mod interpose;

pub use jitr_pki as pki;
