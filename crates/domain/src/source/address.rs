//! Which addresses an outbound fetch may reach (invariant 8). A URL comes from configuration or
//! from a certificate its CA signed, so a hostile or careless CA could aim the function at what
//! only it can reach: the instance metadata service, the Lambda Runtime API on loopback, a
//! private network. Every address a host resolves to is checked before a connection is made, the
//! connection goes to a checked address only (no second resolution a DNS rebinding could answer
//! differently), and every redirect hop is checked the same way. The rules are here; the
//! resolver that applies them to every name (`jitr_aws::source::resolver`) is beside the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::Uri;

/// Which address ranges a fetch may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public unicast addresses only (the default).
    #[default]
    PublicOnly,
    /// Also private ranges (RFC 1918, CGNAT, IPv6 unique-local): an on-premises PKI reached
    /// through the function's VPC (`REVOCATION_ALLOW_PRIVATE_NETWORKS=true`). Loopback,
    /// link-local (metadata), unspecified and multicast stay refused.
    AllowPrivate,
    /// Also loopback: for tests that serve lists from a local server, never from configuration.
    AllowLoopback,
}

/// Why an address is refused, for the error message.
fn refusal(ip: IpAddr, policy: AddressPolicy) -> Option<&'static str> {
    // An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by
    // the IPv4 address it reaches.
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = embedded_v4(v6)
    {
        return refusal(IpAddr::V4(v4), policy);
    }
    let (loopback, link_local, private, unusable) = match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    };
    if unusable {
        return Some("unspecified, broadcast, multicast or reserved");
    }
    if link_local {
        return Some("link-local (instance metadata)");
    }
    if loopback && policy != AddressPolicy::AllowLoopback {
        return Some("loopback");
    }
    if private && policy == AddressPolicy::PublicOnly {
        return Some("private (allow with REVOCATION_ALLOW_PRIVATE_NETWORKS)");
    }
    None
}

/// `Err` naming the range when `policy` refuses `ip`.
pub fn check_address(ip: IpAddr, policy: AddressPolicy) -> Result<(), String> {
    match refusal(ip, policy) {
        Some(why) => Err(format!("{ip} is {why}: not fetched")),
        None => Ok(()),
    }
}

/// (loopback, link-local, private, unusable)
fn classify_v4(ip: Ipv4Addr) -> (bool, bool, bool, bool) {
    let [a, b, ..] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    let reserved = a >= 240;
    (
        ip.is_loopback(),
        ip.is_link_local(),
        ip.is_private() || cgnat,
        ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || this_network || reserved,
    )
}

/// (loopback, link-local, private, unusable)
fn classify_v6(ip: Ipv6Addr) -> (bool, bool, bool, bool) {
    let first = ip.segments()[0];
    let link_local = (first & 0xffc0) == 0xfe80;
    // fc00::/7, which holds fd00:ec2::254 (the IPv6 instance metadata endpoint): never private
    // enough to allow, so refused as link-local-like metadata whatever the policy.
    let metadata = ip.segments()[..2] == [0xfd00, 0x0ec2];
    let unique_local = (first & 0xfe00) == 0xfc00;
    let site_local = (first & 0xffc0) == 0xfec0;
    (
        ip.is_loopback(),
        link_local || metadata,
        unique_local || site_local,
        ip.is_unspecified() || ip.is_multicast(),
    )
}

/// The IPv4 address an IPv6 one reaches, where it embeds one: `::ffff:a.b.c.d` (mapped),
/// `::a.b.c.d` (compatible), `64:ff9b::a.b.c.d` (NAT64) and `2002:aabb:ccdd::` (6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(ip.is_loopback() || ip.is_unspecified()) {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// A URL this fetcher will request: http or https, a host, no credentials, and a literal address
/// `policy` allows (a host name's addresses are checked when it is resolved).
pub fn check_url(url: &str, policy: AddressPolicy) -> Result<Uri, String> {
    let shown = redacted(url);
    let uri: Uri = url.parse().map_err(|e| format!("{shown:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{shown:?}: only http and https URLs are fetched"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{shown:?}: no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{shown:?}: credentials in URLs are refused"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{shown:?}: no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        check_address(ip, policy).map_err(|why| format!("{shown:?}: {why}"))?;
    }
    Ok(uri)
}

/// The URL for logs and errors: a query string (a presigned URL's signature, a token) is
/// replaced by `?…`, so no credential reaches a log line.
pub fn redacted(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_addresses_only_by_default() {
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(
                check_address(ip(allowed), AddressPolicy::PublicOnly).is_ok(),
                "{allowed}"
            );
        }
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "169.254.170.2",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "0.1.2.3",
            "240.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(
                check_address(ip(refused), AddressPolicy::PublicOnly).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn private_ranges_only_when_allowed_and_metadata_never() {
        for private in [
            "10.1.2.3",
            "172.31.255.254",
            "192.168.0.10",
            "100.100.0.1",
            "fd12::1",
        ] {
            assert!(
                check_address(ip(private), AddressPolicy::AllowPrivate).is_ok(),
                "{private}"
            );
        }
        for policy in [AddressPolicy::AllowPrivate, AddressPolicy::AllowLoopback] {
            for never in [
                "169.254.169.254",
                "fd00:ec2::254",
                "::ffff:169.254.169.254",
                "0.0.0.0",
            ] {
                assert!(
                    check_address(ip(never), policy).is_err(),
                    "{never} {policy:?}"
                );
            }
        }
        assert!(check_address(ip("127.0.0.1"), AddressPolicy::AllowPrivate).is_err());
        assert!(check_address(ip("127.0.0.1"), AddressPolicy::AllowLoopback).is_ok());
    }

    #[test]
    fn refuses_urls_it_should_not_request() {
        let public = AddressPolicy::PublicOnly;
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/crl",
            "http://[fd00:ec2::254]/crl",
            "http://[::ffff:169.254.169.254]/latest/meta-data/",
            "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
            "http://10.0.0.1/crl",
            "http://user:pw@host/crl",
            "gopher://host/crl",
            "http:///crl",
        ] {
            assert!(check_url(bad, public).is_err(), "{bad}");
        }
        assert!(check_url("https://pki.example.com:8443/ca.crl", public).is_ok());
        assert!(check_url("http://10.0.0.1/crl", AddressPolicy::AllowPrivate).is_ok());
        assert_eq!(
            redacted("https://b.s3.amazonaws.com/ca.crl?X-Amz-Signature=abc"),
            "https://b.s3.amazonaws.com/ca.crl?…"
        );
    }
}
