//! Device-management decisions stand (issue 9): the lifecycle function records a decision in the
//! device ledger before it applies it, registration reads the ledger before it writes and again
//! right after it activates. Each property runs on the in-memory adapters and on the emulator
//! (IoT over mTLS + DynamoDB), including the race of the two functions at every interleaving
//! point: one function is held before its n-th AWS call while the other runs to completion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use jitr_aws::DynamoLedger;
use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::ledger::{EventStamp, Ledger, MemoryLedger};
use jitr_domain::registry::{CertificateStatus, MemoryRegistry, Registry, RegistryErrorKind};
use jitr_lifecycle::{Action, DeviceCommand, Lifecycle, LifecycleConfig};
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::interpose::{Gate, Interposed};
use jitr_testkit::pki::{Ca, DeviceSpec, registered_event};
use jitr_tests::fleet::{Fleet, POLICY};
use serde_json::Value;

/// Registry, ledger and pending certificates, in memory or on the emulator.
trait World: Sync {
    type R: Registry + Clone + 'static;
    type L: Ledger + Clone + 'static;
    fn registry(&self) -> Self::R;
    fn ledger(&self) -> Self::L;
    fn account(&self) -> String;
    /// A certificate for device `name`, PENDING_ACTIVATION; returns its event and id.
    fn pending(&self, name: &str) -> impl Future<Output = (Value, String)> + Send {
        self.pending_with(DeviceSpec::named(name))
    }
    /// The same for a certificate with the subject `spec`.
    fn pending_with(&self, spec: DeviceSpec) -> impl Future<Output = (Value, String)> + Send;
}

struct InMemory {
    registry: Arc<MemoryRegistry>,
    ledger: Arc<MemoryLedger>,
    ca: Ca,
    ca_id: String,
}

const ACCOUNT: &str = "123456789012";

impl InMemory {
    fn new() -> Self {
        let registry = Arc::new(MemoryRegistry::new(ACCOUNT, "eu-west-1"));
        let ca = Ca::new("Ledger CA", "Acme").unwrap();
        let ca_id = registry.register_ca(&ca.pem, true).unwrap();
        registry.create_policy(POLICY);
        Self {
            registry,
            ledger: Arc::default(),
            ca,
            ca_id,
        }
    }
}

impl World for InMemory {
    type R = Arc<MemoryRegistry>;
    type L = Arc<MemoryLedger>;
    fn registry(&self) -> Self::R {
        Arc::clone(&self.registry)
    }
    fn ledger(&self) -> Self::L {
        Arc::clone(&self.ledger)
    }
    fn account(&self) -> String {
        ACCOUNT.into()
    }
    async fn pending_with(&self, spec: DeviceSpec) -> (Value, String) {
        let device = self.ca.issue(&spec).unwrap();
        let id = self
            .registry
            .register_pending(&device.cert_pem, &self.ca_id)
            .unwrap();
        (registered_event(&id, &self.ca_id, ACCOUNT), id)
    }
}

struct OnEmulator {
    fleet: Fleet,
    ledger: DynamoLedger,
}

impl OnEmulator {
    async fn new() -> Self {
        let fleet = Fleet::new().await;
        let ledger = fleet.ledger().await;
        Self { fleet, ledger }
    }
}

impl World for OnEmulator {
    type R = jitr_aws::IotRegistry;
    type L = DynamoLedger;
    fn registry(&self) -> Self::R {
        self.fleet.iot().clone()
    }
    fn ledger(&self) -> Self::L {
        self.ledger.clone()
    }
    fn account(&self) -> String {
        self.fleet.account.id.clone()
    }
    async fn pending_with(&self, spec: DeviceSpec) -> (Value, String) {
        // A real connect: the emulator registers the certificate PENDING_ACTIVATION.
        let device = self.fleet.pending_device(spec).await;
        (self.fleet.event(&device), device.id)
    }
}

fn registrar<R: Registry, L: Ledger>(registry: R, ledger: L) -> Registrar<R, SourceFetcher, L> {
    Registrar::new(
        registry,
        Config::with_policy(POLICY),
        SourceFetcher::without_s3(),
    )
    .with_ledger(ledger)
}

