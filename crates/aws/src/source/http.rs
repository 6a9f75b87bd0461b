//! Bounded HTTP(S) fetches for documents a CA publishes (CRLs at their distribution points).
//!
//! A URL comes from configuration or from a certificate the CA signed, and the answer is only
//! trusted after it verifies against the CA, so the risks are a slow or huge answer and requests
//! aimed inside the network: every fetch has a deadline, a size cap and a redirect limit, and
//! link-local hosts (instance metadata endpoints) are refused. hyper and rustls are already
//! linked by the AWS SDK, so this adds no second HTTP stack.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, USER_AGENT,
};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::BodyBuffer;
use super::resolver::CheckedResolver;
use jitr_domain::source::{AddressPolicy, check_url, redacted};
use jitr_domain::source::{FetchError, Fetched, MAX_DOCUMENT_BYTES, Validator};

/// The bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For the whole fetch, redirects and body included.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: usize,
    /// How many redirects are followed.
    pub max_redirects: usize,
    /// Which addresses a request may reach (every hop, every resolved address).
    pub addresses: AddressPolicy,
}

impl Default for HttpLimits {
    /// 5 s, [`MAX_DOCUMENT_BYTES`], 3 redirects, public addresses only.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_bytes: MAX_DOCUMENT_BYTES,
            max_redirects: 3,
            addresses: AddressPolicy::PublicOnly,
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector<CheckedResolver>>, Empty<Bytes>>;

/// Fetches `http://` and `https://` URLs (TLS on the platform's root certificates).
///
/// The client is built on the first fetch: loading the platform's root certificates reads
/// every file in its certificate directory, several milliseconds a cold start should not pay
/// when no list is fetched over HTTP.
#[derive(Clone)]
pub struct HttpFetcher {
    client: Arc<OnceLock<Option<HttpsClient>>>,
    limits: HttpLimits,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpFetcher {
    pub fn new(limits: HttpLimits) -> Self {
        Self {
            client: Arc::default(),
            limits,
        }
    }

    /// The client, built on first use. Without platform roots (a bare container) HTTPS cannot
    /// be verified: fetches then fail with a message saying so rather than the process failing.
    fn client(&self) -> Option<&HttpsClient> {
        let policy = self.limits.addresses;
        let client = self.client.get_or_init(|| {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .ok()
                .map(|builder| {
                    // Host names are resolved and checked by the resolver, which hands the
                    // connector the checked addresses only; IP literals are checked by check_url.
                    let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy });
                    http.enforce_http(false);
                    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
                    Client::builder(TokioExecutor::new()).build(connector)
                })
        });
        client.as_ref()
    }

    /// A conditional GET of `url`, within the limits.
    pub async fn get(
        &self,
        url: &str,
        validator: Option<&Validator>,
    ) -> Result<Fetched, FetchError> {
        let deadline = Instant::now() + self.limits.timeout;
        let shown = redacted(url);
        let client = self
            .client()
            .ok_or_else(|| FetchError(format!("{shown}: no TLS root certificates available")))?;
        let mut current = url.to_owned();
        for _ in 0..=self.limits.max_redirects {
            let uri = check_url(&current, self.limits.addresses).map_err(FetchError)?;
            let here = redacted(&current);
            let mut request = Request::get(uri.clone()).header(USER_AGENT, "iot-jitr");
            match validator {
                Some(Validator::ETag(etag)) => request = request.header(IF_NONE_MATCH, etag),
                Some(Validator::LastModified(at)) => {
                    request = request.header(IF_MODIFIED_SINCE, at);
                }
                None => {}
            }
            let request = request
                .body(Empty::new())
                .map_err(|e| FetchError(format!("{here}: {e}")))?;
            let response = within(deadline, &here, client.request(request))
                .await?
                .map_err(|e| FetchError(format!("{here}: {}", chain(&e))))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchError(format!("{here}: {status} without Location")))?;
                current = resolve(&uri, location);
                continue;
            }
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if !status.is_success() {
                return Err(FetchError(format!("{here}: HTTP {status}")));
            }
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &http::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let validator = header(ETAG)
                .map(Validator::ETag)
                .or_else(|| header(LAST_MODIFIED).map(Validator::LastModified));
            let announced = header(CONTENT_LENGTH).and_then(|n| n.parse().ok());
            let limit = self.limits.max_bytes;
            let refused = |e: String| {
                FetchError(format!(
                    "{here}: body refused ({e}; the limit is {limit} bytes)"
                ))
            };
            let mut buffer = BodyBuffer::new(announced, limit);
            let mut body = response.into_body();
            while let Some(frame) = within(deadline, &here, body.frame()).await? {
                let frame = frame.map_err(|e| refused(e.to_string()))?;
                if let Ok(chunk) = frame.into_data() {
                    buffer.push(&chunk).map_err(refused)?;
                }
            }
            let bytes = buffer.into_bytes();
            return Ok(Fetched::Body { bytes, validator });
        }
        Err(FetchError(format!(
            "{shown}: more than {} redirects",
            self.limits.max_redirects
        )))
    }
}

