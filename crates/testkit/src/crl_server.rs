//! A loopback HTTP server that publishes CRLs the way a CA's distribution point does (tests only). It answers GET with the current bytes and an ETag, 304 to a
//! matching `If-None-Match`, 404 otherwise, and counts the requests it served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use jitr_domain::sync::lock;
use tokio::net::TcpListener;

#[derive(Debug, Default)]
struct Shared {
    /// path → (body, version)
    documents: Mutex<HashMap<String, (Vec<u8>, usize)>>,
    requests: AtomicUsize,
}

/// A running server; it stops when the runtime that started it ends.
#[derive(Debug, Clone)]
pub struct CrlServer {
    base: String,
    shared: Arc<Shared>,
}

impl CrlServer {
    /// Starts on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::default());
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, Arc::clone(&serving)));
            }
        });
        Ok(Self { base, shared })
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Publishes (or replaces) the document at `path`; its ETag changes.
    pub fn publish(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let mut documents = lock(&self.shared.documents);
        let version = documents.get(path).map_or(1, |(_, v)| v + 1);
        documents.insert(path.to_owned(), (bytes.into(), version));
    }

    /// How many requests were answered.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

async fn answer(mut socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let if_none_match = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("if-none-match")
            .then(|| value.trim().to_owned())
    });
    let document = lock(&shared.documents).get(&path).cloned();
    let response = match document {
        Some((_, version)) if if_none_match.as_deref() == Some(&etag(version)) => {
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .as_bytes()
                .to_vec()
        }
        Some((body, version)) => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nETag: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                etag(version),
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            out
        }
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .as_bytes()
            .to_vec(),
    };
    let _ = socket.write_all(&response).await;
    let _ = socket.shutdown().await;
}

fn etag(version: usize) -> String {
    format!("\"v{version}\"")
}
