//! The per-container CRL cache: fetched once, re-fetched (conditionally) every few minutes so
//! new revocations take effect before nextUpdate, and re-verified whenever the bytes change.
//! Only the parsed list is kept, not its bytes: a refresh holds at most the old list, the new
//! body and the new list at once, and the old list goes when the new one is taken.
//!
//! A verified list is only ever replaced by a newer verified one: a refresh that fails (source
//! down, bad signature, wrong issuer, malformed, stale, or an older list than the one held)
//! keeps serving the list it has while that list is within its nextUpdate (invariant 4). "Older"
//! is judged against the device ledger's mark too, the newest list any container accepted from
//! this source for this CA: a cold start, an eviction or another container holding an older
//! list cannot make a rolled-back list acceptable again.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::{RevocationError, RevocationList};
use crate::certificate::CaCertificate;
use crate::ledger::Ledger;
use crate::source::{Fetched, Fetcher, ObjectSource, Validator};

/// How long a fetched list is used before the source is asked again (a conditional request).
pub const REFRESH_INTERVAL_SECS: i64 = 300;

#[derive(Debug, Default)]
struct State {
    /// When the source was last asked (successfully or not); `None` before the first fetch.
    fetched_at: Option<i64>,
    /// The validator of the verified list's bytes, for conditional requests.
    validator: Option<Validator>,
    /// The last verified list: the CA it verified against, and the parsed list.
    verified: Option<Verified>,
    /// Why the last refresh was not taken, for the error when nothing usable is left.
    last_error: Option<RevocationError>,
}

#[derive(Debug)]
struct Verified {
    ca: CaCertificate,
    list: Arc<RevocationList>,
}

/// One source's CRL for one CA, shared by every invocation of a container.
#[derive(Debug)]
pub struct RevocationCache {
    source: ObjectSource,
    ca_certificate_id: String,
    /// Compares new lists with the ledger's mark without raising it (`jitr explain` reads only).
    read_only: bool,
    state: Mutex<State>,
}

impl RevocationCache {
    pub fn new(source: ObjectSource, ca_certificate_id: &str) -> Self {
        Self {
            source,
            ca_certificate_id: ca_certificate_id.to_owned(),
            read_only: false,
            state: Mutex::new(State::default()),
        }
    }

    /// A cache that compares new lists with the ledger's mark but never writes it.
    #[must_use]
    pub fn reading_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The source this cache reads.
    pub fn source(&self) -> &ObjectSource {
        &self.source
    }

    /// The current list, fetched through `fetcher`, verified against `ca`, fresh at `now` and
    /// not older than `ledger`'s mark for this source and CA.
    pub async fn get<F: Fetcher, L: Ledger>(
        &self,
        fetcher: &F,
        ledger: &L,
        ca: &CaCertificate,
        now: i64,
    ) -> Result<Arc<RevocationList>, RevocationError> {
        self.get_or_refresh(fetcher, ledger, ca, now, false).await
    }

    /// The same, asking the source first whatever the refresh interval (one conditional
    /// request): for the revocation sync, told that the list changed.
    pub async fn refresh<F: Fetcher, L: Ledger>(
        &self,
        fetcher: &F,
        ledger: &L,
        ca: &CaCertificate,
        now: i64,
    ) -> Result<Arc<RevocationList>, RevocationError> {
        self.get_or_refresh(fetcher, ledger, ca, now, true).await
    }

