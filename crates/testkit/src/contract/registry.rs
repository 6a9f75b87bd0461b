//! The registry port's contract, written once and run against every adapter: the in-memory
//! one in unit tests, the AWS one against the emulator in `tests/`. Each check returns an
//! error naming what differed, so a failing adapter says where it strays.

use std::collections::BTreeMap;
use std::future::Future;

use jitr_domain::registry::{CertificateStatus, Registry, RegistryErrorKind, ThingSpec};

/// What an adapter's test needs to provide: fresh, unique resources in its registry.
pub trait ContractHarness: Sync {
    type Registry: Registry;
    fn registry(&self) -> &Self::Registry;
    /// A new certificate in PENDING_ACTIVATION under an ACTIVE CA: (certificate id, CA id).
    fn pending_certificate(&self) -> impl Future<Output = (String, String)> + Send;
    /// A new device policy; returns its name.
    fn policy(&self) -> impl Future<Output = String> + Send;
    /// A new thing group; returns its name.
    fn thing_group(&self) -> impl Future<Output = String> + Send;
    /// A name no other test uses.
    fn unique(&self, prefix: &str) -> String;
}

type Check = Result<(), String>;

fn expect_kind<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, jitr_domain::registry::RegistryError>,
    kind: RegistryErrorKind,
) -> Check {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        other => Err(format!("{what}: expected {kind:?}, got {other:?}")),
    }
}

fn ok<T>(what: &str, result: Result<T, jitr_domain::registry::RegistryError>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(what()) }
}

/// Runs every check; the first failure is returned.
pub async fn run_all<H: ContractHarness>(h: &H) -> Check {
    lookups(h).await?;
    things(h).await?;
    attachments(h).await?;
    statuses(h).await?;
    teardown(h).await?;
    Ok(())
}

const MISSING_ID: &str = "0000000000000000000000000000000000000000000000000000000000000000";

async fn lookups<H: ContractHarness>(h: &H) -> Check {
    let r = h.registry();
    expect_kind(
        "DescribeCertificate of an unknown id",
        r.describe_certificate(MISSING_ID).await,
        RegistryErrorKind::NotFound,
    )?;
    expect_kind(
        "DescribeCACertificate of an unknown id",
        r.describe_ca_certificate(MISSING_ID).await,
        RegistryErrorKind::NotFound,
    )?;
    let (cert_id, ca_id) = h.pending_certificate().await;
    let cert = ok(
        "DescribeCertificate",
        r.describe_certificate(&cert_id).await,
    )?;
    ensure(cert.status == CertificateStatus::PendingActivation, || {
        format!("pending certificate has status {}", cert.status)
    })?;
    ensure(
        cert.ca_certificate_id.as_deref() == Some(ca_id.as_str()),
        || format!("caCertificateId {:?}", cert.ca_certificate_id),
    )?;
    ensure(cert.arn.ends_with(&format!(":cert/{cert_id}")), || {
        format!("certificate ARN {}", cert.arn)
    })?;
    ensure(
        jitr_domain::certificate::pem_to_der(&cert.pem).is_some(),
        || "certificate PEM does not decode".into(),
    )?;
    let ca = ok(
        "DescribeCACertificate",
        r.describe_ca_certificate(&ca_id).await,
    )?;
    ensure(ca.active, || "registered CA is not ACTIVE".into())?;
    let listed = ok("ListCACertificates", r.list_ca_certificates().await)?;
    ensure(listed.contains(&ca_id), || {
        format!("ListCACertificates omits {ca_id}: {listed:?}")
    })?;
    ensure(
        jitr_domain::certificate::CaCertificate::from_pem(&ca.pem).is_some(),
        || "CA PEM does not decode".into(),
    )
}

