//! The ports' contracts: one suite per port, run against every adapter of it.

pub mod ledger;
pub mod registry;
