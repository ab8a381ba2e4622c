//! Who is on the other end of a request: the client's IP address and whether it came over
//! HTTPS, taking `X-Forwarded-For` / `X-Forwarded-Proto` only from configured trusted proxies
//! (anyone else could write them).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::AppState;
use crate::service::{ClientMeta, ServiceError};

/// How the server is reached: set once at startup.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// The server terminates TLS itself.
    pub tls: bool,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl NetPolicy {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address: the peer, or when the peer is a trusted proxy, the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, parts: &Parts) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        forwarded.into_iter().rev().find(|ip| !self.trusts(*ip)).unwrap_or(peer)
    }

    /// Whether the client reached us over HTTPS (directly, or at a trusted proxy).
    pub fn https(&self, peer: IpAddr, parts: &Parts) -> bool {
        self.tls
            || (self.trusts(peer)
                && parts
                    .headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
    }
}

/// The peer address; unknown (unspecified) when the server runs without connection info,
/// as in-process tools do.
pub fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The calling client, for handlers.
pub struct Caller {
    pub meta: ClientMeta,
    pub https: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer_ip(parts);
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Caller {
            meta: ClientMeta { ip: app.net.client_ip(peer, parts), user_agent },
            https: app.net.https(peer, parts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = axum::http::Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).expect("request").into_parts().0
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let policy =
            NetPolicy { tls: false, trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")] };
        let p = parts(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");

        assert_eq!(policy.client_ip(proxy, &p), "203.0.113.9".parse::<IpAddr>().expect("ip"));
        assert!(policy.https(proxy, &p));
        assert_eq!(policy.client_ip(stranger, &p), stranger);
        assert!(!policy.https(stranger, &p));
    }
}
