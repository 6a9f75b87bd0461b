//! The registry port contract (jitr_testkit::contract::registry) against the AWS adapter on
//! ministack: the same checks the in-memory adapter passes in its unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use jitr_aws::IotRegistry;
use jitr_testkit::contract::registry::{ContractHarness, run_all};
use jitr_testkit::pki::DeviceSpec;
use jitr_tests::fleet::Fleet;

struct Emulator {
    fleet: Fleet,
    counter: AtomicUsize,
}

impl ContractHarness for Emulator {
    type Registry = IotRegistry;
    fn registry(&self) -> &IotRegistry {
        self.fleet.iot()
    }
    async fn pending_certificate(&self) -> (String, String) {
        let device = self
            .fleet
            .pending_device(DeviceSpec::named(&self.unique("device")))
            .await;
        (device.id, self.fleet.ca_id.clone())
    }
    async fn policy(&self) -> String {
        let name = self.unique("policy");
        let document = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;
        self.fleet
            .iot()
            .create_policy(&name, document)
            .await
            .unwrap();
        name
    }
    async fn thing_group(&self) -> String {
        let name = self.unique("group");
        self.fleet.iot().create_thing_group(&name).await.unwrap();
        name
    }
    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_adapter_on_the_emulator_honours_the_port_contract() {
    let harness = Emulator {
        fleet: Fleet::new().await,
        counter: AtomicUsize::new(0),
    };
    run_all(&harness).await.unwrap();
}

/// The ledger contract (jitr_testkit::contract::ledger) against DynamoDB on the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_ledger_on_the_emulator_honours_the_port_contract() {
    let fleet = Fleet::new().await;
    let ledger = fleet.ledger().await;
    jitr_testkit::contract::ledger::run_all(&ledger, &fleet.account.id)
        .await
        .unwrap();
}

/// Issue 20, item 5: a missing table is named once, with the variable that names it, and no
/// error repeats its own words ("GetItem failed: GetItem failed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ledger_table_is_named_once() {
    use jitr_domain::ledger::Ledger;
    let fleet = Fleet::new().await;
    let ledger =
        jitr_aws::dynamodb::DynamoLedger::from_sdk_config(&fleet.account.sdk, "no-such-ledger");
    let err = ledger.device("sensor-1").await.unwrap_err().to_string();
    assert!(
        err.contains("table no-such-ledger not found (DEVICE_LEDGER_TABLE"),
        "{err}"
    );
    assert_eq!(err.matches("failed").count(), 1, "{err}");
}
