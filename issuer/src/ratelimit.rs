//! Per-client-IP rate limits for the credential endpoints (token, registration): one on
//! requests, held in each replica's memory (a load shield: N replicas take N times it), and one
//! on failed password checks, held in the database for every replica (`store::failure_budget`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::fairing::AdHoc;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::store::failure_budget::{self, Budget, Charge};

pub struct RateLimit {
    /// `None` when the limit is off (`token_rate_per_minute = 0`, as 0 turns other limits off).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// `None` when `failed_logins_per_minute = 0`.
    failures: Option<Budget>,
}

impl RateLimit {
    pub fn new(requests_per_minute: u32, failed_logins_per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(requests_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            failures: Budget::per_minute(failed_logins_per_minute),
        }
    }

    /// Charges `ip` one failed password check before its check runs, or refuses it if it spent
    /// its budget (`store::failure_budget`, one for every replica). Charged first, so checks
    /// running at once cannot all pass a budget that their failures then overdraw; the charge
    /// is given back by [`FailureCharge::settle`] unless the check failed
    /// ([`FailureCharge::keep`]). Requests without a known client address are not charged.
    pub async fn charge_failure<'c>(
        &self,
        db: &Db,
        clock: &'c Clock,
        ip: Option<IpAddr>,
    ) -> Result<FailureCharge<'c>, ApiError> {
        let (Some(budget), Some(ip)) = (self.failures, ip) else {
            return Ok(FailureCharge::none(clock));
        };
        let (client, now) = (client(ip).to_string(), clock.now_ms());
        let key = client.clone();
        match db
            .run(move |c| failure_budget::charge(c, &key, now, budget))
            .await?
        {
            Charge::Granted { until } => Ok(FailureCharge {
                charged: Some(Charged {
                    db: db.clone(),
                    client,
                    until,
                    budget,
                }),
                clock,
                kept: AtomicBool::new(false),
            }),
            Charge::Refused { wait_ms } => Err(ApiError::RateLimited {
                retry_after: whole_secs(Duration::from_millis(wait_ms.unsigned_abs())),
            }),
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
            ApiError::RateLimited {
                retry_after: whole_secs(wait),
            }
        })
    }

    /// Forgets clients whose request budget is full again, so memory follows active clients
    /// only (cleanup deletes the failure budgets that are paid off).
    pub fn prune(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// A wait as `Retry-After`: rounded up (a client that waits a whole second less is refused
/// again), at least 1.
fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One failed password check charged to a client before its check ran: given back unless
/// [`kept`](Self::keep), so a correct password, and an error that gave no verdict, spend
/// nothing. [`Self::settle`] gives it back before the answer; a request dropped before that
/// (its client went away mid-check, and the server dropped its handler) gives it back from a
/// task of its own, as it drops.
pub struct FailureCharge<'c> {
    /// `None` for a request with no known client address, with the budget off, or settled.
    charged: Option<Charged>,
    clock: &'c Clock,
    kept: AtomicBool,
}

/// The client charged, when its failures are paid off counting this one (Unix ms), and where.
struct Charged {
    db: Db,
    client: String,
    until: i64,
    budget: Budget,
}

impl<'c> FailureCharge<'c> {
    const fn none(clock: &'c Clock) -> Self {
        Self {
            charged: None,
            clock,
            kept: AtomicBool::new(false),
        }
    }

    /// The check failed: the charge stays.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// Gives the charge back unless it was kept, before the answer goes out: the client's next
    /// request finds it given back.
    pub async fn settle(mut self) {
        if let Some(refund) = self.refund() {
            refund.await;
        }
    }

    /// The refund still due, if any; none after this.
    fn refund(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let Charged {
            db,
            client,
            until,
            budget,
        } = self.charged.take()?;
        if self.kept.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.clock.now_ms();
        Some(async move {
            let refunded = db
                .run(move |c| failure_budget::refund(c, &client, until, now, budget))
                .await;
            // The failure stays charged, the safe side.
            if let Err(e) = refunded {
                tracing::warn!(error = %e, "a failure charged before a password check was not given back");
            }
        })
    }
}

impl Drop for FailureCharge<'_> {
    fn drop(&mut self) {
        if let Some(refund) = self.refund()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(refund);
        }
    }
}

/// Who a budget belongs to: an IPv4 address, or an IPv6 /64, which one host usually has to
/// itself (so it could otherwise take a fresh budget from each of its 2^64 addresses). An
/// IPv4-mapped IPv6 address counts as its IPv4 address. The lockout's rows are keyed by it too
/// (`store::lockout`): a change here forgets their locks and known clients.
pub(crate) fn client(ip: IpAddr) -> IpAddr {
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
        let default = Config::default();
        let config = rocket.state::<Config>().unwrap_or(&default);
        let limit = RateLimit::new(
            config.token_rate_per_minute,
            config.failed_logins_per_minute,
        );
        rocket.manage(std::sync::Arc::new(limit))
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::RateLimit;

    #[test]
    fn zero_turns_the_limit_off() {
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let off = RateLimit::new(0, 0);
        assert!((0..1000).all(|_| off.check(ip).is_ok()));
        let one = RateLimit::new(1, 0);
        assert!(one.check(ip).is_ok() && one.check(ip).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_budget() {
        let limit = RateLimit::new(2, 0);
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