    async fn get_or_refresh<F: Fetcher, L: Ledger>(
        &self,
        fetcher: &F,
        ledger: &L,
        ca: &CaCertificate,
        now: i64,
        force: bool,
    ) -> Result<Arc<RevocationList>, RevocationError> {
        let mut state = self.state.lock().await;
        reverify_for(&mut state, ca);
        let held_fresh = usable(&state, ca, now).is_some();
        let due = force
            || match state.fetched_at {
                None => true,
                Some(at) => now - at >= REFRESH_INTERVAL_SECS || !held_fresh,
            };
        if due {
            state.fetched_at = Some(now);
            let validator = state.validator.clone();
            let result = match fetcher.fetch(&self.source, validator.as_ref()).await {
                Ok(Fetched::NotModified) if state.verified.is_some() => Ok(()),
                Ok(Fetched::NotModified) => Err(RevocationError::Unreadable(
                    "source answered not-modified, but no list is held".into(),
                )),
                Ok(Fetched::Body { bytes, validator }) => match candidate(&state, bytes, ca, now) {
                    Ok(list) => {
                        self.take_if_newest(&mut state, ledger, list, validator, ca)
                            .await
                    }
                    Err(err) => Err(err),
                },
                Err(err) => Err(err.into()),
            };
            match result {
                Ok(()) => state.last_error = None,
                Err(err) => {
                    if held_fresh {
                        tracing::warn!(error = %err, error_type = err.kind(), "revocation list refresh refused; serving the verified list held");
                    }
                    state.last_error = Some(err);
                }
            }
        }
        if let Some(list) = usable(&state, ca, now) {
            return Ok(list);
        }
        Err(match (&state.verified, state.last_error.clone()) {
            // The held list went stale and nothing newer verified.
            (Some(held), None) => held
                .list
                .check_fresh(now)
                .err()
                .unwrap_or_else(|| RevocationError::Unreadable("no usable list".into())),
            (_, Some(err)) => err,
            (None, None) => RevocationError::Unreadable("no revocation list fetched".into()),
        })
    }
}

/// The held list, if it verified against `ca` and is fresh at `now`.
fn usable(state: &State, ca: &CaCertificate, now: i64) -> Option<Arc<RevocationList>> {
    state
        .verified
        .as_ref()
        .filter(|v| v.ca == *ca && v.list.check_fresh(now).is_ok())
        .map(|v| Arc::clone(&v.list))
}

impl RevocationCache {
    /// Raises the ledger's mark to `list` and takes it, unless a newer list was accepted
    /// anywhere (then it is a rollback, refused, and the held list stays).
    async fn take_if_newest<L: Ledger>(
        &self,
        state: &mut State,
        ledger: &L,
        list: RevocationList,
        validator: Option<Validator>,
        ca: &CaCertificate,
    ) -> Result<(), RevocationError> {
        let mark = list.mark();
        let (source, ca_id) = (self.source.to_string(), &self.ca_certificate_id);
        let newest = if self.read_only {
            ledger.list_mark(&source, ca_id).await.map(|stored| {
                stored
                    .filter(|s| mark.is_older_than(s))
                    .unwrap_or_else(|| mark.clone())
            })
        } else {
            ledger.raise_list_mark(&source, ca_id, &mark).await
        }
        .map_err(|e| RevocationError::Unreadable(format!("device ledger: {e}")))?;
        if mark.is_older_than(&newest) {
            return Err(RevocationError::RolledBack(format!(
                "{} is older than a list already accepted for this CA",
                list.version()
            )));
        }
        state.verified = Some(Verified {
            ca: ca.clone(),
            list: Arc::new(list),
        });
        state.validator = validator;
        Ok(())
    }
}

/// Verifies new bytes: a fresh list at least as new as the one held, or the error.
fn candidate(
    state: &State,
    bytes: Vec<u8>,
    ca: &CaCertificate,
    now: i64,
) -> Result<RevocationList, RevocationError> {
    let list = RevocationList::parse_owned(bytes, ca)?;
    list.check_fresh(now)?;
    if let Some(held) = &state.verified {
        list.check_not_older_than(&held.list)?;
    }
    Ok(list)
}

