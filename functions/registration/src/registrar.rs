//! The registration handler: parse → look up → decide → apply, generic over the registry
//! port and the document fetcher so the same code runs on AWS, the emulator and in memory.
//! `assess` (look up and decide, no writes) is shared with `jitr explain`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub use jitr_aws::unix_now;
use jitr_domain::certificate::{CaCertificate, distribution_points, inspect};
use jitr_domain::decision::{
    Decision, Facts, ProvisionPlan, RejectReason, RevocationFacts, RevokeReason, decide, standing,
};
use jitr_domain::event::RegistrationEvent;
use jitr_domain::ledger::{
    DeviceRecord, HistoryEntry, Holdings, LatestCertificate, Ledger, NoLedger, SerialEntry,
};
use jitr_domain::profiles::{Profile, Profiles, ProfilesCache};
use jitr_domain::registry::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryErrorKind,
};
use jitr_domain::revocation::{RevocationCache, RevocationError, RevocationList, RevocationSource};
use jitr_domain::source::{Fetcher, ObjectSource};
use jitr_domain::sync::lock;
use jitr_domain::{Config, JitrError};
use serde_json::Value;

use crate::provision::{
    Provisioned, judge_binding, provision, rotate_among, thing_principals_to_rotate,
};
use crate::report::{Outcome, Report};

/// How long a CA description is trusted before it is looked up again, so a CA deactivated
/// by an operator stops admitting devices within minutes even in a warm container.
pub const CA_CACHE_TTL_SECS: i64 = 300;

/// How long an admission answers a certificate's registration events without IoT calls:
/// duplicates arrive within minutes, and a certificate deleted outside the lifecycle function
/// (which forgets its admission) and registered again is handled afresh after this at most.
pub const DUPLICATE_WINDOW_SECS: i64 = 3600;

/// After a duplicate event, for this long the container checks for an admission before it
/// describes the certificate (saving the DescribeCertificate quota in a storm); otherwise it
/// does both at once (one round trip less for every first event).
pub const DUPLICATE_STORM_SECS: i64 = 60;

/// Revocation caches kept per CA in a container: a CA whose certificates name many URLs evicts
/// its own caches, never another CA's (whose rollback guard is in the ledger either way).
const MAX_SOURCES_PER_CA: usize = 16;

/// Distinct distribution-point URLs one CA's certificates may make a container fetch in a
/// window: one CA cannot spend the fetch time (and so the concurrency) the others need.
pub const MAX_DISTRIBUTION_POINTS_PER_WINDOW: usize = 8;

/// The window of [`MAX_DISTRIBUTION_POINTS_PER_WINDOW`] (seconds): the lists' refresh interval.
pub const DISTRIBUTION_POINT_WINDOW_SECS: i64 = jitr_domain::revocation::REFRESH_INTERVAL_SECS;

#[derive(Debug, Clone)]
pub(crate) struct CachedCa {
    pub(crate) description: CaDescription,
    pub(crate) certificate: Option<CaCertificate>,
    fetched_at: i64,
}

/// What `assess` found and decided for one certificate, before anything is written.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub certificate: CertificateDescription,
    /// `None` when the CA is not registered (or was not looked up: allow-list miss, status).
    pub ca: Option<CaDescription>,
    /// The profile for the certificate's CA, when the checks got that far.
    pub profile: Option<Profile>,
    /// The revocation lists consulted, each with the source it came from.
    pub revocation_lists: Vec<(ObjectSource, Arc<RevocationList>)>,
    /// A revocation source was unusable and the profile fails open.
    pub revocation_unchecked: bool,
    /// The Thing the certificate is for, once the checks got as far as naming it.
    pub thing_name: Option<String>,
    /// That device's key in the ledger (its Thing's name, or its device-management id).
    pub device_key: Option<String>,
    /// The device ledger's record of that Thing, read strongly consistent.
    pub device: Option<DeviceRecord>,
    pub decision: Decision,
}