fn lifecycle<R: Registry, L: Ledger>(registry: R, ledger: L) -> Lifecycle<R, L> {
    lifecycle_with(registry, ledger, None)
}

fn lifecycle_with<R: Registry, L: Ledger>(
    registry: R,
    ledger: L,
    device_id_attribute: Option<&str>,
) -> Lifecycle<R, L> {
    let config = LifecycleConfig {
        webhook_secret: None,
        decommission_deletes_certificates: true,
        device_ledger: None,
        webhook_max_age_secs: 900,
        webhook_secret_arn: None,
        device_id_attribute: device_id_attribute.map(str::to_owned),
    };
    Lifecycle::new(registry, config).with_ledger(ledger)
}

fn command(device: &str, action: Action) -> DeviceCommand {
    DeviceCommand::new(device, action, Some("device-management decision".into())).unwrap()
}

/// The certificate's status, or `None` once deleted.
async fn status<R: Registry>(registry: &R, id: &str) -> Option<CertificateStatus> {
    match registry.describe_certificate(id).await {
        Ok(c) => Some(c.status),
        Err(e) if e.kind() == RegistryErrorKind::NotFound => None,
        Err(e) => panic!("DescribeCertificate: {e}"),
    }
}

async fn thing_exists<R: Registry>(registry: &R, name: &str) -> bool {
    match registry.describe_thing(name).await {
        Ok(_) => true,
        Err(e) if e.kind() == RegistryErrorKind::NotFound => false,
        Err(e) => panic!("DescribeThing: {e}"),
    }
}

/// Where the device ends: never ACTIVE, never left PENDING for JITR to try again, once the
/// device-management side said no.
fn assert_kept_out(action: Action, end: Option<&CertificateStatus>, context: &str) {
    let acceptable: &[Option<CertificateStatus>] = match action {
        Action::Deactivate => &[Some(CertificateStatus::Inactive)],
        Action::Revoke => &[Some(CertificateStatus::Revoked)],
        _ => &[
            Some(CertificateStatus::Revoked),
            Some(CertificateStatus::Inactive),
            None,
        ],
    };
    assert!(
        acceptable.contains(&end.cloned()),
        "{action:?} {context}: certificate ends {end:?}"
    );
}

// ---------------------------------------------------------------- before the first connect

/// A rejection before the device's first connect is recorded (not lost as `ThingNotFound`), and
/// its first registration is refused: denied → INACTIVE, decommissioned → REVOKED, no Thing.
async fn a_decision_before_the_first_connect_stands(world: &impl World) {
    let cases = [
        (Action::Deactivate, Outcome::Rejected, "DeviceDenied"),
        (Action::Revoke, Outcome::Revoked, "DeviceRevoked"),
        (Action::Decommission, Outcome::Revoked, "Decommissioned"),
    ];
    for (n, (action, outcome, reason)) in cases.into_iter().enumerate() {
        let name = format!("early-{n}");
        let summary = lifecycle(world.registry(), world.ledger())
            .apply_now(&command(&name, action))
            .await
            .unwrap();
        assert_eq!(
            (summary.outcome, summary.recorded),
            ("ThingNotFound", true),
            "{action:?}"
        );
        let (event, id) = world.pending(&name).await;
        let report = registrar(world.registry(), world.ledger())
            .handle(&event, &world.account())
            .await
            .unwrap();
        assert_eq!(
            (report.outcome, report.reason.as_deref()),
            (outcome, Some(reason)),
            "{action:?}"
        );
        assert_ne!(
            status(&world.registry(), &id).await,
            Some(CertificateStatus::Active)
        );
        assert!(!thing_exists(&world.registry(), &name).await, "{action:?}");
    }
}

