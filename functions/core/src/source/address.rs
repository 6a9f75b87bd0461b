//! Which addresses an outbound fetch may reach (invariant 8). A URL comes from configuration or
//! from a certificate its CA signed, so a hostile or careless CA could aim the function at what
//! only it can reach: the instance metadata service, the Lambda Runtime API on loopback, a
//! private network. Every address a host resolves to is checked before a connection is made, the
//! connection goes to a checked address only (no second resolution a DNS rebinding could answer
//! differently), and every redirect hop is checked the same way.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

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

/// Resolves a host name and keeps it only if every address it resolves to is allowed; the
/// connector then connects to those addresses and nothing else. hyper-util's connector takes IP
/// literals without a resolver: `check_url` checks those.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    pub policy: AddressPolicy,
}

type Resolved = std::vec::IntoIter<SocketAddr>;
type Resolving = Pin<Box<dyn Future<Output = Result<Resolved, std::io::Error>> + Send>>;

impl tower_service::Service<Name> for CheckedResolver {
    type Response = Resolved;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addresses.is_empty() {
                return Err(std::io::Error::other(format!("{host}: no address")));
            }
            // Every address, not the first: a name that resolves to one public and one private
            // address would otherwise reach the private one on a retry or a second connect.
            for address in &addresses {
                check_address(address.ip(), policy)
                    .map_err(|why| std::io::Error::other(format!("{host}: {why}")))?;
            }
            Ok(addresses.into_iter())
        })
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

    #[tokio::test]
    async fn a_name_is_kept_only_if_every_address_it_resolves_to_is_allowed() {
        use tower_service::Service;
        let name = |host: &str| host.parse::<Name>().unwrap();
        let mut public_only = CheckedResolver {
            policy: AddressPolicy::PublicOnly,
        };
        let err = public_only.call(name("localhost")).await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        // A decimal host is resolved by the platform as an IPv4 address: checked all the same.
        let err = public_only.call(name("2852039166")).await.unwrap_err();
        assert!(err.to_string().contains("link-local"), "{err}");
        let mut loopback = CheckedResolver {
            policy: AddressPolicy::AllowLoopback,
        };
        let addresses: Vec<_> = loopback.call(name("localhost")).await.unwrap().collect();
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
    }
}