/// One container's registration handler: configuration, registry, ledger, and the
/// per-container caches (CA descriptions, profiles, revocation lists).
#[derive(Debug)]
pub struct Registrar<R, F, L = NoLedger> {
    registry: R,
    config: Config,
    fetcher: F,
    /// The serial index admissions are written to and the revocation sync reads.
    ledger: L,
    /// `REGISTRATION_PROFILES`, when set; otherwise `default_profiles` alone.
    profiles: Option<ProfilesCache>,
    default_profiles: Arc<Profiles>,
    /// Per (source, CA id): a URL shared by two CAs must not let one evict the other's list.
    revocation: Mutex<HashMap<(ObjectSource, String), Arc<RevocationCache>>>,
    cas: Mutex<HashMap<String, CachedCa>>,
    /// Writes nothing to the ledger on its own account (`jitr explain`): lists are compared with
    /// the ledger's mark, never raise it.
    read_only: bool,
    /// When the profiles document's announced generation was last read (seconds), and its value.
    profiles_generation: Mutex<Option<(i64, u64)>>,
    /// Per CA: when its distribution-point window opened, and the URLs fetched in it.
    distribution_points: Mutex<HashMap<String, (i64, BTreeSet<ObjectSource>)>>,
    /// When this container last answered a duplicate event (seconds since the epoch).
    last_duplicate: AtomicI64,
}

impl<R: Registry, F: Fetcher> Registrar<R, F, NoLedger> {
    pub fn new(registry: R, config: Config, fetcher: F) -> Self {
        let default = config.default_profile();
        let profiles = config
            .registration_profiles
            .clone()
            .map(|source| ProfilesCache::new(source, default.clone()));
        Self {
            registry,
            config,
            fetcher,
            ledger: NoLedger,
            profiles,
            default_profiles: Arc::new(Profiles::only(default)),
            revocation: Mutex::default(),
            cas: Mutex::default(),
            distribution_points: Mutex::default(),
            read_only: false,
            profiles_generation: Mutex::default(),
            last_duplicate: AtomicI64::new(i64::MIN),
        }
    }

    /// Reads and writes the device ledger: device-management decisions stand, admitted
    /// certificates are indexed for the revocation sync, and every outcome goes into the
    /// device's history.
    pub fn with_ledger<L: Ledger>(self, ledger: L) -> Registrar<R, F, L> {
        Registrar {
            registry: self.registry,
            config: self.config,
            fetcher: self.fetcher,
            ledger,
            profiles: self.profiles,
            default_profiles: self.default_profiles,
            revocation: self.revocation,
            cas: self.cas,
            distribution_points: self.distribution_points,
            read_only: self.read_only,
            profiles_generation: self.profiles_generation,
            last_duplicate: self.last_duplicate,
        }
    }
}

impl<R: Registry, F: Fetcher, L: Ledger> Registrar<R, F, L> {
    /// For `jitr explain`, which reads only: lists are compared with the ledger's mark of the
    /// newest list accepted, and the mark is never raised.
    #[must_use]
    pub fn reading_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub(crate) fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// The profiles in force at `now`: the document's, or the default alone. A change announced
    /// in the ledger is fetched at once ([`ProfilesCache::get`]).
    pub async fn profiles(&self, now: i64) -> Result<Arc<Profiles>, JitrError> {
        match &self.profiles {
            Some(cache) => {
                let generation = self.profiles_generation(now).await?;
                Ok(cache.get(&self.fetcher, now, generation).await?)
            }
            None => Ok(Arc::clone(&self.default_profiles)),
        }
    }

    /// The profiles document's announced generation, read from the ledger at most once a
    /// second per container (0 without a document or a ledger).
    async fn profiles_generation(&self, now: i64) -> Result<u64, JitrError> {
        let Some(cache) = &self.profiles else {
            return Ok(0);
        };
        if let Some((at, generation)) = *lock(&self.profiles_generation)
            && at == now
        {
            return Ok(generation);
        }
        let generation = (self.ledger)
            .document_generation(&cache.source().to_string())
            .await?;
        *lock(&self.profiles_generation) = Some((now, generation));
        Ok(generation)
    }

    /// Announces in the ledger that the profiles document changed when `objects` (an S3
    /// notification's) include it; the new generation, or `None` when it is not among them.
    pub async fn announce_changed_objects(
        &self,
        objects: &[(String, String)],
    ) -> Result<Option<u64>, JitrError> {
        let Some(cache) = &self.profiles else {
            return Ok(None);
        };
        let ObjectSource::S3 { bucket, key } = cache.source() else {
            return Ok(None);
        };
        if !objects.iter().any(|(b, k)| b == bucket && k == key) {
            return Ok(None);
        }
        let generation = (self.ledger)
            .bump_document_generation(&cache.source().to_string())
            .await?;
        tracing::info!(source = %cache.source(), generation, "registration profiles changed; every container fetches them again");
        Ok(Some(generation))
    }

