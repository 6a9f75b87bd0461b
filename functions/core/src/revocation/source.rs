//! Where the CRL comes from (`REVOCATION_LIST`) and the port that fetches it.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

use super::{RevocationError, S3CrlFetcher};

/// `REVOCATION_LIST`: `file:///absolute/path` or `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationSource {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl FromStr for RevocationSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("file://") {
            if path.starts_with('/') {
                return Ok(Self::File(PathBuf::from(path)));
            }
            return Err(format!(
                "{s:?}: a file URL needs an absolute path (file:///...)"
            ));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            if let Some((bucket, key)) = rest.split_once('/')
                && !bucket.is_empty()
                && !key.is_empty()
            {
                return Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                });
            }
            return Err(format!("{s:?}: expected s3://bucket/key"));
        }
        Err(format!("{s:?}: expected s3://bucket/key or file:///path"))
    }
}

/// A fetch result: unchanged since the given ETag, or a new body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// Fetches the CRL bytes; `etag` allows a conditional request.
pub trait CrlFetcher: Send + Sync {
    fn fetch(
        &self,
        source: &RevocationSource,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<Fetched, RevocationError>> + Send;
}

/// Reads `file://` sources; refuses S3 ones (for tests and the offline demo).
#[derive(Debug, Clone, Copy, Default)]
pub struct FileCrlFetcher;

impl CrlFetcher for FileCrlFetcher {
    async fn fetch(
        &self,
        source: &RevocationSource,
        _etag: Option<&str>,
    ) -> Result<Fetched, RevocationError> {
        match source {
            RevocationSource::File(path) => read_file(path).await,
            RevocationSource::S3 { .. } => Err(RevocationError::Unreadable(
                "S3 revocation lists need an AWS client".into(),
            )),
        }
    }
}

/// Reads either kind of source: files from disk, objects through S3.
#[derive(Debug, Clone)]
pub struct SourceCrlFetcher {
    s3: S3CrlFetcher,
}

impl SourceCrlFetcher {
    pub fn new(s3: S3CrlFetcher) -> Self {
        Self { s3 }
    }
}

impl CrlFetcher for SourceCrlFetcher {
    async fn fetch(
        &self,
        source: &RevocationSource,
        etag: Option<&str>,
    ) -> Result<Fetched, RevocationError> {
        match source {
            RevocationSource::File(path) => read_file(path).await,
            RevocationSource::S3 { bucket, key } => self.s3.get(bucket, key, etag).await,
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<Fetched, RevocationError> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&path).map_err(|e| (path, e)))
        .await
        .map_err(|e| RevocationError::Unreadable(e.to_string()))?;
    match read {
        Ok(bytes) => Ok(Fetched::Body { bytes, etag: None }),
        Err((path, e)) => Err(RevocationError::Unreadable(format!(
            "{}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "file:///etc/crl.pem".parse(),
            Ok(RevocationSource::File("/etc/crl.pem".into()))
        );
        assert_eq!(
            "s3://my-bucket/path/to/ca.crl".parse(),
            Ok(RevocationSource::S3 {
                bucket: "my-bucket".into(),
                key: "path/to/ca.crl".into()
            })
        );
        for bad in [
            "file://relative",
            "s3://bucket",
            "s3:///key",
            "s3://bucket/",
            "https://x/y",
            "/etc/crl",
        ] {
            assert!(bad.parse::<RevocationSource>().is_err(), "{bad}");
        }
    }
}
