//! The fetch adapters behind the domain's `Fetcher` port: `file://` from disk, `s3://` through
//! the SDK and `http(s)://` over the one bounded HTTPS client, each to the addresses its policy
//! allows.

use jitr_domain::source::{FetchError, Fetched, Fetcher, ObjectSource, Validator};

mod http;
pub mod resolver;
mod s3;

pub use http::{HttpFetcher, HttpLimits};
pub use jitr_domain::source::AddressPolicy;
pub use s3::S3Fetcher;

/// Reads every kind of source: files from disk, objects through S3 (when it has a client) and
/// URLs over bounded HTTP.
#[derive(Debug, Clone)]
pub struct SourceFetcher {
    s3: Option<S3Fetcher>,
    http: HttpFetcher,
}

impl SourceFetcher {
    pub fn new(s3: S3Fetcher, http: HttpFetcher) -> Self {
        Self { s3: Some(s3), http }
    }

    /// S3 through the shared SDK configuration, URLs within the default limits to the
    /// addresses `policy` allows.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, policy: AddressPolicy) -> Self {
        Self::new(
            S3Fetcher::from_sdk_config(sdk),
            HttpFetcher::new(HttpLimits {
                addresses: policy,
                ..HttpLimits::default()
            }),
        )
    }

    /// Files and URLs to public addresses only (tests and the offline demo): S3 sources are
    /// refused.
    pub fn without_s3() -> Self {
        Self::with_http(HttpLimits::default())
    }

    /// Files and URLs within `limits` (tests serving lists from loopback say so here).
    pub fn with_http(limits: HttpLimits) -> Self {
        Self {
            s3: None,
            http: HttpFetcher::new(limits),
        }
    }
}

impl Fetcher for SourceFetcher {
    async fn fetch(
        &self,
        source: &ObjectSource,
        validator: Option<&Validator>,
    ) -> Result<Fetched, FetchError> {
        match source {
            ObjectSource::File(path) => read_file(path).await,
            ObjectSource::S3 { bucket, key } => match &self.s3 {
                Some(s3) => s3.get(bucket, key, validator).await,
                None => Err(FetchError(format!(
                    "s3://{bucket}/{key}: S3 sources need an AWS client"
                ))),
            },
            ObjectSource::Http(url) => self.http.get(url, validator).await,
        }
    }
}

async fn read_file(path: &std::path::Path) -> Result<Fetched, FetchError> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&path).map_err(|e| (path, e)))
        .await
        .map_err(|e| FetchError(e.to_string()))?;
    match read {
        Ok(bytes) => Ok(Fetched::body(bytes, None)),
        Err((path, e)) => Err(FetchError(format!("{}: {e}", path.display()))),
    }
}

/// Gathers a body that arrives in chunks into one buffer, sized from the announced length
/// when there is one (a growing buffer would briefly hold two copies of a large list), and
/// refuses it beyond `limit`.
#[derive(Debug)]
pub(crate) struct BodyBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl BodyBuffer {
    pub(crate) fn new(announced: Option<u64>, limit: usize) -> Self {
        let capacity = announced.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Self {
            bytes: Vec::with_capacity(capacity.min(limit)),
            limit,
        }
    }

    /// Appends a chunk; `Err` when the body would pass the limit.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        if self.bytes.len() + chunk.len() > self.limit {
            return Err(format!("larger than {} bytes", self.limit));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_gathered_within_its_limit_into_one_buffer() {
        let mut body = BodyBuffer::new(Some(6), 8);
        body.push(b"abc").unwrap();
        body.push(b"def").unwrap();
        assert_eq!(body.bytes.capacity(), 6, "sized from the announced length");
        let err = body.push(b"ghi").unwrap_err();
        assert!(err.contains("larger than 8 bytes"), "{err}");
        assert_eq!(body.into_bytes(), b"abcdef");
        // An announced length beyond the limit reserves no more than the limit.
        assert_eq!(BodyBuffer::new(Some(u64::MAX), 8).bytes.capacity(), 8);
    }
}
