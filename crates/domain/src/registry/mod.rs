//! The registry port: the IoT Core operations the functions need, and nothing else.
//!
//! Two adapters answer it: `jitr_aws::iot` (aws-sdk-iot; SDK types never leave it) and `memory`
//! here (in-memory, same semantics as the emulator, for unit tests and the offline demo). One
//! contract suite (`jitr_testkit::contract::registry`) runs against both.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use crate::error_class::ErrorClass;

pub mod memory;

pub use memory::MemoryRegistry;

/// A certificate's status in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingActivation,
    PendingTransfer,
    RegisterInactive,
    /// A status this code does not know; never acted on.
    Other(String),
}

impl CertificateStatus {
    /// The API spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::Revoked => "REVOKED",
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::PendingTransfer => "PENDING_TRANSFER",
            Self::RegisterInactive => "REGISTER_INACTIVE",
            Self::Other(s) => s,
        }
    }

    /// Parses the API spelling; unknown values are kept as `Other`.
    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => Self::Active,
            "INACTIVE" => Self::Inactive,
            "REVOKED" => Self::Revoked,
            "PENDING_ACTIVATION" => Self::PendingActivation,
            "PENDING_TRANSFER" => Self::PendingTransfer,
            "REGISTER_INACTIVE" => Self::RegisterInactive,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device certificate as DescribeCertificate returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateDescription {
    pub id: String,
    pub arn: String,
    pub status: CertificateStatus,
    pub pem: String,
    /// The CA that signed it, for certificates registered with a CA.
    pub ca_certificate_id: Option<String>,
}

/// A CA certificate as DescribeCACertificate returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaDescription {
    pub id: String,
    /// `ACTIVE` or `INACTIVE`.
    pub active: bool,
    pub pem: String,
}

/// What CreateThing is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThingSpec {
    pub name: String,
    pub type_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// A Thing as DescribeThing returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThingDescription {
    pub name: String,
    pub type_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Incremented by every update; UpdateThing's `expectedVersion` compares against it.
    pub version: i64,
}

/// The class of a registry failure, decided where the failure is understood (the adapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The named resource does not exist.
    NotFound,
    /// The resource exists with a different configuration.
    AlreadyExists,
    /// The resource's state forbids the operation (delete an ACTIVE certificate, ...).
    Conflict,
    /// The request was refused as invalid.
    InvalidRequest,
    /// Missing IAM permission or bad credentials.
    AccessDenied,
    /// Throttled by the service.
    Throttled,
    /// An entity limit is reached (IoT's LimitExceededException: "the number of attached
    /// entities exceeds the limit", HTTP 410): no retry can succeed until something is detached.
    LimitExceeded,
    /// A 5xx or an unreadable response.
    Unavailable,
    /// The call or an attempt timed out.
    Timeout,
    /// The request could not be sent (connection refused, DNS, TLS).
    Dispatch,
    /// Anything else.
    Other,
}

impl RegistryErrorKind {
    /// Whether a retry can succeed.
    pub fn class(self) -> ErrorClass {
        match self {
            Self::Throttled | Self::Unavailable | Self::Timeout | Self::Dispatch => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// The kind in an `error_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::InvalidRequest => "InvalidRequest",
            Self::AccessDenied => "AccessDenied",
            Self::Throttled => "Throttled",
            Self::LimitExceeded => "LimitExceeded",
            Self::Unavailable => "Unavailable",
            Self::Timeout => "Timeout",
            Self::Dispatch => "Dispatch",
            Self::Other => "RegistryError",
        }
    }
}

/// A classified registry failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct RegistryError {
    kind: RegistryErrorKind,
    operation: &'static str,
    message: String,
}