async fn things<H: ContractHarness>(h: &H) -> Check {
    let r = h.registry();
    let name = h.unique("contract-thing");
    let spec = ThingSpec {
        name: name.clone(),
        type_name: None,
        attributes: BTreeMap::from([("commonName".to_owned(), name.clone())]),
    };
    ok("CreateThing", r.create_thing(&spec).await)?;
    ok("CreateThing again, identical", r.create_thing(&spec).await)?;
    let different = ThingSpec {
        attributes: BTreeMap::from([("commonName".to_owned(), "other".to_owned())]),
        ..spec.clone()
    };
    expect_kind(
        "CreateThing with other attributes",
        r.create_thing(&different).await,
        RegistryErrorKind::AlreadyExists,
    )?;
    let invalid = ThingSpec {
        name: "not a valid/name".into(),
        ..ThingSpec::default()
    };
    expect_kind(
        "CreateThing with an invalid name",
        r.create_thing(&invalid).await,
        RegistryErrorKind::InvalidRequest,
    )?;
    let typed = ThingSpec {
        name: h.unique("typed"),
        type_name: Some(h.unique("no-such-type")),
        ..ThingSpec::default()
    };
    expect_kind(
        "CreateThing with an unknown type",
        r.create_thing(&typed).await,
        RegistryErrorKind::NotFound,
    )?;
    let described = ok("DescribeThing", r.describe_thing(&name).await)?;
    ensure(
        described.name == name && described.attributes == spec.attributes,
        || format!("DescribeThing answered {described:?}"),
    )?;
    ok(
        "UpdateThing merging one attribute",
        r.set_thing_attribute(&name, "caCertificateId", MISSING_ID, described.version)
            .await,
    )?;
    let updated = ok(
        "DescribeThing after UpdateThing",
        r.describe_thing(&name).await,
    )?;
    ensure(
        updated
            .attributes
            .get("caCertificateId")
            .map(String::as_str)
            == Some(MISSING_ID)
            && updated.attributes.get("commonName") == spec.attributes.get("commonName")
            && updated.version > described.version,
        || format!("UpdateThing merged into {updated:?}"),
    )?;
    expect_kind(
        "DescribeThing of an unknown thing",
        r.describe_thing(&h.unique("ghost")).await,
        RegistryErrorKind::NotFound,
    )?;
    let group = h.thing_group().await;
    ok(
        "AddThingToThingGroup",
        r.add_thing_to_group(&name, &group).await,
    )?;
    ok(
        "AddThingToThingGroup again",
        r.add_thing_to_group(&name, &group).await,
    )?;
    expect_kind(
        "AddThingToThingGroup, unknown group",
        r.add_thing_to_group(&name, &h.unique("no-such-group"))
            .await,
        RegistryErrorKind::NotFound,
    )?;
    expect_kind(
        "ListThingPrincipals of an unknown thing",
        r.list_thing_principals(&h.unique("ghost")).await,
        RegistryErrorKind::NotFound,
    )?;
    found_by_attribute(h, &name).await
}

/// ListThings by attribute finds exactly the Things carrying that value (a device known by its
/// device-management id), and nothing for a value no Thing has.
async fn found_by_attribute<H: ContractHarness>(h: &H, existing: &str) -> Check {
    let r = h.registry();
    let id = h.unique("device-id");
    let twin = ThingSpec {
        name: h.unique("contract-twin"),
        type_name: None,
        attributes: BTreeMap::from([("deviceId".to_owned(), id.clone())]),
    };
    ok("CreateThing with a device id", r.create_thing(&twin).await)?;
    let found = ok(
        "ListThings by attribute",
        r.things_with_attribute("deviceId", &id).await,
    )?;
    ensure(found == [twin.name.clone()], || {
        format!("ListThings by deviceId={id} answered {found:?}")
    })?;
    let none = ok(
        "ListThings by an unknown value",
        r.things_with_attribute("deviceId", &h.unique("nobody"))
            .await,
    )?;
    ensure(none.is_empty(), || {
        format!("unknown device id matched {none:?}")
    })?;
    let by_name = ok(
        "ListThings by another attribute",
        r.things_with_attribute("commonName", existing).await,
    )?;
    ensure(by_name == [existing.to_owned()], || {
        format!("ListThings by commonName={existing} answered {by_name:?}")
    })
}

async fn attachments<H: ContractHarness>(h: &H) -> Check {
    let r = h.registry();
    let (cert_id, _) = h.pending_certificate().await;
    let arn = ok(
        "DescribeCertificate",
        r.describe_certificate(&cert_id).await,
    )?
    .arn;
    let policy = h.policy().await;
    ensure(ok("GetPolicy", r.policy_exists(&policy).await)?, || {
        format!("GetPolicy does not see policy {policy}")
    })?;
    ensure(
        !ok(
            "GetPolicy of an unknown policy",
            r.policy_exists(&h.unique("no-such-policy")).await,
        )?,
        || "GetPolicy sees a policy that does not exist".into(),
    )?;
    expect_kind(
        "AttachPolicy of an unknown policy",
        r.attach_policy(&h.unique("no-such-policy"), &arn).await,
        RegistryErrorKind::NotFound,
    )?;
    ok("AttachPolicy", r.attach_policy(&policy, &arn).await)?;
    ok("AttachPolicy again", r.attach_policy(&policy, &arn).await)?;
    let policies = ok("ListAttachedPolicies", r.list_attached_policies(&arn).await)?;
    ensure(policies == [policy.clone()], || {
        format!("attached policies {policies:?}")
    })?;

    let thing = h.unique("contract-device");
    ok(
        "CreateThing",
        r.create_thing(&ThingSpec {
            name: thing.clone(),
            ..ThingSpec::default()
        })
        .await,
    )?;
    expect_kind(
        "AttachThingPrincipal to an unknown thing",
        r.attach_thing_principal(&h.unique("ghost"), &arn).await,
        RegistryErrorKind::NotFound,
    )?;
    ok(
        "AttachThingPrincipal",
        r.attach_thing_principal(&thing, &arn).await,
    )?;
    ok(
        "AttachThingPrincipal again",
        r.attach_thing_principal(&thing, &arn).await,
    )?;
    let principals = ok("ListThingPrincipals", r.list_thing_principals(&thing).await)?;
    ensure(principals == [arn.clone()], || {
        format!("thing principals {principals:?}")
    })?;
    let things = ok("ListPrincipalThings", r.list_principal_things(&arn).await)?;
    ensure(things == [thing.clone()], || {
        format!("principal things {things:?}")
    })?;

    let unknown_arn = arn.replace(&cert_id, MISSING_ID);
    expect_kind(
        "ListPrincipalThings of an unknown principal",
        r.list_principal_things(&unknown_arn).await,
        RegistryErrorKind::NotFound,
    )?;
    let none = ok(
        "ListAttachedPolicies of an unknown target",
        r.list_attached_policies(&unknown_arn).await,
    )?;
    ensure(none.is_empty(), || {
        format!("unknown target has policies {none:?}")
    })
}

