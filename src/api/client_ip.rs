//! The client a request comes from: the peer, or, when the peer is one of the proxies in
//! `http.trusted_proxies`, the address it forwarded in `X-Forwarded-For`. A header from
//! anyone else is ignored, so a client cannot pick the address its rate limit is kept by.

use ipnet::IpNet;
use std::net::IpAddr;

/// The proxies whose `X-Forwarded-For` otpd believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Reads CIDRs (`10.0.0.0/8`) or single addresses; says which one does not read.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("http.trusted_proxies has '{entry}'; give CIDRs such as 10.0.0.0/8 or addresses")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(address))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; else, reading
    /// `forwarded_for` from the right (each proxy appends the address it heard from), the
    /// first address that is not a trusted proxy.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(&peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = address;
                    if !self.trusts(&address) {
                        break;
                    }
                }
                // A hop that does not read stops the walk at the last one that did.
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_s_forwarded_address_is_believed() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let chain = Some("203.0.113.9, 10.1.1.1");
        // From a trusted proxy: the first untrusted hop from the right.
        assert_eq!(proxies.client(ip("10.0.0.2"), chain), ip("203.0.113.9"));
        assert_eq!(
            proxies.client(ip("192.0.2.7"), Some("198.51.100.1")),
            ip("198.51.100.1")
        );
        // A client that forges the header itself is not believed.
        assert_eq!(
            proxies.client(ip("198.51.100.5"), chain),
            ip("198.51.100.5")
        );
        // What a client put in front of the proxies' own hops is not read past them.
        let forged = Some("1.2.3.4, 198.51.100.5, 10.1.1.1");
        assert_eq!(proxies.client(ip("10.0.0.2"), forged), ip("198.51.100.5"));
        assert_eq!(proxies.client(ip("10.0.0.2"), None), ip("10.0.0.2"));
        assert_eq!(proxies.client(ip("10.0.0.2"), Some("junk")), ip("10.0.0.2"));
        assert!(TrustedProxies::default().client(ip("10.0.0.2"), chain) == ip("10.0.0.2"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
