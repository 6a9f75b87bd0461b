//! Something run before every call through a port, for tests and benchmarks: added latency
//! (`Latency`, to measure the critical path), or a pause at the n-th call (`Gate`, to run another
//! function to completion at exactly that point and prove a race is closed at every
//! interleaving). One wrapper, [`Interposed`], serves the registry and the ledger alike, so the
//! calls of both are counted on one clock.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use jitr_domain::ledger::{
    DeviceDecision, DeviceRecord, HistoryEntry, Holdings, Ledger, LedgerError, Recorded, Revoked,
    SerialEntry,
};
use jitr_domain::registry::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryError,
    RegistryErrorKind, ThingDescription, ThingSpec,
};

/// What runs before each call; `operation` is the AWS API name. `Err` fails the call with that
/// kind, before it reaches the port (a fault at exactly that point).
pub trait Hook: Send + Sync {
    fn before(
        &self,
        operation: &'static str,
    ) -> impl Future<Output = Result<(), RegistryErrorKind>> + Send;
}

impl<T, H: Hook> Interposed<T, H> {
    /// The hook before a registry call: its failure, as the registry's error.
    async fn gate(&self, operation: &'static str) -> Result<(), RegistryError> {
        (self.hook.before(operation).await)
            .map_err(|kind| RegistryError::new(kind, operation, "injected failure"))
    }

    /// The hook before a ledger call: its failure, as the ledger's error.
    async fn gate_ledger(&self, operation: &'static str) -> Result<(), LedgerError> {
        (self.hook.before(operation).await).map_err(|kind| LedgerError {
            kind,
            operation,
            message: "injected failure".into(),
        })
    }
}

/// Every call takes this much longer (an AWS round trip).
#[derive(Debug, Clone, Copy)]
pub struct Latency(pub Duration);

impl Hook for Latency {
    async fn before(&self, _: &'static str) -> Result<(), RegistryErrorKind> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// Fails the `n`-th call through the ports it is shared by (0 = the first), once, with `kind`:
/// run a flow once per `n` to put a fault at every call it makes.
#[derive(Debug)]
pub struct FailNth {
    calls: AtomicUsize,
    at: usize,
    kind: RegistryErrorKind,
}

impl FailNth {
    pub fn new(at: usize, kind: RegistryErrorKind) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            at,
            kind,
        })
    }

    /// How many calls went through (failed one included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Whether the fault was reached.
    pub fn tripped(&self) -> bool {
        self.calls() > self.at
    }
}

impl Hook for Arc<FailNth> {
    async fn before(&self, _: &'static str) -> Result<(), RegistryErrorKind> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            return Err(self.kind);
        }
        Ok(())
    }
}

/// Counts calls across every port it is shared by, and can hold the n-th one until released.
#[derive(Debug, Default)]
pub struct Gate {
    calls: AtomicUsize,
    /// The call to hold (`usize::MAX`: none).
    hold_at: AtomicUsize,
    held: Notify,
    released: Notify,
}

impl Gate {
    /// A gate that holds nothing yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            hold_at: AtomicUsize::new(usize::MAX),
            ..Self::default()
        })
    }

    /// The `n`-th call from now (0 = the next one) waits, before it reaches the port, until
    /// [`Gate::release`].
    pub fn hold(&self, n: usize) {
        let at = self.calls.load(Ordering::SeqCst) + n;
        self.hold_at.store(at, Ordering::SeqCst);
    }

    /// Waits until the held call has arrived.
    pub async fn held(&self) {
        self.held.notified().await;
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        self.released.notify_one();
    }

    /// How many calls went through.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Hook for Arc<Gate> {
    async fn before(&self, _: &'static str) -> Result<(), RegistryErrorKind> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == self.hold_at.load(Ordering::SeqCst) {
            self.held.notify_one();
            self.released.notified().await;
        }
        Ok(())
    }
}

/// A port with a hook before each call.
#[derive(Debug, Clone)]
pub struct Interposed<T, H> {
    inner: T,
    hook: H,
}

