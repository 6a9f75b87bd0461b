//! What one invocation did, as returned to Lambda and logged.

use serde::Serialize;

/// The outcome of one event; `as_str` is the metric dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Provisioned and set ACTIVE by this invocation.
    Activated,
    /// Already ACTIVE: attachments ensured, nothing else changed.
    AlreadyActive,
    /// Refused and set INACTIVE.
    Rejected,
    /// Serial in the CRL: set REVOKED.
    Revoked,
    /// INACTIVE, REVOKED or a transfer state: an operator's decision, left alone.
    LeftAlone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activated => "Activated",
            Self::AlreadyActive => "AlreadyActive",
            Self::Rejected => "Rejected",
            Self::Revoked => "Revoked",
            Self::LeftAlone => "LeftAlone",
        }
    }
}

/// The function's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub certificate_id: String,
    pub ca_certificate_id: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    /// The registration profile that admitted (or refused) it, when one applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The reason code for Rejected/Revoked/LeftAlone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Admitted without a revocation check because `REVOCATION_FAIL_OPEN=true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub revocation_unchecked: bool,
}
