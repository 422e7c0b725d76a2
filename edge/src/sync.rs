//! Revocation sync. Push (`POST /_gatehouse/sync`) and pull (cron) both end in [`accept`]:
//! verify the signed snapshot against the issuer's keys, refuse anything not newer than what is
//! held, store it in KV, install it in memory. Requests only ever read memory; KV is re-read at
//! most every `KV_REFRESH_SECS` so a push to one isolate reaches the others.

use std::rc::Rc;

use gatehouse_shared::{ErrorCode, RevocationList, SnapshotError, SnapshotOptions};
use serde::{Deserialize, Serialize};
use worker::{Env, Fetch, Method, Request};

use crate::config::Config;
use crate::keys::{self, KV_BINDING};
use crate::state;

const KV_SNAPSHOT: &str = "revocations";

/// Stored beside the snapshot in KV, so a re-read can skip verifying what it already holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Meta {
    seq: u64,
    issued_at: i64,
}

fn options(config: &Config) -> SnapshotOptions {
    SnapshotOptions::new(config.verifier.issuer.clone())
}

async fn verify(env: &Env, config: &Config, jws: &str) -> Result<RevocationList, SnapshotError> {
    let now = state::now_secs();
    let mut verifier = keys::verifier(env, config).await;
    for attempt in 0..2 {
        let Some(v) = verifier.as_ref() else { break };
        match RevocationList::verify_snapshot(jws, v.keys(), &options(config), now) {
            Err(e) if e.code() == ErrorCode::UnknownKid && attempt == 0 => {
                verifier = keys::refetch(env, config).await.or(verifier);
            }
            other => return other,
        }
    }
    Err(gatehouse_shared::ValidationError::UnknownKid.into())
}

/// Verifies, checks order, stores in KV and installs a snapshot.
pub async fn accept(
    env: &Env,
    config: &Config,
    jws: &str,
) -> Result<Rc<RevocationList>, SnapshotError> {
    let list = verify(env, config, jws).await?;
    if let Some(held) = state::list() {
        list.ensure_newer_than(held.seq(), held.issued_at())?;
    }
    if let Ok(kv) = env.kv(KV_BINDING) {
        if let Ok((_, Some(meta))) = kv.get(KV_SNAPSHOT).text_with_metadata::<Meta>().await {
            list.ensure_newer_than(meta.seq, meta.issued_at)?;
        }
        let meta = Meta {
            seq: list.seq(),
            issued_at: list.issued_at(),
        };
        if let Ok(put) = kv.put(KV_SNAPSHOT, jws)
            && let Ok(put) = put.metadata(meta)
        {
            let _ = put.execute().await;
        }
    }
    Ok(state::set_list(list))
}

/// The list for this request: memory, refreshed from KV when the interval has passed.
pub async fn current(env: &Env, config: &Config) -> Option<Rc<RevocationList>> {
    let held = state::list();
    if !state::claim_list_check(state::now_ms(), config.kv_refresh_ms) {
        return held;
    }
    let Ok(kv) = env.kv(KV_BINDING) else {
        return held;
    };
    // Bytes for the same reason as the push route: a large string is slow to bring into wasm.
    let Ok((Some(bytes), meta)) = kv.get(KV_SNAPSHOT).bytes_with_metadata::<Meta>().await else {
        return held;
    };
    let Ok(jws) = String::from_utf8(bytes) else {
        return held;
    };
    let newer = match (&held, meta) {
        (Some(h), Some(m)) => (m.seq, m.issued_at) > (h.seq(), h.issued_at()),
        _ => true,
    };
    if !newer {
        return held;
    }
    match verify(env, config, &jws).await {
        Ok(list) => Some(state::set_list(list)),
        Err(_) => held,
    }
}

/// The cron path: fetch the issuer's current snapshot and accept it.
pub async fn pull(env: &Env, config: &Config) -> Result<Rc<RevocationList>, String> {
    let request = Request::new(
        &format!("{}/v1/revocations", config.issuer_url),
        Method::Get,
    )
    .map_err(|e| e.to_string())?;
    let mut response = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status_code() != 200 {
        return Err(format!("issuer answered {}", response.status_code()));
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let jws = String::from_utf8(bytes).map_err(|_| "the snapshot is not UTF-8".to_owned())?;
    match accept(env, config, &jws).await {
        Ok(list) => Ok(list),
        // Nothing new is not a failure of the pull.
        Err(SnapshotError::Stale { .. }) => state::list().ok_or_else(|| "no list".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
