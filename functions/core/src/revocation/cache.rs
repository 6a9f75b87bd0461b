//! The per-container CRL cache: fetched once, re-fetched (conditionally) every few minutes so
//! new revocations take effect before nextUpdate, and re-verified whenever the bytes change.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{CrlFetcher, Fetched, RevocationError, RevocationList, RevocationSource};
use crate::certificate::CaCertificate;

/// How long a fetched list is used before the source is asked again (a conditional request).
pub const REFRESH_INTERVAL_SECS: i64 = 300;

#[derive(Debug, Default)]
struct State {
    bytes: Option<Arc<Vec<u8>>>,
    etag: Option<String>,
    fetched_at: i64,
    /// The list parsed from `bytes`, with the CA certificate it verified against.
    verified: Option<(CaCertificate, Arc<RevocationList>)>,
}

/// One source's CRL, shared by every invocation of a container.
#[derive(Debug)]
pub struct RevocationCache<F> {
    source: RevocationSource,
    fetcher: F,
    state: Mutex<State>,
}

impl<F: CrlFetcher> RevocationCache<F> {
    pub fn new(source: RevocationSource, fetcher: F) -> Self {
        Self {
            source,
            fetcher,
            state: Mutex::new(State::default()),
        }
    }

    /// The source this cache reads.
    pub fn source(&self) -> &RevocationSource {
        &self.source
    }

    /// The current list, verified against `ca` and fresh at `now` (seconds).
    ///
    /// A failed refresh keeps serving the previous list while that list is still fresh; the
    /// next call tries again.
    pub async fn get(
        &self,
        ca: &CaCertificate,
        now: i64,
    ) -> Result<Arc<RevocationList>, RevocationError> {
        let mut state = self.state.lock().await;
        let usable = |state: &State| {
            state
                .verified
                .as_ref()
                .filter(|(verified_ca, list)| verified_ca == ca && list.check_fresh(now).is_ok())
                .map(|(_, list)| Arc::clone(list))
        };
        let due = state.bytes.is_none()
            || now - state.fetched_at >= REFRESH_INTERVAL_SECS
            || state
                .verified
                .as_ref()
                .is_some_and(|(_, l)| l.check_fresh(now).is_err());
        if due {
            match self
                .fetcher
                .fetch(&self.source, state.etag.as_deref())
                .await
            {
                Ok(Fetched::NotModified) => state.fetched_at = now,
                Ok(Fetched::Body { bytes, etag }) => {
                    state.bytes = Some(Arc::new(bytes));
                    state.etag = etag;
                    state.fetched_at = now;
                    state.verified = None;
                }
                Err(err) => {
                    if let Some(list) = usable(&state) {
                        tracing::warn!(error = %err, "revocation list refresh failed; using the cached list");
                        return Ok(list);
                    }
                    return Err(err);
                }
            }
        }
        if let Some(list) = usable(&state) {
            return Ok(list);
        }
        let bytes = state
            .bytes
            .clone()
            .ok_or_else(|| RevocationError::Unreadable("no revocation list fetched".into()))?;
        let list = Arc::new(RevocationList::parse(&bytes, ca)?);
        list.check_fresh(now)?;
        state.verified = Some((ca.clone(), Arc::clone(&list)));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;
    use std::sync::Mutex as StdMutex;
    use time::{Duration, OffsetDateTime};

    /// A fetcher that serves scripted answers and records the ETags it was given.
    struct Scripted {
        answers: StdMutex<Vec<Result<Fetched, RevocationError>>>,
        etags: StdMutex<Vec<Option<String>>>,
    }

    impl CrlFetcher for Scripted {
        async fn fetch(
            &self,
            _: &RevocationSource,
            etag: Option<&str>,
        ) -> Result<Fetched, RevocationError> {
            self.etags.lock().unwrap().push(etag.map(str::to_owned));
            self.answers.lock().unwrap().remove(0)
        }
    }

    fn scripted(answers: Vec<Result<Fetched, RevocationError>>) -> RevocationCache<Scripted> {
        let fetcher = Scripted {
            answers: StdMutex::new(answers),
            etags: StdMutex::default(),
        };
        RevocationCache::new(
            RevocationSource::S3 {
                bucket: "b".into(),
                key: "k".into(),
            },
            fetcher,
        )
    }

    #[tokio::test]
    async fn caches_refreshes_conditionally_and_survives_a_failed_refresh() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let crl = ca
            .crl(
                &[vec![9]],
                now - Duration::hours(1),
                now + Duration::hours(2),
            )
            .unwrap()
            .into_bytes();
        let cache = scripted(vec![
            Ok(Fetched::Body {
                bytes: crl,
                etag: Some("\"v1\"".into()),
            }),
            Ok(Fetched::NotModified),
            Err(RevocationError::Unreadable("S3 down".into())),
        ]);
        assert!(cache.get(&ca_cert, t).await.unwrap().is_revoked(&[9]));
        assert!(
            cache.get(&ca_cert, t + 10).await.is_ok(),
            "served from cache, no fetch"
        );
        assert!(
            cache.get(&ca_cert, t + REFRESH_INTERVAL_SECS).await.is_ok(),
            "conditional refresh: not modified"
        );
        assert!(
            cache
                .get(&ca_cert, t + 2 * REFRESH_INTERVAL_SECS)
                .await
                .is_ok(),
            "failed refresh keeps the fresh list"
        );
        let etags = cache.fetcher.etags.lock().unwrap().clone();
        assert_eq!(etags, [None, Some("\"v1\"".into()), Some("\"v1\"".into())]);
    }

    #[tokio::test]
    async fn fails_closed_when_nothing_usable_is_left() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let cache = scripted(vec![Err(RevocationError::Unreadable("missing".into()))]);
        assert_eq!(
            cache.get(&ca_cert, t).await.unwrap_err().kind(),
            "RevocationListUnreadable"
        );

        let short = ca
            .crl(&[], now - Duration::hours(1), now + Duration::minutes(1))
            .unwrap()
            .into_bytes();
        let cache = scripted(vec![
            Ok(Fetched::Body {
                bytes: short,
                etag: None,
            }),
            Err(RevocationError::Unreadable("S3 down".into())),
        ]);
        assert!(cache.get(&ca_cert, t).await.is_ok());
        let err = cache.get(&ca_cert, t + 120).await.unwrap_err();
        assert_eq!(
            err.kind(),
            "RevocationListUnreadable",
            "stale list plus failed refresh fails closed"
        );
    }
}
