//! The fast path: the issuer's signed delta feed (`/v1/revocations/delta`, the entries of the
//! last few minutes), polled by every isolate at `DELTA_POLL_MS`, off the request path. All the
//! isolates of a location share one upstream fetch per interval through the Cache API (which is
//! per data center). Each delta is verified with the issuer's keys before it is applied, so the
//! cache and the network are not trusted.

use std::rc::Rc;
use std::time::Duration;

use gatehouse_shared::{RevocationDelta, RevocationList, SnapshotError};
use worker::{Cache, Context, Env, Headers, Response};

use crate::config::Config;
use crate::{keys, outliving, state, sync, upstream};

/// When this location's cached copy was fetched (ms since 1970): our own freshness, finer than
/// the Cache API's whole seconds.
const FETCHED_AT: &str = "x-gatehouse-fetched-ms";

/// What a request should do about the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    No,
    /// Poll after the response, through `waitUntil`.
    InBackground,
    /// Nothing has landed from the feed for two intervals beyond what its last poll took (the
    /// isolate was idle), and the feed is not known to be failing: poll, or wait for the poll
    /// under way, before answering ([`catch_up`]). A busy isolate's requests never wait, however
    /// slow the feed: its polls land one after another.
    Now,
}

pub fn due(config: &Config, now_ms: f64) -> Due {
    if !config.fast_path_enabled() {
        return Due::No;
    }
    // A poll that began is not a view brought: requests arriving while an idle isolate's first
    // poll runs wait for it too. A failing feed is polled in the background only: waiting for
    // it would hold every request (up to `limit` each, over and over while the issuer hangs)
    // and bring nothing.
    let quiet_ms = state::delta_quiet_ms(now_ms, limit_ms(config));
    if quiet_ms >= 2.0 * config.delta_poll_ms && !failing(config, now_ms) {
        Due::Now
    } else if state::delta_poll_age_ms(now_ms) >= config.delta_poll_ms {
        Due::InBackground
    } else {
        Due::No
    }
}

/// Whether the feed is failing: the last poll failed and the isolate has kept polling since.
pub fn failing(config: &Config, now_ms: f64) -> bool {
    state::delta_feed_failing(now_ms, limit_ms(config))
}

/// Before answering: a poll, or, if one is under way, a wait for it (polled every 5 ms). A poll
/// begun here outlives this request (`crate::outliving`): cut off with a client that went away,
/// it held every later request for up to its limit, and kept the isolate from polling for 10 s.
pub async fn catch_up(env: &Env, ctx: &Context, config: &Rc<Config>) {
    let now = state::now_ms();
    // A poll may take its fetch's limit, then a key-set fetch for a delta of a new kid.
    let longest_ms = limit_ms(config) + upstream::KEYS_LIMIT.as_secs_f64() * 1000.0;
    if !state::delta_poll_under_way(now) {
        let (env, config) = (env.clone(), Rc::clone(config));
        let polling = outliving::begin(ctx, async move { poll(&env, &config).await });
        let longest = Duration::from_secs_f64(longest_ms / 1000.0);
        return outliving::finished_within(polling, longest).await;
    }
    for _ in 0..wait_rounds(longest_ms, state::delta_poll_age_ms(now)) {
        worker::Delay::from(Duration::from_millis(5)).await;
        if !state::delta_poll_under_way(state::now_ms()) {
            return;
        }
    }
}

/// How many 5 ms rounds to wait for a poll under way: until the longest it may take, counted
/// from when the poll began. A poll the runtime abandoned (a request cancelled mid-poll) then holds
/// each later request for what is left of that, not for a whole limit each, until it is taken
/// as abandoned.
fn wait_rounds(limit_ms: f64, poll_age_ms: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a few hundred rounds
    let rounds = ((limit_ms - poll_age_ms).max(0.0) / 5.0) as u32;
    rounds
}