/// The CA's certificate changed (re-registered under the same source): keep the held list if
/// the new certificate has the subject and key it verified against, or drop it so the next
/// fetch starts over.
fn reverify_for(state: &mut State, ca: &CaCertificate) {
    let Some(held) = state.verified.as_mut().filter(|v| v.ca != *ca) else {
        return;
    };
    if held.list.verifies_under(ca) {
        held.ca = ca.clone();
        return;
    }
    // The fetch this makes due replaces `last_error` with its own outcome.
    state.verified = None;
    state.validator = None;
    state.fetched_at = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitr_pki::Ca;
    use std::sync::Mutex as StdMutex;
    use time::{Duration, OffsetDateTime};

    use crate::ledger::MemoryLedger;
    use crate::source::FetchError;

    /// A fetcher that serves scripted answers and records the ETags it was given.
    struct Scripted {
        answers: StdMutex<Vec<Result<Fetched, FetchError>>>,
        etags: StdMutex<Vec<Option<String>>>,
    }

    impl Fetcher for Scripted {
        async fn fetch(
            &self,
            _: &ObjectSource,
            validator: Option<&Validator>,
        ) -> Result<Fetched, FetchError> {
            let etag = match validator {
                Some(Validator::ETag(e)) => Some(e.clone()),
                _ => None,
            };
            self.etags.lock().unwrap().push(etag);
            self.answers.lock().unwrap().remove(0)
        }
    }

    /// A cache with its scripted fetcher and the ledger its marks go to (one per container;
    /// two caches sharing a ledger are two containers, or one before and after an eviction).
    struct Cached {
        cache: RevocationCache,
        fetcher: Scripted,
        ledger: Arc<MemoryLedger>,
    }

    impl Cached {
        async fn get(
            &self,
            ca: &CaCertificate,
            now: i64,
        ) -> Result<Arc<RevocationList>, RevocationError> {
            self.cache.get(&self.fetcher, &self.ledger, ca, now).await
        }
    }

    fn scripted(answers: Vec<Result<Fetched, FetchError>>) -> Cached {
        scripted_with(answers, Arc::default())
    }

    fn scripted_with(
        answers: Vec<Result<Fetched, FetchError>>,
        ledger: Arc<MemoryLedger>,
    ) -> Cached {
        let fetcher = Scripted {
            answers: StdMutex::new(answers),
            etags: StdMutex::default(),
        };
        let source = ObjectSource::S3 {
            bucket: "b".into(),
            key: "k".into(),
        };
        let cache = RevocationCache::new(source, "ca-1");
        Cached {
            cache,
            fetcher,
            ledger,
        }
    }

    /// Issue 18, defect 7: another container, or this one after its cache was evicted or
    /// restarted, never accepts a list older than one any container accepted: the mark is in
    /// the ledger. And a list with the same cRLNumber but an earlier thisUpdate is older.
    #[tokio::test]
    async fn no_container_accepts_a_list_older_than_any_accepted() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let next = now + Duration::days(1);
        let newer = ca
            .crl_numbered(&[vec![7]], 5, now - Duration::hours(1), next)
            .unwrap();
        let same_number_earlier = ca
            .crl_numbered(&[], 5, now - Duration::hours(2), next)
            .unwrap();
        let older = ca
            .crl_numbered(&[], 4, now - Duration::hours(3), next)
            .unwrap();
        let ledger = Arc::new(MemoryLedger::new());
        let first = scripted_with(vec![body(newer, "\"v5\"")], Arc::clone(&ledger));
        assert!(first.get(&ca_cert, t).await.unwrap().is_revoked(&[7]));
        for (rolled_back, what) in [
            (older, "CRL number 4"),
            (same_number_earlier, "CRL number 5"),
        ] {
            let cold = scripted_with(vec![body(rolled_back, "\"old\"")], Arc::clone(&ledger));
            let err = cold.get(&ca_cert, t).await.unwrap_err();
            assert_eq!(err.kind(), "RevocationListRolledBack", "{what}");
            assert!(err.to_string().contains(what), "{err}");
        }
        // Another CA's mark is its own: the same source for another CA starts afresh.
        let other = RevocationCache::new(first.cache.source().clone(), "ca-2");
        let fetcher = Scripted {
            answers: StdMutex::new(vec![body(
                ca.crl_numbered(&[], 1, now - Duration::hours(3), next)
                    .unwrap(),
                "\"v1\"",
            )]),
            etags: StdMutex::default(),
        };
        assert!(other.get(&fetcher, &ledger, &ca_cert, t).await.is_ok());
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
            Ok(Fetched::body(crl, Some("\"v1\""))),
            Ok(Fetched::NotModified),
            Err(FetchError("S3 down".into())),
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

    /// The cache keeps only the parsed list, not its bytes: a CA certificate issued again with
    /// the same subject and key still vouches for it without a fetch; another key does not.
    #[tokio::test]
    async fn a_reissued_ca_keeps_the_list_and_another_key_drops_it() {
        let spec = jitr_pki::CaSpec::named("Cache CA", "Acme");
        let ca = Ca::with_spec(&spec).unwrap();
        let reissued = ca.reissued(&spec).unwrap();
        let rekeyed = Ca::new("Cache CA", "Acme").unwrap();
        let (first, second, third) = (
            CaCertificate::from_pem(&ca.pem).unwrap(),
            CaCertificate::from_pem(&reissued.pem).unwrap(),
            CaCertificate::from_pem(&rekeyed.pem).unwrap(),
        );
        assert_ne!(first, second, "a new certificate");
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let window = (now - Duration::hours(1), now + Duration::hours(6));
        let cache = scripted(vec![
            body(ca.crl(&[vec![9]], window.0, window.1).unwrap(), "\"v1\""),
            body(
                rekeyed.crl(&[vec![7]], window.0, window.1).unwrap(),
                "\"v2\"",
            ),
        ]);
        assert!(cache.get(&first, t).await.unwrap().is_revoked(&[9]));
        let kept = cache.get(&second, t + 1).await.unwrap();
        assert!(kept.is_revoked(&[9]), "same subject and key: no fetch");
        assert_eq!(cache.fetcher.etags.lock().unwrap().len(), 1);
        let fetched = cache.get(&third, t + 2).await.unwrap();
        assert!(fetched.is_revoked(&[7]) && !fetched.is_revoked(&[9]));
        let etags = cache.fetcher.etags.lock().unwrap().clone();
        assert_eq!(
            etags,
            [None, None],
            "the other key's list is fetched afresh"
        );
    }

    fn body(pem: String, etag: &str) -> Result<Fetched, FetchError> {
        Ok(Fetched::body(pem.into_bytes(), Some(etag)))
    }

    /// Defect found in review: the cache dropped its verified list before the new bytes
    /// verified, so one bad object blocked every registration (or, fail-open, admitted
    /// revoked devices) while the previous list was still current.
    #[tokio::test]
    async fn a_refresh_that_does_not_verify_keeps_the_verified_list() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let forger = Ca::new("Cache CA", "Acme").unwrap(); // same name, other key
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let window = (now - Duration::hours(1), now + Duration::hours(6));
        let good = ca.crl(&[vec![9]], window.0, window.1).unwrap();
        let forged = forger.crl(&[], window.0, window.1).unwrap();
        let expired = ca
            .crl_numbered(&[], 2, now - Duration::days(2), now - Duration::days(1))
            .unwrap();
        let cache = scripted(vec![
            body(good, "\"good\""),
            body(forged, "\"forged\""),
            body("garbage".into(), "\"garbage\""),
            body(expired, "\"expired\""),
            Ok(Fetched::NotModified),
        ]);
        assert!(cache.get(&ca_cert, t).await.unwrap().is_revoked(&[9]));
        for step in 1..=4 {
            let list = cache
                .get(&ca_cert, t + step * REFRESH_INTERVAL_SECS)
                .await
                .unwrap_or_else(|e| panic!("refresh {step}: {e}"));
            assert!(
                list.is_revoked(&[9]),
                "refresh {step} kept the verified list"
            );
        }
        let etags = cache.fetcher.etags.lock().unwrap().clone();
        assert_eq!(
            etags,
            vec![
                None,
                Some("\"good\"".to_owned()),
                Some("\"good\"".into()),
                Some("\"good\"".into()),
                Some("\"good\"".into())
            ],
            "a refused body's ETag is never sent, so it is fetched and judged again"
        );
    }

    /// Defect found in review: an older, validly signed CRL replacing a newer one was accepted,
    /// un-revoking devices.
    #[tokio::test]
    async fn an_older_list_never_replaces_a_newer_one() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let newer = ca
            .crl_numbered(
                &[vec![7]],
                5,
                now - Duration::hours(1),
                now + Duration::minutes(20),
            )
            .unwrap();
        let older = ca
            .crl_numbered(&[], 4, now - Duration::hours(3), now + Duration::days(7))
            .unwrap();
        let cache = scripted(vec![
            body(newer, "\"v5\""),
            body(older.clone(), "\"v4\""),
            body(older, "\"v4\""),
        ]);
        assert!(cache.get(&ca_cert, t).await.unwrap().is_revoked(&[7]));
        let list = cache
            .get(&ca_cert, t + REFRESH_INTERVAL_SECS)
            .await
            .unwrap();
        assert!(
            list.is_revoked(&[7]),
            "the rollback is refused; serial 7 stays revoked"
        );
        // Once the newer list is past its nextUpdate, the older one still cannot stand in.
        let err = cache.get(&ca_cert, t + 30 * 60).await.unwrap_err();
        assert_eq!(err.kind(), "RevocationListRolledBack");
        assert!(err.to_string().contains("CRL number 4"), "{err}");
    }

    #[tokio::test]
    async fn fails_closed_when_nothing_usable_is_left() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let cache = scripted(vec![Err(FetchError("missing".into()))]);
        assert_eq!(
            cache.get(&ca_cert, t).await.unwrap_err().kind(),
            "RevocationListUnreadable"
        );

        let short = ca
            .crl(&[], now - Duration::hours(1), now + Duration::minutes(1))
            .unwrap()
            .into_bytes();
        let cache = scripted(vec![
            Ok(Fetched::body(short, None)),
            Err(FetchError("S3 down".into())),
        ]);
        assert!(cache.get(&ca_cert, t).await.is_ok());
        let err = cache.get(&ca_cert, t + 120).await.unwrap_err();
        assert_eq!(
            err.kind(),
            "RevocationListUnreadable",
            "stale list plus failed refresh fails closed"
        );
    }

    /// "Not modified" keeps the held list as it is: once it is stale that is what is said; with
    /// no list held it is an error of its own.
    #[tokio::test]
    async fn not_modified_is_only_good_with_a_list_held() {
        let ca = Ca::new("Cache CA", "Acme").unwrap();
        let ca_cert = CaCertificate::from_pem(&ca.pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = now.unix_timestamp();
        let list = ca
            .crl(
                &[vec![7]],
                now - Duration::hours(1),
                now + Duration::hours(1),
            )
            .unwrap();
        let cached = scripted(vec![body(list, "\"v1\""), Ok(Fetched::NotModified)]);
        assert!(cached.get(&ca_cert, t).await.unwrap().is_revoked(&[7]));
        let err = cached.get(&ca_cert, t + 2 * 3600).await.unwrap_err();
        assert_eq!(err.kind(), "RevocationListStale", "{err}");

        let nothing_held = scripted(vec![Ok(Fetched::NotModified)]);
        let err = nothing_held.get(&ca_cert, t).await.unwrap_err();
        assert!(err.to_string().contains("not-modified"), "{err}");
    }
}
