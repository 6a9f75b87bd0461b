//! A minimal Lambda Runtime API on loopback: it hands the function one event and captures
//! the response or error, so the real `registration` binary can be run as Lambda runs it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// What the function sent back.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Response(Value),
    Error(Value),
    InitError(Value),
}

/// The function binary at `path` as Lambda starts it, behind `runtime_api`: only Lambda's and
/// the SDK's variables (pointed at the fleet's account on the emulator), output captured.
pub fn function_command(
    path: &std::path::Path,
    name: &str,
    fleet: &crate::fleet::Fleet,
    runtime_api: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(path);
    command
        .env_clear()
        .envs(fleet.ministack.sdk_variables(&fleet.account.id))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What the function did, and when (for the cold-start and first-event figures).
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// It asked for its next event; `delivered` when one was handed over (none is left once the
    /// events run out: the call then waits forever).
    Polled { at: Instant, delivered: bool },
    /// It answered.
    Answered { at: Instant, invocation: Invocation },
}

/// Serves `event` once to the first `next` call; later `next` calls wait forever.
pub async fn serve_one(event: Value, function_arn: String) -> (String, mpsc::Receiver<Invocation>) {
    let (address, mut seen) = serve_observed(vec![event], function_arn).await;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(s) = seen.recv().await {
            if let Seen::Answered { invocation, .. } = s {
                let _ = tx.send(invocation).await;
            }
        }
    });
    (address, rx)
}

/// Serves `events` in order, one per `next` call, and reports every poll and answer.
pub async fn serve_observed(
    events: Vec<Value>,
    function_arn: String,
) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind runtime API");
    let address = listener.local_addr().expect("address").to_string();
    let (tx, rx) = mpsc::channel(16);
    let pending = Arc::new(Mutex::new(VecDeque::from(events)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Head and body go out in two writes: without this, Nagle's algorithm holds the
            // second until the runtime's delayed ACK (about 40 ms), as ministack's API does.
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(
                stream,
                Arc::clone(&pending),
                function_arn.clone(),
                tx.clone(),
            ));
        }
    });
    (address, rx)
}

async fn connection(
    stream: TcpStream,
    pending: Arc<Mutex<VecDeque<Value>>>,
    arn: String,
    tx: mpsc::Sender<Seen>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let stream = reader.get_mut();
        if path.ends_with("/invocation/next") {
            let at = Instant::now();
            let event = pending.lock().await.pop_front();
            let delivered = event.is_some();
            let _ = tx.send(Seen::Polled { at, delivered }).await;
            let Some(event) = event else {
                std::future::pending::<()>().await;
                return;
            };
            let payload = event.to_string();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() + 30_000);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Lambda-Runtime-Aws-Request-Id: 8476a536-e9f4-11e8-9739-2dfe598c3fcd\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: {arn}\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1\r\n\r\n",
                payload.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(payload.as_bytes()).await;
            continue;
        }
        let at = Instant::now();
        let invocation = if path.ends_with("/response") {
            Invocation::Response(body)
        } else if path.ends_with("/init/error") {
            Invocation::InitError(body)
        } else {
            Invocation::Error(body)
        };
        let _ = stream
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            .await;
        let _ = tx.send(Seen::Answered { at, invocation }).await;
    }
}
