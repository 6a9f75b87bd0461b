//! One test's world in the emulator: its own account, a CA registered the real way
//! (registration code, verification certificate, auto-registration on), the device policy,
//! and devices that become PENDING_ACTIVATION by connecting.

use std::time::Duration;

use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_domain::Config;
use jitr_domain::ledger::Ledger;
use jitr_domain::registry::{CertificateStatus, Registry};
use jitr_registration::{Outcome, Registrar};
use jitr_testkit::pki::{Ca, Device, DeviceSpec};
use serde_json::{Value, json};

use crate::device::{Connect, connect};
use crate::ministack::{Account, Ministack, shared, workspace_root};

pub const POLICY: &str = "jitr-device";

#[derive(Debug)]
pub struct Fleet {
    pub ministack: &'static Ministack,
    pub account: Account,
    pub ca: Ca,
    pub ca_id: String,
    broker_ca: String,
}

impl Fleet {
    pub async fn new() -> Self {
        let ministack = shared();
        let account = ministack.new_account();
        let ca = Ca::new("Fleet CA", "Acme Devices").expect("CA");
        let ca_id = register_ca(&account.iot, &ca).await;
        let policy = std::fs::read_to_string(workspace_root().join("policies/device-policy.json"))
            .expect("device policy");
        account
            .iot
            .create_policy(POLICY, &policy)
            .await
            .expect("CreatePolicy");
        Self {
            ministack,
            account,
            ca,
            ca_id,
            broker_ca: ministack.broker_ca_pem(),
        }
    }

    /// Registers another CA in this account, the real way; returns it with its id.
    pub async fn another_ca(&self, common_name: &str) -> (Ca, String) {
        let ca = Ca::new(common_name, "Partner Devices").expect("CA");
        let id = register_ca(self.iot(), &ca).await;
        (ca, id)
    }

    /// The device ledger table of this account, created as the template does.
    pub async fn ledger(&self) -> DynamoLedger {
        let ledger = DynamoLedger::from_sdk_config(&self.account.sdk, "jitr-ledger");
        ledger.create_table().await.expect("CreateTable");
        ledger
    }

    pub fn iot(&self) -> &IotRegistry {
        &self.account.iot
    }

    /// Issues a device certificate and connects with it: the emulator registers it
    /// PENDING_ACTIVATION and drops the connection, as IoT Core does.
    pub async fn pending_device(&self, spec: DeviceSpec) -> Device {
        self.pending_device_of(&self.ca, spec).await
    }

    /// The same, for a device of `ca` (registered in this account).
    pub async fn pending_device_of(&self, ca: &Ca, spec: DeviceSpec) -> Device {
        let device = ca.issue(&spec).expect("device certificate");
        assert_eq!(
            self.connect_with(ca, &device).await,
            Connect::Closed,
            "first connect of an unknown certificate is dropped"
        );
        for _ in 0..50 {
            if let Ok(d) = self.iot().describe_certificate(&device.id).await {
                assert_eq!(d.status, CertificateStatus::PendingActivation);
                return device;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("certificate {} was not auto-registered", device.id);
    }

    /// A device connect (client id = its CN, as the device policy requires).
    pub async fn connect(&self, device: &Device) -> Connect {
        self.connect_with(&self.ca, device).await
    }

    /// A connect presenting `ca`'s certificate after the device's.
    pub async fn connect_with(&self, ca: &Ca, device: &Device) -> Connect {
        let client_id = jitr_domain::certificate::pem_to_der(&device.cert_pem)
            .and_then(|_| jitr_domain::certificate::common_name(&device.cert_pem))
            .unwrap_or_else(|| "device".into());
        let key = device.key_pem.as_deref().expect("device key");
        connect(
            self.ministack.mtls_port,
            &self.broker_ca,
            &device.cert_pem,
            &ca.pem,
            key,
            &client_id,
        )
        .await
    }

    /// The event IoT Core publishes for the device's certificate.
    pub fn event(&self, device: &Device) -> Value {
        self.event_of(&self.ca_id, device)
    }

    /// The event for a device of the CA `ca_id`.
    pub fn event_of(&self, ca_id: &str, device: &Device) -> Value {
        json!({
            "certificateId": device.id,
            "caCertificateId": ca_id,
            "timestamp": 1_763_800_000_000_i64,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": self.account.id,
            "certificateRegistrationTimestamp": null,
            "sourceIp": "127.0.0.1"
        })
    }

    pub fn config(&self) -> Config {
        Config::with_policy(POLICY)
    }

    /// The real handler on the real SDK client for this account.
    pub fn registrar(&self, config: Config) -> Registrar<IotRegistry, SourceFetcher> {
        let fetcher = SourceFetcher::from_sdk_config(&self.account.sdk, config.address_policy());
        Registrar::new(self.iot().clone(), config, fetcher)
    }

    /// A device connected, registered (writing to `ledger`) and activated, as in production.
    pub async fn admitted<L: Ledger>(&self, name: &str, ledger: L) -> Device {
        let device = self.pending_device(DeviceSpec::named(name)).await;
        let report = self
            .registrar(self.config())
            .with_ledger(ledger)
            .handle(&self.event(&device), &self.account.id)
            .await
            .expect("registration");
        assert_eq!(report.outcome, Outcome::Activated, "{name}");
        device
    }

    pub async fn status(&self, device: &Device) -> CertificateStatus {
        self.iot()
            .describe_certificate(&device.id)
            .await
            .expect("DescribeCertificate")
            .status
    }

    /// (things, policies) attached to the device's certificate.
    pub async fn attachments(&self, device: &Device) -> (Vec<String>, Vec<String>) {
        let arn = self
            .iot()
            .describe_certificate(&device.id)
            .await
            .expect("DescribeCertificate")
            .arn;
        let things = self
            .iot()
            .list_principal_things(&arn)
            .await
            .expect("ListPrincipalThings");
        let policies = self
            .iot()
            .list_attached_policies(&arn)
            .await
            .expect("ListAttachedPolicies");
        (things, policies)
    }
}

/// RegisterCACertificate with the registration code and a verification certificate,
/// auto-registration on; returns the CA id.
async fn register_ca(iot: &IotRegistry, ca: &Ca) -> String {
    let code = iot.registration_code().await.expect("registration code");
    let verification = ca
        .verification_certificate(&code)
        .expect("verification certificate");
    let ca_id = iot
        .register_ca(&ca.pem, &verification, true)
        .await
        .expect("RegisterCACertificate");
    assert_eq!(ca_id, ca.id(), "IoT's CA id is the SHA-256 of the DER");
    ca_id
}
