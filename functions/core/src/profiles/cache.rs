//! The per-container profiles cache: fetched once, re-fetched conditionally every few minutes.
//!
//! An unreadable source (S3 down) keeps serving the last valid document: the document did not
//! change, the way to it failed. An invalid document fails closed (`Retryable.ProfilesInvalid`)
//! even when an earlier one was valid: the operator changed the rules, and guessing which of
//! them still hold could admit a CA they just disabled.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{Profile, Profiles, ProfilesError, parse_document};
use crate::source::{Fetched, Fetcher, ObjectSource, Validator};

/// How long a document is used before the source is asked again.
pub const REFRESH_INTERVAL_SECS: i64 = 300;
/// How soon an invalid or unreadable document is fetched again.
pub const RETRY_INTERVAL_SECS: i64 = 30;

#[derive(Debug, Default)]
struct State {
    fetched_at: Option<i64>,
    validator: Option<Validator>,
    profiles: Option<Arc<Profiles>>,
    /// The document at the source is invalid: every lookup fails until it changes.
    invalid: Option<ProfilesError>,
    last_error: Option<ProfilesError>,
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

    /// The current profiles at `now` (seconds), fetched through `fetcher` when due.
    pub async fn get<F: Fetcher>(
        &self,
        fetcher: &F,
        now: i64,
    ) -> Result<Arc<Profiles>, ProfilesError> {
        let mut state = self.state.lock().await;
        let healthy = state.profiles.is_some() && state.invalid.is_none();
        let interval = if healthy {
            REFRESH_INTERVAL_SECS
        } else {
            RETRY_INTERVAL_SECS
        };
        let due = state.fetched_at.is_none_or(|at| now - at >= interval);
        if due {
            state.fetched_at = Some(now);
            let validator = state.validator.clone();
            match fetcher.fetch(&self.source, validator.as_ref()).await {
                Ok(Fetched::NotModified) => {}
                Ok(Fetched::Body { bytes, validator }) => {
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
        match (&state.profiles, &state.last_error) {
            (Some(profiles), _) => Ok(Arc::clone(profiles)),
            (None, Some(err)) => Err(err.clone()),
            (None, None) => Err(ProfilesError::Unreadable("not fetched yet".into())),
        }
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
        assert_eq!(policy(&cache.get(&fetcher, t).await.unwrap()), "first");
        assert_eq!(
            policy(&cache.get(&fetcher, t + 10).await.unwrap()),
            "first",
            "cached, no fetch"
        );
        let step = REFRESH_INTERVAL_SECS;
        assert_eq!(
            policy(&cache.get(&fetcher, t + step).await.unwrap()),
            "first",
            "S3 down: last valid document"
        );
        let err = cache.get(&fetcher, t + 2 * step).await.unwrap_err();
        assert_eq!(err.kind(), "ProfilesInvalid");
        assert!(err.to_string().contains("profiles.x"), "{err}");
        let err = cache
            .get(&fetcher, t + 2 * step + RETRY_INTERVAL_SECS)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "ProfilesInvalid", "unchanged: still invalid");
        let fixed = cache
            .get(&fetcher, t + 2 * step + 2 * RETRY_INTERVAL_SECS)
            .await
            .unwrap();
        assert_eq!(policy(&fixed), "fixed");
    }
}