impl<T, H> Interposed<T, H> {
    pub fn new(inner: T, hook: H) -> Self {
        Self { inner, hook }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<R: Registry, H: Hook> Registry for Interposed<R, H> {
    async fn describe_certificate(
        &self,
        id: &str,
    ) -> Result<CertificateDescription, RegistryError> {
        self.gate("DescribeCertificate").await?;
        self.inner.describe_certificate(id).await
    }
    async fn describe_ca_certificate(&self, id: &str) -> Result<CaDescription, RegistryError> {
        self.gate("DescribeCACertificate").await?;
        self.inner.describe_ca_certificate(id).await
    }
    async fn policy_exists(&self, policy: &str) -> Result<bool, RegistryError> {
        self.gate("GetPolicy").await?;
        self.inner.policy_exists(policy).await
    }
    async fn list_ca_certificates(&self) -> Result<Vec<String>, RegistryError> {
        self.gate("ListCACertificates").await?;
        self.inner.list_ca_certificates().await
    }
    async fn create_thing(&self, spec: &ThingSpec) -> Result<(), RegistryError> {
        self.gate("CreateThing").await?;
        self.inner.create_thing(spec).await
    }
    async fn describe_thing(&self, thing: &str) -> Result<ThingDescription, RegistryError> {
        self.gate("DescribeThing").await?;
        self.inner.describe_thing(thing).await
    }
    async fn set_thing_attribute(
        &self,
        thing: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> Result<(), RegistryError> {
        self.gate("UpdateThing").await?;
        self.inner
            .set_thing_attribute(thing, name, value, expected_version)
            .await
    }
    async fn add_thing_to_group(&self, thing: &str, group: &str) -> Result<(), RegistryError> {
        self.gate("AddThingToThingGroup").await?;
        self.inner.add_thing_to_group(thing, group).await
    }
    async fn attach_policy(&self, policy: &str, target: &str) -> Result<(), RegistryError> {
        self.gate("AttachPolicy").await?;
        self.inner.attach_policy(policy, target).await
    }
    async fn attach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> Result<(), RegistryError> {
        self.gate("AttachThingPrincipal").await?;
        self.inner.attach_thing_principal(thing, principal).await
    }
    async fn update_certificate_status(
        &self,
        id: &str,
        status: &CertificateStatus,
    ) -> Result<(), RegistryError> {
        self.gate("UpdateCertificate").await?;
        self.inner.update_certificate_status(id, status).await
    }
    async fn list_thing_principals(&self, thing: &str) -> Result<Vec<String>, RegistryError> {
        self.gate("ListThingPrincipals").await?;
        self.inner.list_thing_principals(thing).await
    }
    async fn list_principal_things(&self, principal: &str) -> Result<Vec<String>, RegistryError> {
        self.gate("ListPrincipalThings").await?;
        self.inner.list_principal_things(principal).await
    }
    async fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<String>, RegistryError> {
        self.gate("ListThings").await?;
        self.inner.things_with_attribute(name, value).await
    }
    async fn list_attached_policies(&self, target: &str) -> Result<Vec<String>, RegistryError> {
        self.gate("ListAttachedPolicies").await?;
        self.inner.list_attached_policies(target).await
    }
    async fn detach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> Result<(), RegistryError> {
        self.gate("DetachThingPrincipal").await?;
        self.inner.detach_thing_principal(thing, principal).await
    }
    async fn detach_policy(&self, policy: &str, target: &str) -> Result<(), RegistryError> {
        self.gate("DetachPolicy").await?;
        self.inner.detach_policy(policy, target).await
    }
    async fn delete_certificate(&self, id: &str) -> Result<(), RegistryError> {
        self.gate("DeleteCertificate").await?;
        self.inner.delete_certificate(id).await
    }
    async fn delete_thing(&self, thing: &str) -> Result<(), RegistryError> {
        self.gate("DeleteThing").await?;
        self.inner.delete_thing(thing).await
    }
}

impl<L: Ledger, H: Hook> Ledger for Interposed<L, H> {
    async fn index_certificate(&self, entry: &SerialEntry) -> Result<(), LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.index_certificate(entry).await
    }
    async fn certificates_with_serial(
        &self,
        ca: &str,
        serial: &str,
    ) -> Result<Vec<SerialEntry>, LedgerError> {
        self.gate_ledger("Query").await?;
        self.inner.certificates_with_serial(ca, serial).await
    }
    async fn mark_revoked(
        &self,
        ca: &str,
        serial: &str,
        certificate: &str,
        revoked: &Revoked,
    ) -> Result<(), LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner
            .mark_revoked(ca, serial, certificate, revoked)
            .await
    }
    async fn device(&self, thing: &str) -> Result<Option<DeviceRecord>, LedgerError> {
        self.gate_ledger("GetItem").await?;
        self.inner.device(thing).await
    }
    async fn record_decision(
        &self,
        thing: &str,
        decision: &DeviceDecision,
    ) -> Result<Recorded, LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.record_decision(thing, decision).await
    }
    async fn mark_applied(
        &self,
        thing: &str,
        event: &jitr_domain::ledger::EventStamp,
    ) -> Result<(), LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.mark_applied(thing, event).await
    }
    async fn add_certificates(&self, thing: &str, holdings: &Holdings) -> Result<(), LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.add_certificates(thing, holdings).await
    }
    async fn admitted(&self, certificate: &str) -> Result<Option<i64>, LedgerError> {
        self.gate_ledger("GetItem").await?;
        self.inner.admitted(certificate).await
    }
    async fn record_admission(&self, certificate: &str, at: i64) -> Result<(), LedgerError> {
        self.gate_ledger("PutItem").await?;
        self.inner.record_admission(certificate, at).await
    }
    async fn forget_admission(&self, certificate: &str) -> Result<(), LedgerError> {
        self.gate_ledger("PutItem").await?;
        self.inner.forget_admission(certificate).await
    }
    async fn append_history(&self, thing: &str, entry: &HistoryEntry) -> Result<(), LedgerError> {
        self.gate_ledger("PutItem").await?;
        self.inner.append_history(thing, entry).await
    }
    async fn history(&self, thing: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        self.gate_ledger("Query").await?;
        self.inner.history(thing).await
    }
    async fn raise_list_mark(
        &self,
        source: &str,
        ca: &str,
        mark: &jitr_domain::revocation::ListMark,
    ) -> Result<jitr_domain::revocation::ListMark, LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.raise_list_mark(source, ca, mark).await
    }
    async fn list_mark(
        &self,
        source: &str,
        ca: &str,
    ) -> Result<Option<jitr_domain::revocation::ListMark>, LedgerError> {
        self.gate_ledger("GetItem").await?;
        self.inner.list_mark(source, ca).await
    }
    async fn sync_progress(
        &self,
        source: &str,
        ca: &str,
    ) -> Result<Option<jitr_domain::revocation::SyncProgress>, LedgerError> {
        self.gate_ledger("GetItem").await?;
        self.inner.sync_progress(source, ca).await
    }
    async fn save_sync_progress(
        &self,
        source: &str,
        ca: &str,
        progress: &jitr_domain::revocation::SyncProgress,
    ) -> Result<(), LedgerError> {
        self.gate_ledger("PutItem").await?;
        self.inner.save_sync_progress(source, ca, progress).await
    }
    async fn document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        self.gate_ledger("GetItem").await?;
        self.inner.document_generation(document).await
    }
    async fn bump_document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        self.gate_ledger("UpdateItem").await?;
        self.inner.bump_document_generation(document).await
    }
    async fn serial_index_page(
        &self,
        ca: &str,
        after: Option<&str>,
    ) -> Result<jitr_domain::ledger::IndexPage, LedgerError> {
        self.gate_ledger("Query").await?;
        self.inner.serial_index_page(ca, after).await
    }
}
