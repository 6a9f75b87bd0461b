//! Starts ministack once per test binary on free loopback ports, in a clean environment with
//! its state inside cargo's target directory, and hands each test its own AWS account
//! (ministack scopes every resource by the 12-digit access key), so tests run in parallel
//! without seeing each other.
//!
//! If ministack cannot start, every test that needs it fails with the reason: nothing is skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use jitr_aws::IotRegistry;

/// A running emulator.
#[derive(Debug)]
pub struct Ministack {
    pub endpoint: String,
    pub gateway_port: u16,
    pub mtls_port: u16,
    pub state_dir: PathBuf,
    /// Dropping the pipe (at process exit) makes the wrapper shell stop ministack.
    _lifeline: ChildStdin,
    _child: Child,
}

static SHARED: OnceLock<Result<Ministack, String>> = OnceLock::new();
static NEXT_ACCOUNT: AtomicU64 = AtomicU64::new(0);

/// The emulator shared by this test binary; panics with the reason if it cannot start.
pub fn shared() -> &'static Ministack {
    match SHARED.get_or_init(start) {
        Ok(ministack) => ministack,
        Err(reason) => panic!("ministack could not start: {reason}"),
    }
}

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn ministack_binary() -> PathBuf {
    std::env::var_os("MINISTACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/ministack"))
}

/// A free loopback port (bound and released; the window for a clash is tiny).
pub fn free_port() -> Result<u16, String> {
    let socket = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start() -> Result<Ministack, String> {
    let binary = ministack_binary();
    if !binary.exists() {
        return Err(format!(
            "{} is missing; `make test` installs it into .venv (or set MINISTACK_BIN)",
            binary.display()
        ));
    }
    let gateway_port = free_port()?;
    let mtls_port = free_port()?;
    let state_dir = target_dir()
        .join("ministack")
        .join(format!("{}-{gateway_port}", std::process::id()));
    std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let log_path = state_dir.join("ministack.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let venv_bin = binary.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut child = Command::new("sh")
        // Runs ministack and stops it when our end of stdin closes, however this process ends.
        .args([
            "-c",
            "\"$@\" </dev/null & child=$!; read _ignored; kill $child 2>/dev/null; wait",
            "sh",
        ])
        .arg(&binary)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", venv_bin.display()),
        )
        .env("HOME", &state_dir)
        .env("TMPDIR", &state_dir)
        .env("STATE_DIR", &state_dir)
        .env("GATEWAY_PORT", gateway_port.to_string())
        .env("BIND_HOST", "127.0.0.1")
        .env("IOT_MTLS_PORT", mtls_port.to_string())
        .env("LAMBDA_EXECUTOR", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let lifeline = child.stdin.take().ok_or("no stdin pipe")?;
    let endpoint = format!("http://127.0.0.1:{gateway_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(gateway_port, "/_ministack/health").is_ok_and(|(status, _)| status == 200) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}; log:\n{}", tail(&log_path)));
        }
        if Instant::now() > deadline {
            return Err(format!("not healthy after 30 s; log:\n{}", tail(&log_path)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Ministack {
        endpoint,
        gateway_port,
        mtls_port,
        state_dir,
        _lifeline: lifeline,
        _child: child,
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

impl Ministack {
    /// A fresh account for one test.
    pub fn new_account(&self) -> Account {
        let n = NEXT_ACCOUNT.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{:012}",
            100_000_000_000 + u64::from(std::process::id()) * 1000 + n
        );
        self.account(&id, REGION)
    }

    /// A given account and region (for the samples, which name theirs).
    pub fn account(&self, id: &str, region: &str) -> Account {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(jitr_aws::iot::https_client())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_iot::config::SharedCredentialsProvider::new(
                aws_sdk_iot::config::Credentials::new(id, "test", None, None, "jitr-tests"),
            ))
            .build();
        Account {
            iot: IotRegistry::from_sdk_config(&sdk),
            id: id.to_owned(),
            sdk,
        }
    }

    /// The broker's CA certificate, for verifying the mTLS listener.
    pub fn broker_ca_pem(&self) -> String {
        match http_get(self.gateway_port, "/_ministack/iot/ca.pem") {
            Ok((200, body)) => body,
            other => panic!("broker CA: {other:?}"),
        }
    }

    /// The SDK's standard variables that point a process at this emulator as `account`.
    pub fn sdk_variables(&self, account: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", account.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ]
    }
}

/// The profile folder this test binary was built into (`<target>/debug`), wherever
/// `CARGO_TARGET_DIR` puts it: test binaries live in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables sit in <profile>/deps, binaries (`bench-burst`) in <profile> itself.
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// Cargo's target directory (emulator state goes under it, never into the sources).
fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// A binary of this workspace in the profile this one was built in (`target/debug` for the
/// tests, `target/release` for `bench-lambda`), wherever `CARGO_TARGET_DIR` puts it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let binary = profile_dir().join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (with `--release` for the benchmarks' binaries)",
        binary.display()
    );
    binary
}

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// One test's AWS account in the emulator.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub sdk: SdkConfig,
    pub iot: IotRegistry,
}
