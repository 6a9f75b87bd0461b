//! The webhook secret at run time. Deployed, it lives in Secrets Manager (`WEBHOOK_SECRET_ARN`):
//! read at cold start and kept for at most [`MAX_AGE`], then read again before it is used, so a
//! rotated-out secret stops authenticating within minutes of the rotation whatever traffic the
//! container sees. A signature that does not match also reads it again (a rotation picked up at
//! once), at most once per [`MISMATCH_REREAD_INTERVAL`] and one read for every request waiting:
//! a flood of forged requests costs at most one Secrets Manager call per interval and delays a
//! genuine, freshly rotated sender by at most that interval. Only the current value (AWSCURRENT)
//! is accepted: there is no grace for the previous one. Past its maximum age a secret that cannot
//! be read again is not used (503, the sender retries). Locally, `WEBHOOK_SECRET` is the secret
//! and never changes.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use jitr_domain::webhook::WebhookSecret;

/// The longest a secret read from Secrets Manager is used before it is read again.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// The shortest wait between two reads caused by signature mismatches.
pub const MISMATCH_REREAD_INTERVAL: Duration = Duration::from_secs(5);

type Read = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Reads the secret's current value from where it is kept.
pub type SecretReader = Box<dyn Fn() -> Read + Send + Sync>;

/// How long a read secret is used, and how often a mismatch may read it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretTimings {
    pub max_age: Duration,
    pub mismatch_interval: Duration,
}

impl Default for SecretTimings {
    fn default() -> Self {
        Self {
            max_age: MAX_AGE,
            mismatch_interval: MISMATCH_REREAD_INTERVAL,
        }
    }
}

#[derive(Default)]
struct Cached {
    secret: Option<WebhookSecret>,
    /// When `secret` was read (`None` for a fixed secret, which never ages).
    read_at: Option<Instant>,
    /// When a mismatch last read the source.
    mismatch_read_at: Option<Instant>,
}

