//! The per-container profiles cache: fetched once, re-fetched conditionally every few minutes.
//!
//! An unreadable source (S3 down) keeps serving the last valid document: the document did not
//! change, the way to it failed. An invalid document fails closed (`Retryable.ProfilesInvalid`)
//! even when an earlier one was valid: the operator changed the rules, and guessing which of
//! them still hold could admit a CA they just disabled.
//!
//! A change is also *announced*: the S3 notification for the document raises its generation in
//! the ledger, and a container that sees a generation newer than the one its copy was fetched at
//! fetches again at once, whatever the refresh interval; until it has read the announced
//! document it admits nothing under the old one (disabling a CA is a security action).

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Profile, Profiles, ProfilesError, parse_document};
use crate::source::{Fetched, Fetcher, ObjectSource, Validator};

/// How long a document is used before the source is asked again.
pub const REFRESH_INTERVAL_SECS: i64 = 300;
/// How soon an invalid or unreadable document is fetched again.
pub const RETRY_INTERVAL_SECS: i64 = 30;
/// How soon an announced document that could not be read is fetched again.
pub const ANNOUNCED_RETRY_SECS: i64 = 1;

#[derive(Debug, Default)]
struct State {
    fetched_at: Option<i64>,
    validator: Option<Validator>,
    profiles: Option<Arc<Profiles>>,
    /// The document at the source is invalid: every lookup fails until it changes.
    invalid: Option<ProfilesError>,
    last_error: Option<ProfilesError>,
    /// The announced generation the held document was read at.
    generation: u64,
    /// The highest announced generation seen (fetched at once the first time).
    announced_seen: u64,
}

/// The profiles document of one container.
#[derive(Debug)]
pub struct ProfilesCache {
    source: ObjectSource,
    default: Profile,
    state: Mutex<State>,
}

impl ProfilesCache {
    pub fn new(source: ObjectSource, default: Profile) -> Self {
        Self {
            source,
            default,
            state: Mutex::new(State::default()),
        }
    }

    pub fn source(&self) -> &ObjectSource {
        &self.source
    }

    /// The current profiles at `now` (seconds), fetched through `fetcher` when due: every
    /// refresh interval, or at once when `generation` (announced in the ledger) is newer than
    /// the held document's.
    pub async fn get<F: Fetcher>(
        &self,
        fetcher: &F,
        now: i64,
        generation: u64,
    ) -> Result<Arc<Profiles>, ProfilesError> {
        let mut state = self.state.lock().await;
        let announced = generation > state.generation;
        let healthy = state.profiles.is_some() && state.invalid.is_none();
        let interval = match (announced, healthy) {
            (true, _) => ANNOUNCED_RETRY_SECS,
            (false, true) => REFRESH_INTERVAL_SECS,
            (false, false) => RETRY_INTERVAL_SECS,
        };
        // Recorded whether or not the interval already makes the fetch due, so a failed fetch
        // of an announcement is retried after the interval, not again at once.
        let first_seen = announced && state.generation_fetch_pending(generation);
        let due = first_seen || state.fetched_at.is_none_or(|at| now - at >= interval);
        if due {
            state.fetched_at = Some(now);
            let validator = state.validator.clone();
            match fetcher.fetch(&self.source, validator.as_ref()).await {
                Ok(Fetched::NotModified) => {
                    state.generation = state.generation.max(generation);
                }
                Ok(Fetched::Body { bytes, validator }) => {
                    state.generation = state.generation.max(generation);
                    state.validator = validator;
                    match parse_document(&bytes, &self.default) {
                        Ok(profiles) => {
                            state.profiles = Some(Arc::new(profiles));
                            state.invalid = None;
                        }
                        Err(err) => {
                            tracing::error!(error = %err, source = %self.source, "registration profiles invalid; registrations fail until the document is fixed");
                            state.profiles = None;
                            state.invalid = Some(err);
                        }
                    }
                    state.last_error = None;
                }
                Err(err) => {
                    let err = ProfilesError::Unreadable(err.0);
                    if state.profiles.is_some() {
                        tracing::warn!(error = %err, "registration profiles unreadable; serving the last valid document");
                    }
                    state.last_error = Some(err);
                }
            }
        }
        if let Some(err) = &state.invalid {
            return Err(err.clone());
        }
        if generation > state.generation {
            // Announced changed, not read yet: the old rules may be the ones just withdrawn.
            return Err(state.last_error.clone().unwrap_or_else(|| {
                ProfilesError::Unreadable("a changed document is announced but not read yet".into())
            }));
        }
        match (&state.profiles, &state.last_error) {
            (Some(profiles), _) => Ok(Arc::clone(profiles)),
            (None, Some(err)) => Err(err.clone()),
            (None, None) => Err(ProfilesError::Unreadable("not fetched yet".into())),
        }
    }
}

