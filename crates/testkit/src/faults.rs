//! Fault injection around any registry adapter, for tests: the next call of a named operation
//! fails with a given kind, or runs a given action first (an operator acting mid-flight).
//! Because it wraps the port, the same faults hit the in-memory registry and the emulator.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use jitr_domain::registry::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryError,
    RegistryErrorKind, ThingDescription, ThingSpec,
};

type Action = Box<dyn FnOnce() + Send>;

enum Fault {
    /// Fail once, after letting `skip` calls through.
    Fail {
        kind: RegistryErrorKind,
        skip: usize,
    },
    RunFirst(Action),
    /// Answer success without doing it (AWS acknowledged, the change not yet visible).
    Swallow,
}

/// A registry whose operations can be made to fail once, by name (e.g. `"AttachPolicy"`).
pub struct Faulty<R> {
    inner: R,
    faults: Mutex<HashMap<&'static str, Fault>>,
}

impl<R> std::fmt::Debug for Faulty<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty").finish_non_exhaustive()
    }
}

impl<R: Registry> Faulty<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            faults: Mutex::default(),
        }
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The next call of `operation` fails with `kind` and changes nothing.
    pub fn fail_next(&self, operation: &'static str, kind: RegistryErrorKind) {
        self.fail_after(operation, 0, kind);
    }

    /// `skip` calls of `operation` succeed, then the next one fails with `kind` (e.g. the
    /// second ListThingPrincipals: the poll after a detach rather than the first listing).
    pub fn fail_after(&self, operation: &'static str, skip: usize, kind: RegistryErrorKind) {
        self.lock().insert(operation, Fault::Fail { kind, skip });
    }

    /// The next call of `operation` answers success and changes nothing, as an asynchronous
    /// AWS operation (DetachThingPrincipal) whose effect is not visible yet.
    pub fn swallow_next(&self, operation: &'static str) {
        self.lock().insert(operation, Fault::Swallow);
    }

    /// `action` runs just before the next call of `operation`, which then proceeds.
    pub fn before_next(&self, operation: &'static str, action: impl FnOnce() + Send + 'static) {
        self.lock()
            .insert(operation, Fault::RunFirst(Box::new(action)));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<&'static str, Fault>> {
        jitr_domain::sync::lock(&self.faults)
    }

    /// `Ok(true)`: go on to the inner registry; `Ok(false)`: answer success without it.
    fn trip(&self, operation: &'static str) -> Result<bool, RegistryError> {
        let mut faults = self.lock();
        if let Some(Fault::Fail { skip, .. }) = faults.get_mut(operation)
            && *skip > 0
        {
            *skip -= 1;
            return Ok(true);
        }
        let fault = faults.remove(operation);
        drop(faults);
        match fault {
            Some(Fault::Fail { kind, .. }) => {
                Err(RegistryError::new(kind, operation, "injected failure"))
            }
            Some(Fault::RunFirst(action)) => {
                action();
                Ok(true)
            }
            Some(Fault::Swallow) => Ok(false),
            None => Ok(true),
        }
    }
}

impl<R: Registry> Registry for Faulty<R> {
    async fn describe_certificate(
        &self,
        id: &str,
    ) -> Result<CertificateDescription, RegistryError> {
        self.trip("DescribeCertificate")?;
        self.inner.describe_certificate(id).await
    }
    async fn describe_ca_certificate(&self, id: &str) -> Result<CaDescription, RegistryError> {
        self.trip("DescribeCACertificate")?;
        self.inner.describe_ca_certificate(id).await
    }
    async fn policy_exists(&self, policy: &str) -> Result<bool, RegistryError> {
        if !self.trip("GetPolicy")? {
            return Ok(Default::default());
        }
        self.inner.policy_exists(policy).await
    }
    async fn list_ca_certificates(&self) -> Result<Vec<String>, RegistryError> {
        if !self.trip("ListCACertificates")? {
            return Ok(Default::default());
        }
        self.inner.list_ca_certificates().await
    }
    async fn create_thing(&self, spec: &ThingSpec) -> Result<(), RegistryError> {
        if !self.trip("CreateThing")? {
            return Ok(());
        }
        self.inner.create_thing(spec).await
    }
    async fn describe_thing(&self, thing: &str) -> Result<ThingDescription, RegistryError> {
        self.trip("DescribeThing")?;
        self.inner.describe_thing(thing).await
    }
    async fn set_thing_attribute(
        &self,
        thing: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> Result<(), RegistryError> {
        if !self.trip("UpdateThing")? {
            return Ok(());
        }
        self.inner
            .set_thing_attribute(thing, name, value, expected_version)
            .await
    }
    async fn add_thing_to_group(&self, thing: &str, group: &str) -> Result<(), RegistryError> {
        if !self.trip("AddThingToThingGroup")? {
            return Ok(());
        }
        self.inner.add_thing_to_group(thing, group).await
    }
    async fn attach_policy(&self, policy: &str, target: &str) -> Result<(), RegistryError> {
        if !self.trip("AttachPolicy")? {
            return Ok(());
        }
        self.inner.attach_policy(policy, target).await
    }
    async fn attach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> Result<(), RegistryError> {
        if !self.trip("AttachThingPrincipal")? {
            return Ok(());
        }
        self.inner.attach_thing_principal(thing, principal).await
    }
    async fn update_certificate_status(
        &self,
        id: &str,
        status: &CertificateStatus,
    ) -> Result<(), RegistryError> {
        if !self.trip("UpdateCertificate")? {
            return Ok(());
        }
        self.inner.update_certificate_status(id, status).await
    }
    async fn list_thing_principals(&self, thing: &str) -> Result<Vec<String>, RegistryError> {
        if !self.trip("ListThingPrincipals")? {
            return Ok(Default::default());
        }
        self.inner.list_thing_principals(thing).await
    }
    async fn list_principal_things(&self, principal: &str) -> Result<Vec<String>, RegistryError> {
        if !self.trip("ListPrincipalThings")? {
            return Ok(Default::default());
        }
        self.inner.list_principal_things(principal).await
    }
    async fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<String>, RegistryError> {
        if !self.trip("ListThings")? {
            return Ok(Default::default());
        }
        self.inner.things_with_attribute(name, value).await
    }
    async fn list_attached_policies(&self, target: &str) -> Result<Vec<String>, RegistryError> {
        if !self.trip("ListAttachedPolicies")? {
            return Ok(Default::default());
        }
        self.inner.list_attached_policies(target).await
    }
    async fn detach_thing_principal(
        &self,
        thing: &str,
        principal: &str,
    ) -> Result<(), RegistryError> {
        if !self.trip("DetachThingPrincipal")? {
            return Ok(());
        }
        self.inner.detach_thing_principal(thing, principal).await
    }
    async fn detach_policy(&self, policy: &str, target: &str) -> Result<(), RegistryError> {
        if !self.trip("DetachPolicy")? {
            return Ok(());
        }
        self.inner.detach_policy(policy, target).await
    }
    async fn delete_certificate(&self, id: &str) -> Result<(), RegistryError> {
        if !self.trip("DeleteCertificate")? {
            return Ok(());
        }
        self.inner.delete_certificate(id).await
    }
    async fn delete_thing(&self, thing: &str) -> Result<(), RegistryError> {
        if !self.trip("DeleteThing")? {
            return Ok(());
        }
        self.inner.delete_thing(thing).await
    }
}
