//! The in-memory registry: the emulator's semantics without a network, for unit tests and the
//! offline demo. The contract suite proves it answers like the AWS adapter against ministack.
//!
//! One test aid the real service cannot offer: a monitor that records every activation of a
//! certificate without a Thing and a policy. Faults are injected by wrapping it in `Faulty`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryError,
    RegistryErrorKind, ThingDescription, ThingSpec,
};
use crate::certificate::pem_to_der;
use crate::naming::is_valid_thing_name;

#[derive(Debug, Clone)]
struct Certificate {
    pem: String,
    status: CertificateStatus,
    ca_certificate_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Ca {
    pem: String,
    active: bool,
}

#[derive(Debug, Clone, Default)]
struct Thing {
    type_name: Option<String>,
    attributes: BTreeMap<String, String>,
    principals: Vec<String>,
    groups: BTreeSet<String>,
    version: i64,
}

#[derive(Debug, Default)]
struct Store {
    certificates: BTreeMap<String, Certificate>,
    cas: BTreeMap<String, Ca>,
    things: BTreeMap<String, Thing>,
    /// policy name → attached target ARNs
    policies: BTreeMap<String, Vec<String>>,
    thing_types: BTreeSet<String>,
    thing_groups: BTreeSet<String>,
    violations: Vec<String>,
}

/// A certificate row of [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub id: String,
    pub status: CertificateStatus,
    pub things: Vec<String>,
    pub policies: Vec<String>,
}

/// A Thing row of [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingRow {
    pub name: String,
    pub type_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub principals: usize,
}

/// The whole registry at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub certificates: Vec<CertificateRow>,
    pub things: Vec<ThingRow>,
}

/// An in-memory IoT registry for one account and region.
#[derive(Debug)]
pub struct MemoryRegistry {
    account: String,
    region: String,
    store: Mutex<Store>,
}

impl MemoryRegistry {
    pub fn new(account: &str, region: &str) -> Self {
        Self {
            account: account.to_owned(),
            region: region.to_owned(),
            store: Mutex::default(),
        }
    }