    /// Handles one event for the function running in `function_account`, now.
    pub async fn handle(
        &self,
        payload: &Value,
        function_account: &str,
    ) -> Result<Report, JitrError> {
        self.handle_at(payload, function_account, unix_now()).await
    }

    /// Handles one event at `now` (seconds since the epoch).
    pub async fn handle_at(
        &self,
        payload: &Value,
        function_account: &str,
        now: i64,
    ) -> Result<Report, JitrError> {
        let event = RegistrationEvent::from_value(payload)?;
        event.check_account(function_account)?;
        // A device reconnecting while its certificate is pending publishes the event again and
        // again; in a storm the copies queue up behind the first. Once the certificate is
        // admitted they are answered from the ledger, without a call against IoT's quotas. Out
        // of a storm the ledger is asked beside DescribeCertificate, saving a round trip.
        let admitted =
            |at: Option<i64>| at.is_some_and(|at| (0..DUPLICATE_WINDOW_SECS).contains(&(now - at)));
        let storm =
            now.saturating_sub(self.last_duplicate.load(Ordering::Relaxed)) < DUPLICATE_STORM_SECS;
        let assessment = if storm {
            if admitted(self.ledger.admitted(&event.certificate_id).await?) {
                return Ok(self.duplicate(event, now));
            }
            self.assess_as(&event, now, None, false).await?
        } else {
            let (at, assessment) = tokio::join!(
                self.ledger.admitted(&event.certificate_id),
                self.assess_as(&event, now, None, false)
            );
            if admitted(at?) {
                return Ok(self.duplicate(event, now));
            }
            assessment?
        };
        let mut report = Report {
            certificate_id: event.certificate_id.clone(),
            ca_certificate_id: event.ca_certificate_id.clone(),
            outcome: Outcome::LeftAlone,
            thing_name: None,
            profile: assessment.profile.as_ref().map(|p| p.name.clone()),
            reason: None,
            revocation_unchecked: false,
        };
        report.thing_name.clone_from(&assessment.thing_name);
        let device_key = assessment.device_key.clone();
        let used = assessment.revocation_lists;
        let decision = match assessment.decision {
            Decision::Provision(plan) => match self.index_then_provision(&plan, now).await? {
                Admission::Provisioned(Provisioned::Done(outcome)) => {
                    report.outcome = outcome;
                    if outcome == Outcome::LeftAlone {
                        report.reason = Some("StatusChangedDuringProvisioning".into());
                        return Ok(report);
                    }
                    report.revocation_unchecked = plan.revocation_unchecked;
                    match self.settle(&plan, &report, now, &used).await? {
                        None => return Ok(report),
                        // The device-management side decided against it while it was provisioned.
                        Some(decision) => decision,
                    }
                }
                Admission::Provisioned(Provisioned::Refused(reason)) => {
                    tracing::warn!(certificate_id = %event.certificate_id, thing_name = %plan.thing.name, reason = reason.as_str(), "thing belongs to another CA; certificate refused");
                    Decision::Reject { reason }
                }
                Admission::Standing(decision) => decision,
            },
            other => other,
        };
        if let Some(device_key) = &device_key
            && refused_for_standing(&decision)
        {
            // Recorded before the status is set, so a retry of a failed write still finds the
            // certificate PENDING: an `activate` later deletes it, and the device's next connect
            // brings it back through JITR to be admitted.
            let holdings = Holdings {
                refused: vec![event.certificate_id.clone()],
                ..Holdings::default()
            };
            self.ledger.add_certificates(device_key, &holdings).await?;
        }
        match decision {
            Decision::Provision(_) => {}
            Decision::Reject { reason } => {
                if let RejectReason::ThingNameInvalid(value) = &reason {
                    tracing::warn!(certificate_id = %event.certificate_id, thing_name = %value, "derived thing name is not valid");
                }
                self.registry
                    .update_certificate_status(&event.certificate_id, &CertificateStatus::Inactive)
                    .await?;
                report.outcome = Outcome::Rejected;
                report.reason = Some(reason.as_str().into());
            }
            Decision::Revoke { reason } => {
                self.registry
                    .update_certificate_status(&event.certificate_id, &CertificateStatus::Revoked)
                    .await?;
                report.outcome = Outcome::Revoked;
                report.reason = Some(reason.code());
            }
            Decision::AlreadyDone(status) => {
                report.reason = Some(format!("Status{}", pascal(status.as_str())));
            }
        }
        self.record_outcome(device_key.as_deref(), &report, now)
            .await?;
        Ok(report)
    }

