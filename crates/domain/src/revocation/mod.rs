//! Revocation: an X.509 CRL signed by the device's CA, loaded once per container, kept in a
//! compact sorted set for fast serial lookups, refreshed when stale, and never trusted unverified.
//!
//! Failing closed is the default: a CRL that cannot be read, does not verify or is past its
//! nextUpdate is a retryable error, so the certificate stays pending until the list is fixed.

use std::fmt;
use std::str::FromStr;

mod cache;
mod crl;
pub mod mark;
mod serials;

pub use cache::{REFRESH_INTERVAL_SECS, RevocationCache};
pub use crl::RevocationList;
pub use mark::{ListMark, SyncProgress};

use crate::source::{FetchError, ObjectSource};

/// Where a CA's revocation list comes from: a configured document, or the URL in the device
/// certificate's CRL Distribution Points extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationSource {
    Object(ObjectSource),
    /// `distribution-point`: the certificate's own CRL Distribution Points URL.
    DistributionPoint,
}

/// The spelling of [`RevocationSource::DistributionPoint`] in configuration.
pub const DISTRIBUTION_POINT: &str = "distribution-point";

impl FromStr for RevocationSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == DISTRIBUTION_POINT {
            return Ok(Self::DistributionPoint);
        }
        s.parse()
            .map(Self::Object)
            .map_err(|e: String| format!("{e}, or {DISTRIBUTION_POINT}"))
    }
}

impl fmt::Display for RevocationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(source) => source.fmt(f),
            Self::DistributionPoint => f.write_str(DISTRIBUTION_POINT),
        }
    }
}

impl From<FetchError> for RevocationError {
    fn from(err: FetchError) -> Self {
        Self::Unreadable(err.0)
    }
}

/// Why the revocation list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The file or object could not be read (missing, denied, network).
    #[error("revocation list unreadable: {0}")]
    Unreadable(String),
    /// Not a CRL in PEM or DER form.
    #[error("revocation list malformed: {0}")]
    Malformed(String),
    /// The certificate names no CRL distribution point although the profile relies on it.
    #[error("the certificate has no CRL distribution point URL")]
    NoDistributionPoint,
    /// The CRL's issuer is not the device's CA.
    #[error("revocation list is not issued by the device's CA")]
    WrongIssuer,
    /// The signature does not verify with the CA's key.
    #[error("revocation list signature does not verify with the CA's key")]
    BadSignature,
    /// An older list than one already accepted (CRL number or thisUpdate went backwards).
    #[error("revocation list rolled back: {0}")]
    RolledBack(String),
    /// nextUpdate has passed (or is absent): the list may be missing revocations.
    #[error("revocation list is stale: nextUpdate {next_update} is not after now {now}")]
    Stale { next_update: i64, now: i64 },
}

impl RevocationError {
    /// The kind in `Retryable.<Kind>`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "RevocationListUnreadable",
            Self::Malformed(_) => "RevocationListMalformed",
            Self::NoDistributionPoint => "RevocationListNoDistributionPoint",
            Self::WrongIssuer => "RevocationListWrongIssuer",
            Self::BadSignature => "RevocationListBadSignature",
            Self::Stale { .. } => "RevocationListStale",
            Self::RolledBack(_) => "RevocationListRolledBack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_back_as_written() {
        for text in [
            "s3://lists/ca.crl",
            "https://pki.example.com/ca.crl",
            DISTRIBUTION_POINT,
        ] {
            let source: RevocationSource = text.parse().unwrap();
            assert_eq!(source.to_string(), text);
        }
        assert_eq!(
            "distribution-point".parse(),
            Ok(RevocationSource::DistributionPoint)
        );
    }
}
