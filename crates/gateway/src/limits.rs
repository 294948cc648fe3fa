//! Limits of the HTTP server and the caps on concurrent connections, in total and per client
//! address, that the HTTP and TCP accept loops apply before a connection costs anything more
//! than its socket.
//!
//! A client address is the IPv4 address, or the /64 prefix of an IPv6 one (a single host
//! usually holds a whole /64, so counting full IPv6 addresses would not cap anything).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// What the HTTP server allows one client, and how many clients it serves at once.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Total time a client has to send a request head, from the moment the server waits for
    /// it (so it also ends a keep-alive connection idle for that long). Not reset by bytes
    /// that trickle in.
    pub header_timeout: Duration,
    /// Total time a client has to send a request body, from the end of its head.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long (the client does not read) ends
    /// the connection.
    pub write_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; at least 8 KiB (hyper's
    /// smallest read buffer). Larger heads get 431 and the connection is closed.
    pub max_head_bytes: usize,
    /// Largest request body; a `Content-Length` over it is answered 413 before any of the body
    /// is read.
    pub max_body_bytes: usize,
    /// Plain HTTP connections served at once (an upgraded WebSocket stops counting: it is a
    /// session then, capped by `max_connections`); `0` = no cap.
    pub max_connections: usize,
    /// Plain HTTP connections served at once per client address; `0` = no cap.
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
        }
    }
}

/// Smallest head limit hyper accepts (its smallest read buffer).
pub const MIN_HEAD_BYTES: usize = 8192;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds its total number of connections.
    Total,
    /// This client address holds its number of connections.
    PerIp,
}

/// Counts the connections held, in total and per client address, and admits a new one only
/// under both caps. One short lock per accept and per close.
#[derive(Debug)]
pub struct ConnCaps {
    total_cap: usize,
    per_ip_cap: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Only addresses holding at least one connection are here.
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in its [`ConnCaps`], given back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    caps: Arc<ConnCaps>,
    key: IpAddr,
}

impl ConnCaps {
    /// Caps of `total` connections and `per_ip` per client address (`0` = no cap).
    pub fn new(total: usize, per_ip: usize) -> Arc<ConnCaps> {
        Arc::new(ConnCaps {
            total_cap: total,
            per_ip_cap: per_ip,
            held: Mutex::new(Held::default()),
        })
    }

    /// Takes a place for a connection from `ip`, or says which cap it would pass.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let key = client_key(ip);
        let mut held = self.held.lock();
        if self.total_cap > 0 && held.total >= self.total_cap {
            return Err(Refused::Total);
        }
        let n = held.per_ip.entry(key).or_insert(0);
        if self.per_ip_cap > 0 && *n >= self.per_ip_cap {
            return Err(Refused::PerIp);
        }
        *n += 1;
        held.total += 1;
        Ok(ConnSlot {
            caps: self.clone(),
            key,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.held.lock().total
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut held = self.caps.held.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.per_ip.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6
/// by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_total_and_slots_come_back() {
        let caps = ConnCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.try_admit(a).unwrap();
        let _a2 = caps.try_admit(a).unwrap();
        assert_eq!(caps.try_admit(a).unwrap_err(), Refused::PerIp);
        let _b1 = caps.try_admit(b).unwrap();
        assert_eq!(caps.try_admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(caps.held(), 2);
        let _b2 = caps.try_admit(b).unwrap();
        assert_eq!(caps.try_admit(b).unwrap_err(), Refused::Total);
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(x), client_key(y));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let caps = ConnCaps::new(0, 1);
        let _x = caps.try_admit(x).unwrap();
        assert_eq!(caps.try_admit(y).unwrap_err(), Refused::PerIp);
    }
}
