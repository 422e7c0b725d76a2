//! Isolate memory: the parsed config, keys and revocation list, shared by every request this
//! isolate serves. Borrows never live across an `.await` (requests interleave in one isolate):
//! callers take an `Rc` out and let go.

use std::cell::RefCell;
use std::rc::Rc;

use gatehouse_shared::{AccessClaims, RevocationList, VerifiedCache, Verifier, VerifyError};
use worker::Env;

use crate::config::Config;

#[derive(Default)]
struct Isolate {
    config: Option<Rc<Config>>,
    verifier: Option<Rc<Verifier>>,
    /// Tokens a verifier accepted; the cache empties itself when another verifier uses it.
    verified: Option<VerifiedCache>,
    last_key_fetch_ms: Option<f64>,
    list: Option<Rc<RevocationList>>,
    list_checked_ms: Option<f64>,
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

pub fn now_ms() -> f64 {
    #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit f64 exactly
    let ms = worker::Date::now().as_millis() as f64;
    ms
}

pub fn now_secs() -> i64 {
    i64::try_from(worker::Date::now().as_millis() / 1000).unwrap_or(i64::MAX)
}

pub fn config(env: &Env) -> Rc<Config> {
    ISOLATE.with_borrow_mut(|s| {
        Rc::clone(
            s.config
                .get_or_insert_with(|| Rc::new(Config::from_env(env))),
        )
    })
}

pub fn verifier() -> Option<Rc<Verifier>> {
    ISOLATE.with_borrow(|s| s.verifier.clone())
}

pub fn set_verifier(verifier: Verifier) -> Rc<Verifier> {
    let verifier = Rc::new(verifier);
    ISOLATE.with_borrow_mut(|s| s.verifier = Some(Rc::clone(&verifier)));
    verifier
}

/// Verifies `token`, through this isolate's cache of tokens already verified by `verifier`.
pub fn verify(
    verifier: &Verifier,
    config: &Config,
    token: &str,
    now: i64,
) -> Result<AccessClaims, VerifyError> {
    ISOLATE.with_borrow_mut(|s| {
        let cache = s
            .verified
            .get_or_insert_with(|| VerifiedCache::new(config.verified_cache_size));
        verifier.verify_cached(cache, token, now)
    })
}

/// Whether `interval_ms` has passed since the time in `slot`; if so, stamps `now_ms` in it.
fn claim(slot: &mut Option<f64>, now_ms: f64, interval_ms: f64) -> bool {
    let due = slot.is_none_or(|last| now_ms - last >= interval_ms);
    if due {
        *slot = Some(now_ms);
    }
    due
}

/// Records a key fetch attempt if the cooldown allows one; returns whether it does.
pub fn claim_key_fetch(now_ms: f64, cooldown_ms: f64) -> bool {
    ISOLATE.with_borrow_mut(|s| claim(&mut s.last_key_fetch_ms, now_ms, cooldown_ms))
}

pub fn list() -> Option<Rc<RevocationList>> {
    ISOLATE.with_borrow(|s| s.list.clone())
}

/// Installs `list` unless the isolate already holds a newer one.
pub fn set_list(list: RevocationList) -> Rc<RevocationList> {
    ISOLATE.with_borrow_mut(|s| {
        let held = s.list.as_ref().map(|l| (l.seq(), l.issued_at()));
        if held.is_none_or(|held| (list.seq(), list.issued_at()) > held) {
            s.list = Some(Rc::new(list));
        }
        s.list.clone().unwrap_or_default()
    })
}

/// Whether the KV copy is due for a re-read; marks it read if so.
pub fn claim_list_check(now_ms: f64, interval_ms: f64) -> bool {
    ISOLATE.with_borrow_mut(|s| claim(&mut s.list_checked_ms, now_ms, interval_ms))
}
