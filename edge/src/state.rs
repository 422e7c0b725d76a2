//! Isolate memory: the parsed config, keys and revocation view, shared by every request this
//! isolate serves. Borrows never live across an `.await` (requests interleave in one isolate):
//! callers take a clone out and let go.

use std::cell::RefCell;
use std::rc::Rc;

use gatehouse_shared::{AccessClaims, RevocationView, VerifiedCache, Verifier, VerifyError};
use worker::Env;

use crate::config::Config;

#[derive(Default)]
struct Isolate {
    config: Option<Rc<Config>>,
    verifier: Option<Rc<Verifier>>,
    /// When the held key set was fetched from the issuer: after `KEYS_TTL_SECS` it is refreshed.
    keys_fetched_ms: Option<f64>,
    /// Tokens a verifier accepted; the cache empties itself when another verifier uses it.
    verified: Option<VerifiedCache>,
    last_key_fetch_ms: Option<f64>,
    last_signed_list_key_fetch_ms: Option<f64>,
    revocations: RevocationView,
    list_checked_ms: Option<f64>,
    /// The last attempt to poll the delta feed, and whether one is under way.
    delta_polled_ms: Option<f64>,
    delta_in_flight: bool,
    /// When the last poll that succeeded began: what the held view is at least as new as.
    delta_done_ms: Option<f64>,
    /// When it ended, and how long it took (`delta_quiet_ms`).
    delta_landed_ms: Option<(f64, f64)>,
    /// When the latest poll begun ended, if it failed (cleared by its success; a poll it took
    /// over, ending late, changes nothing here).
    delta_failed_ms: Option<f64>,
    /// The text of the last delta applied, so an unchanged one is not verified again.
    last_delta: Option<String>,
    /// Why the last KV write failed, until one succeeds (reported by the health route).
    kv_write_error: Option<String>,
    /// Since when the issuer's lists have been older than the one held, and their seqs.
    issuer_behind: Option<IssuerBehind>,
}

/// The issuer's list older than the one held, as after a restore of its database: its new
/// entries are refused as stale here until its seq passes the held one's.
#[derive(Debug, Clone, Copy)]
pub struct IssuerBehind {
    /// When it was first seen, and last.
    pub since_ms: f64,
    pub last_ms: f64,
    pub issuer_seq: u64,
    pub held_seq: u64,
}

impl IssuerBehind {
    /// Seen again and again for 10 s, and lately: a cached delta a second behind a pushed base,
    /// or a pull that lost a race with a push, is seen once; a feed that then fails stops
    /// confirming it.
    pub fn persists(&self, now_ms: f64) -> bool {
        self.last_ms - self.since_ms >= 10_000.0 && now_ms - self.last_ms <= 120_000.0
    }
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

/// `Date.now()`: one call into the runtime (`worker::Date::now()` makes a `Date` object and
/// asks it, two). Workers freeze the clock while a request runs, so callers may read it often.
pub fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}

pub fn now_secs() -> i64 {
    #[allow(clippy::cast_possible_truncation)] // whole seconds since 1970 fit i64
    let secs = (now_ms() / 1000.0).floor() as i64;
    secs
}

pub fn config(env: &Env) -> Rc<Config> {
    ISOLATE.with_borrow_mut(|s| {
        Rc::clone(
            s.config
                .get_or_insert_with(|| Rc::new(Config::from_env(env))),
        )
    })
}

/// The held verifier and how many ms ago its keys were fetched from the issuer.
pub fn verifier() -> Option<(Rc<Verifier>, f64)> {
    ISOLATE.with_borrow(|s| {
        let age = s.keys_fetched_ms.map_or(f64::INFINITY, |t| now_ms() - t);
        s.verifier.clone().map(|v| (v, age))
    })
}

/// Holds `verifier`, whose keys were fetched from the issuer at `fetched_ms`, unless the set
/// held was fetched later: a set fetched before it (a slow fetch, an older KV copy) must not
/// bring back a key the issuer has dropped since. The set held then is returned.
pub fn set_verifier(verifier: Verifier, fetched_ms: f64) -> Rc<Verifier> {
    ISOLATE.with_borrow_mut(|s| {
        if let (Some(held), Some(held_ms)) = (&s.verifier, s.keys_fetched_ms)
            && held_ms > fetched_ms
        {
            return Rc::clone(held);
        }
        let verifier = Rc::new(verifier);
        s.verifier = Some(Rc::clone(&verifier));
        s.keys_fetched_ms = Some(fetched_ms);
        verifier
    })
}

