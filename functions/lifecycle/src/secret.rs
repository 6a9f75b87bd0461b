//! The webhook secret at run time. Deployed, it lives in Secrets Manager (`WEBHOOK_SECRET_ARN`):
//! read at cold start, cached, and read again when a signature does not match — the first time
//! at once, then at most once a minute — so a rotated secret works without a redeploy and forged
//! requests cannot turn into a flood of Secrets Manager calls. Locally, `WEBHOOK_SECRET` is the
//! secret and never changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jitr_core::sync::lock;

use crate::config::WebhookSecret;

/// The shortest wait between two reads of the source.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(60);

type Read = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Reads the secret's current value from where it is kept.
pub type SecretReader = Box<dyn Fn() -> Read + Send + Sync>;

/// The current webhook secret and, when it is kept elsewhere, how to read it again.
pub struct WebhookSecrets {
    current: Mutex<Option<WebhookSecret>>,
    reader: Option<SecretReader>,
    last_read: Mutex<Option<Instant>>,
    interval: Duration,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("rereadable", &self.reader.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookSecrets {
    /// A secret that never changes (`WEBHOOK_SECRET`), or none.
    pub fn fixed(secret: Option<WebhookSecret>) -> Self {
        Self {
            current: Mutex::new(secret),
            reader: None,
            last_read: Mutex::new(None),
            interval: REREAD_INTERVAL,
        }
    }

    /// Reads the secret through `reader` now (the cold start: an error fails it), and again on
    /// a mismatch: the first time at once, then at most once per `interval`.
    pub async fn read_through(reader: SecretReader, interval: Duration) -> Result<Self, String> {
        let secret = checked(reader().await?)?;
        Ok(Self {
            current: Mutex::new(Some(secret)),
            reader: Some(reader),
            last_read: Mutex::new(None),
            interval,
        })
    }

    pub fn current(&self) -> Option<WebhookSecret> {
        lock(&self.current).clone()
    }

    /// After a signature mismatch: reads the secret again if it may be read now; true when a
    /// different secret was found (worth checking the signature again).
    pub async fn reread(&self) -> bool {
        let Some(reader) = &self.reader else {
            return false;
        };
        {
            let mut last = lock(&self.last_read);
            if last.is_some_and(|at| at.elapsed() < self.interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match reader().await.and_then(checked) {
            Ok(secret) => {
                let mut current = lock(&self.current);
                let changed = current.as_ref() != Some(&secret);
                if changed {
                    tracing::info!(
                        "webhook secret changed in Secrets Manager; using the new value"
                    );
                }
                *current = Some(secret);
                changed
            }
            Err(err) => {
                tracing::warn!(error = %err, "webhook secret could not be read again; keeping the cached one");
                false
            }
        }
    }
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
                        jitr_core::sdk_error::describe("GetSecretValue", &e)
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn reader(values: Arc<Mutex<String>>, reads: Arc<AtomicUsize>) -> SecretReader {
        Box::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            let value = lock(&values).clone();
            Box::pin(async move { Ok(value) })
        })
    }

    #[tokio::test]
    async fn a_rotated_secret_is_read_again_at_most_once_per_interval() {
        let value = Arc::new(Mutex::new("first-secret-value-0001".to_owned()));
        let reads = Arc::new(AtomicUsize::new(0));
        let secrets = WebhookSecrets::read_through(
            reader(Arc::clone(&value), Arc::clone(&reads)),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read at cold start");
        // The first mismatch reads it again at once: a rotation right after a cold start works.
        *lock(&value) = "rotated-secret-value-0002".to_owned();
        assert!(secrets.reread().await, "the rotated value is found");
        assert_eq!(
            secrets.current(),
            Some(WebhookSecret::new("rotated-secret-value-0002"))
        );
        // Then nothing is read within the interval, whatever the mismatches.
        *lock(&value) = "rotated-secret-value-0003".to_owned();
        assert!(!secrets.reread().await);
        assert!(!secrets.reread().await);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            secrets.reread().await,
            "read again once the interval passed"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_short_secret_fails_the_cold_start_and_a_fixed_one_is_never_reread() {
        let short = Arc::new(Mutex::new("short".to_owned()));
        let err = WebhookSecrets::read_through(
            reader(short, Arc::new(AtomicUsize::new(0))),
            REREAD_INTERVAL,
        )
        .await
        .unwrap_err();
        assert!(err.contains("at least"), "{err}");
        let fixed = WebhookSecrets::fixed(Some(WebhookSecret::new("fixed-secret-value-01")));
        assert!(!fixed.reread().await);
    }
}