/// One poll: this location's cached delta if fresh, else the issuer's; verified and applied.
/// A caller that finds a poll under way in its isolate returns at once.
pub async fn poll(env: &Env, config: &Config) {
    let Some(claim) = state::begin_delta_poll(state::now_ms()) else {
        return;
    };
    let outcome = poll_once(env, config).await;
    state::end_delta_poll(claim, outcome.is_ok(), state::now_ms());
    if let Err(e) = outcome {
        worker::console_warn!("gatehouse: delta poll failed: {e}");
    }
}

async fn poll_once(env: &Env, config: &Config) -> Result<(), String> {
    let jws = fetch(config).await?;
    // The location's copy changes at most once per interval; most polls bring what is held.
    if state::is_last_delta(&jws) {
        return Ok(());
    }
    let now = state::now_secs();
    let options = sync::options(config);
    let delta = sync::with_keys(env, config, keys::Asker::SignedList, async |keys| {
        RevocationDelta::verify_with(&crate::webcrypto::WebCrypto, &jws, keys, &options, now).await
    })
    .await
    .map_err(|e| e.to_string())?;
    // The issuer's seq never goes back: a delta below the held base or delta means it did (a
    // restored database), or that this location's cached copy lags a second.
    let seq = delta.list().seq();
    let mut base_seq = None;
    let applied = state::update_revocations(|view| {
        base_seq = view.base().map(RevocationList::seq);
        view.with_delta(delta)
    });
    let held = match applied {
        Ok(_) => base_seq,
        Err(SnapshotError::Stale { held, .. }) => Some(held),
        Err(e) => return Err(e.to_string()),
    };
    state::record_issuer_seq(seq, held);
    state::set_last_delta(jws);
    Ok(())
}

/// How long a poll's fetch may take: four intervals, at least a second.
fn limit_ms(config: &Config) -> f64 {
    (4.0 * config.delta_poll_ms).max(1000.0)
}

fn limit(config: &Config) -> Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a few seconds
    Duration::from_millis(limit_ms(config) as u64)
}

async fn fetch(config: &Config) -> Result<String, String> {
    let cache = Cache::default();
    let url = config.delta_url.as_str();
    let now = state::now_ms();
    if let Ok(Some(mut cached)) = cache.get(url, false).await {
        let fetched = cached
            .headers()
            .get(FETCHED_AT)
            .ok()
            .flatten()
            .and_then(|t| t.parse::<f64>().ok());
        if fetched.is_some_and(|t| now - t < config.delta_poll_ms)
            && let Ok(text) = cached.text().await
        {
            return Ok(text);
        }
    }
    // Bounded: a request that waits for this poll must not hang on a hung issuer.
    let text = upstream::get_text(url, limit(config), crate::MAX_SNAPSHOT_BYTES).await?;
    // The copy outlives our freshness window on purpose: it is only ever used while fresh, and
    // `max-age` must be whole seconds. Dated by the fetch's end: dated by its start, a copy
    // that took longer than an interval was stale when stored, and with a slow feed every
    // isolate fetched for itself. (Its content may then be older than its date by up to the
    // fetch's time; an isolate's own fetch would take as long.)
    let headers = Headers::new();
    let _ = headers.set("Cache-Control", "public, max-age=60");
    let _ = headers.set(FETCHED_AT, &state::now_ms().to_string());
    if let Ok(copy) = Response::ok(text.clone()) {
        let _ = cache.put(url, copy.with_headers(headers)).await;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::wait_rounds;

    #[test]
    fn a_request_waits_for_a_poll_only_until_its_limit_from_its_start() {
        assert_eq!(wait_rounds(2000.0, 0.0), 400);
        assert_eq!(wait_rounds(2000.0, 1500.0), 100);
        // Begun longer ago than a poll may take (abandoned by a cancelled request, or about to
        // give up): no wait. Before, each request waited the whole limit.
        assert_eq!(wait_rounds(2000.0, 2500.0), 0);
        assert_eq!(wait_rounds(2000.0, f64::INFINITY), 0);
    }
}
