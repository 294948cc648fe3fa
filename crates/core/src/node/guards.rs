//! The node's abuse limits kept per user or per client IP (see `AbuseLimits` in the config):
//! HTTP publishes, direct messages, room creation, registration and login. Each is a bounded
//! keyed limiter ([`crate::ratelimit::keyed`]); over a limit is `rate_limited` with the time to
//! wait. Per-connection limits (publishes and frames on one socket) stay in the session.

use super::*;
use crate::config::Limits;
use crate::ratelimit::keyed::{DEFAULT_CAPACITY, FailureBackoff, KeyedLimiter};
use std::net::IpAddr;

/// Per-user and per-IP limiters of one node.
pub struct Guards {
    http_publish: KeyedLimiter,
    dm: KeyedLimiter,
    rooms: KeyedLimiter,
    register_ip: KeyedLimiter,
    login_ip: KeyedLimiter,
    login_fail_user: FailureBackoff,
    login_fail_ip: FailureBackoff,
    quota: KeyedLimiter,
}

/// `rate_limited`, telling when to retry.
fn limited(what: &str, wait: Duration) -> Error {
    Error::rate_limited(
        format!("{what}; retry in {} ms", wait.as_millis().max(1)),
        wait,
    )
}

impl Guards {
    /// Limiters for `limits`.
    pub fn new(node_limits: &Limits) -> Guards {
        let limits = &node_limits.abuse;
        let free_ip = limits.login_free_failures.saturating_mul(4);
        let http_rate = limits.http_publish_rate.unwrap_or(node_limits.publish_rate);
        let http_burst = limits
            .http_publish_burst
            .unwrap_or(node_limits.publish_burst);
        Guards {
            http_publish: KeyedLimiter::new(http_rate as f32, http_burst, DEFAULT_CAPACITY),
            dm: KeyedLimiter::per_minute(limits.dm_per_min),
            rooms: KeyedLimiter::per_minute(limits.rooms_per_min),
            register_ip: KeyedLimiter::per_minute(limits.register_per_ip_per_min),
            login_ip: KeyedLimiter::per_minute(limits.login_per_ip_per_min),
            login_fail_user: FailureBackoff::new(
                limits.login_free_failures,
                limits.login_backoff_max,
                DEFAULT_CAPACITY,
            ),
            login_fail_ip: FailureBackoff::new(free_ip, limits.login_backoff_max, DEFAULT_CAPACITY),
            quota: KeyedLimiter::new(
                limits.messages_per_day as f32 / 86_400.0,
                limits.messages_per_day,
                DEFAULT_CAPACITY,
            ),
        }
    }

    /// One HTTP publish (room message or direct message) by `user_id`.
    pub fn http_publish(&self, user_id: &str) -> Result<()> {
        self.http_publish
            .check(user_id)
            .map_err(|w| limited("HTTP publish rate limit exceeded", w))
    }

    /// One message stored by `user_id`, on any path, within the daily quota.
    pub(super) fn store(&self, user_id: &str) -> Result<()> {
        self.quota
            .check(user_id)
            .map_err(|w| limited("daily message quota used up", w))
    }

    /// One direct message by `user_id`, on any path.
    pub(super) fn direct_message(&self, user_id: &str) -> Result<()> {
        self.dm
            .check(user_id)
            .map_err(|w| limited("direct message rate limit exceeded", w))
    }

    /// One room created by `user_id`.
    pub(super) fn create_room(&self, user_id: &str) -> Result<()> {
        self.rooms
            .check(user_id)
            .map_err(|w| limited("room creation rate limit exceeded", w))
    }

    /// One registration from `ip` (unknown: not limited).
    pub(super) fn register(&self, ip: Option<IpAddr>) -> Result<()> {
        match ip {
            Some(ip) => self
                .register_ip
                .check(&ip.to_string())
                .map_err(|w| limited("too many registrations from this address", w)),
            None => Ok(()),
        }
    }

    /// Whether a login for `username` from `ip` may be tried now.
    pub(super) fn login_attempt(&self, ip: Option<IpAddr>, username: &str) -> Result<()> {
        let too_many = |w| limited("too many login attempts", w);
        if let Some(ip) = ip {
            let ip = ip.to_string();
            self.login_ip.check(&ip).map_err(too_many)?;
            self.login_fail_ip.check(&ip).map_err(too_many)?;
        }
        self.login_fail_user
            .check(&username_key(username))
            .map_err(too_many)
    }

    /// Records how a login for `username` from `ip` ended. A success clears the username's
    /// failures but not the address's (an attacker could log into an account of its own
    /// between guesses).
    pub(super) fn login_result(&self, ip: Option<IpAddr>, username: &str, ok: bool) {
        let user = username_key(username);
        if ok {
            self.login_fail_user.succeeded(&user);
            return;
        }
        self.login_fail_user.failed(&user);
        if let Some(ip) = ip {
            self.login_fail_ip.failed(&ip.to_string());
        }
    }
}

/// Usernames are compared ignoring case for the backoff, and only as long as a username may
/// be (a longer one cannot exist, so it need not be remembered whole).
fn username_key(username: &str) -> String {
    let mut end = username.len().min(64);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].to_lowercase()
}
