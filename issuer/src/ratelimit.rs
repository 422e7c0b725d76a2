//! Per-client-IP rate limit for the credential endpoints (token, registration).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::fairing::AdHoc;

use crate::config::Config;
use crate::error::ApiError;

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimit {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    /// Requests without a known client address are not limited here (a proxy in front should
    /// set `ip_header`).
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after: wait.as_secs().max(1),
            }
        })
    }

    /// Forgets clients whose budget is full again, so memory follows active clients only.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
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
