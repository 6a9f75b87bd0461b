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
