//! Verification keys: pinned from the `JWKS` var, or fetched from the issuer and cached in
//! isolate memory and KV. A fetched key set is held for `KEYS_TTL_SECS` from its fetch, then
//! refreshed off the request path, so a key the issuer dropped stops verifying everywhere within
//! that bound; the KV copy carries its fetch time, so an isolate that loads it does not start
//! the TTL again (cold isolates come and go, and their copy could otherwise never age). A key
//! the revocation list names (an emergency `keys revoke KID` at the issuer, carried by the fast
//! path) is dropped at once, whatever the key set says. An unknown `kid` triggers one refetch
//! per cooldown, so a flood of garbage kids cannot hammer the issuer.

use std::rc::Rc;

use gatehouse_shared::{KeySet, Verifier};
use serde::{Deserialize, Serialize};
use worker::Env;

use crate::config::Config;
use crate::{state, upstream};

pub const KV_BINDING: &str = "GATEHOUSE_KV";
const KV_JWKS: &str = "jwks";
/// The KV copy's metadata: when the key set was fetched from the issuer.
#[derive(Serialize, Deserialize)]
struct Fetched {
    at_ms: f64,
}

/// Installs `keys`, fetched from the issuer at `fetched_ms`, without the ones the revocation
/// list revokes, unless a set fetched later is held: that one is returned then, filtered the
/// same way.
fn install(config: &Config, keys: &KeySet, fetched_ms: f64) -> Rc<Verifier> {
    let held = state::set_verifier(
        without_revoked(config, keys),
        fetched_ms.min(state::now_ms()),
    );
    refiltered(config, held)
}

/// `held` without a key the revocation list has revoked since it was installed, replacing it
/// in place (its fetch time kept).
fn refiltered(config: &Config, held: Rc<Verifier>) -> Rc<Verifier> {
    let revocations = state::revocations();
    if held.keys().kids().any(|kid| revocations.revokes_key(kid)) {
        return state::replace_verifier(without_revoked(config, held.keys()));
    }
    held
}

fn without_revoked(config: &Config, keys: &KeySet) -> Verifier {
    let revocations = state::revocations();
    let kept = keys
        .keys()
        .iter()
        .filter(|k| !revocations.revokes_key(k.kid()))
        .cloned();
    Verifier::new(KeySet::new(kept), config.verifier.clone())
}

/// The current verifier: memory, else pinned keys, else KV, else the issuer.
pub async fn verifier(env: &Env, config: &Config) -> Option<Rc<Verifier>> {
    if let Some((held, _)) = state::verifier() {
        return Some(refiltered(config, held));
    }
    if let Some(pinned) = &config.pinned_keys {
        return Some(install(config, pinned, state::now_ms()));
    }
    // A copy older than the TTL is used like a held set past it: at once, while a refetch runs.
    // One without a fetch time (written by an older version) counts as expired.
    if let Ok(kv) = env.kv(KV_BINDING)
        && let Ok((Some(json), fetched)) = kv.get(KV_JWKS).text_with_metadata::<Fetched>().await
        && let Ok(keys) = KeySet::from_json(&json)
        && !keys.is_empty()
    {
        let fetched_ms = fetched.map_or(f64::NEG_INFINITY, |f| f.at_ms);
        return Some(install(config, &keys, fetched_ms));
    }
    refetch(env, config, Asker::Client).await
}

/// Whether the held key set has outlived `KEYS_TTL_SECS` (pinned keys never expire) and a
/// refetch may run now: while the issuer cannot be reached, requests do not each schedule a
/// refetch the cooldown would refuse.
pub fn expired(config: &Config) -> bool {
    config.pinned_keys.is_none()
        && state::verifier().is_some_and(|(_, age_ms)| age_ms >= config.keys_ttl_ms)
        && state::key_fetch_allowed(state::now_ms(), config.jwks_refetch_cooldown_ms)
}

/// Who asks for a refetch, which decides the cooldown that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A client's token, a list pushed to `/_gatehouse/sync` (anyone can push), or the key
    /// set's TTL: `JWKS_REFETCH_COOLDOWN_SECS`, so a flood of garbage kids cannot hammer the
    /// issuer.
    Client,
    /// A signed list the edge fetched itself (the issuer's delta feed, its snapshot, KV's copy),
    /// after a rotation: at most one fetch per `SIGNED_LIST_COOLDOWN_MS`, so the fast path does
    /// not stall behind the client cooldown.
    SignedList,
    /// The cron: no cooldown, and the only asker that writes the key set to KV. Every
    /// location refetches after a rotation, and a write from each would spend KV's metered
    /// writes (and its one write per second per key); the cron runs in one place a minute.
    Cron,
}

const SIGNED_LIST_COOLDOWN_MS: f64 = 2000.0;

/// Fetches the issuer's JWKS if the asker's cooldown allows; keeps the old keys on any failure.
pub async fn refetch(env: &Env, config: &Config, asker: Asker) -> Option<Rc<Verifier>> {
    let allowed = match asker {
        Asker::Client => state::claim_key_fetch(state::now_ms(), config.jwks_refetch_cooldown_ms),
        // Once a minute at most, whatever the cooldown: the key set KV keeps is the cron's.
        Asker::Cron => true,
        Asker::SignedList => state::claim_signed_list_key_fetch(
            state::now_ms(),
            SIGNED_LIST_COOLDOWN_MS.min(config.jwks_refetch_cooldown_ms),
        ),
    };
    if config.pinned_keys.is_some() || !allowed {
        return None;
    }
    let url = format!("{}/.well-known/jwks.json", config.issuer_url);
    // The set is as old as the fetch's start: one that began later and ended sooner wins.
    let fetched_ms = state::now_ms();
    let json = upstream::get_text(&url, upstream::KEYS_LIMIT, KeySet::MAX_FETCHED_BYTES)
        .await
        .map_err(|e| worker::console_warn!("gatehouse: fetching the key set failed: {e}"))
        .ok()?;
    let keys = KeySet::from_json(&json).ok().filter(|k| !k.is_empty())?;
    if asker == Asker::Cron {
        store(env, &json, fetched_ms).await;
    }
    Some(install(config, &keys, fetched_ms))
}

/// Writes the key set to KV with its fetch time, only when it changed: KV takes about a
/// thousand writes a day on the Free plan. So an unchanged copy ages, and a new isolate that
/// loads it refetches in the background. Failures are logged, not reported as a sync failure:
/// the copy only spares new isolates a fetch on their first request.
async fn store(env: &Env, json: &str, fetched_ms: f64) {
    let Ok(kv) = env.kv(KV_BINDING) else {
        return;
    };
    if kv.get(KV_JWKS).text().await.ok().flatten().as_deref() == Some(json) {
        return;
    }
    let written = match kv
        .put_bytes(KV_JWKS, json.as_bytes())
        .and_then(|put| put.metadata(Fetched { at_ms: fetched_ms }))
    {
        Ok(put) => put.execute().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        worker::console_warn!("gatehouse: storing the key set in KV failed: {e}");
    }
}