    /// The answer to a duplicate of an admitted certificate's event; the container checks the
    /// ledger first for a while.
    fn duplicate(&self, event: RegistrationEvent, now: i64) -> Report {
        self.last_duplicate.store(now, Ordering::Relaxed);
        Report {
            certificate_id: event.certificate_id,
            ca_certificate_id: event.ca_certificate_id,
            outcome: Outcome::AlreadyActive,
            thing_name: None,
            profile: None,
            reason: Some("AdmittedBefore".into()),
            revocation_unchecked: false,
        }
    }

    /// After activation: the ledger is read again, so a denial or decommission recorded while
    /// this certificate was being activated takes it out at once (the lifecycle function records
    /// first and reads IoT Core after, so one of the two always sees the other); and an older
    /// certificate raced past a newer one is refused. Beside that read go the history entry,
    /// the rotation's look at the Thing and the ledger's marks of the lists `used`: a list newer
    /// than the one checked, accepted anywhere (the sync raises the mark before it reads the
    /// index, this certificate was indexed before), is fetched and revokes a serial it names. Only once the read found nothing against it is the
    /// admission recorded (beside the rotation): a duplicate is answered from that record
    /// without a look at the device, so it must never exist before the device was looked at. A
    /// failed read leaves no record, and the retry settles again. `Some` is the decision that
    /// replaces the admission.
    async fn settle(
        &self,
        plan: &ProvisionPlan,
        report: &Report,
        now: i64,
        used: &[(ObjectSource, Arc<RevocationList>)],
    ) -> Result<Option<Decision>, JitrError> {
        let (device, principals, history, overtaken) = tokio::join!(
            self.ledger.device(&plan.device_key),
            thing_principals_to_rotate(&self.registry, plan),
            self.record_outcome(Some(&plan.device_key), report, now),
            self.revoked_by_newer_list(plan, used, now),
        );
        if let Some(decision) = standing(plan, device?.as_ref()) {
            return Ok(Some(decision));
        }
        if let Some(decision) = overtaken? {
            return Ok(Some(decision));
        }
        history?;
        let (admission, retired) = tokio::join!(
            self.ledger.record_admission(&plan.certificate_id, now),
            rotate_among(&self.registry, plan, principals),
        );
        let retired = retired?;
        if !retired.is_empty() {
            let holdings = Holdings {
                retired,
                ..Holdings::default()
            };
            self.ledger
                .add_certificates(&plan.device_key, &holdings)
                .await?;
        }
        admission?;
        Ok(None)
    }

    /// `Some(revoke)` when a list newer than one of `used` was accepted for this CA anywhere and
    /// names the certificate's serial (invariant 6: an admission under an older list than one
    /// already synced is revoked). A newer list that cannot be read here is an error (retried).
    async fn revoked_by_newer_list(
        &self,
        plan: &ProvisionPlan,
        used: &[(ObjectSource, Arc<RevocationList>)],
        now: i64,
    ) -> Result<Option<Decision>, JitrError> {
        let ca_id = &plan.ca_certificate_id;
        for (source, list) in used {
            let Some(newest) = self.ledger.list_mark(&source.to_string(), ca_id).await? else {
                continue;
            };
            if !list.mark().is_older_than(&newest) {
                continue;
            }
            let Some(ca) = self.ca(ca_id, now).await?.and_then(|c| c.certificate) else {
                continue;
            };
            let newer = self
                .cache(source.clone(), ca_id)
                .refresh(&self.fetcher, &self.ledger, &ca, now)
                .await?;
            if newer.mark().is_older_than(&newest) {
                return Err(RevocationError::Unreadable(format!(
                    "a newer list than {} was accepted for this CA but cannot be read here",
                    newer.version()
                ))
                .into());
            }
            let serial = hex::decode(&plan.serial_hex).unwrap_or_default();
            if newer.is_revoked(&serial) {
                tracing::warn!(certificate_id = %plan.certificate_id, serial = %plan.serial_hex, list = %newer.version(), "admitted under an older list than one already accepted; revoked");
                return Ok(Some(Decision::Revoke {
                    reason: RevokeReason::SerialRevoked {
                        serial_hex: plan.serial_hex.clone(),
                    },
                }));
            }
        }
        Ok(None)
    }

