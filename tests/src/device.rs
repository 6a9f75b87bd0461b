//! A device: an mTLS connection to the emulator's MQTT listener with a client certificate and
//! its CA (the chain file devices present for JITR), then an MQTT 3.1.1 CONNECT.

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

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Connects as `client_id` with `cert_pem` (+ `ca_pem` as the chain) and `key_pem`.
pub async fn connect(
    port: u16,
    broker_ca_pem: &str,
    cert_pem: &str,
    ca_pem: &str,
    key_pem: &str,
    client_id: &str,
) -> Connect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(broker_ca_pem) {
        roots.add(cert).expect("broker CA");
    }
    let mut chain = certs(cert_pem);
    chain.extend(certs(ca_pem));
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .ok()
        .flatten()
        .expect("device key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the mTLS port");
    let server_name = ServerName::try_from("localhost").expect("server name");
    let Ok(mut tls) = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
    else {
        return Connect::Closed;
    };
    if tls.write_all(&connect_packet(client_id)).await.is_err() {
        return Connect::Closed;
    }
    let mut connack = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut connack)).await {
        Ok(Ok(_)) if connack[0] == 0x20 && connack[3] == 0 => Connect::Accepted,
        Ok(Ok(_)) => Connect::Refused(connack[3]),
        _ => Connect::Closed,
    }
}

/// MQTT 3.1.1 CONNECT with a clean session and a 60 s keep-alive.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    body.extend(
        u16::try_from(id.len())
            .expect("short client id")
            .to_be_bytes(),
    );
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
    packet
}
