//! Permanent or Retryable: the class every error carries, the prefix of each Lambda
//! `error_type`. A leaf, so the ports' own errors can name their class without depending on
//! `error`, which gathers them.

/// Whether repeating the same invocation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Repeating cannot help: bad input, wrong account, missing permission or configuration.
    Permanent,
    /// A transient fault (throttling, 5xx, timeout, unreadable revocation list): retry.
    Retryable,
}

impl ErrorClass {
    /// The class name used as the prefix of the Lambda `error_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "Permanent",
            ErrorClass::Retryable => "Retryable",
        }
    }
}
