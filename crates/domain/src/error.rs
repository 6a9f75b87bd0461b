//! Classified errors: every failure is Permanent or Retryable before it leaves the crate,
//! and the Lambda `error_type` is `<Class>.<Kind>` so alarms and DLQ triage can key on it.

pub use crate::error_class::ErrorClass;
use crate::ledger::LedgerError;
use crate::profiles::ProfilesError;
use crate::registry::{RegistryError, RegistryErrorKind};
use crate::revocation::RevocationError;

/// Everything a handler can fail with; rejections of a certificate are outcomes, not errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JitrError {
    /// The event is not a well-formed certificate-registered event.
    #[error("malformed event: field `{field}`: {problem}")]
    MalformedEvent {
        field: &'static str,
        problem: String,
    },
    /// The event names an account other than the one this function runs in.
    #[error("event is for account {event_account}, this function runs in {function_account}")]
    WrongAccount {
        event_account: String,
        function_account: String,
    },
    /// The event disagrees with the registry (for example a different CA id): never act on it.
    #[error("event does not match the registry: {0}")]
    EventMismatch(String),
    /// A configuration variable is missing or invalid (normally caught at cold start).
    #[error("configuration: {variable}: {problem}")]
    Config {
        variable: &'static str,
        problem: String,
    },
    /// A resource the deployment must provide does not exist (device policy, thing type, group).
    #[error("{resource} `{name}` does not exist; create it before registering devices")]
    MissingResource {
        resource: &'static str,
        name: String,
    },
    /// A principal was detached but is still listed on the Thing after bounded waiting
    /// (detachment is asynchronous on AWS): retry later.
    #[error("{principal} is still attached to thing {thing} after waiting")]
    DetachPending { thing: String, principal: String },
    /// IoT Core refused a call because it has not caught up with a change just made (a Thing
    /// just created, a principal just detached): retry.
    #[error("{operation} refused while IoT Core catches up with a change just made: {detail}")]
    NotYetConsistent {
        operation: &'static str,
        detail: String,
    },
    /// Other writers kept changing the Thing while its CA binding was being settled: retry.
    #[error("thing {thing} kept changing while its CA binding was checked")]
    ThingContended { thing: String },
    /// A registry call failed; its kind decides the class.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The revocation list could not be used and the function fails closed.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// The device ledger failed; its kind decides the class (`<Class>.Ledger<Kind>`).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The registration profiles could not be used: fail closed, retry.
    #[error(transparent)]
    Profiles(#[from] ProfilesError),
}

impl JitrError {
    /// Permanent or Retryable.
    pub fn class(&self) -> ErrorClass {
        match self {
            JitrError::Registry(e) => e.kind().class(),
            JitrError::Ledger(e) => e.kind.class(),
            JitrError::Revocation(_)
            | JitrError::Profiles(_)
            | JitrError::DetachPending { .. }
            | JitrError::ThingContended { .. }
            | JitrError::NotYetConsistent { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    /// The kind, the second half of the `error_type`.
    pub fn kind(&self) -> &'static str {
        match self {
            JitrError::MalformedEvent { .. } => "MalformedEvent",
            JitrError::WrongAccount { .. } => "WrongAccount",
            JitrError::EventMismatch(_) => "EventMismatch",
            JitrError::Config { .. } => "Config",
            JitrError::MissingResource { .. } => "MissingResource",
            JitrError::DetachPending { .. } => "DetachPending",
            JitrError::ThingContended { .. } => "ThingContended",
            JitrError::NotYetConsistent { .. } => "NotYetConsistent",
            JitrError::Registry(e) => e.kind().as_str(),
            JitrError::Ledger(e) => match e.kind.class() {
                ErrorClass::Retryable => "LedgerUnavailable",
                ErrorClass::Permanent => "LedgerError",
            },
            JitrError::Revocation(e) => e.kind(),
            JitrError::Profiles(e) => e.kind(),
        }
    }

    /// `Permanent.MalformedEvent`, `Retryable.Throttled`, ...: the Lambda `error_type`.
    pub fn error_type(&self) -> String {
        format!("{}.{}", self.class().as_str(), self.kind())
    }

    /// A registry error that IoT Core's eventual consistency explains, as `NotYetConsistent`.
    pub fn not_yet_consistent(err: RegistryError) -> Self {
        JitrError::NotYetConsistent {
            operation: err.operation(),
            detail: err.to_string(),
        }
    }

    /// True when a registry call reported the given kind.
    pub fn is_registry(&self, kind: RegistryErrorKind) -> bool {
        matches!(self, JitrError::Registry(e) if e.kind() == kind)
    }
}