async fn statuses<H: ContractHarness>(h: &H) -> Check {
    let r = h.registry();
    let (cert_id, _) = h.pending_certificate().await;
    for status in [
        CertificateStatus::Active,
        CertificateStatus::Inactive,
        CertificateStatus::Revoked,
    ] {
        ok(
            "UpdateCertificate",
            r.update_certificate_status(&cert_id, &status).await,
        )?;
        let now = ok(
            "DescribeCertificate",
            r.describe_certificate(&cert_id).await,
        )?
        .status;
        ensure(now == status, || {
            format!("after UpdateCertificate {status}: {now}")
        })?;
    }
    expect_kind(
        "UpdateCertificate of an unknown id",
        r.update_certificate_status(MISSING_ID, &CertificateStatus::Inactive)
            .await,
        RegistryErrorKind::NotFound,
    )
}

async fn teardown<H: ContractHarness>(h: &H) -> Check {
    let r = h.registry();
    let (cert_id, _) = h.pending_certificate().await;
    let arn = ok(
        "DescribeCertificate",
        r.describe_certificate(&cert_id).await,
    )?
    .arn;
    let policy = h.policy().await;
    let thing = h.unique("teardown");
    ok(
        "CreateThing",
        r.create_thing(&ThingSpec {
            name: thing.clone(),
            ..ThingSpec::default()
        })
        .await,
    )?;
    ok("AttachPolicy", r.attach_policy(&policy, &arn).await)?;
    ok(
        "AttachThingPrincipal",
        r.attach_thing_principal(&thing, &arn).await,
    )?;
    ok(
        "UpdateCertificate",
        r.update_certificate_status(&cert_id, &CertificateStatus::Active)
            .await,
    )?;

    expect_kind(
        "DeleteThing with a principal attached",
        r.delete_thing(&thing).await,
        RegistryErrorKind::InvalidRequest,
    )?;
    expect_kind(
        "DeleteCertificate while ACTIVE",
        r.delete_certificate(&cert_id).await,
        RegistryErrorKind::Conflict,
    )?;
    ok(
        "UpdateCertificate INACTIVE",
        r.update_certificate_status(&cert_id, &CertificateStatus::Inactive)
            .await,
    )?;
    expect_kind(
        "DeleteCertificate while attached",
        r.delete_certificate(&cert_id).await,
        RegistryErrorKind::Conflict,
    )?;

    expect_kind(
        "DetachThingPrincipal from an unknown thing",
        r.detach_thing_principal(&h.unique("ghost"), &arn).await,
        RegistryErrorKind::NotFound,
    )?;
    ok(
        "DetachThingPrincipal",
        r.detach_thing_principal(&thing, &arn).await,
    )?;
    ok(
        "DetachThingPrincipal again",
        r.detach_thing_principal(&thing, &arn).await,
    )?;
    let things = ok("ListPrincipalThings", r.list_principal_things(&arn).await)?;
    ensure(things.is_empty(), || {
        format!("still attached to {things:?}")
    })?;
    expect_kind(
        "DeleteCertificate with a policy attached",
        r.delete_certificate(&cert_id).await,
        RegistryErrorKind::Conflict,
    )?;

    ok("DetachPolicy", r.detach_policy(&policy, &arn).await)?;
    ok("DetachPolicy again", r.detach_policy(&policy, &arn).await)?;
    ok(
        "DetachPolicy of an unknown policy",
        r.detach_policy(&h.unique("no-such-policy"), &arn).await,
    )?;
    ok("DeleteCertificate", r.delete_certificate(&cert_id).await)?;
    expect_kind(
        "DescribeCertificate after delete",
        r.describe_certificate(&cert_id).await,
        RegistryErrorKind::NotFound,
    )?;
    expect_kind(
        "DeleteCertificate again",
        r.delete_certificate(&cert_id).await,
        RegistryErrorKind::NotFound,
    )?;
    ok("DeleteThing", r.delete_thing(&thing).await)?;
    ok("DeleteThing again", r.delete_thing(&thing).await)?;
    expect_kind(
        "ListThingPrincipals after delete",
        r.list_thing_principals(&thing).await,
        RegistryErrorKind::NotFound,
    )
}