    /// Appends what changed to the device's history (nothing for a certificate left alone or
    /// already active: a duplicate event is not news).
    async fn record_outcome(
        &self,
        device_key: Option<&str>,
        report: &Report,
        now: i64,
    ) -> Result<(), JitrError> {
        let Some(device_key) = device_key else {
            return Ok(());
        };
        if !matches!(
            report.outcome,
            Outcome::Activated | Outcome::Rejected | Outcome::Revoked
        ) {
            return Ok(());
        }
        let entry = HistoryEntry {
            at_ms: now * 1000,
            source: "registration".into(),
            what: report.outcome.as_str().into(),
            certificate_id: Some(report.certificate_id.clone()),
            reason: report.reason.clone(),
            event_id: None,
        };
        Ok(self.ledger.append_history(device_key, &entry).await?)
    }

    /// Writes the ledger before activation, so an ACTIVE certificate is always indexed and held
    /// by its device (a failed write leaves it PENDING; the retry writes it again). The serial
    /// index entry (keyed by its own CA) and the read of the device's standing (strongly
    /// consistent) run concurrently first; a standing that refuses the certificate stops it
    /// before anything is provisioned. The device's holding (held, latest) is written only once
    /// the Thing's binding judged the certificate the device's, beside the attachments.
    async fn index_then_provision(
        &self,
        plan: &ProvisionPlan,
        now: i64,
    ) -> Result<Admission, JitrError> {
        let entry = SerialEntry {
            ca_certificate_id: plan.ca_certificate_id.clone(),
            serial_hex: plan.serial_hex.clone(),
            certificate_id: plan.certificate_id.clone(),
            thing_name: plan.thing.name.clone(),
            admitted_at: now,
            revoked: None,
        };
        let holdings = Holdings {
            held: vec![plan.certificate_id.clone()],
            latest: Some(LatestCertificate {
                certificate_id: plan.certificate_id.clone(),
                not_before: plan.not_before,
            }),
            ..Holdings::default()
        };
        let (indexed, device) = tokio::join!(
            self.ledger.index_certificate(&entry),
            self.ledger.device(&plan.device_key),
        );
        indexed?;
        if let Some(decision) = standing(plan, device?.as_ref()) {
            // Another CA's certificate naming this device is refused for its CA, not recorded
            // against the device's standing.
            if let Some(reason) = judge_binding(&self.registry, plan)
                .await?
                .and_then(|binding| binding.refusal())
            {
                return Ok(Admission::Provisioned(Provisioned::Refused(reason)));
            }
            return Ok(Admission::Standing(decision));
        }
        let hold = async {
            Ok(self
                .ledger
                .add_certificates(&plan.device_key, &holdings)
                .await?)
        };
        Ok(Admission::Provisioned(
            provision(&self.registry, plan, hold).await?,
        ))
    }

    /// Looks everything up for `event` and decides, writing nothing. An unusable input the
    /// decision depends on (profiles, a revocation list without fail-open, the device ledger) is
    /// an error: nothing is decided on guesses. An admissible certificate's device is looked up
    /// in the ledger (one strongly consistent read), whose decision stands over the certificate.
    pub async fn assess(
        &self,
        event: &RegistrationEvent,
        now: i64,
    ) -> Result<Assessment, JitrError> {
        self.assess_as(event, now, None, true).await
    }