/// Runs `future` until `deadline`.
async fn within<T>(
    deadline: Instant,
    url: &str,
    future: impl Future<Output = T>,
) -> Result<T, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, future)
        .await
        .map_err(|_| FetchError(format!("{url}: timed out")))
}

/// A redirect target: absolute, or a path on the same origin.
fn resolve(base: &Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// The error and its sources on one line (hyper's top-level message alone says little).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-route-per-request HTTP server on loopback: `answer(request head)` gives the raw
    /// response. Returns the base URL.
    async fn serve(answer: fn(&str) -> Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    // A slow server, without blocking the runtime the client's timer runs on.
                    if head.starts_with("GET /slow ") {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                    let reply = answer(&head);
                    let _ = socket.write_all(&reply).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        base
    }

    fn respond(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    fn router(head: &str) -> Vec<u8> {
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let conditional = head.to_ascii_lowercase().contains("if-none-match: \"v1\"");
        match path {
            "/crl" if conditional => respond("304 Not Modified", &[], b""),
            "/crl" => respond("200 OK", &[("ETag", "\"v1\"")], b"crl-bytes"),
            "/dated" => respond(
                "200 OK",
                &[("Last-Modified", "Sun, 22 Nov 2026 10:00:00 GMT")],
                b"dated",
            ),
            "/moved" => respond("302 Found", &[("Location", "/crl")], b""),
            "/loop" => respond("301 Moved Permanently", &[("Location", "/loop")], b""),
            "/huge" => respond("200 OK", &[], &vec![b'x'; 4096]),
            "/slow" => respond("200 OK", &[], b"late"),
            _ => respond("404 Not Found", &[], b""),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetches_conditionally_within_bounds() {
        let base = serve(router).await;
        let fetcher = HttpFetcher::new(HttpLimits {
            timeout: Duration::from_millis(400),
            max_bytes: 1024,
            max_redirects: 2,
            addresses: AddressPolicy::AllowLoopback,
        });
        let url = |p: &str| format!("{base}{p}");
        let first = fetcher.get(&url("/crl"), None).await.unwrap();
        assert_eq!(first, Fetched::body(b"crl-bytes".to_vec(), Some("\"v1\"")));
        let etag = Validator::ETag("\"v1\"".into());
        assert_eq!(
            fetcher.get(&url("/crl"), Some(&etag)).await.unwrap(),
            Fetched::NotModified
        );
        let Fetched::Body { validator, .. } = fetcher.get(&url("/dated"), None).await.unwrap()
        else {
            panic!("expected a body");
        };
        assert!(matches!(validator, Some(Validator::LastModified(_))));
        assert_eq!(
            fetcher.get(&url("/moved"), None).await.unwrap(),
            first,
            "a redirect on the same origin is followed"
        );
        for (path, expected) in [
            ("/loop", "redirects"),
            ("/huge", "limit is 1024 bytes"),
            ("/slow", "timed out"),
            ("/absent", "HTTP 404"),
        ] {
            let err = fetcher.get(&url(path), None).await.unwrap_err();
            assert!(err.0.contains(expected), "{path}: {err}");
        }
    }

    #[test]
    fn resolves_redirect_targets() {
        let base: Uri = "http://h:1/a/b/c.crl".parse().unwrap();
        assert_eq!(resolve(&base, "/x.crl"), "http://h:1/x.crl");
        assert_eq!(resolve(&base, "d.crl"), "http://h:1/a/b/d.crl");
        assert_eq!(resolve(&base, "https://o/e.crl"), "https://o/e.crl");
    }
}
