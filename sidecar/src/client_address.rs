//! Who the client is. Without `clientAddress` it is the connection's peer. With it, a
//! connection from a trusted proxy may name the client in the forwarded header: the header is
//! read from its right end (each proxy appends the address it saw), skipping trusted proxies,
//! and the first address that is not one of them is the client's. Everything left of that
//! address was written by the client or hops nobody vouches for, so it is never believed.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::HeaderName;
use ipnet::IpNet;

use crate::config::ClientAddress;
use mcp_gateway_contract::observability::parse_cidr;

pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: HeaderName,
}

impl TrustedProxies {
    pub fn new(config: &ClientAddress) -> Self {
        let nets = config
            .trusted_proxies
            .iter()
            .filter_map(|c| parse_cidr(c))
            .filter_map(|(addr, len)| IpNet::new(addr, len).ok())
            .map(|net| net.trunc())
            .collect();
        Self {
            nets,
            header: HeaderName::from_bytes(config.header.to_ascii_lowercase().as_bytes())
                .expect("validated in Config::validate"),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request that came over a connection from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        // Several header lines are one list, in order.
        let mut hops = headers
            .get_all(&self.header)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .collect::<Vec<_>>();
        let mut client = peer;
        while let Some(hop) = hops.pop() {
            match parse_hop(hop) {
                // A hop that cannot be read ends the walk: the last vouched-for one stands.
                None => break,
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4
/// peers) is the IPv4 address, so `10.0.0.0/8` covers it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One entry: an address, optionally with a port (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })?;
    Some(canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&ClientAddress {
            trusted_proxies: ranges.iter().map(|r| r.to_string()).collect(),
            header: "X-Forwarded-For".into(),
        })
    }

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("203.0.113.9"), &with(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_address_no_trusted_proxy_holds_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged the first entry; the ingress appended the real one.
        let headers = with(&["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(p.client(ip("10.1.2.3"), &headers), ip("198.51.100.7"));
        // Ports and brackets as some proxies write them.
        let headers = with(&["[2001:db8::5]:4711, 198.51.100.8:443"]);
        assert_eq!(p.client(ip("10.1.2.3"), &headers), ip("198.51.100.8"));
        let headers = with(&["[2001:db8::5]"]);
        assert_eq!(p.client(ip("10.1.2.3"), &headers), ip("2001:db8::5"));
    }

    #[test]
    fn without_the_header_or_past_garbage_the_last_trusted_hop_stands() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        let headers = with(&["198.51.100.1, unknown, 10.9.9.9"]);
        assert_eq!(p.client(ip("10.0.0.1"), &headers), ip("10.9.9.9"));
        // Only trusted hops: the leftmost of them.
        let headers = with(&["10.7.7.7, 10.8.8.8"]);
        assert_eq!(p.client(ip("10.0.0.1"), &headers), ip("10.7.7.7"));
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_ranges() {
        let p = proxies(&["10.0.0.0/8"]);
        let headers = with(&["198.51.100.2"]);
        assert_eq!(
            p.client(ip("::ffff:10.0.0.1"), &headers),
            ip("198.51.100.2")
        );
    }
}