/// The current webhook secret and, when it is kept elsewhere, how to read it again. The lock is
/// held across a read, so concurrent requests share one read instead of each making their own.
pub struct WebhookSecrets {
    cached: Mutex<Cached>,
    reader: Option<SecretReader>,
    timings: SecretTimings,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("rereadable", &self.reader.is_some())
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl WebhookSecrets {
    /// A secret that never changes (`WEBHOOK_SECRET`), or none.
    pub fn fixed(secret: Option<WebhookSecret>) -> Self {
        Self {
            cached: Mutex::new(Cached {
                secret,
                ..Cached::default()
            }),
            reader: None,
            timings: SecretTimings::default(),
        }
    }

    /// Reads the secret through `reader` now (the cold start: an error fails it), and again
    /// as `timings` say.
    pub async fn read_through(
        reader: SecretReader,
        timings: SecretTimings,
    ) -> Result<Self, String> {
        let secret = checked(reader().await?)?;
        Ok(Self {
            cached: Mutex::new(Cached {
                secret: Some(secret),
                read_at: Some(Instant::now()),
                mismatch_read_at: None,
            }),
            reader: Some(reader),
            timings,
        })
    }

    /// The secret to check a signature with: the cached one while it is younger than the
    /// maximum age, otherwise read again first. `Err` when it is too old and cannot be read.
    pub async fn current(&self) -> Result<Option<WebhookSecret>, String> {
        let mut cached = self.cached.lock().await;
        let Some(reader) = &self.reader else {
            return Ok(cached.secret.clone());
        };
        let fresh = cached
            .read_at
            .is_some_and(|at| at.elapsed() < self.timings.max_age);
        if !fresh {
            let secret = read(reader).await?;
            cached.secret = Some(secret);
            cached.read_at = Some(Instant::now());
        }
        Ok(cached.secret.clone())
    }

    /// After `tried` did not match: reads the secret again unless a mismatch read one within
    /// the interval; true when the secret now held differs from `tried` (worth checking again,
    /// also when a concurrent request's read found it).
    pub async fn reread(&self, tried: Option<&WebhookSecret>) -> bool {
        let mut cached = self.cached.lock().await;
        let Some(reader) = &self.reader else {
            return false;
        };
        if cached.secret.as_ref() != tried {
            return true;
        }
        if cached
            .mismatch_read_at
            .is_some_and(|at| at.elapsed() < self.timings.mismatch_interval)
        {
            return false;
        }
        cached.mismatch_read_at = Some(Instant::now());
        match read(reader).await {
            Ok(secret) => {
                let changed = cached.secret.as_ref() != Some(&secret);
                if changed {
                    tracing::info!(
                        "webhook secret changed in Secrets Manager; using the new value"
                    );
                }
                cached.secret = Some(secret);
                cached.read_at = Some(Instant::now());
                changed
            }
            Err(err) => {
                tracing::warn!(error = %err, "webhook secret could not be read again; keeping the cached one within its maximum age");
                false
            }
        }
    }
}

async fn read(reader: &SecretReader) -> Result<WebhookSecret, String> {
    reader().await.and_then(checked)
}

fn checked(value: String) -> Result<WebhookSecret, String> {
    WebhookSecret::parse(value.trim()).map_err(|e| format!("the webhook secret {e}"))
}

/// Reads `arn`'s string value from Secrets Manager.
pub fn secrets_manager(client: aws_sdk_secretsmanager::Client, arn: String) -> SecretReader {
    Box::new(move || {
        let (client, arn) = (client.clone(), arn.clone());
        Box::pin(async move {
            let output = client
                .get_secret_value()
                .secret_id(&arn)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "GetSecretValue {arn}: {}",
                        jitr_aws::sdk_error::describe("GetSecretValue", &e)
                    )
                })?;
            output
                .secret_string()
                .map(str::to_owned)
                .ok_or_else(|| format!("secret {arn} has no string value"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};

    /// A Secrets Manager stand-in: the value it holds (or an error) and how often it was read.
    #[derive(Clone)]
    struct Store {
        value: Arc<StdMutex<Result<String, String>>>,
        reads: Arc<AtomicUsize>,
    }

    impl Store {
        fn holding(value: &str) -> Self {
            Self {
                value: Arc::new(StdMutex::new(Ok(value.to_owned()))),
                reads: Arc::default(),
            }
        }
        fn put(&self, value: &str) {
            *self.value.lock().unwrap() = Ok(value.to_owned());
        }
        fn fail(&self) {
            *self.value.lock().unwrap() = Err("AccessDenied".into());
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
        fn reader(&self) -> SecretReader {
            let store = self.clone();
            Box::new(move || {
                store.reads.fetch_add(1, Ordering::SeqCst);
                let value = store.value.lock().unwrap().clone();
                Box::pin(async move { value })
            })
        }
    }

    fn timings(max_age_ms: u64, mismatch_ms: u64) -> SecretTimings {
        SecretTimings {
            max_age: Duration::from_millis(max_age_ms),
            mismatch_interval: Duration::from_millis(mismatch_ms),
        }
    }

    fn secret(value: &str) -> Option<WebhookSecret> {
        Some(WebhookSecret::new(value))
    }

    /// Issue 18, defect 10: a rotated-out secret no longer authenticates once the cached value
    /// passes its maximum age, even with no mismatch to trigger a read.
    #[tokio::test]
    async fn a_rotated_out_secret_is_refused_once_its_maximum_age_passes() {
        let store = Store::holding("leaked-secret-value-0001");
        let secrets = WebhookSecrets::read_through(store.reader(), timings(150, 60_000))
            .await
            .unwrap();
        store.put("rotated-secret-value-0002");
        assert_eq!(
            secrets.current().await.unwrap(),
            secret("leaked-secret-value-0001")
        );
        assert_eq!(
            store.reads(),
            1,
            "read at cold start, cached within its age"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            secrets.current().await.unwrap(),
            secret("rotated-secret-value-0002"),
            "past its maximum age the old value is never used"
        );
        assert_eq!(store.reads(), 2);
        // Too old and unreadable: nothing is authenticated with it (fail closed).
        store.fail();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(secrets.current().await.is_err());
    }

    /// Issue 18, defect 10: forged requests share one read per interval and cannot keep a
    /// genuine sender with a freshly rotated secret out for longer than that interval.
    #[tokio::test]
    async fn forged_requests_cannot_hold_back_a_rotation() {
        let store = Store::holding("first-secret-value-0001");
        let secrets = WebhookSecrets::read_through(store.reader(), timings(60_000, 100))
            .await
            .unwrap();
        let first = secret("first-secret-value-0001");
        // A flood of forged requests right after the cold start: one read between them.
        for _ in 0..50 {
            assert!(!secrets.reread(first.as_ref()).await);
        }
        assert_eq!(store.reads(), 2, "cold start, then one mismatch read");
        // The operator rotates; a genuine webhook signed with the new value mismatches.
        store.put("rotated-secret-value-0002");
        assert!(!secrets.reread(first.as_ref()).await, "within the interval");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            secrets.reread(first.as_ref()).await,
            "found after the interval at most"
        );
        assert_eq!(
            secrets.current().await.unwrap(),
            secret("rotated-secret-value-0002")
        );
        // A request that tried the old value while another's read found the new one retries
        // with it, without a read of its own.
        let reads = store.reads();
        assert!(secrets.reread(first.as_ref()).await);
        assert_eq!(store.reads(), reads);
    }

    #[tokio::test]
    async fn concurrent_mismatches_share_one_read() {
        let store = Store::holding("first-secret-value-0001");
        let secrets = Arc::new(
            WebhookSecrets::read_through(store.reader(), timings(60_000, 60_000))
                .await
                .unwrap(),
        );
        store.put("rotated-secret-value-0002");
        let first = secret("first-secret-value-0001");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (secrets, first) = (Arc::clone(&secrets), first.clone());
                tokio::spawn(async move { secrets.reread(first.as_ref()).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap(), "each sees the rotated value");
        }
        assert_eq!(store.reads(), 2);
    }

    #[tokio::test]
    async fn a_short_secret_fails_the_cold_start_and_a_fixed_one_is_never_reread() {
        let err = WebhookSecrets::read_through(
            Store::holding("short").reader(),
            SecretTimings::default(),
        )
        .await
        .unwrap_err();
        assert!(err.contains("at least"), "{err}");
        let fixed = WebhookSecrets::fixed(secret("fixed-secret-value-01"));
        assert!(!fixed.reread(secret("other-secret-value-01").as_ref()).await);
        assert_eq!(
            fixed.current().await.unwrap(),
            secret("fixed-secret-value-01")
        );
    }
}
