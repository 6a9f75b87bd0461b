//! Revocation: an X.509 CRL signed by the device's CA, loaded once per container, kept in a
//! hash set for O(1) serial lookups, refreshed when stale, and never trusted unverified.
//!
//! Failing closed is the default: a CRL that cannot be read, does not verify or is past its
//! nextUpdate is a retryable error, so the certificate stays pending until the list is fixed.

mod cache;
mod crl;
mod s3;
mod source;

pub use cache::{REFRESH_INTERVAL_SECS, RevocationCache};
pub use crl::RevocationList;
pub use s3::S3CrlFetcher;
pub use source::{CrlFetcher, Fetched, FileCrlFetcher, RevocationSource, SourceCrlFetcher};

/// Why the revocation list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The file or object could not be read (missing, denied, network).
    #[error("revocation list unreadable: {0}")]
    Unreadable(String),
    /// Not a CRL in PEM or DER form.
    #[error("revocation list malformed: {0}")]
    Malformed(String),
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
            Self::WrongIssuer => "RevocationListWrongIssuer",
            Self::BadSignature => "RevocationListBadSignature",
            Self::Stale { .. } => "RevocationListStale",
            Self::RolledBack(_) => "RevocationListRolledBack",
        }
    }
}
