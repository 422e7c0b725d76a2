//! Per-client-IP rate limit for the credential endpoints (token, registration).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::fairing::AdHoc;

use crate::config::Config;
use crate::error::ApiError;

pub struct RateLimit {
    /// `None` when the limit is off (`token_rate_per_minute = 0`, as 0 turns other limits off).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimit {
    pub fn per_minute(n: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// Requests without a known client address are not limited here (a proxy in front should
    /// set `ip_header`).
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(ip), Some(limiter)) = (ip, &self.limiter) else {
            return Ok(());
        };
        limiter.check_key(&client(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Rounded up: a client that waits a whole second less is refused again.
            let whole_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                retry_after: whole_secs.max(1),
            }
        })
    }

    /// Forgets clients whose budget is full again, so memory follows active clients only.
    pub fn prune(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Who a budget belongs to: an IPv4 address, or an IPv6 /64, which one host usually has to
/// itself (so it could otherwise take a fresh budget from each of its 2^64 addresses). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
            || IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            IpAddr::V4,
        ),
        v4 @ IpAddr::V4(_) => v4,
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Rate limit", |rocket| async {
        let per_minute = rocket
            .state::<Config>()
            .map_or(Config::default().token_rate_per_minute, |c| {
                c.token_rate_per_minute
            });
        rocket.manage(std::sync::Arc::new(RateLimit::per_minute(per_minute)))
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::RateLimit;

    #[test]
    fn zero_turns_the_limit_off() {
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let off = RateLimit::per_minute(0);
        assert!((0..1000).all(|_| off.check(ip).is_ok()));
        let one = RateLimit::per_minute(1);
        assert!(one.check(ip).is_ok() && one.check(ip).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_budget() {
        let limit = RateLimit::per_minute(2);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(limit.check(ip("2001:db8:1:2::1")).is_ok());
        assert!(limit.check(ip("2001:db8:1:2:ffff::9")).is_ok());
        assert!(
            limit.check(ip("2001:db8:1:2:abcd::7")).is_err(),
            "the same /64"
        );
        assert!(limit.check(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        assert!(limit.check(ip("192.0.2.1")).is_ok());
        assert!(limit.check(ip("::ffff:192.0.2.1")).is_ok());
        assert!(
            limit.check(ip("192.0.2.1")).is_err(),
            "mapped and plain IPv4 are one client"
        );
    }
}