/// Replaces the verifier held with `verifier` (the same keys, less a revoked one), keeping the
/// held set's fetch time.
pub fn replace_verifier(verifier: Verifier) -> Rc<Verifier> {
    let verifier = Rc::new(verifier);
    ISOLATE.with_borrow_mut(|s| s.verifier = Some(Rc::clone(&verifier)));
    verifier
}

/// Why a token was not verified.
pub enum NotVerified {
    /// The token's own fault: a 401 with its code.
    Token(VerifyError),
    /// The runtime's WebCrypto failed: the token may be good (503).
    CryptoFault,
}

impl From<VerifyError> for NotVerified {
    fn from(e: VerifyError) -> Self {
        Self::Token(e)
    }
}

/// Verifies `token`, through this isolate's cache of tokens already verified by `verifier`.
/// The signature goes to the runtime's WebCrypto; the cache is not borrowed across that wait
/// (requests interleave in one isolate).
pub async fn verify(
    verifier: &Verifier,
    config: &Config,
    token: &str,
    now: i64,
) -> Result<AccessClaims, NotVerified> {
    let hit = ISOLATE.with_borrow_mut(|s| {
        let cache = s
            .verified
            .get_or_insert_with(|| VerifiedCache::new(config.verified_cache_size));
        verifier.cached(cache, token, now)
    });
    if let Some(hit) = hit {
        return hit.map_err(NotVerified::Token);
    }
    let claims = match verifier
        .verify_with(&crate::webcrypto::WebCrypto, token, now)
        .await
    {
        Ok(outcome) => outcome?,
        Err(crate::webcrypto::RuntimeFault) => return Err(NotVerified::CryptoFault),
    };
    ISOLATE.with_borrow_mut(|s| {
        if let Some(cache) = s.verified.as_mut() {
            verifier.remember(cache, token, &claims);
        }
    });
    Ok(claims)
}

/// Panics while holding the isolate's state, as the worst real bug would: without the module
/// reset after a trap, every later request would find the state borrowed and fail too.
#[allow(clippy::panic)] // the point of `TEST_CRASH_ROUTE`
pub fn crash() -> ! {
    ISOLATE.with_borrow_mut(|_| panic!("TEST_CRASH_ROUTE: a deliberate panic"))
}

/// Whether `interval_ms` has passed since the time in `slot`; if so, stamps `now_ms` in it.
fn claim(slot: &mut Option<f64>, now_ms: f64, interval_ms: f64) -> bool {
    let due = is_due(*slot, now_ms, interval_ms);
    if due {
        *slot = Some(now_ms);
    }
    due
}

/// Whether the cooldown would allow a key fetch now (records nothing).
pub fn key_fetch_allowed(now_ms: f64, cooldown_ms: f64) -> bool {
    ISOLATE.with_borrow(|s| is_due(s.last_key_fetch_ms, now_ms, cooldown_ms))
}

fn is_due(last_ms: Option<f64>, now_ms: f64, interval_ms: f64) -> bool {
    last_ms.is_none_or(|last| now_ms - last >= interval_ms)
}

/// Records a key fetch attempt if the cooldown allows one; returns whether it does.
pub fn claim_key_fetch(now_ms: f64, cooldown_ms: f64) -> bool {
    ISOLATE.with_borrow_mut(|s| claim(&mut s.last_key_fetch_ms, now_ms, cooldown_ms))
}

/// The same for a refetch asked by a signed list that names an unknown kid.
pub fn claim_signed_list_key_fetch(now_ms: f64, cooldown_ms: f64) -> bool {
    ISOLATE.with_borrow_mut(|s| claim(&mut s.last_signed_list_key_fetch_ms, now_ms, cooldown_ms))
}

pub fn revocations() -> RevocationView {
    ISOLATE.with_borrow(|s| s.revocations.clone())
}

/// `read` of the held view, without copying it.
pub fn with_revocations<T>(read: impl FnOnce(&RevocationView) -> T) -> T {
    ISOLATE.with_borrow(|s| read(&s.revocations))
}

