//! The resolver the HTTP fetcher connects through: a host name is kept only if every address it
//! resolves to passes the domain's address policy (`jitr_domain::source::check_address`);
//! hyper-util's connector takes IP literals without a resolver, and `check_url` checks those.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use jitr_domain::source::{AddressPolicy, check_address};

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