    /// The ARN IoT Core gives a certificate id in this account and region.
    pub fn certificate_arn(&self, certificate_id: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:cert/{certificate_id}",
            self.region, self.account
        )
    }

    /// Registers a CA (RegisterCACertificate); returns its id.
    pub fn register_ca(&self, pem: &str, active: bool) -> Result<String, RegistryError> {
        let id = certificate_id_of(pem, "RegisterCACertificate")?;
        self.lock().cas.insert(
            id.clone(),
            Ca {
                pem: pem.to_owned(),
                active,
            },
        );
        Ok(id)
    }

    /// What a device's first connect does under JITR: the certificate appears
    /// PENDING_ACTIVATION under its CA. Returns the certificate id.
    pub fn register_pending(
        &self,
        pem: &str,
        ca_certificate_id: &str,
    ) -> Result<String, RegistryError> {
        self.register_certificate(
            pem,
            Some(ca_certificate_id),
            CertificateStatus::PendingActivation,
        )
    }

    /// Registers a certificate with any status (RegisterCertificate, or a fixture's state).
    pub fn register_certificate(
        &self,
        pem: &str,
        ca_certificate_id: Option<&str>,
        status: CertificateStatus,
    ) -> Result<String, RegistryError> {
        let id = certificate_id_of(pem, "RegisterCertificate")?;
        let certificate = Certificate {
            pem: pem.to_owned(),
            status,
            ca_certificate_id: ca_certificate_id.map(str::to_owned),
        };
        self.lock().certificates.insert(id.clone(), certificate);
        Ok(id)
    }

    /// CreatePolicy (the document is the emulator's business, not this store's).
    pub fn create_policy(&self, name: &str) {
        self.lock().policies.entry(name.to_owned()).or_default();
    }

    /// CreateThingType.
    pub fn create_thing_type(&self, name: &str) {
        self.lock().thing_types.insert(name.to_owned());
    }

    /// CreateThingGroup.
    pub fn create_thing_group(&self, name: &str) {
        self.lock().thing_groups.insert(name.to_owned());
    }

    /// Sets a certificate's status directly (an operator's console action, for tests).
    pub fn set_status(&self, certificate_id: &str, status: CertificateStatus) {
        if let Some(certificate) = self.lock().certificates.get_mut(certificate_id) {
            certificate.status = status;
        }
    }

    /// Attaches a principal that is not a certificate (a Cognito identity, say), for tests.
    pub fn attach_foreign_principal(&self, thing_name: &str, principal: &str) {
        if let Some(thing) = self.lock().things.get_mut(thing_name) {
            thing.principals.push(principal.to_owned());
        }
    }

    /// Sets a Thing attribute directly, bumping its version (another writer's UpdateThing).
    pub fn set_attribute(&self, thing_name: &str, name: &str, value: &str) {
        if let Some(thing) = self.lock().things.get_mut(thing_name) {
            thing.attributes.insert(name.to_owned(), value.to_owned());
            thing.version += 1;
        }
    }

    /// Every time a certificate was set ACTIVE without a Thing and a policy attached.
    pub fn invariant_violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The registry's contents, sorted.
    pub fn snapshot(&self) -> Snapshot {
        let store = self.lock();
        let certificates = store
            .certificates
            .iter()
            .map(|(id, c)| {
                let arn = self.certificate_arn(id);
                CertificateRow {
                    id: id.clone(),
                    status: c.status.clone(),
                    things: things_of(&store, &arn),
                    policies: policies_of(&store, &arn),
                }
            })
            .collect();
        let things = store
            .things
            .iter()
            .map(|(name, t)| ThingRow {
                name: name.clone(),
                type_name: t.type_name.clone(),
                attributes: t.attributes.clone(),
                groups: t.groups.iter().cloned().collect(),
                principals: t.principals.len(),
            })
            .collect();
        Snapshot {
            certificates,
            things,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A poisoned lock only means a test panicked mid-call; the data is still usable.
        crate::sync::lock(&self.store)
    }

    /// Records `certificate_id` being set ACTIVE while it lacks a Thing or a policy.
    fn check_activation(&self, store: &mut Store, certificate_id: &str) {
        let arn = self.certificate_arn(certificate_id);
        if things_of(store, &arn).is_empty() || policies_of(store, &arn).is_empty() {
            store.violations.push(format!(
                "{certificate_id} set ACTIVE without a Thing and a policy"
            ));
        }
    }

    /// True when `arn` is the ARN of a certificate in this store.
    fn knows_certificate(&self, store: &Store, arn: &str) -> bool {
        self.certificate_id_from_arn(arn)
            .is_some_and(|id| store.certificates.contains_key(id))
    }

    /// The principals of an existing Thing, once the principal is known to exist: the checks,
    /// in the emulator's order, of Attach- and DetachThingPrincipal.
    fn principals_mut<'s>(
        &self,
        store: &'s mut Store,
        operation: &'static str,
        thing_name: &str,
        principal_arn: &str,
    ) -> Result<&'s mut Vec<String>, RegistryError> {
        let known = self.knows_certificate(store, principal_arn);
        let thing = store
            .things
            .get_mut(thing_name)
            .ok_or_else(|| not_found(operation, format_args!("thing {thing_name}")))?;
        if !known {
            return Err(not_found(
                operation,
                format_args!("principal {principal_arn}"),
            ));
        }
        Ok(&mut thing.principals)
    }

    fn certificate_id_from_arn<'a>(&self, arn: &'a str) -> Option<&'a str> {
        let prefix = format!("arn:aws:iot:{}:{}:cert/", self.region, self.account);
        arn.strip_prefix(&prefix)
    }
}

fn things_of(store: &Store, arn: &str) -> Vec<String> {
    store
        .things
        .iter()
        .filter(|(_, t)| t.principals.iter().any(|p| p == arn))
        .map(|(name, _)| name.clone())
        .collect()
}

fn policies_of(store: &Store, arn: &str) -> Vec<String> {
    store
        .policies
        .iter()
        .filter(|(_, targets)| targets.iter().any(|t| t == arn))
        .map(|(name, _)| name.clone())
        .collect()
}

/// IoT Core's certificate id: the hex SHA-256 of the DER encoding.
pub fn certificate_id_of(pem: &str, operation: &'static str) -> Result<String, RegistryError> {
    let der = pem_to_der(pem).ok_or_else(|| {
        RegistryError::new(
            RegistryErrorKind::InvalidRequest,
            operation,
            "not a PEM certificate",
        )
    })?;
    Ok(hex::encode(Sha256::digest(der)))
}

fn not_found(operation: &'static str, what: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        RegistryErrorKind::NotFound,
        operation,
        format!("{what} does not exist"),
    )
}

impl Registry for MemoryRegistry {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CertificateDescription, RegistryError> {
        const OP: &str = "DescribeCertificate";
        let store = self.lock();
        let c = store
            .certificates
            .get(certificate_id)
            .ok_or_else(|| not_found(OP, format_args!("certificate {certificate_id}")))?;
        Ok(CertificateDescription {
            id: certificate_id.to_owned(),
            arn: self.certificate_arn(certificate_id),
            status: c.status.clone(),
            pem: c.pem.clone(),
            ca_certificate_id: c.ca_certificate_id.clone(),
        })
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> Result<CaDescription, RegistryError> {
        const OP: &str = "DescribeCACertificate";
        let store = self.lock();
        let ca = store
            .cas
            .get(ca_certificate_id)
            .ok_or_else(|| not_found(OP, format_args!("CA certificate {ca_certificate_id}")))?;
        Ok(CaDescription {
            id: ca_certificate_id.to_owned(),
            active: ca.active,
            pem: ca.pem.clone(),
        })
    }