/// Applies `update` to the held view and keeps its result; the view is read and replaced in one
/// borrow, so a concurrent request's update cannot be lost in between.
pub fn update_revocations<E>(
    update: impl FnOnce(&RevocationView) -> Result<RevocationView, E>,
) -> Result<RevocationView, E> {
    ISOLATE.with_borrow_mut(|s| {
        let next = update(&s.revocations)?;
        s.revocations = next.clone();
        Ok(next)
    })
}

/// Whether the KV copy is due for a re-read; marks it read if so.
pub fn claim_list_check(now_ms: f64, interval_ms: f64) -> bool {
    ISOLATE.with_borrow_mut(|s| claim(&mut s.list_checked_ms, now_ms, interval_ms))
}

/// Counts the interval to the next re-read from `now_ms` (a read that failed has just ended).
pub fn restart_list_check(now_ms: f64) {
    ISOLATE.with_borrow_mut(|s| s.list_checked_ms = Some(now_ms));
}

/// How many ms ago the delta feed was last polled (infinite if never).
pub fn delta_poll_age_ms(now_ms: f64) -> f64 {
    ISOLATE.with_borrow(|s| s.delta_polled_ms.map_or(f64::INFINITY, |t| now_ms - t))
}

/// How many ms ago the last poll that succeeded began (infinite if none has): the age of what
/// the fast path has brought, whatever is under way now.
pub fn delta_view_age_ms(now_ms: f64) -> f64 {
    ISOLATE.with_borrow(|s| s.delta_done_ms.map_or(f64::INFINITY, |t| now_ms - t))
}

/// How long nothing has landed from the feed, less the time the last poll that did took, at
/// most `longest_ms` of it (infinite if none has): over two intervals, the isolate was idle. A
/// busy isolate's polls land one after another however slow the feed, so its requests do not
/// wait for them; a poll slower than its fetch may be (a key set fetched, a poll taken over
/// that ended late) does not put off an idle isolate's wait further.
pub fn delta_quiet_ms(now_ms: f64, longest_ms: f64) -> f64 {
    ISOLATE.with_borrow(|s| {
        s.delta_landed_ms.map_or(f64::INFINITY, |(landed, took)| {
            now_ms - landed - took.min(longest_ms)
        })
    })
}

/// Whether the feed is failing: the last poll that ended failed, and the isolate has kept
/// polling since (the poll under way, or else `now`, within `window_ms` of that failure).
/// Waiting for such a feed would only hold requests; an isolate that was idle after a
/// failure tries it again as if fresh.
pub fn delta_feed_failing(now_ms: f64, window_ms: f64) -> bool {
    ISOLATE.with_borrow(|s| {
        let Some(failed) = s.delta_failed_ms else {
            return false;
        };
        let since = if s.delta_poll_under_way(now_ms) {
            s.delta_polled_ms.unwrap_or(now_ms)
        } else {
            now_ms
        };
        since - failed < window_ms
    })
}

/// Whether a poll is under way (and not abandoned).
pub fn delta_poll_under_way(now_ms: f64) -> bool {
    ISOLATE.with_borrow(|s| s.delta_poll_under_way(now_ms))
}

impl Isolate {
    fn delta_poll_under_way(&self, now_ms: f64) -> bool {
        self.delta_in_flight && !is_due(self.delta_polled_ms, now_ms, DELTA_POLL_ABANDONED_MS)
    }
}

/// After this long a poll still marked under way is taken as abandoned: the runtime may stop a
/// request or a `waitUntil` task mid-poll, and then nothing would ever clear the mark.
const DELTA_POLL_ABANDONED_MS: f64 = 10_000.0;

/// The claim on the isolate's delta poll, named by when it started: a poll taken over after
/// `DELTA_POLL_ABANDONED_MS` started later, so a late end of the old one cannot clear its mark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaPoll(f64);

/// Starts a delta poll unless one is under way; `Some` when this caller owns it.
pub fn begin_delta_poll(now_ms: f64) -> Option<DeltaPoll> {
    ISOLATE.with_borrow_mut(|s| {
        // One borrow for the check and the claim.
        if s.delta_poll_under_way(now_ms) {
            return None;
        }
        s.delta_in_flight = true;
        s.delta_polled_ms = Some(now_ms);
        Some(DeltaPoll(now_ms))
    })
}

