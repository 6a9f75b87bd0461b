//! The process environment, read in one place: the domain's configuration rules take a lookup
//! (`Config::from_lookup`), and this is the lookup a function or the CLI passes.

use jitr_domain::{Config, JitrError};

/// One environment variable, if set and valid UTF-8.
pub fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The functions' configuration from the process environment.
pub fn config() -> Result<Config, JitrError> {
    Config::from_lookup(variable)
}