    /// `assess`, as if the certificate had `status` (for `explain`: what the checks say about
    /// an INACTIVE or REVOKED certificate were it pending). Without `read_device` the device's
    /// standing is left to the caller (the handler reads it beside its ledger writes).
    pub(crate) async fn assess_as(
        &self,
        event: &RegistrationEvent,
        now: i64,
        status: Option<CertificateStatus>,
        read_device: bool,
    ) -> Result<Assessment, JitrError> {
        // The profiles' announced generation is read beside DescribeCertificate (once a second at
        // most), so a change announced in the ledger costs no round trip of its own.
        let (certificate, generation) = tokio::join!(
            self.registry.describe_certificate(&event.certificate_id),
            self.profiles_generation(now),
        );
        let mut certificate = certificate?;
        generation?;
        if let Some(status) = status {
            certificate.status = status;
        }

        // Only a pending or active certificate needs its profile, CA and revocation lists; an
        // allow-list miss needs none of them (decide rejects it before looking).
        let needs_checks = matches!(
            certificate.status,
            CertificateStatus::PendingActivation | CertificateStatus::Active
        );
        let listed = self.config.allowed_ca_certificate_ids.is_empty()
            || self
                .config
                .allowed_ca_certificate_ids
                .contains(&event.ca_certificate_id);
        let checks = needs_checks && listed;
        let profile = if checks {
            self.profiles(now)
                .await?
                .for_ca(&event.ca_certificate_id)
                .cloned()
        } else {
            None
        };
        let admits = checks && profile.as_ref().is_some_and(|p| p.enabled);
        let ca = if admits {
            self.ca(&event.ca_certificate_id, now).await?
        } else {
            None
        };
        let ca_certificate = ca.as_ref().and_then(|c| c.certificate.clone());
        let (revocation_lists, revocation_unchecked) = match (&profile, &ca_certificate) {
            (Some(profile), Some(ca_cert)) if admits => {
                let ca_id = &event.ca_certificate_id;
                self.revocation_lists(profile, &certificate, ca_id, ca_cert, now)
                    .await?
            }
            _ => (Vec::new(), false),
        };
        let lists: Vec<_> = revocation_lists
            .iter()
            .map(|(_, list)| Arc::clone(list))
            .collect();
        let facts = Facts {
            certificate: &certificate,
            ca: ca.as_ref().map(|c| &c.description),
            ca_certificate: ca_certificate.as_ref(),
            profile: profile.as_ref(),
            revocation: RevocationFacts {
                lists: &lists,
                unchecked: revocation_unchecked,
            },
            now,
        };
        let mut decision = decide(event, &facts, &self.config)?;
        let mut thing_name = None;
        let mut device_key = None;
        let mut device = None;
        if let Decision::Provision(plan) = &decision {
            thing_name = Some(plan.thing.name.clone());
            device_key = Some(plan.device_key.clone());
            if read_device {
                device = self.ledger.device(&plan.device_key).await?;
                if let Some(standing) = standing(plan, device.as_ref()) {
                    decision = standing;
                }
            }
        }
        Ok(Assessment {
            certificate,
            ca: ca.map(|c| c.description),
            profile,
            revocation_lists,
            revocation_unchecked,
            thing_name,
            device_key,
            device,
            decision,
        })
    }

