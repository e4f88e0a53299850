//! Per-key policies from outside: rate limits, quotas and CIDRs as the CLI and admin API read
//! them, and the client address from forwarding headers. Never panics; what parses prints
//! back to itself; a resolved address is canonical.
#![no_main]

use http::{Extensions, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_apikey::layer::{ClientAddress, ForwardedHeader};
use tower_apikey::policy::{IpNet, Quota, RateLimit};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(limit) = text.parse::<RateLimit>() {
        assert_eq!(limit.to_string().parse::<RateLimit>(), Ok(limit));
    }
    if let Ok(quota) = text.parse::<Quota>() {
        assert_eq!(quota.to_string().parse::<Quota>(), Ok(quota));
    }
    let _ = text.parse::<IpNet>();

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let peer: std::net::SocketAddr = "10.0.0.1:443".parse().unwrap();
    let mut extensions = Extensions::new();
    extensions.insert(peer);
    for (name, header) in [
        ("x-forwarded-for", ForwardedHeader::XForwardedFor),
        ("forwarded", ForwardedHeader::Forwarded),
    ] {
        let mut headers = HeaderMap::new();
        headers.append(name, value.clone());
        headers.append(name, value.clone());
        let client = ClientAddress::peer()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
            .forwarded_header(header)
            .resolve(&extensions, &headers);
        if let Some(ip) = client {
            // IPv4-mapped IPv6 comes out as IPv4, so an allow-list of IPv4 CIDRs matches it.
            assert_eq!(ip.to_canonical(), ip, "a resolved address is canonical");
        }
    }
});
