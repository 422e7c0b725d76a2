//! An isolate's first base list. Until it holds one, every protected request is refused (or,
//! under `fail_open`, judged without it), so its requests all wait for one load, which outlives
//! the request that began it (`crate::outliving`), and a load that failed is tried again soon,
//! backing off. Before, the requests beside the first were refused while it loaded, and every
//! request for `KV_REFRESH_SECS` after it failed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use worker::js_sys::Promise;
use worker::{Context, Env};

use crate::config::Config;
use crate::{outliving, state, sync};

/// The longest a request waits for the load, its own or another's: then it answers with what is
/// held. A load of a few MB from KV, or from the issuer (`upstream::FIRST_LIST_LIMIT`), takes
/// less.
const WAIT: Duration = Duration::from_secs(2);
/// A load begun longer ago than this was cut off by the runtime (its request's CPU limit, say):
/// its promise never settles, and the next request begins another. A load's own limits (two
/// snapshot fetches, two key-set fetches) add up to 14 s.
const ABANDONED_MS: f64 = 15_000.0;
/// How soon a failed load is tried again, doubling with each failure in a row up to
/// `KV_REFRESH_SECS`: the issuer down on a first deploy would otherwise be asked for its list
/// every second by every isolate of every location.
const FIRST_RETRY_MS: f64 = 1000.0;

thread_local! {
    /// The load under way, and when it began.
    static LOADING: RefCell<Option<(Promise, f64)>> = const { RefCell::new(None) };
    /// Loads in a row that read KV or the issuer and brought no list.
    static FAILURES: Cell<u32> = const { Cell::new(0) };
}

/// Waits, at most [`WAIT`], for the load under way, beginning one if there is none.
pub async fn wait(env: &Env, ctx: &Context, config: &Rc<Config>) {
    let now = state::now_ms();
    let under_way = LOADING.with_borrow(|slot| {
        slot.as_ref()
            .filter(|(_, began)| now - began < ABANDONED_MS)
            .map(|(promise, _)| promise.clone())
    });
    let loading = under_way.unwrap_or_else(|| {
        let (env, config) = (env.clone(), Rc::clone(config));
        let promise = outliving::begin(ctx, async move { load(&env, &config, now).await });
        LOADING.with_borrow_mut(|slot| *slot = Some((promise.clone(), now)));
        promise
    });
    outliving::finished_within(loading, WAIT).await;
}

/// One load; clears the slot unless a later load took it over.
async fn load(env: &Env, config: &Config, began: f64) {
    if sync::refresh_from_kv(env, config).await {
        if state::with_revocations(|view| view.base().is_some()) {
            FAILURES.set(0);
        } else {
            FAILURES.set(FAILURES.get().saturating_add(1));
            state::restart_list_check(state::now_ms());
        }
    }
    LOADING.with_borrow_mut(|slot| {
        if slot
            .as_ref()
            .is_some_and(|(_, b)| b.to_bits() == began.to_bits())
        {
            *slot = None;
        }
    });
}

/// How long after a failed load the next may begin (from its end): 1 s, 2 s, 4 s, … up to
/// `KV_REFRESH_SECS`.
pub fn retry_interval_ms(config: &Config) -> f64 {
    backoff_ms(FAILURES.get(), config.kv_refresh_ms)
}

fn backoff_ms(failures: u32, cap_ms: f64) -> f64 {
    let doublings = failures.saturating_sub(1).min(10);
    (FIRST_RETRY_MS * f64::from(1u32 << doublings)).min(cap_ms)
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn a_failed_first_load_is_tried_again_sooner_than_the_interval_then_less_often() {
        let waits: Vec<f64> = (0..7).map(|n| backoff_ms(n, 10_000.0)).collect();
        assert_eq!(
            waits,
            [1000.0, 1000.0, 2000.0, 4000.0, 8000.0, 10_000.0, 10_000.0]
        );
        assert!((backoff_ms(u32::MAX, 10_000.0) - 10_000.0).abs() < f64::EPSILON);
    }
}