#[tokio::test]
async fn a_decision_before_the_first_connect_stands_in_memory() {
    a_decision_before_the_first_connect_stands(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_before_the_first_connect_stands_on_the_emulator() {
    a_decision_before_the_first_connect_stands(&OnEmulator::new().await).await;
}

/// Mender's everyday flow: a device connects while it is still `pending` (denied), and is
/// `accepted` later. IoT Core publishes no registration event for an INACTIVE certificate, so
/// the `activate` deletes the refused, never-provisioned certificate; the device's next connect
/// registers it again and it is admitted. The same for a decommissioned device re-admitted.
#[tokio::test]
async fn a_device_refused_while_denied_is_admitted_once_allowed() {
    for (before, refused) in [
        (Action::Deactivate, CertificateStatus::Inactive),
        (Action::Decommission, CertificateStatus::Revoked),
    ] {
        let world = InMemory::new();
        let name = format!("late-{}", before.as_str());
        lifecycle(world.registry(), world.ledger())
            .apply_now(&command(&name, before))
            .await
            .unwrap();
        let device = world.ca.issue(&DeviceSpec::named(&name)).unwrap();
        let connect = || {
            let id = world
                .registry
                .register_pending(&device.cert_pem, &world.ca_id)
                .unwrap();
            (registered_event(&id, &world.ca_id, ACCOUNT), id)
        };
        let (event, id) = connect();
        let registration = registrar(world.registry(), world.ledger());
        let report = registration.handle(&event, ACCOUNT).await.unwrap();
        assert_ne!(report.outcome, Outcome::Activated, "{before:?}");
        assert_eq!(
            status(&world.registry, &id).await,
            Some(refused.clone()),
            "{before:?}"
        );

        let summary = lifecycle(world.registry(), world.ledger())
            .apply_now(&command(&name, Action::Activate))
            .await
            .unwrap();
        let deleted: Vec<_> = summary
            .certificates
            .iter()
            .filter(|c| c.after == "DELETED")
            .map(|c| c.certificate_id.clone())
            .collect();
        assert_eq!(
            deleted,
            std::slice::from_ref(&id),
            "{before:?}: {summary:?}"
        );
        assert_eq!(status(&world.registry, &id).await, None, "{before:?}");

        let (event, again) = connect();
        assert_eq!(again, id, "the same certificate registers again");
        let report = registration.handle(&event, ACCOUNT).await.unwrap();
        assert_eq!(report.outcome, Outcome::Activated, "{before:?}");
        assert!(thing_exists(&world.registry, &name).await, "{before:?}");
        assert!(world.registry.invariant_violations().is_empty());
    }
}

// ---------------------------------------------------------------- decommission is per device

/// After a decommission, neither the deleted certificate (JITR registers it again at the next
/// connect) nor a second certificate with the same identity is admitted, and the Thing stays
/// gone.
async fn a_decommissioned_device_stays_out(world: &impl World) {
    let (event, first) = world.pending("retired-1").await;
    let registration = registrar(world.registry(), world.ledger());
    let report = registration.handle(&event, &world.account()).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    lifecycle(world.registry(), world.ledger())
        .apply_now(&command("retired-1", Action::Decommission))
        .await
        .unwrap();
    assert_eq!(status(&world.registry(), &first).await, None);
    let (event, second) = world.pending("retired-1").await;
    let report = registration.handle(&event, &world.account()).await.unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Revoked, Some("Decommissioned"))
    );
    assert_eq!(
        status(&world.registry(), &second).await,
        Some(CertificateStatus::Revoked)
    );
    assert!(!thing_exists(&world.registry(), "retired-1").await);
}

#[tokio::test]
async fn a_decommissioned_device_stays_out_in_memory() {
    a_decommissioned_device_stays_out(&InMemory::new()).await;
}

// ---------------------------------------------------------------- known by a device-management id

/// The Thing attribute carrying the device-management (Mender) id, from the subject serialNumber.
const ID_ATTRIBUTE: &str = "menderId";

fn registrar_by_id<R: Registry, L: Ledger>(
    registry: R,
    ledger: L,
) -> Registrar<R, SourceFetcher, L> {
    let config = Config::from_lookup(|name| match name {
        "DEVICE_POLICY_NAME" => Some(POLICY.into()),
        "DEVICE_ID_ATTRIBUTE" => Some(ID_ATTRIBUTE.into()),
        _ => None,
    })
    .unwrap();
    Registrar::new(registry, config, SourceFetcher::without_s3()).with_ledger(ledger)
}

