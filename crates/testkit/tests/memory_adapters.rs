//! The in-memory adapters answer like the AWS ones: the same contract suites that run against
//! the emulator (tests/tests/contract.rs) run here against `MemoryRegistry` and `MemoryLedger`.
//! They live in the test kit's tests, not beside the adapters, because the suites take the
//! domain's port types and a unit test of jitr-domain would see a second copy of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use jitr_domain::ledger::MemoryLedger;
use jitr_domain::registry::{MemoryRegistry, Registry, RegistryErrorKind, ThingSpec};
use jitr_testkit::contract::registry::{ContractHarness, run_all};
use jitr_testkit::faults::Faulty;
use jitr_testkit::pki::{Ca, DeviceSpec};

struct Harness {
    registry: MemoryRegistry,
    ca: Ca,
    ca_id: String,
    counter: AtomicUsize,
}

impl ContractHarness for Harness {
    type Registry = MemoryRegistry;
    fn registry(&self) -> &MemoryRegistry {
        &self.registry
    }
    async fn pending_certificate(&self) -> (String, String) {
        let device = self
            .ca
            .issue(&DeviceSpec::named(&self.unique("device")))
            .unwrap();
        (
            self.registry
                .register_pending(&device.cert_pem, &self.ca_id)
                .unwrap(),
            self.ca_id.clone(),
        )
    }
    async fn policy(&self) -> String {
        let name = self.unique("policy");
        self.registry.create_policy(&name);
        name
    }
    async fn thing_group(&self) -> String {
        let name = self.unique("group");
        self.registry.create_thing_group(&name);
        name
    }
    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

#[tokio::test]
async fn memory_registry_honours_the_port_contract() {
    let registry = MemoryRegistry::new("123456789012", "eu-west-1");
    let ca = Ca::new("Contract CA", "Test").unwrap();
    let ca_id = registry.register_ca(&ca.pem, true).unwrap();
    let harness = Harness {
        registry,
        ca,
        ca_id,
        counter: AtomicUsize::new(0),
    };
    run_all(&harness).await.unwrap();
}

#[tokio::test]
async fn injected_failures_fire_once_and_change_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let registry = Faulty::new(MemoryRegistry::new("123456789012", "eu-west-1"));
    registry.fail_next("CreateThing", RegistryErrorKind::Throttled);
    let spec = ThingSpec {
        name: "t".into(),
        ..ThingSpec::default()
    };
    assert_eq!(
        registry.create_thing(&spec).await.unwrap_err().kind(),
        RegistryErrorKind::Throttled
    );
    assert!(registry.inner().snapshot().things.is_empty());
    registry.create_thing(&spec).await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    registry.before_next("DeleteThing", move || flag.store(true, Ordering::SeqCst));
    registry.delete_thing("t").await.unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[tokio::test]
async fn memory_ledger_honours_the_port_contract() {
    jitr_testkit::contract::ledger::run_all(&MemoryLedger::new(), "memory")
        .await
        .unwrap();
}
