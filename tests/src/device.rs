//! A device's connect to the emulator's MQTT listener: `jitr_testkit::pki::mqtt_connect` with the
//! emulator's broker CA, on loopback.

pub use jitr_testkit::pki::mqtt_connect::Connect;
use jitr_testkit::pki::mqtt_connect::{Broker, Credentials};

/// Connects as `client_id` with `cert_pem` (+ `ca_pem` as the chain) and `key_pem`.
pub async fn connect(
    port: u16,
    broker_ca_pem: &str,
    cert_pem: &str,
    ca_pem: &str,
    key_pem: &str,
    client_id: &str,
) -> Connect {
    let broker = Broker {
        host: "127.0.0.1".into(),
        port,
        // The emulator's broker certificate names localhost.
        server_name: "localhost".into(),
        roots_pem: broker_ca_pem.into(),
    };
    let credentials = Credentials {
        cert_pem,
        ca_pem,
        key_pem,
    };
    jitr_testkit::pki::mqtt_connect::connect(&broker, credentials, client_id)
        .await
        .expect("a device connect set up from valid test credentials")
}