/// Mender names devices by its own id, not by the certificate's CN. With `DEVICE_ID_ATTRIBUTE`
/// a decision sent by that id before the device ever connected stands (no Thing carries the id
/// yet: `DeviceUnresolved`, recorded, not a silent `ThingNotFound`), the device's later
/// decisions find its Thing through the attribute registration filled, and an id nothing
/// carries stays visible as `DeviceUnresolved`.
async fn a_device_known_by_its_management_id(world: &impl World) {
    let mender_id = format!("5f3c0e2a-{}-{}", std::process::id(), world.account());
    let spec = || DeviceSpec {
        subject_serial_number: Some(mender_id.clone()),
        ..DeviceSpec::named("by-id-1")
    };
    let decide = |action| {
        let (registry, ledger) = (world.registry(), world.ledger());
        let command = command(&mender_id, action);
        async move {
            lifecycle_with(registry, ledger, Some(ID_ATTRIBUTE))
                .apply_now(&command)
                .await
                .unwrap()
        }
    };
    let rejected = decide(Action::Deactivate).await;
    assert_eq!(
        (rejected.outcome, rejected.recorded),
        ("DeviceUnresolved", true)
    );

    let (event, refused) = world.pending_with(spec()).await;
    let registration = registrar_by_id(world.registry(), world.ledger());
    let report = registration.handle(&event, &world.account()).await.unwrap();
    assert_eq!(
        (report.outcome, report.reason.as_deref()),
        (Outcome::Rejected, Some("DeviceDenied")),
        "the decision made by id stands at the first connect"
    );
    assert!(!thing_exists(&world.registry(), "by-id-1").await);

    let accepted = decide(Action::Activate).await;
    assert!(
        accepted
            .certificates
            .iter()
            .any(|c| c.certificate_id == refused && c.after == "DELETED"),
        "the refused certificate is released: {accepted:?}"
    );
    let (event, admitted) = world.pending_with(spec()).await;
    let report = registration.handle(&event, &world.account()).await.unwrap();
    assert_eq!(report.outcome, Outcome::Activated, "{report:?}");
    let thing = world.registry().describe_thing("by-id-1").await.unwrap();
    assert_eq!(
        thing.attributes.get(ID_ATTRIBUTE),
        Some(&mender_id),
        "registration fills the id attribute"
    );

    let denied = decide(Action::Deactivate).await;
    assert_eq!(denied.outcome, "Changed", "{denied:?}");
    assert_eq!(denied.thing_names, ["by-id-1"]);
    assert_eq!(
        status(&world.registry(), &admitted).await,
        Some(CertificateStatus::Inactive)
    );

    let unknown = lifecycle_with(world.registry(), world.ledger(), Some(ID_ATTRIBUTE))
        .apply_now(&command("nobody-carries-this-id", Action::Decommission))
        .await
        .unwrap();
    assert_eq!(
        (unknown.outcome, unknown.recorded),
        ("DeviceUnresolved", true)
    );
}