impl RegistryError {
    pub fn new(
        kind: RegistryErrorKind,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> RegistryErrorKind {
        self.kind
    }

    /// The API operation that failed, e.g. `AttachPolicy`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// What went wrong, without the operation (`Display` puts "<operation> failed: " first).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The port. Each method is one IoT Core API call with its documented semantics.
pub trait Registry: Send + Sync {
    fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = Result<CertificateDescription, RegistryError>> + Send;

    fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> impl Future<Output = Result<CaDescription, RegistryError>> + Send;

    /// Whether an IoT policy of that name exists (GetPolicy).
    fn policy_exists(
        &self,
        policy_name: &str,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// The ids of every CA certificate registered in the account and region.
    fn list_ca_certificates(
        &self,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// Succeeds if the Thing exists with the same type and attributes; `AlreadyExists` if it
    /// exists otherwise.
    fn create_thing(
        &self,
        spec: &ThingSpec,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// `NotFound` for an unknown Thing.
    fn describe_thing(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = Result<ThingDescription, RegistryError>> + Send;

    /// UpdateThing merging one attribute into the Thing's attributes, only if the Thing is still
    /// at `expected_version` (`Conflict` otherwise, on AWS; the emulator does not check).
    fn set_thing_attribute(
        &self,
        thing_name: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    fn add_thing_to_group(
        &self,
        thing_name: &str,
        group_name: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Idempotent.
    fn attach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Idempotent.
    fn attach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Sets any status the service accepts; refusing forbidden transitions is the caller's job.
    fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: &CertificateStatus,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// The principal ARNs attached to a Thing.
    fn list_thing_principals(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// The Thing names a principal is attached to.
    fn list_principal_things(
        &self,
        principal_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// The names of the Things whose attribute `name` is `value` (ListThings filtered by
    /// attribute): how a device known by its device-management id is found.
    fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// The policy names attached to a target (empty for an unknown target).
    fn list_attached_policies(
        &self,
        target_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// Idempotent; `NotFound` for an unknown Thing or principal. Asynchronous on AWS: the
    /// attachment may still be listed for a while.
    fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Idempotent, also for an unknown policy.
    fn detach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// `Conflict` while the certificate is ACTIVE or still attached to a Thing or a policy.
    fn delete_certificate(
        &self,
        certificate_id: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Succeeds for an unknown Thing; `InvalidRequest` while principals are attached.
    fn delete_thing(
        &self,
        thing_name: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
}

impl<R: Registry> Registry for std::sync::Arc<R> {
    fn describe_certificate(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<CertificateDescription, RegistryError>> + Send {
        (**self).describe_certificate(id)
    }
    fn describe_ca_certificate(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<CaDescription, RegistryError>> + Send {
        (**self).describe_ca_certificate(id)
    }
    fn list_ca_certificates(
        &self,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        (**self).list_ca_certificates()
    }
    fn policy_exists(
        &self,
        policy: &str,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send {
        (**self).policy_exists(policy)
    }
    fn create_thing(
        &self,
        spec: &ThingSpec,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).create_thing(spec)
    }
    fn describe_thing(
        &self,
        thing: &str,
    ) -> impl Future<Output = Result<ThingDescription, RegistryError>> + Send {
        (**self).describe_thing(thing)
    }
    fn set_thing_attribute(
        &self,
        thing: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).set_thing_attribute(thing, name, value, expected_version)
    }
    fn add_thing_to_group(
        &self,
        thing: &str,
        group: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).add_thing_to_group(thing, group)
    }
    fn attach_policy(
        &self,
        policy: &str,
        target: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).attach_policy(policy, target)
    }
    fn attach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).attach_thing_principal(thing, principal)
    }
    fn update_certificate_status(
        &self,
        id: &str,
        status: &CertificateStatus,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).update_certificate_status(id, status)
    }
    fn list_thing_principals(
        &self,
        thing: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        (**self).list_thing_principals(thing)
    }
    fn list_principal_things(
        &self,
        principal: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        (**self).list_principal_things(principal)
    }
    fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        (**self).things_with_attribute(name, value)
    }
    fn list_attached_policies(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        (**self).list_attached_policies(target)
    }
    fn detach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).detach_thing_principal(thing, principal)
    }
    fn detach_policy(
        &self,
        policy: &str,
        target: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).detach_policy(policy, target)
    }
    fn delete_certificate(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).delete_certificate(id)
    }
    fn delete_thing(&self, thing: &str) -> impl Future<Output = Result<(), RegistryError>> + Send {
        (**self).delete_thing(thing)
    }
}

/// The certificate id at the end of a certificate ARN (`arn:aws:iot:…:cert/<id>`).
pub fn certificate_id_from_arn(arn: &str) -> Option<&str> {
    arn.rsplit_once(":cert/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}