    async fn policy_exists(&self, policy_name: &str) -> Result<bool, RegistryError> {
        Ok(self.lock().policies.contains_key(policy_name))
    }

    async fn list_ca_certificates(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self.lock().cas.keys().cloned().collect())
    }

    async fn create_thing(&self, spec: &ThingSpec) -> Result<(), RegistryError> {
        const OP: &str = "CreateThing";
        let mut store = self.lock();
        if !is_valid_thing_name(&spec.name) {
            return Err(RegistryError::new(
                RegistryErrorKind::InvalidRequest,
                OP,
                "invalid thing name",
            ));
        }
        if let Some(existing) = store.things.get(&spec.name) {
            return if existing.type_name == spec.type_name && existing.attributes == spec.attributes
            {
                Ok(())
            } else {
                Err(RegistryError::new(
                    RegistryErrorKind::AlreadyExists,
                    OP,
                    format!(
                        "Thing {} already exists with different configuration",
                        spec.name
                    ),
                ))
            };
        }
        if let Some(type_name) = &spec.type_name
            && !store.thing_types.contains(type_name)
        {
            return Err(not_found(OP, format_args!("thing type {type_name}")));
        }
        let thing = Thing {
            type_name: spec.type_name.clone(),
            attributes: spec.attributes.clone(),
            version: 1,
            ..Thing::default()
        };
        store.things.insert(spec.name.clone(), thing);
        Ok(())
    }

    async fn describe_thing(&self, thing_name: &str) -> Result<ThingDescription, RegistryError> {
        const OP: &str = "DescribeThing";
        let store = self.lock();
        let thing = store
            .things
            .get(thing_name)
            .ok_or_else(|| not_found(OP, format_args!("thing {thing_name}")))?;
        Ok(ThingDescription {
            name: thing_name.to_owned(),
            type_name: thing.type_name.clone(),
            attributes: thing.attributes.clone(),
            version: thing.version,
        })
    }

    async fn set_thing_attribute(
        &self,
        thing_name: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> Result<(), RegistryError> {
        const OP: &str = "UpdateThing";
        let mut store = self.lock();
        let thing = store
            .things
            .get_mut(thing_name)
            .ok_or_else(|| not_found(OP, format_args!("thing {thing_name}")))?;
        // AWS checks expectedVersion (ministack 1.5.33 does not); the stricter rule is kept here
        // so concurrent adoptions are tested as they behave on AWS.
        if thing.version != expected_version {
            return Err(RegistryError::new(
                RegistryErrorKind::Conflict,
                OP,
                format!(
                    "VersionConflictException: thing {thing_name} is at version {}, not {expected_version}",
                    thing.version
                ),
            ));
        }
        thing.attributes.insert(name.to_owned(), value.to_owned());
        thing.version += 1;
        Ok(())
    }

    async fn add_thing_to_group(
        &self,
        thing_name: &str,
        group_name: &str,
    ) -> Result<(), RegistryError> {
        const OP: &str = "AddThingToThingGroup";
        let mut store = self.lock();
        if !store.thing_groups.contains(group_name) {
            return Err(not_found(OP, format_args!("thing group {group_name}")));
        }
        let thing = store
            .things
            .get_mut(thing_name)
            .ok_or_else(|| not_found(OP, format_args!("thing {thing_name}")))?;
        thing.groups.insert(group_name.to_owned());
        Ok(())
    }

    async fn attach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> Result<(), RegistryError> {
        const OP: &str = "AttachPolicy";
        let mut store = self.lock();
        if !store.policies.contains_key(policy_name) {
            return Err(not_found(OP, format_args!("policy {policy_name}")));
        }
        let known = self.knows_certificate(&store, target_arn);
        if !known {
            return Err(not_found(OP, format_args!("certificate {target_arn}")));
        }
        if let Some(targets) = store.policies.get_mut(policy_name)
            && !targets.iter().any(|t| t == target_arn)
        {
            targets.push(target_arn.to_owned());
        }
        Ok(())
    }

    async fn attach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> Result<(), RegistryError> {
        const OP: &str = "AttachThingPrincipal";
        let mut store = self.lock();
        let principals = self.principals_mut(&mut store, OP, thing_name, principal_arn)?;
        if !principals.iter().any(|p| p == principal_arn) {
            principals.push(principal_arn.to_owned());
        }
        Ok(())
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: &CertificateStatus,
    ) -> Result<(), RegistryError> {
        const OP: &str = "UpdateCertificate";
        let mut store = self.lock();
        let certificate = store
            .certificates
            .get_mut(certificate_id)
            .ok_or_else(|| not_found(OP, format_args!("certificate {certificate_id}")))?;
        // As IoT Core does (ministack 1.5.33 does not): a revoked certificate stays revoked.
        if certificate.status == CertificateStatus::Revoked && *status == CertificateStatus::Active
        {
            return Err(RegistryError::new(
                RegistryErrorKind::Conflict,
                OP,
                format!("CertificateStateException: certificate {certificate_id} is REVOKED"),
            ));
        }
        certificate.status = status.clone();
        if *status == CertificateStatus::Active {
            self.check_activation(&mut store, certificate_id);
        }
        Ok(())
    }

    async fn list_thing_principals(&self, thing_name: &str) -> Result<Vec<String>, RegistryError> {
        const OP: &str = "ListThingPrincipals";
        let store = self.lock();
        let thing = store
            .things
            .get(thing_name)
            .ok_or_else(|| not_found(OP, format_args!("thing {thing_name}")))?;
        Ok(thing.principals.clone())
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
    ) -> Result<Vec<String>, RegistryError> {
        const OP: &str = "ListPrincipalThings";
        let store = self.lock();
        let known = self.knows_certificate(&store, principal_arn);
        if !known {
            return Err(not_found(OP, format_args!("principal {principal_arn}")));
        }
        Ok(things_of(&store, principal_arn))
    }

    async fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let store = self.lock();
        Ok(store
            .things
            .iter()
            .filter(|(_, thing)| thing.attributes.get(name).is_some_and(|v| v == value))
            .map(|(thing_name, _)| thing_name.clone())
            .collect())
    }

