//! Per-client-IP rate limits for the credential endpoints (token, registration): one on
//! requests, held in each replica's memory (a load shield: N replicas take N times it), and one
//! on failed password checks: charged in memory while a check runs, recorded in the database
//! when it fails (`store::failure_budget`), so every replica spends from one budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::fairing::AdHoc;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::store::failure_budget::{self, Budget};

pub struct RateLimit {
    /// `None` when the limit is off (`token_rate_per_minute = 0`, as 0 turns other limits off).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: FailureBudget,
    /// The same budget, over the failures every replica recorded; `None` when it is off.
    shared: Option<Budget>,
}

impl RateLimit {
    pub fn new(requests_per_minute: u32, failed_logins_per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(requests_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            failures: FailureBudget::per_minute(failed_logins_per_minute),
            shared: Budget::per_minute(failed_logins_per_minute),
        }
    }

    /// Charges `ip` one failed password check before its check runs, or refuses it if it spent
    /// its budget: on this replica, counting its checks under way, or on every replica, by the
    /// failures recorded in the database (a read; a correct login writes nothing there).
    /// Charged first, so checks running at once cannot all pass a budget that their failures
    /// then overdraw; the charge is given back unless the check failed
    /// ([`FailureCharge::keep`]), and a kept one is recorded by [`FailureCharge::settle`].
    pub async fn charge_failure(
        &self,
        db: &Db,
        clock: &Arc<Clock>,
        ip: Option<IpAddr>,
    ) -> Result<FailureCharge<'_>, ApiError> {
        let Some(ip) = ip.map(client) else {
            return Ok(FailureCharge {
                budget: &self.failures,
                charged: None,
                shared: None,
                kept: AtomicBool::new(false),
            });
        };
        let refused = |wait| ApiError::RateLimited {
            retry_after: whole_secs(wait),
        };
        let until = self.failures.charge(ip, Instant::now()).map_err(refused)?;
        // Given back as it drops, if the database says no.
        let charge = FailureCharge {
            budget: &self.failures,
            charged: until.map(|until| (ip, until)),
            shared: self.shared.map(|budget| (ip.to_string(), budget)),
            kept: AtomicBool::new(false),
        };
        if let Some((client, budget)) = charge.shared.clone() {
            // The time the row is read at, not the time the call was queued: a failure recorded
            // meanwhile (a parallel attempt's) is stamped later, and judged from before it, it
            // would look one interval from being paid off and refuse this charge within budget
            // (the milliseconds the two readings may still differ by: `failure_budget::spent`).
            let clock = Arc::clone(clock);
            let spent = db
                .run(move |c| failure_budget::spent(c, &client, clock.now_ms(), budget))
                .await?;
            if let Some(wait_ms) = spent {
                return Err(refused(Duration::from_millis(wait_ms.unsigned_abs())));
            }
        }
        Ok(charge)
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

    /// Forgets clients whose budget is full again, so memory follows active clients only.
    pub fn prune(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.failures.prune(Instant::now());
    }
}

/// A wait as `Retry-After`: rounded up (a client that waits a whole second less is refused
/// again), at least 1.
fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One failed password check charged to a client before its check ran: given back when dropped
/// unless [`kept`](Self::keep), so a correct password, and an error that gave no verdict, spend
/// nothing; a kept one is recorded for every replica by [`Self::settle`].
pub struct FailureCharge<'a> {
    budget: &'a FailureBudget,
    /// The client charged, and when its failures are paid off counting this one; `None` for a
    /// request with no known client address, or with the budget off.
    charged: Option<(IpAddr, Instant)>,
    /// The client's name in the database, and the budget there.
    shared: Option<(String, Budget)>,
    kept: AtomicBool,
}

impl FailureCharge<'_> {
    /// The check failed: the charge stays.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// Records a kept failure for every replica, before the answer goes out. A record that
    /// fails is logged: the failure still counts on this replica.
    pub async fn settle(self, db: &Db, clock: &Clock) {
        let Some((client, budget)) = self.shared.clone() else {
            return;
        };
        if !self.kept.load(Ordering::Relaxed) {
            return;
        }
        let now = clock.now_ms();
        let recorded = db
            .run(move |c| failure_budget::record_failure(c, &client, now, budget))
            .await;
        if let Err(e) = recorded {
            crate::warn_at_most_every_interval!(
                error = %e,
                "a failed password grant was not recorded for the other replicas"
            );
        }
    }
}