    /// The verified lists of every revocation source of `profile`. A source that is unusable
    /// fails the event (retryable) unless the profile fails open.
    async fn revocation_lists(
        &self,
        profile: &Profile,
        certificate: &CertificateDescription,
        ca_id: &str,
        ca: &CaCertificate,
        now: i64,
    ) -> Result<(Vec<(ObjectSource, Arc<RevocationList>)>, bool), JitrError> {
        let mut lists = Vec::new();
        let mut unchecked = false;
        for source in &profile.revocation {
            let result = match self.resolve(source, certificate, ca, now) {
                Ok(None) => continue,
                Ok(Some(object)) => match self.within_budget(source, &object, ca_id, now) {
                    Ok(()) => {
                        let cache = self.cache(object.clone(), ca_id);
                        let list = cache.get(&self.fetcher, &self.ledger, ca, now).await;
                        list.map(|list| (object, list))
                    }
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            match result {
                Ok(list) => lists.push(list),
                Err(err) if profile.revocation_fail_open => {
                    tracing::warn!(error = %err, error_type = err.kind(), profile = %profile.name, source = %source, "revocation list unusable; admitting unchecked (fail-open)");
                    unchecked = true;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok((lists, unchecked))
    }

    /// The document a source names for this certificate. A distribution point is read from
    /// the certificate only once it verifies against its CA (the URL is the CA's word, not the
    /// device's); an unverifiable certificate needs no list (`None`): decide rejects it. Only
    /// an http(s) point is followed: a `file://` one would read the function's own disk (whole:
    /// `/dev/zero`), an `s3://` one any bucket its role can read.
    fn resolve(
        &self,
        source: &RevocationSource,
        certificate: &CertificateDescription,
        ca: &CaCertificate,
        now: i64,
    ) -> Result<Option<ObjectSource>, RevocationError> {
        match source {
            RevocationSource::Object(object) => Ok(Some(object.clone())),
            RevocationSource::DistributionPoint => {
                if inspect(&certificate.pem, ca, now).is_err() {
                    return Ok(None);
                }
                distribution_points(&certificate.pem)
                    .into_iter()
                    .find_map(|url| match url.parse::<ObjectSource>() {
                        Ok(http @ ObjectSource::Http(_)) => Some(http),
                        _ => None,
                    })
                    .map(Some)
                    .ok_or(RevocationError::NoDistributionPoint)
            }
        }
    }

    /// Whether a distribution point may be fetched for `ca_id` now: a URL already fetched in the
    /// window always; a new one while the CA has fetched fewer than the window allows.
    fn within_budget(
        &self,
        source: &RevocationSource,
        object: &ObjectSource,
        ca_id: &str,
        now: i64,
    ) -> Result<(), RevocationError> {
        if *source != RevocationSource::DistributionPoint {
            return Ok(());
        }
        let mut windows = lock(&self.distribution_points);
        let (opened, urls) = windows
            .entry(ca_id.to_owned())
            .or_insert_with(|| (now, BTreeSet::new()));
        if now - *opened >= DISTRIBUTION_POINT_WINDOW_SECS {
            *opened = now;
            urls.clear();
        }
        if urls.contains(object) || urls.len() < MAX_DISTRIBUTION_POINTS_PER_WINDOW {
            urls.insert(object.clone());
            return Ok(());
        }
        tracing::warn!(
            ca_certificate_id = ca_id,
            distribution_points = urls.len(),
            "too many distinct distribution points for this CA in the window; refused until it passes"
        );
        Err(RevocationError::Unreadable(format!(
            "this CA's certificates named more than {MAX_DISTRIBUTION_POINTS_PER_WINDOW} distribution points in {DISTRIBUTION_POINT_WINDOW_SECS} s"
        )))
    }

    /// The cache of one source for one CA, created on first use. A CA at its bound evicts one
    /// of its own caches, never another CA's.
    pub(crate) fn cache(&self, source: ObjectSource, ca_id: &str) -> Arc<RevocationCache> {
        let mut caches = lock(&self.revocation);
        let key = (source, ca_id.to_owned());
        if !caches.contains_key(&key) {
            let own: Vec<_> = caches
                .keys()
                .filter(|(_, ca)| ca == ca_id)
                .cloned()
                .collect();
            if own.len() >= MAX_SOURCES_PER_CA
                && let Some(evicted) = own.into_iter().find(|k| *k != key)
            {
                tracing::warn!(
                    ca_certificate_id = ca_id,
                    "too many revocation sources for this CA; one of its caches dropped"
                );
                caches.remove(&evicted);
            }
        }
        let source = key.0.clone();
        Arc::clone(caches.entry(key).or_insert_with(|| {
            let cache = RevocationCache::new(source, ca_id);
            Arc::new(if self.read_only {
                cache.reading_only()
            } else {
                cache
            })
        }))
    }

    /// The CA, from the per-container cache or DescribeCACertificate; `None` if not registered.
    pub(crate) async fn ca(
        &self,
        ca_certificate_id: &str,
        now: i64,
    ) -> Result<Option<CachedCa>, JitrError> {
        let cached = self
            .lock_cas()
            .get(ca_certificate_id)
            .filter(|c| now - c.fetched_at < CA_CACHE_TTL_SECS)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        match self
            .registry
            .describe_ca_certificate(ca_certificate_id)
            .await
        {
            Ok(description) => {
                let certificate = CaCertificate::from_pem(&description.pem);
                let entry = CachedCa {
                    description,
                    certificate,
                    fetched_at: now,
                };
                self.lock_cas()
                    .insert(ca_certificate_id.to_owned(), entry.clone());
                Ok(Some(entry))
            }
            Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn lock_cas(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedCa>> {
        lock(&self.cas)
    }
}

/// What writing the ledger and provisioning came to.
enum Admission {
    Provisioned(Provisioned),
    /// The device's standing in the ledger refuses the certificate; nothing was provisioned.
    Standing(Decision),
}

/// `PENDING_TRANSFER` → `PendingTransfer`.
fn pascal(status: &str) -> String {
    status
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect()
}

/// Refused because of what device management decided about the device, not because of the
/// certificate itself.
fn refused_for_standing(decision: &Decision) -> bool {
    matches!(
        decision,
        Decision::Reject {
            reason: RejectReason::DeviceDenied
        } | Decision::Revoke {
            reason: RevokeReason::Decommissioned | RevokeReason::DeviceRevoked
        }
    )
}