/// Ends `poll`. A success records what the view is now at least as new as. Whether the feed
/// is failing is the latest poll's to say: one taken over (after `DELTA_POLL_ABANDONED_MS`)
/// that ends late neither marks a working feed failing nor clears a failing one.
pub fn end_delta_poll(poll: DeltaPoll, succeeded: bool, now_ms: f64) {
    ISOLATE.with_borrow_mut(|s| {
        let latest = s.delta_polled_ms == Some(poll.0);
        if latest {
            s.delta_in_flight = false;
        }
        if succeeded && s.delta_done_ms.is_none_or(|t| t <= poll.0) {
            s.delta_done_ms = Some(poll.0);
            s.delta_landed_ms = Some((now_ms, now_ms - poll.0));
        }
        if latest {
            s.delta_failed_ms = (!succeeded).then_some(now_ms);
        }
    });
}

pub fn is_last_delta(jws: &str) -> bool {
    ISOLATE.with_borrow(|s| s.last_delta.as_deref() == Some(jws))
}

pub fn set_last_delta(jws: String) {
    ISOLATE.with_borrow_mut(|s| s.last_delta = Some(jws));
}

pub fn record_kv_write(result: Result<(), String>) {
    ISOLATE.with_borrow_mut(|s| s.kv_write_error = result.err());
}

pub fn kv_write_error() -> Option<String> {
    ISOLATE.with_borrow(|s| s.kv_write_error.clone())
}

/// The `seq` of a list the issuer signed, and the `seq` held when it came (`None` when none
/// was): the issuer is behind while its lists are older than the one held. The first time
/// it was behind is kept.
pub fn record_issuer_seq(issuer_seq: u64, held_seq: Option<u64>) {
    let behind = held_seq.filter(|&held| issuer_seq < held);
    let now = now_ms();
    ISOLATE.with_borrow_mut(|s| {
        s.issuer_behind = behind.map(|held_seq| IssuerBehind {
            since_ms: s.issuer_behind.map_or(now, |b| b.since_ms),
            last_ms: now,
            issuer_seq,
            held_seq,
        });
    });
}

