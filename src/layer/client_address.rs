//! Where a request comes from: the connection's peer address, or, behind proxies the
//! operator trusts, the address they forwarded. What a key's IP allow-list is checked
//! against.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// How [`ApiKeyLayer`](super::ApiKeyLayer) finds a request's client address (used only for
/// keys with an IP allow-list).
///
/// The address is the connection's peer, read from the request extensions: axum's
/// `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info`), or a
/// [`SocketAddr`] or [`IpAddr`] the server inserted (with hyper, insert the accepted
/// connection's address; for tonic's `TcpConnectInfo`, use [`peer_from`](Self::peer_from)).
///
/// A forwarding header counts only when the peer is one of the
/// [trusted proxies](Self::trusted_proxies): then the client is the rightmost address in it
/// that is not a trusted proxy, the one the last trusted hop saw connect. Hops left of it
/// were written by the client and prove nothing. From any other peer the header changes
/// nothing.
#[derive(Clone)]
pub struct ClientAddress {
    trusted: Arc<[IpNet]>,
    header: ForwardedHeader,
    peer: fn(&Extensions) -> Option<IpAddr>,
}

/// Which header trusted proxies write the client's address to.
///
/// Name the one your proxies set and overwrite: a header they pass along untouched is the
/// client's to forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS ALB, most CDNs).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl Default for ClientAddress {
    fn default() -> Self {
        Self {
            trusted: Arc::from([]),
            header: ForwardedHeader::default(),
            peer: peer_of,
        }
    }
}

impl fmt::Debug for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAddress")
            .field("trusted_proxies", &self.trusted)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl ClientAddress {
    /// The connection's peer, no proxies trusted: the default.
    pub fn peer() -> Self {
        Self::default()
    }

    /// The proxies whose forwarding header is believed (default: none).
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted = proxies.into_iter().collect();
        self
    }

    /// The header trusted proxies write (default [`ForwardedHeader::XForwardedFor`]).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// How to read the peer address from the request extensions, for servers that keep it
    /// in a type of their own (tonic: `|e| e.get::<TcpConnectInfo>()?.remote_addr().map(|a| a.ip())`).
    pub fn peer_from(mut self, peer: fn(&Extensions) -> Option<IpAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The client's address for a request, or `None` when the server gave no peer address
    /// or a trusted proxy forwarded one that does not parse (an allow-list then fails
    /// closed).
    pub fn resolve(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = (self.peer)(extensions)?.to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        // Header lines in order, each a comma-separated list: read from the right.
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<_>>()?;
        for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            let address = match self.header {
                ForwardedHeader::XForwardedFor => parse_node(hop.trim()),
                ForwardedHeader::Forwarded => forwarded_for(hop),
            };
            let address = address?.to_canonical();
            if !self.is_trusted(address) {
                return Some(address);
            }
            client = address;
        }
        // Every hop was a trusted proxy: the leftmost is as far as anyone can tell.
        Some(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// The peer address a server put in the extensions.
fn peer_of(extensions: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| extensions.get::<IpAddr>().copied())
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.eq_ignore_ascii_case("for").then_some(value)
    })?;
    parse_node(value.trim().trim_matches('"'))
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`,
/// `[2001:db8::1]:4711`. Anything else (`unknown`, an obfuscated `_node`) is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    node.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolve(
        config: &ClientAddress,
        peer: &str,
        headers: &[(&'static str, &str)],
    ) -> Option<IpAddr> {
        let mut extensions = Extensions::new();
        extensions.insert(peer.parse::<SocketAddr>().unwrap());
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        config.resolve(&extensions, &map)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let config = ClientAddress::peer().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
        let forged = [("x-forwarded-for", "10.1.1.1, 127.0.0.1")];
        assert_eq!(resolve(&config, "192.0.2.7:5000", &forged), ip("192.0.2.7"));
        assert_eq!(
            resolve(&ClientAddress::peer(), "127.0.0.1:1", &forged),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let config = ClientAddress::peer().trusted_proxies([
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        // The client forged the first entry; the proxies appended what they saw.
        let headers = [("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")];
        assert_eq!(
            resolve(&config, "10.0.0.1:443", &headers),
            ip("203.0.113.9")
        );
        // Two header lines read as one list; ports and brackets are dropped.
        let lines = [
            ("x-forwarded-for", "198.51.100.1:1234"),
            ("x-forwarded-for", "[2001:db8::5]:80"),
        ];
        assert_eq!(resolve(&config, "10.0.0.1:443", &lines), ip("198.51.100.1"));
        // Only trusted hops: the leftmost. No header: the proxy itself.
        let inner = [("x-forwarded-for", "10.9.9.9, 10.0.0.2")];
        assert_eq!(resolve(&config, "10.0.0.1:443", &inner), ip("10.9.9.9"));
        assert_eq!(resolve(&config, "10.0.0.1:443", &[]), ip("10.0.0.1"));
        // A hop that does not parse ends the walk with no address: allow-lists fail closed.
        let junk = [("x-forwarded-for", "203.0.113.9, unknown")];
        assert_eq!(resolve(&config, "10.0.0.1:443", &junk), None);
        // IPv4-mapped IPv6 peers are their IPv4 address.
        assert_eq!(
            resolve(&config, "[::ffff:10.0.0.1]:443", &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_forwarded_header_when_asked_for() {
        let config = ClientAddress::peer()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
            .forwarded_header(ForwardedHeader::Forwarded);
        let headers = [
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            (
                "forwarded",
                "For=\"[2001:db8:cafe::17]:4711\", for=10.0.0.3",
            ),
            ("x-forwarded-for", "10.0.0.9"),
        ];
        assert_eq!(
            resolve(&config, "10.0.0.1:1", &headers),
            ip("2001:db8:cafe::17")
        );
        let hidden = [("forwarded", "for=_hidden")];
        assert_eq!(resolve(&config, "10.0.0.1:1", &hidden), None);
    }

    #[test]
    fn no_peer_address_is_none() {
        assert_eq!(
            ClientAddress::peer().resolve(&Extensions::new(), &HeaderMap::new()),
            None
        );
        let mut extensions = Extensions::new();
        extensions.insert("127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            ClientAddress::peer().resolve(&extensions, &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }
}
