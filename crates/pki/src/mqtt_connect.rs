//! A device's connect, as IoT Core sees it: mutual TLS with the device certificate and its CA
//! (the chain a device presents for JITR), then an MQTT 3.1.1 CONNECT, and the broker's answer.
//! For `jitr device connect` and the tests (feature "connect": never in the Lambda functions).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How the broker answered a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// CONNACK with return code 0.
    Accepted,
    /// CONNACK with a refusal code.
    Refused(u8),
    /// The connection was closed without a CONNACK (JITR's first connect, or a refused certificate).
    Closed,
}

/// Where the broker listens and how its certificate is checked.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// The name the broker's certificate must carry.
    pub server_name: String,
    /// The roots that sign the broker's certificate (PEM).
    pub roots_pem: String,
}

/// The device's credentials: its certificate, its CA's (sent as the chain) and its key (PEM).
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub cert_pem: &'a str,
    pub ca_pem: &'a str,
    pub key_pem: &'a str,
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Connects as `client_id`; an `Err` is a set-up problem (unreadable PEM, no TCP connection),
/// never the broker's answer.
pub async fn connect(
    broker: &Broker,
    credentials: Credentials<'_>,
    client_id: &str,
) -> Result<Connect, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&broker.roots_pem) {
        roots
            .add(cert)
            .map_err(|e| format!("broker root certificate: {e}"))?;
    }
    let mut chain = certs(credentials.cert_pem);
    if chain.is_empty() {
        return Err("the device certificate is not a PEM certificate".into());
    }
    chain.extend(certs(credentials.ca_pem));
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut credentials.key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or("the device key is not a PEM private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the device certificate and key: {e}"))?;
    let tcp = TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .map_err(|e| format!("{}:{}: {e}", broker.host, broker.port))?;
    let server_name = ServerName::try_from(broker.server_name.clone())
        .map_err(|e| format!("{}: {e}", broker.server_name))?;
    let Ok(mut tls) = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
    else {
        return Ok(Connect::Closed);
    };
    if tls.write_all(&connect_packet(client_id)?).await.is_err() {
        return Ok(Connect::Closed);
    }
    let mut connack = [0u8; 4];
    Ok(
        match tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut connack)).await {
            Ok(Ok(_)) if connack[0] == 0x20 && connack[3] == 0 => Connect::Accepted,
            Ok(Ok(_)) => Connect::Refused(connack[3]),
            _ => Connect::Closed,
        },
    )
}

/// MQTT 3.1.1 CONNECT with a clean session and a 60 s keep-alive.
fn connect_packet(client_id: &str) -> Result<Vec<u8>, String> {
    let id = client_id.as_bytes();
    let length = u16::try_from(id.len()).map_err(|_| "the client id is too long".to_owned())?;
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    body.extend(length.to_be_bytes());
    body.extend(id);
    let mut packet = vec![0x10];
    let mut remaining = body.len();
    loop {
        let mut byte = u8::try_from(remaining % 128).unwrap_or(0);
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if remaining == 0 {
            break;
        }
    }
    packet.extend(body);
    Ok(packet)
}
