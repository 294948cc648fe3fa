//! Where load may go: only 127.0.0.0/8 (or `localhost`). Every address the bench connects to or
//! binds to passes through here, so a typo can never point the load generator at another host.

use crate::error::{BenchError, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses `http://HOST:PORT` (a trailing `/` is allowed) where HOST is `localhost` or an IPv4
/// address in 127.0.0.0/8, and returns the socket address. Anything else is refused.
pub fn parse_target(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| BenchError::Config(format!("target {url:?}: only http:// URLs are used")))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(BenchError::Config(format!(
            "target {url:?}: give only http://HOST:PORT"
        )));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| BenchError::Config(format!("target {url:?}: bad port {p:?}")))?,
        ),
        None => (rest, 80),
    };
    if port == 0 {
        return Err(BenchError::Config(format!("target {url:?}: port 0")));
    }
    let ip = loopback_ip(host)
        .ok_or_else(|| BenchError::Config(format!("target {url:?}: {}", REFUSAL)))?;
    Ok(SocketAddr::new(IpAddr::V4(ip), port))
}

/// Parses a comma-separated list of source addresses, each in 127.0.0.0/8.
pub fn parse_source_ips(list: &str) -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let ip = loopback_ip(item)
            .ok_or_else(|| BenchError::Config(format!("source address {item:?}: {}", REFUSAL)))?;
        out.push(ip);
    }
    if out.is_empty() {
        return Err(BenchError::Config("--source-ips is empty".into()));
    }
    Ok(out)
}

/// Checks an address that arrives from elsewhere (a worker's plan) before it is used.
pub fn check_addr(addr: SocketAddr) -> Result<()> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(()),
        _ => Err(BenchError::Config(format!("address {addr}: {}", REFUSAL))),
    }
}

const REFUSAL: &str = "the bench only ever targets 127.0.0.0/8 or localhost";

fn loopback_ip(host: &str) -> Option<Ipv4Addr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(Ipv4Addr::LOCALHOST);
    }
    let ip: Ipv4Addr = host.parse().ok()?;
    ip.is_loopback().then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        assert_eq!(
            parse_target("http://127.0.0.1:7700").unwrap(),
            "127.0.0.1:7700".parse().unwrap()
        );
        assert_eq!(
            parse_target("http://localhost:80/").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_target("http://127.3.2.1:9").unwrap(),
            "127.3.2.1:9".parse().unwrap()
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "http://10.0.0.1:7700",
            "http://example.com:7700",
            "http://0.0.0.0:7700",
            "http://[::1]:7700",
            "https://127.0.0.1:7700",
            "127.0.0.1:7700",
            "http://127.0.0.1:7700/v1",
            "http://user@127.0.0.1:7700",
            "http://127.0.0.1:0",
            "http://128.0.0.1:1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn source_ips_must_be_loopback() {
        assert_eq!(parse_source_ips("127.0.0.2, 127.0.0.3").unwrap().len(), 2);
        assert!(parse_source_ips("127.0.0.2,192.168.1.1").is_err());
        assert!(parse_source_ips("").is_err());
    }
}