    async fn list_attached_policies(&self, target_arn: &str) -> Result<Vec<String>, RegistryError> {
        let store = self.lock();
        Ok(policies_of(&store, target_arn))
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> Result<(), RegistryError> {
        const OP: &str = "DetachThingPrincipal";
        let mut store = self.lock();
        self.principals_mut(&mut store, OP, thing_name, principal_arn)?
            .retain(|p| p != principal_arn);
        Ok(())
    }

    async fn detach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> Result<(), RegistryError> {
        let mut store = self.lock();
        if let Some(targets) = store.policies.get_mut(policy_name) {
            targets.retain(|t| t != target_arn);
        }
        Ok(())
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), RegistryError> {
        const OP: &str = "DeleteCertificate";
        let mut store = self.lock();
        let certificate = store
            .certificates
            .get(certificate_id)
            .ok_or_else(|| not_found(OP, format_args!("certificate {certificate_id}")))?;
        let conflict = |why: &str| {
            Err(RegistryError::new(
                RegistryErrorKind::Conflict,
                OP,
                why.to_owned(),
            ))
        };
        if certificate.status == CertificateStatus::Active {
            return conflict("certificate must be deactivated before deletion");
        }
        let arn = self.certificate_arn(certificate_id);
        if !things_of(&store, &arn).is_empty() {
            return conflict("things must be detached before deletion");
        }
        if !policies_of(&store, &arn).is_empty() {
            return conflict("policies must be detached before deletion");
        }
        store.certificates.remove(certificate_id);
        Ok(())
    }

    async fn delete_thing(&self, thing_name: &str) -> Result<(), RegistryError> {
        const OP: &str = "DeleteThing";
        let mut store = self.lock();
        // A certificate that still exists, or any principal that is not a certificate.
        let attached = store.things.get(thing_name).is_some_and(|thing| {
            thing.principals.iter().any(|p| {
                self.knows_certificate(&store, p) || self.certificate_id_from_arn(p).is_none()
            })
        });
        if attached {
            return Err(RegistryError::new(
                RegistryErrorKind::InvalidRequest,
                OP,
                format!("thing {thing_name} is still attached to one or more principals"),
            ));
        }
        store.things.remove(thing_name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitr_pki::{Ca, DeviceSpec};

    #[tokio::test]
    async fn activation_without_attachments_is_recorded() {
        let registry = MemoryRegistry::new("123456789012", "eu-west-1");
        let ca = Ca::new("Monitor CA", "Test").unwrap();
        let ca_id = registry.register_ca(&ca.pem, true).unwrap();
        let device = ca.issue(&DeviceSpec::named("d")).unwrap();
        let id = registry.register_pending(&device.cert_pem, &ca_id).unwrap();
        assert!(registry.invariant_violations().is_empty());
        registry
            .update_certificate_status(&id, &CertificateStatus::Active)
            .await
            .unwrap();
        assert_eq!(registry.invariant_violations().len(), 1);
    }
}