impl State {
    /// True the first time a generation is seen: it is fetched at once, not after a wait.
    fn generation_fetch_pending(&mut self, generation: u64) -> bool {
        let first = self.announced_seen < generation;
        self.announced_seen = self.announced_seen.max(generation);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::FetchError;
    use std::sync::Mutex as StdMutex;

    struct Scripted(StdMutex<Vec<Result<Fetched, FetchError>>>);

    impl Fetcher for Scripted {
        async fn fetch(
            &self,
            _: &ObjectSource,
            _: Option<&Validator>,
        ) -> Result<Fetched, FetchError> {
            self.0.lock().unwrap().remove(0)
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn doc(policy: &str) -> Result<Fetched, FetchError> {
        let json = format!(r#"{{"version":1,"profiles":{{"{A}":{{"policies":["{policy}"]}}}}}}"#);
        Ok(Fetched::body(json.into_bytes(), Some(policy)))
    }

    #[tokio::test]
    async fn unreadable_serves_the_last_valid_document_invalid_fails_closed() {
        let fetcher = Scripted(StdMutex::new(vec![
            doc("first"),
            Err(FetchError("S3 down".into())),
            Ok(Fetched::body(
                b"{\"version\":1,\"profiles\":{\"x\":{}}}".to_vec(),
                None,
            )),
            Ok(Fetched::NotModified),
            doc("fixed"),
        ]));
        let cache = ProfilesCache::new(
            "s3://b/profiles.json".parse().unwrap(),
            Config::with_policy("p").default_profile(),
        );
        let policy = |p: &Profiles| p.for_ca(A).unwrap().policies[0].clone();
        let t = 1_000_000;
        assert_eq!(policy(&cache.get(&fetcher, t, 0).await.unwrap()), "first");
        assert_eq!(
            policy(&cache.get(&fetcher, t + 10, 0).await.unwrap()),
            "first",
            "cached, no fetch"
        );
        let step = REFRESH_INTERVAL_SECS;
        assert_eq!(
            policy(&cache.get(&fetcher, t + step, 0).await.unwrap()),
            "first",
            "S3 down: last valid document"
        );
        let err = cache.get(&fetcher, t + 2 * step, 0).await.unwrap_err();
        assert_eq!(err.kind(), "ProfilesInvalid");
        assert!(err.to_string().contains("profiles.x"), "{err}");
        let err = cache
            .get(&fetcher, t + 2 * step + RETRY_INTERVAL_SECS, 0)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ProfilesInvalid", "unchanged: still invalid");
        let fixed = cache
            .get(&fetcher, t + 2 * step + 2 * RETRY_INTERVAL_SECS, 0)
            .await
            .unwrap();
        assert_eq!(policy(&fixed), "fixed");
    }

    /// Issue 18, defect 11: a document announced changed (its S3 notification) is fetched at
    /// once, whatever the refresh interval; until it is read, nothing is served under the old
    /// one.
    #[tokio::test]
    async fn an_announced_change_is_fetched_at_once_and_the_old_rules_stop() {
        let fetcher = Scripted(StdMutex::new(vec![
            doc("first"),
            Err(FetchError("S3 slow".into())),
            doc("disabled"),
        ]));
        let cache = ProfilesCache::new(
            "s3://b/profiles.json".parse().unwrap(),
            Config::with_policy("p").default_profile(),
        );
        let policy = |p: &Profiles| p.for_ca(A).unwrap().policies[0].clone();
        let t = 1_000_000;
        assert_eq!(policy(&cache.get(&fetcher, t, 0).await.unwrap()), "first");
        // Announced 10 s later: fetched at once; the read fails, and the old rules are not used.
        let err = cache.get(&fetcher, t + 10, 1).await.unwrap_err();
        assert_eq!(err.kind(), "ProfilesUnreadable", "{err}");
        // A second later the announced document is read and served.
        assert_eq!(
            policy(&cache.get(&fetcher, t + 11, 1).await.unwrap()),
            "disabled"
        );
        assert_eq!(
            policy(&cache.get(&fetcher, t + 12, 1).await.unwrap()),
            "disabled"
        );
    }
}
