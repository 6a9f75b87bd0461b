//! Why a certificate is refused or revoked: the reason codes every outcome, log line, metric
//! and `jitr explain` names. Their own module, so the rules that produce them (the decision,
//! the Thing binding) depend on it rather than on each other.

use crate::certificate::CertificateProblem;

/// Why a certificate is refused; `as_str` is the reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    CaUnknown,
    CaNotAllowed,
    /// The profiles document has no profile for the CA and refuses unlisted CAs.
    NoProfile,
    /// The CA's profile is disabled.
    ProfileDisabled,
    CaInactive,
    CaUnparseable,
    Certificate(CertificateProblem),
    ThingNameMissing,
    /// The derived name, escaped for logs.
    ThingNameInvalid(String),
    /// The Thing of that name belongs to another CA (see `binding`).
    ThingBoundToOtherCa,
    /// The Thing exists without a binding and the profile's rule is `strict`.
    ThingUnbound,
    /// The device-management system rejected the device (deactivate or revoke).
    DeviceDenied,
    /// The device has moved on to a newer certificate (see `rotation`).
    Superseded,
    /// `DEVICE_ID_ATTRIBUTE` is set, the CA's profile fills that attribute, and this certificate
    /// lacks the subject field it comes from: admitted, the device could never be governed by
    /// its device-management id.
    DeviceIdMissing,
    /// `DEVICE_ID_ATTRIBUTE`'s value from this certificate is outside the device-id alphabet
    /// (`naming::is_valid_device_id`, too long): the lifecycle function could not address it.
    DeviceIdInvalid,
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CaUnknown => "CaUnknown",
            Self::CaNotAllowed => "CaNotAllowed",
            Self::NoProfile => "NoProfile",
            Self::ProfileDisabled => "ProfileDisabled",
            Self::CaInactive => "CaInactive",
            Self::CaUnparseable => "CaUnparseable",
            Self::Certificate(problem) => problem.as_str(),
            Self::ThingNameMissing => "ThingNameMissing",
            Self::ThingNameInvalid(_) => "ThingNameInvalid",
            Self::ThingBoundToOtherCa => "ThingBoundToOtherCa",
            Self::ThingUnbound => "ThingUnbound",
            Self::DeviceDenied => "DeviceDenied",
            Self::Superseded => "Superseded",
            Self::DeviceIdMissing => "DeviceIdMissing",
            Self::DeviceIdInvalid => "DeviceIdInvalid",
        }
    }
}

/// Why a certificate is revoked; `code` is the reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeReason {
    /// The serial is in the CA's revocation list.
    SerialRevoked { serial_hex: String },
    /// The device was decommissioned: none of its certificates is admitted again (a deleted one
    /// comes back through JITR at the device's next connect).
    Decommissioned,
    /// Device management revoked the device: its certificates are REVOKED, new ones too.
    DeviceRevoked,
}

impl RevokeReason {
    pub fn code(&self) -> String {
        match self {
            Self::SerialRevoked { serial_hex } => format!("SerialRevoked:{serial_hex}"),
            Self::Decommissioned => "Decommissioned".to_owned(),
            Self::DeviceRevoked => "DeviceRevoked".to_owned(),
        }
    }
}