#[tokio::test]
async fn a_device_known_by_its_management_id_in_memory() {
    a_device_known_by_its_management_id(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_known_by_its_management_id_on_the_emulator() {
    a_device_known_by_its_management_id(&OnEmulator::new().await).await;
}

// ---------------------------------------------------------------- the race

/// One run of either function: its report (registration) or none (lifecycle).
type Run = std::pin::Pin<
    Box<
        dyn Future<Output = Result<Option<jitr_registration::Report>, jitr_domain::JitrError>>
            + Send,
    >,
>;

fn boxed(
    run: impl Future<Output = Result<Option<jitr_registration::Report>, jitr_domain::JitrError>>
    + Send
    + 'static,
) -> Run {
    Box::pin(run)
}

/// Which function is held, and at which of its calls.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Registration(usize),
    Lifecycle(usize),
}

/// One interleaving: one function held before its n-th AWS call (IoT or ledger), the other run
/// to completion meanwhile, then the first released. Returns false when the held function
/// finished before making n calls (every interleaving point has been tried).
async fn race_once<W: World>(world: &W, action: Action, hold: Hold, name: &str) -> bool {
    let (event, id) = world.pending(name).await;
    let account = world.account();
    let gate = Gate::new();
    let decision = command(name, action);
    let stamp = EventStamp::arrival(jitr_aws::unix_now_ms());
    let register = |gated: bool| {
        let (event, account) = (event.clone(), account.clone());
        let (registry, ledger, gate) = (world.registry(), world.ledger(), Arc::clone(&gate));
        async move {
            let report = if gated {
                registrar(
                    Interposed::new(registry, Arc::clone(&gate)),
                    Interposed::new(ledger, gate),
                )
                .handle(&event, &account)
                .await
            } else {
                registrar(registry, ledger).handle(&event, &account).await
            };
            report.map(Some)
        }
    };
    let decide = |gated: bool| {
        let (decision, stamp) = (decision.clone(), stamp.clone());
        let (registry, ledger, gate) = (world.registry(), world.ledger(), Arc::clone(&gate));
        async move {
            if gated {
                lifecycle(
                    Interposed::new(registry, Arc::clone(&gate)),
                    Interposed::new(ledger, gate),
                )
                .apply(&decision, &stamp, "race")
                .await
                .map(|_| None)
            } else {
                lifecycle(registry, ledger)
                    .apply(&decision, &stamp, "race")
                    .await
                    .map(|_| None)
            }
        }
    };
    let (n, held_is_registration) = match hold {
        Hold::Registration(n) => (n, true),
        Hold::Lifecycle(n) => (n, false),
    };
    gate.hold(n);
    let mut held = if held_is_registration {
        tokio::spawn(boxed(register(true)))
    } else {
        tokio::spawn(boxed(decide(true)))
    };
    // `Some`: the held function finished before its n-th call.
    let finished = tokio::select! {
        () = gate.held() => None,
        result = &mut held => Some(result.unwrap()),
    };
    let reached = finished.is_none();
    let context = format!("{hold:?} ({name})");
    // The other function runs to completion while the held one waits (or after it, when it
    // never got that far); then the held one goes on.
    let other = if held_is_registration {
        boxed(decide(false))
    } else {
        boxed(register(false))
    };
    let (held_result, other_result) = match finished {
        None => {
            let other = other.await;
            gate.release();
            (held.await.unwrap(), other)
        }
        Some(held) => (held, other.await),
    };
    let (registration, decided) = if held_is_registration {
        (held_result, other_result)
    } else {
        (other_result, held_result)
    };
    decided.unwrap_or_else(|e| panic!("lifecycle {context}: {e}"));
    if let Err(e) = &registration {
        // A teardown racing a registration can make its next call fail: the certificate is
        // gone (NotFound), or IoT Core catches up (retryable). Anything else is a bug.
        assert!(
            e.class() == jitr_domain::ErrorClass::Retryable
                || e.is_registry(RegistryErrorKind::NotFound),
            "registration {context}: {e}"
        );
    }
    let end = status(&world.registry(), &id).await;
    assert_kept_out(action, end.as_ref(), &context);
    reached
}

/// Every interleaving point of both functions, for a denial and a decommission.
async fn the_decision_stands_at_every_interleaving(world: &impl World) {
    let mut points = 0;
    for action in [Action::Deactivate, Action::Decommission] {
        for side in [Hold::Registration as fn(usize) -> Hold, Hold::Lifecycle] {
            for n in 0.. {
                let name = format!("race-{}-{}-{n}", action.as_str(), points);
                points += 1;
                if !race_once(world, action, side(n), &name).await {
                    break;
                }
                assert!(n < 40, "more calls than any run makes");
            }
        }
    }
    assert!(points > 20, "{points} interleavings");
    eprintln!("the decision stood at {points} interleavings");
}

#[tokio::test]
async fn the_decision_stands_at_every_interleaving_in_memory() {
    the_decision_stands_at_every_interleaving(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_stands_at_every_interleaving_on_the_emulator() {
    the_decision_stands_at_every_interleaving(&OnEmulator::new().await).await;
}

// ---------------------------------------------------------------- faults after the decision

/// Runs the device-management decision (the lifecycle function, to completion) just before the
/// registration's first UpdateCertificate: the denial lands while the certificate is PENDING, so
/// only registration's own read after activation can enforce it.
struct DecideBeforeActivation<R, L> {
    registry: R,
    ledger: L,
    command: DeviceCommand,
    done: std::sync::atomic::AtomicBool,
}

/// The hook that runs it, shared with the test that reads `done`.
struct Deciding<R, L>(Arc<DecideBeforeActivation<R, L>>);

impl<R: Registry + Clone + 'static, L: Ledger + Clone + 'static> jitr_testkit::interpose::Hook
    for Deciding<R, L>
{
    async fn before(&self, operation: &'static str) -> Result<(), RegistryErrorKind> {
        use std::sync::atomic::Ordering;
        let decide = &self.0;
        if operation == "UpdateCertificate" && !decide.done.swap(true, Ordering::SeqCst) {
            lifecycle(decide.registry.clone(), decide.ledger.clone())
                .apply_now(&decide.command)
                .await
                .unwrap();
        }
        Ok(())
    }
}

/// Issue 18, defect 3: a denial that lands just before activation, and a fault at any one of the
/// registration's ledger calls: the registration fails (retryable) or finishes, then the event
/// is delivered again. Whatever the call that failed, the device ends kept out: the duplicate
/// shortcut never answers from an admission recorded before the read that would have refused it.
async fn a_fault_at_any_ledger_call_never_lets_a_denial_be_skipped(world: &impl World) {
    use jitr_testkit::interpose::FailNth;
    let mut faults = 0;
    for n in 0.. {
        let name = format!("faulted-{n}");
        let (event, id) = world.pending(&name).await;
        let account = world.account();
        let decide = Arc::new(DecideBeforeActivation {
            registry: world.registry(),
            ledger: world.ledger(),
            command: command(&name, Action::Deactivate),
            done: false.into(),
        });
        let fault = FailNth::new(n, RegistryErrorKind::Unavailable);
        let first = registrar(
            Interposed::new(world.registry(), Deciding(Arc::clone(&decide))),
            Interposed::new(world.ledger(), Arc::clone(&fault)),
        )
        .handle(&event, &account)
        .await;
        if let Err(e) = &first {
            assert_eq!(
                e.class(),
                jitr_domain::ErrorClass::Retryable,
                "fault {n}: {e}"
            );
        }
        // A fault before activation stopped the run short of it: the decision lands now.
        if !decide.done.load(std::sync::atomic::Ordering::SeqCst) {
            lifecycle(world.registry(), world.ledger())
                .apply_now(&decide.command)
                .await
                .unwrap();
        }
        // Lambda's retry, or IoT Core's next duplicate, a moment later.
        let again = registrar(world.registry(), world.ledger())
            .handle(&event, &account)
            .await
            .unwrap_or_else(|e| panic!("fault {n}: the retry failed: {e}"));
        let end = status(&world.registry(), &id).await;
        assert_kept_out(
            Action::Deactivate,
            end.as_ref(),
            &format!("fault at ledger call {n}, retry answered {again:?}"),
        );
        if !fault.tripped() {
            break;
        }
        faults += 1;
        assert!(n < 30, "more ledger calls than a registration makes");
    }
    assert!(faults >= 4, "only {faults} ledger calls faulted");
    eprintln!("kept out with a fault at each of {faults} ledger calls");
}

#[tokio::test]
async fn a_fault_at_any_ledger_call_never_lets_a_denial_be_skipped_in_memory() {
    a_fault_at_any_ledger_call_never_lets_a_denial_be_skipped(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_any_ledger_call_never_lets_a_denial_be_skipped_on_the_emulator() {
    a_fault_at_any_ledger_call_never_lets_a_denial_be_skipped(&OnEmulator::new().await).await;
}

// ---------------------------------------------------------------- one id alphabet

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Issue 18, defect 4 (invariant 7): whatever id a certificate carries, either registration
    /// refuses it (`DeviceIdInvalid`, `DeviceIdMissing`), or the lifecycle function reaches the
    /// admitted device by that id through the neutral command as a sender would write it.
    #[test]
    fn any_id_registration_admits_a_command_can_reach(
        id in "[a-zA-Z0-9_.,@/:#=\\[\\]-]{1,140}|[a-zA-Z0-9 é#=/.-]{1,12}",
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let world = InMemory::new();
            let (event, certificate) = world
                .pending_with(DeviceSpec {
                    subject_serial_number: Some(id.clone()),
                    ..DeviceSpec::named("any-id")
                })
                .await;
            let report = registrar_by_id(world.registry(), world.ledger())
                .handle(&event, ACCOUNT)
                .await
                .unwrap();
            if report.outcome != Outcome::Activated {
                assert!(
                    matches!(report.reason.as_deref(), Some("DeviceIdInvalid" | "DeviceIdMissing")),
                    "{id:?}: {report:?}"
                );
                return;
            }
            let sent = serde_json::json!({"deviceId": id, "action": "deactivate"});
            let command = DeviceCommand::from_value(&sent)
                .unwrap_or_else(|e| panic!("{id:?} was admitted but a command cannot name it: {e}"));
            let summary = lifecycle_with(world.registry(), world.ledger(), Some(ID_ATTRIBUTE))
                .apply_now(&command)
                .await
                .unwrap();
            assert_eq!(summary.outcome, "Changed", "{id:?}: {summary:?}");
            assert_eq!(
                status(&world.registry(), &certificate).await,
                Some(CertificateStatus::Inactive),
                "{id:?}"
            );
        });
    }
}

// ---------------------------------------------------------------- forgetting an admission

/// Fails the first call of one operation through the port it wraps.
struct FailFirst(&'static str, std::sync::atomic::AtomicBool);

impl jitr_testkit::interpose::Hook for FailFirst {
    async fn before(&self, operation: &'static str) -> Result<(), RegistryErrorKind> {
        use std::sync::atomic::Ordering;
        if operation == self.0 && !self.1.swap(true, Ordering::SeqCst) {
            return Err(RegistryErrorKind::Unavailable);
        }
        Ok(())
    }
}

/// Issue 18, check item: a decommission whose forget_admission failed after the certificate was
/// deleted left the admission record behind (its retry skips a certificate already gone), so the
/// device's re-registered certificate was answered `AdmittedBefore` for up to an hour instead of
/// being revoked `Decommissioned`. The admission is now forgotten before the delete.
async fn a_failed_forget_never_outlives_the_decommission(world: &impl World) {
    let (event, id) = world.pending("forgotten-1").await;
    let report = registrar(world.registry(), world.ledger())
        .handle(&event, &world.account())
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Activated);
    assert!(world.ledger().admitted(&id).await.unwrap().is_some());
    let decommission = command("forgotten-1", Action::Decommission);
    let stamp = EventStamp::arrival(jitr_aws::unix_now_ms());
    let faulty = FailFirst("PutItem", false.into());
    let first = lifecycle(world.registry(), Interposed::new(world.ledger(), faulty))
        .apply(&decommission, &stamp, "test")
        .await;
    assert!(
        first.is_err(),
        "the injected fault fails the first run: {first:?}"
    );
    lifecycle(world.registry(), world.ledger())
        .apply(&decommission, &stamp, "test")
        .await
        .unwrap();
    assert_eq!(
        world.ledger().admitted(&id).await.unwrap(),
        None,
        "the deleted certificate's admission is forgotten"
    );
}

#[tokio::test]
async fn a_failed_forget_never_outlives_the_decommission_in_memory() {
    a_failed_forget_never_outlives_the_decommission(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forget_never_outlives_the_decommission_on_the_emulator() {
    a_failed_forget_never_outlives_the_decommission(&OnEmulator::new().await).await;
}