pub fn issuer_behind() -> Option<IssuerBehind> {
    ISOLATE.with_borrow(|s| s.issuer_behind)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use gatehouse_shared::{KeySet, Verifier, VerifierOptions};

    use super::{
        begin_delta_poll, delta_feed_failing, delta_poll_age_ms, delta_poll_under_way,
        delta_quiet_ms, delta_view_age_ms, end_delta_poll, set_verifier,
    };

    #[test]
    fn a_key_set_fetched_earlier_never_replaces_one_fetched_later() {
        let set = || Verifier::new(KeySet::default(), VerifierOptions::new("iss", "aud"));
        let held = set_verifier(set(), 100.0);
        assert!(Rc::ptr_eq(&set_verifier(set(), 50.0), &held), "older: kept");
        let same_time = set_verifier(set(), 100.0);
        assert!(
            !Rc::ptr_eq(&same_time, &held),
            "rebuilt from the same fetch"
        );
        let later = set_verifier(set(), 200.0);
        assert!(!Rc::ptr_eq(&later, &same_time));
        assert!(Rc::ptr_eq(&set_verifier(set(), 150.0), &later));
    }

    #[test]
    fn the_view_ages_from_the_last_poll_that_ended() {
        let poll = begin_delta_poll(1_000.0).unwrap();
        // Started, not ended: a request must not take the view as fresh.
        assert!((delta_poll_age_ms(1_500.0) - 500.0).abs() < 1e-9);
        assert!(delta_view_age_ms(1_500.0).is_infinite());
        assert!(delta_poll_under_way(1_500.0));
        end_delta_poll(poll, true, 1_550.0);
        assert!(!delta_poll_under_way(1_600.0));
        assert!((delta_view_age_ms(1_600.0) - 600.0).abs() < 1e-9);
    }

    #[test]
    fn a_slow_feed_still_lands_and_an_idle_isolate_is_still_seen() {
        let longest = 2_000.0;
        assert!(
            delta_quiet_ms(0.0, longest).is_infinite(),
            "nothing landed yet"
        );
        // Polls of 1.5 s, one after another: quiet for no longer than a poll's gap.
        let first = begin_delta_poll(0.0).unwrap();
        end_delta_poll(first, true, 1_500.0);
        assert!((delta_quiet_ms(1_510.0, longest) - -1_490.0).abs() < 1e-9);
        let second = begin_delta_poll(1_510.0).unwrap();
        assert!((delta_quiet_ms(3_000.0, longest) - 0.0).abs() < 1e-9);
        end_delta_poll(second, true, 3_010.0);
        assert!((delta_view_age_ms(3_010.0) - 1_500.0).abs() < 1e-9);
        // Then idle: a second more than the last poll took, and the isolate is idle again.
        assert!((delta_quiet_ms(5_510.0, longest) - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn a_poll_taken_over_counts_no_longer_than_a_fetch_may_take() {
        let longest = 2_000.0;
        let abandoned = begin_delta_poll(0.0).unwrap();
        let taken_over = begin_delta_poll(10_000.0).unwrap();
        // The abandoned one ends after all, 10.2 s after it began: counted as 2 s.
        end_delta_poll(abandoned, true, 10_200.0);
        assert!((delta_quiet_ms(13_200.0, longest) - 1_000.0).abs() < 1e-9);
        // The newer one fails: the feed is as quiet as before.
        end_delta_poll(taken_over, false, 12_000.0);
        assert!((delta_quiet_ms(13_200.0, longest) - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn a_failing_feed_is_not_waited_for_while_the_isolate_keeps_polling() {
        let window = 2_000.0;
        let good = begin_delta_poll(0.0).unwrap();
        end_delta_poll(good, true, 10.0);
        assert!(!delta_feed_failing(100.0, window));
        // A poll that hangs until its limit fails: the view keeps the age of the last success.
        let hung = begin_delta_poll(1_000.0).unwrap();
        assert!(
            !delta_feed_failing(2_000.0, window),
            "not known to fail yet"
        );
        end_delta_poll(hung, false, 3_000.0);
        assert!((delta_view_age_ms(3_000.0) - 3_000.0).abs() < 1e-9);
        assert!(delta_feed_failing(3_500.0, window));
        // The next poll follows closely: failing for as long as it runs.
        let next = begin_delta_poll(3_600.0).unwrap();
        assert!(delta_feed_failing(5_500.0, window));
        end_delta_poll(next, false, 5_600.0);
        // Idle since: the feed is tried as if fresh, and a poll started now is waited for.
        assert!(!delta_feed_failing(8_000.0, window));
        let after_idle = begin_delta_poll(8_000.0).unwrap();
        assert!(!delta_feed_failing(8_100.0, window));
        // A success ends it.
        end_delta_poll(after_idle, true, 8_200.0);
        assert!(!delta_feed_failing(8_300.0, window));
        assert!((delta_view_age_ms(8_300.0) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn a_delta_poll_left_unfinished_is_taken_over() {
        let first = begin_delta_poll(0.0).unwrap();
        assert_eq!(begin_delta_poll(9_000.0), None, "one poll at a time");
        // The first never ended (the runtime stopped it): the mark does not block polls forever.
        let second = begin_delta_poll(10_000.0).unwrap();
        // The first ending late leaves the second's mark alone.
        end_delta_poll(first, true, 10_000.0);
        assert_eq!(
            begin_delta_poll(10_001.0),
            None,
            "the second is still under way"
        );
        end_delta_poll(second, true, 10_001.0);
        assert!(begin_delta_poll(10_002.0).is_some());
    }

    #[test]
    fn a_taken_over_poll_ending_late_does_not_change_the_feeds_state() {
        let first = begin_delta_poll(0.0).unwrap();
        let second = begin_delta_poll(10_000.0).unwrap();
        end_delta_poll(second, true, 10_500.0);
        // The first ends after its fetch limit and a key-set fetch: 13 s.
        end_delta_poll(first, false, 13_000.0);
        assert!(!delta_feed_failing(13_100.0, 60_000.0));
        // A failure of the latest poll still counts, and a late success of one it took over
        // does not clear it.
        let older = begin_delta_poll(24_000.0).unwrap();
        let newer = begin_delta_poll(34_000.0).unwrap();
        end_delta_poll(newer, false, 34_500.0);
        assert!(delta_feed_failing(34_600.0, 60_000.0));
        end_delta_poll(older, true, 37_000.0);
        assert!(delta_feed_failing(37_100.0, 60_000.0));
    }
}
