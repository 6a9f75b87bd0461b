//! Where an operator's documents live (revocation lists, registration profiles) and the port
//! that fetches them: `file:///path`, `s3://bucket/key` or an `http(s)://` URL, each fetched
//! conditionally (ETag or Last-Modified) so an unchanged document costs one small request.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

mod address;

pub use address::{AddressPolicy, check_address, check_url, redacted};

/// One document's location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectSource {
    File(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
    /// An `http://` or `https://` URL.
    Http(String),
}

impl FromStr for ObjectSource {
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
        if s.starts_with("http://") || s.starts_with("https://") {
            // What no policy allows (metadata, unspecified) is refused at once; loopback and
            // private addresses are judged when fetched, under the function's policy.
            check_url(s, AddressPolicy::AllowLoopback)?;
            return Ok(Self::Http(s.to_owned()));
        }
        Err(format!(
            "{s:?}: expected s3://bucket/key, file:///path or an http(s):// URL"
        ))
    }
}

impl fmt::Display for ObjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file://{}", path.display()),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            // Logged: a query string (a presigned signature, a token) is never shown.
            Self::Http(url) => f.write_str(&redacted(url)),
        }
    }
}

/// What a conditional request compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validator {
    ETag(String),
    LastModified(String),
}

/// A fetch result: unchanged since the given validator, or a new body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        validator: Option<Validator>,
    },
}

impl Fetched {
    /// A body with an ETag (tests and adapters).
    pub fn body(bytes: Vec<u8>, etag: Option<&str>) -> Self {
        Self::Body {
            bytes,
            validator: etag.map(|e| Validator::ETag(e.to_owned())),
        }
    }
}

/// The largest document read from S3 or over HTTP (a `file://` document, the operator's own,
/// is read whole): 64 MiB holds a CRL of about 1.5 million 20-byte serials in DER (1.1 million
/// in PEM), and leaves room within a 128 MB function for the list it is parsed into.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Why a document could not be read (missing, denied, network, too large).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Fetches a document; `validator` allows a conditional request.
pub trait Fetcher: Send + Sync {
    fn fetch(
        &self,
        source: &ObjectSource,
        validator: Option<&Validator>,
    ) -> impl Future<Output = Result<Fetched, FetchError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "file:///etc/crl.pem".parse(),
            Ok(ObjectSource::File("/etc/crl.pem".into()))
        );
        assert_eq!(
            "s3://my-bucket/path/to/ca.crl".parse(),
            Ok(ObjectSource::S3 {
                bucket: "my-bucket".into(),
                key: "path/to/ca.crl".into()
            })
        );
        assert_eq!(
            "https://pki.example.com/ca.crl".parse(),
            Ok(ObjectSource::Http("https://pki.example.com/ca.crl".into()))
        );
        for bad in [
            "file://relative",
            "s3://bucket",
            "s3:///key",
            "s3://bucket/",
            "https://",
            "http:///path",
            "https://user:secret@host/crl",
            "ftp://x/y",
            "/etc/crl",
        ] {
            assert!(bad.parse::<ObjectSource>().is_err(), "{bad}");
        }
        for text in [
            "file:///etc/crl.pem",
            "s3://b/k/crl",
            "http://127.0.0.1:8080/a.crl",
        ] {
            assert_eq!(text.parse::<ObjectSource>().unwrap().to_string(), text);
        }
        let presigned: ObjectSource = "https://h/ca.crl?X-Amz-Signature=secret".parse().unwrap();
        assert!(!presigned.to_string().contains("secret"));
    }
}