impl Drop for FailureCharge<'_> {
    fn drop(&mut self) {
        if let Some((client, until)) = self.charged
            && !self.kept.load(Ordering::Relaxed)
        {
            self.budget.refund(client, until, Instant::now());
        }
    }
}

/// Failed password checks per client on this replica, its checks under way counted
/// (`failed_logins_per_minute`, burst of the same size): a client that spent it is refused
/// before its next check, whatever the password, until one failure is paid off. The request
/// budget counts every request, and a spray of one password over many accounts stays under each
/// account's lockout: only this and its shared record see it. Kept here rather than in
/// governor, which cannot tell whether a budget is spent without spending from it, and a
/// correct password must spend nothing.
struct FailureBudget {
    /// How long one failure takes to be paid off; `None` when the budget is off.
    interval: Option<Duration>,
    /// How many unpaid failures a client may have before its next check.
    size: u32,
    /// Per client, when all its failures are paid off.
    paid_off_at: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailureBudget {
    fn per_minute(n: u32) -> Self {
        Self {
            interval: (n > 0).then(|| Duration::from_mins(1) / n),
            size: n,
            paid_off_at: Mutex::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.paid_off_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges `client` one failure at `now`, and says when its failures are paid off counting
    /// this one (`None` with the budget off); refused, with how long to wait, if it has `size`
    /// unpaid already.
    fn charge(&self, client: IpAddr, now: Instant) -> Result<Option<Instant>, Duration> {
        let Some(interval) = self.interval else {
            return Ok(None);
        };
        let mut held = self.held();
        let paid_off = held.get(&client).map_or(now, |&at| at.max(now));
        let unpaid = paid_off.duration_since(now);
        if let Some(wait) = unpaid
            .checked_sub(interval * (self.size - 1))
            .filter(|wait| !wait.is_zero())
        {
            return Err(wait);
        }
        held.insert(client, paid_off + interval);
        Ok(Some(paid_off + interval))
    }

    /// Gives back, at `now`, what is left unpaid of a charge that set `until`: no more, so a
    /// check that outlasted its own charge cannot give back a later failure's.
    fn refund(&self, client: IpAddr, until: Instant, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        let left = until.saturating_duration_since(now).min(interval);
        if let Some(at) = self.held().get_mut(&client) {
            *at = at.checked_sub(left).unwrap_or(*at);
        }
    }

    fn prune(&self, now: Instant) {
        let mut held = self.held();
        held.retain(|_, &mut at| at > now);
        held.shrink_to_fit();
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
        rocket.manage(Arc::new(limit))
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use super::{FailureBudget, RateLimit};

    #[test]
    fn a_failure_budget_refuses_once_spent_until_one_failure_is_paid_off() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        // Two a minute: one paid off each 30 s.
        let budget = FailureBudget::per_minute(2);
        assert_eq!(budget.charge(ip, at(0)), Ok(Some(at(30))));
        assert_eq!(
            budget.charge(ip, at(1)),
            Ok(Some(at(60))),
            "the second of two"
        );
        assert_eq!(budget.charge(ip, at(1)), Err(Duration::from_secs(29)));
        assert!(
            budget.charge(IpAddr::from([192, 0, 2, 2]), at(1)).is_ok(),
            "another client"
        );
        // A charge given back (a correct password) leaves room for one more.
        budget.refund(ip, at(60), at(1));
        assert_eq!(budget.charge(ip, at(1)), Ok(Some(at(60))));
        assert_eq!(
            budget.charge(ip, at(30)),
            Ok(Some(at(90))),
            "the first paid off"
        );
        assert_eq!(budget.charge(ip, at(30)), Err(Duration::from_secs(30)));
        // A check that outlasted its own charge (paid off at 30) gives back nothing of the
        // later failures'.
        budget.refund(ip, at(30), at(31));
        assert_eq!(budget.charge(ip, at(31)), Err(Duration::from_secs(29)));
        budget.prune(at(89));
        assert_eq!(budget.held().len(), 1, "kept while unpaid");
        budget.prune(at(91));
        assert_eq!(budget.held().len(), 0, "forgotten once paid off");
        let off = FailureBudget::per_minute(0);
        assert!((0..100).all(|_| off.charge(ip, at(0)).is_ok()));
    }

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
