//! `jitr device connect`: a device's connect with its certificate and its CA's (the chain JITR
//! needs on the first connect), over mutual TLS and MQTT, against AWS IoT Core (the account's
//! ATS endpoint, Amazon's roots) or an emulator (`--endpoint-url`: its broker CA, port 8883 by
//! default). Says what the broker answered and what it means for JITR.

use std::path::Path;
use std::time::Duration;

use jitr_aws::IotRegistry;
use jitr_aws::iot::{AMAZON_ROOTS, load_sdk_config};
use jitr_aws::source::HttpFetcher;
use jitr_aws::source::HttpLimits;
use jitr_domain::source::{AddressPolicy, Fetched};
use jitr_pki::mqtt_connect::{Broker, Connect, Credentials, connect};

use crate::output::{Failure, line};

/// What to connect with and where.
#[derive(Debug)]
pub struct Request<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
    pub client_id: Option<&'a str>,
    pub endpoint_url: Option<&'a str>,
    pub host: Option<&'a str>,
    pub port: u16,
}

pub async fn run(request: Request<'_>) -> Result<(), Failure> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let (cert_pem, key_pem, ca_pem) = (read(request.cert)?, read(request.key)?, read(request.ca)?);
    let client_id = match request.client_id {
        Some(id) => id.to_owned(),
        None => jitr_domain::certificate::common_name(&cert_pem)
            .ok_or("the certificate has no common name: give --client-id (the Thing name)")?,
    };
    let broker = broker(&request).await?;
    let credentials = Credentials {
        cert_pem: &cert_pem,
        ca_pem: &ca_pem,
        key_pem: &key_pem,
    };
    let answer = connect(&broker, credentials, &client_id).await?;
    let at = format!("{}:{}", broker.host, broker.port);
    match answer {
        Connect::Accepted => line(format!("{client_id}: connected to {at} (CONNACK accepted)")),
        Connect::Refused(code) => Err(Failure::Message(format!(
            "{client_id}: {at} refused the CONNECT (return code {code}): the certificate is ACTIVE but its policy does not allow this client id"
        ))),
        Connect::Closed => Err(Failure::Message(format!(
            "{client_id}: {at} closed the connection without a CONNACK. On a first connect that is JITR at work: \
             IoT Core registered the certificate PENDING_ACTIVATION and published the event; connect again in a \
             second or two. If it stays closed: jitr explain --certificate <id>, then jitr doctor --stack <stack>"
        ))),
    }
}

/// The emulator's broker (its CA from its own endpoint) or the account's ATS endpoint.
async fn broker(request: &Request<'_>) -> Result<Broker, String> {
    if let Some(url) = request.endpoint_url {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url}: expected http://host:port"))?;
        let fetcher = HttpFetcher::new(HttpLimits {
            timeout: Duration::from_secs(5),
            addresses: AddressPolicy::AllowLoopback,
            ..HttpLimits::default()
        });
        let ca_url = format!("{}/_ministack/iot/ca.pem", url.trim_end_matches('/'));
        let roots_pem = match fetcher.get(&ca_url, None).await {
            Ok(Fetched::Body { bytes, .. }) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Fetched::NotModified) => return Err(format!("{ca_url}: no body")),
            Err(e) => return Err(format!("the emulator's broker CA: {}", e.0)),
        };
        return Ok(Broker {
            host: host.to_owned(),
            port: request.port,
            // The emulator's broker certificate names localhost.
            server_name: "localhost".into(),
            roots_pem,
        });
    }
    let host = match request.host {
        Some(host) => host.to_owned(),
        None => {
            let sdk = load_sdk_config().await;
            IotRegistry::from_sdk_config(&sdk)
                .data_endpoint()
                .await
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Broker {
        server_name: host.clone(),
        host,
        port: request.port,
        roots_pem: AMAZON_ROOTS.to_owned(),
    })
}
