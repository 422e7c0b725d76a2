//! Revocation sync through KV, the bulk store. Push (`POST /_gatehouse/sync`) and pull (cron)
//! both end in [`accept`]: verify the signed snapshot against the issuer's keys, refuse anything
//! that does not replace what is held (newer, or disowning it: `gatehouse_shared::replaces`),
//! store it in KV when it changed, install it as the base list. Requests only read memory; KV's
//! small head record is re-read at most every `KV_REFRESH_SECS`, and the snapshot itself only
//! when the head says it is newer, or names another list while the base's signer has left the
//! isolate's key set.

use gatehouse_shared::{
    ErrorCode, RevocationList, RevocationView, SnapshotError, SnapshotOptions, is_newer, key_id,
};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker::{Context, Env};

use crate::config::Config;
use crate::keys::{self, KV_BINDING};
use crate::webcrypto::{RuntimeFault, WebCrypto};
use crate::{first_list, state, turn, upstream};

const KV_SNAPSHOT: &str = "revocations";
/// `{seq, issued_at, signer_high, signer_low}` of the stored snapshot: a few bytes to read where
/// the snapshot is MBs.
const KV_HEAD: &str = "revocations-head";
/// While the fast path keeps the view whole, a newer base in KV is loaded only once the held one
/// is this old: well inside the issuer's delta window (900 s), so the delta never loses touch
/// with the base, and a location reads the MB-sized snapshot every few minutes, not at every
/// revocation.
const BASE_MAX_AGE_SECS: i64 = 300;
/// The issuer re-signs the delta every second: a feed whose last poll that did not fail began
/// longer ago than this (on this isolate's clock) has stopped, and KV is read again at once
/// instead of after `BASE_MAX_AGE_SECS`.
const DELTA_MAX_AGE_SECS: i64 = 10;
/// The held delta's own age (its `issued_at` against this clock) may also be at most this:
/// the feed's 10 s plus 30 s for an issuer clock behind this one (the skew the lists allow the
/// other way, `MAX_CLOCK_AHEAD_SECS`). Judged by its `issued_at` alone, an issuer 10 s behind
/// made every delta look stale, and every isolate read KV every `KV_REFRESH_SECS`; a feed
/// stuck on one document (a cache before the issuer) is noticed by this bound, at 40 s.
const DELTA_MAX_ISSUED_AGE_SECS: i64 =
    DELTA_MAX_AGE_SECS + SnapshotOptions::MAX_CLOCK_AHEAD_SECS as i64;
/// While KV holds no list to compare with, only a list this young is taken (with KV empty, by
/// no isolate; with KV's head unreadable, by an isolate holding none): the issuer serves a list
/// at most 15 s old, its push retries end within 45 s, and snapshots are public, so an
/// older one may be a saved copy replayed to roll revocations back (and, with KV empty, stored
/// there for every isolate).
const UNCHECKED_MAX_AGE_SECS: i64 = 60;
/// How long an accept waits for the one before it in its isolate to finish with KV: a few puts
/// of at most MBs; a turn the runtime cut off never ends, and the next goes ahead after this.
const KV_TURN_WAIT: Duration = Duration::from_secs(10);

thread_local! {
    /// Accepts in one isolate read KV's heads and write the list one after another: interleaved,
    /// an older list's slow puts could land after a newer one's, both answered 200.
    static KV_TURNS: turn::Chain = const { turn::Chain::new() };
    /// A list KV holds or has passed, as its `Head::rank`: the last this isolate stored, or
    /// pushed and found KV's copy newer (zeros, older than any list, before). Snapshots are
    /// public, so anyone can push them again and again. KV's copy overwritten since (another
    /// isolate's late write, a delete by hand) is repaired by the cron's pull, not by a push
    /// of this list.
    static KV_HOLDS: Cell<(u64, i64, u64)> = const { Cell::new((0, 0, 0)) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    issued_at: i64,
    /// Which key signed it: its `key_id`, in two halves (KV metadata is JSON, and JavaScript
    /// holds 53 bits exactly). After a rotation the issuer re-signs the same list with the new
    /// key, and KV takes it at once: a copy left signed by the old key would stop verifying once
    /// that key's grace ended, long before the heartbeat. A list that revokes this key at a seq
    /// the copy reaches replaces it (`disowns`). Zero in a head written before it was recorded.
    #[serde(default)]
    signer_high: u32,
    #[serde(default)]
    signer_low: u32,
}

impl Head {
    fn of(list: &RevocationList) -> Self {
        let signer = key_id(list.signer());
        #[allow(clippy::cast_possible_truncation)] // the halves
        Self {
            seq: list.seq(),
            issued_at: list.issued_at(),
            signer_high: (signer >> 32) as u32,
            signer_low: signer as u32,
        }
    }

    fn signer(self) -> u64 {
        u64::from(self.signer_high) << 32 | u64::from(self.signer_low)
    }

    fn rank(self) -> (u64, i64, u64) {
        (self.seq, self.issued_at, self.signer())
    }
}

/// Why a snapshot was not taken.
#[derive(Debug)]
pub enum SyncError {
    Snapshot(SnapshotError),
    /// No keys to verify it with: no pinned `JWKS`, none in KV, and the issuer's unreachable.
    NoKeys,
    /// Verified and installed here, but not stored in KV: other isolates would not see it.
    KvWrite(String),
    /// Verified, but older than `UNCHECKED_MAX_AGE_SECS` while KV holds no list to compare it
    /// with: neither installed nor stored.
    TooOld(String),
    /// The runtime's WebCrypto failed: the list may be good.
    CryptoFault,
    /// Pushed to an isolate that holds no list while KV holds one: refused until it has loaded
    /// KV's, which may revoke the key that signed this one.
    ListMissing,
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Snapshot(e) => e.fmt(f),
            Self::NoKeys => f.write_str("no keys to verify it with"),
            Self::CryptoFault => f.write_str("the runtime could not check the signature"),
            Self::ListMissing => f.write_str("no list yet"),
            Self::KvWrite(e) | Self::TooOld(e) => f.write_str(e),
        }
    }
}

impl From<SnapshotError> for SyncError {
    fn from(e: SnapshotError) -> Self {
        Self::Snapshot(e)
    }
}

pub fn options(config: &Config) -> SnapshotOptions {
    SnapshotOptions::new(config.verifier.issuer.clone())
}

/// Runs `check` against the issuer's keys, refetching them once on an unknown kid, within the
/// cooldown of whoever brought the list (`asker`). `check` verifies through the runtime's
/// WebCrypto, as request tokens are: the worker links no Ed25519 of its own.
pub async fn with_keys<T>(
    env: &Env,
    config: &Config,
    asker: keys::Asker,
    check: impl AsyncFn(&gatehouse_shared::KeySet) -> Result<Result<T, SnapshotError>, RuntimeFault>,
) -> Result<T, SyncError> {
    let mut verifier = keys::verifier(env, config).await.ok_or(SyncError::NoKeys)?;
    let mut refetched = false;
    loop {
        match check(verifier.keys())
            .await
            .map_err(|_| SyncError::CryptoFault)?
        {
            Err(e) if e.code() == ErrorCode::UnknownKid && !refetched => {
                refetched = true;
                verifier = keys::refetch(env, config, asker).await.ok_or(e)?;
            }
            result => return Ok(result?),
        }
    }
}

async fn verify(
    env: &Env,
    config: &Config,
    jws: &str,
    asker: keys::Asker,
) -> Result<RevocationList, SyncError> {
    let now = state::now_secs();
    with_keys(env, config, asker, async |keys| {
        RevocationList::verify_snapshot_with(&WebCrypto, jws, keys, &options(config), now).await
    })
    .await
}

/// Below the seq this isolate's view reaches (a base, or the signed delta), a list is refused
/// whatever KV's heads say: on Cloudflare a location reads them through its own cache (up to
/// about 60 s old), so they may not show the newer list another location stored, and writing
/// this one would roll KV back for every location. The newer list reaches KV on its own (its
/// push, the cron). The same seq signed earlier is still stored (a retry), and so is a list that
/// disowns what the view holds (`disowns`: a forged list's seq is no bar). The view's seq.
fn not_below_view(list: &RevocationList) -> Result<u64, SyncError> {
    let (held, disowned) = state::with_revocations(|view| (view.seq(), view.is_disowned_by(list)));
    if list.seq() < held && !disowned {
        return Err(SnapshotError::Stale {
            seq: list.seq(),
            held,
        }
        .into());
    }
    Ok(held)
}

/// Verifies a snapshot, installs it as the base list when it replaces this isolate's (when
/// KV's copy is newer still, only over a list the isolate holds: one holding none reads KV's),
/// and stores it in KV if KV's copy is older or disowned by it (another seq, another signing
/// key, or the same list signed more than `KV_HEARTBEAT_SECS` earlier), or KV's head names a
/// newer list than its snapshot. Also the list's seq (memory keeps its own view when that is
/// the same list signed later).
pub async fn accept(
    env: &Env,
    config: &Config,
    jws: &str,
    asker: keys::Asker,
) -> Result<(RevocationView, u64), SyncError> {
    let list = verify(env, config, jws, asker).await?;
    let view_seq = not_below_view(&list)?;
    let head = Head::of(&list);
    // A list that does not replace what KV was seen to hold (`replaces`: a replay of it, an
    // older copy, another key's copy of its seq) is answered as KV's heads would answer it,
    // without reading them or waiting for a turn: before, each such push cost two KV reads
    // (metered, 100,000 a day on the Free plan) and could hold a real push behind it in the
    // turns. Only while this isolate's view has reached that list: one it has dropped since
    // (a leaked key's, disowned) says nothing of KV, and would refuse the issuer's lists once
    // they stop naming that key. The cron's pull still reads KV, so a copy deleted by hand
    // comes back.
    let kv_holds = KV_HOLDS.get();
    if asker == keys::Asker::Client && kv_holds.0 <= view_seq {
        list.ensure_newer_than(kv_holds)?;
    }
    let _turn = turn::take(&KV_TURNS, KV_TURN_WAIT).await;
    let kv = env.kv(KV_BINDING).map_err(|e| e.to_string());
    let stored = match &kv {
        Ok(kv) => stored_heads(kv).await,
        Err(e) => Err(e.clone()),
    };
    if let Ok((stored, stored_snapshot)) = stored
        && let Err(kv_ahead) = kv_keeps_its_copy(&list, head, stored, stored_snapshot)
    {
        // KV keeps its copy (another location stored this seq signed later, or a newer list,
        // which this location's cache of KV may not show yet). An isolate that holds an older
        // list (or one this list disowns) still takes this one; one that holds none reads KV's.
        if state::with_revocations(|held| held.base().is_some()) && not_below_view(&list).is_ok() {
            let _ = state::update_revocations(|view| view.with_base(list));
            KV_HOLDS.set(head.rank());
        }
        return Err(kv_ahead.into());
    }
    // A pushed list (anyone can push) reaching an isolate whose first load of KV's list did not
    // finish in time, or failed, was verified with keys that leave out none KV's list revokes:
    // a leaked key's list would pass, and be stored over the issuer's. It is judged once KV's
    // list is held; the issuer retries. (The cron's own pull comes from the issuer.)
    if asker == keys::Asker::Client
        && matches!(&stored, Ok((Some(_), _)))
        && state::with_revocations(|held| held.base().is_none())
    {
        return Err(SyncError::ListMissing);
    }
    // An isolate that holds a list compares with it below; but an empty KV would still store
    // the old one for every other isolate.
    let nothing_to_compare = match &stored {
        Err(e) if state::with_revocations(|held| held.base().is_none()) => Some(e.as_str()),
        Ok((None, None)) => Some("KV holds no list"),
        _ => None,
    };
    let age = list.age_secs(state::now_secs());
    if let Some(why) = nothing_to_compare
        && age > UNCHECKED_MAX_AGE_SECS
    {
        let error = format!(
            "{why}; a list {age} s old (over {UNCHECKED_MAX_AGE_SECS} s) is not taken without one to compare"
        );
        worker::console_warn!("gatehouse: {error}");
        if stored.is_err() {
            // KV could not be read: the health says so, as for any KV failure.
            state::record_kv_write(Err(format!("KV: {why}")));
        }
        return Err(SyncError::TooOld(error));
    }
    // Again after the KV reads: a pull or a delta may have moved this isolate on meanwhile.
    not_below_view(&list)?;
    // The same seq as this isolate's view, signed earlier (a retry of a push whose KV write
    // failed, after a pull of the re-signed list): memory keeps its own, and KV, which the
    // checks above found older, still takes this one. A 409 would tell the issuer it landed.
    let view = match state::update_revocations(|view| view.with_base(list)) {
        Ok(view) => view,
        Err(SnapshotError::Stale { .. }) => state::revocations(),
        Err(e) => return Err(e.into()),
    };
    // Installed above whatever KV does (refusing more is always safe); without KV's heads there
    // is no telling whether writing would roll a newer list back, so nothing is written and
    // the 503 makes the issuer retry (the cron runs again).
    let (kv, (stored, stored_snapshot)) = match (kv, stored) {
        (Ok(kv), Ok(stored)) => (kv, stored),
        (Err(e), _) | (_, Err(e)) => return Err(fail_kv(&e)),
    };
    let older = |stored: Option<Head>| {
        stored.is_none_or(|s| {
            s.seq != head.seq
                || s.signer() != head.signer()
                || head.issued_at - s.issued_at >= config.kv_heartbeat_secs
        })
    };
    // Also when the head names a newer list than the snapshot, even of one seq signed within
    // the heartbeat, or another signer's: isolates would read the head as newer than the
    // snapshot it gives them, and reload it at every refresh. Not the other way round, which a
    // head read from KV's cache can show for a minute after a write that left both right.
    let head_ahead = stored.zip(stored_snapshot).is_some_and(|(head, snapshot)| {
        head.signer() != snapshot.signer()
            || is_newer(
                (head.seq, head.issued_at),
                (snapshot.seq, snapshot.issued_at),
            )
    });
    let changed = older(stored) || older(stored_snapshot) || head_ahead;
    if changed {
        // The snapshot first, then the head that points at it.
        let written = async {
            kv.put_bytes(KV_SNAPSHOT, jws.as_bytes())?
                .metadata(head)?
                .execute()
                .await?;
            let head_json = serde_json::to_vec(&head)?;
            kv.put_bytes(KV_HEAD, &head_json)?.execute().await
        }
        .await;
        if let Err(e) = written {
            // This isolate keeps the verified list (refusing more is always safe); the 503 tells
            // the issuer that the others did not get it.
            return Err(fail_kv(&e.to_string()));
        }
    }
    // KV holds this list now, or held it already.
    KV_HOLDS.set(head.rank());
    state::record_kv_write(Ok(()));
    Ok((view, head.seq))
}

/// `Err(Stale)` when KV's copy is at least as new as `list` (whose head is `head`), so that
/// storing it would roll KV back: newer than the head, and than the snapshot (a write that
/// stored the snapshot but failed on the head left a newer snapshot behind an older head).
/// The very list KV's head names, beside another snapshot, is stored again, not refused; not
/// when that snapshot is newer: its write landed and the head's failed.
fn kv_keeps_its_copy(
    list: &RevocationList,
    head: Head,
    stored: Option<Head>,
    stored_snapshot: Option<Head>,
) -> Result<(), SnapshotError> {
    let repair = stored == Some(head)
        && stored_snapshot.is_none_or(|s| {
            s != head && !is_newer((s.seq, s.issued_at), (head.seq, head.issued_at))
        });
    if repair {
        return Ok(());
    }
    if let Some(held) = stored {
        list.ensure_newer_than(held.rank())?;
    }
    if let Some(held) = stored_snapshot.filter(|s| *s != head) {
        list.ensure_newer_than(held.rank())?;
    }
    Ok(())
}

/// KV's head and which list its snapshot is; `Err` when the head cannot be read, which is not
/// an empty KV. A head that is not JSON (written by hand) reads as an error too: delete the key
/// and the next push or pull writes it again.
async fn stored_heads(kv: &worker::kv::KvStore) -> Result<(Option<Head>, Option<Head>), String> {
    let head = kv
        .get(KV_HEAD)
        .json::<Head>()
        .await
        .map_err(|e| format!("reading {KV_HEAD} failed: {e}"))?;
    Ok((head, stored_snapshot_head(kv).await))
}

/// Which list KV's snapshot is, from the metadata written with it; `None` when it cannot be
/// told. The head alone is not enough: two accepts in different isolates whose puts interleave
/// (B's snapshot, A's older one, A's head, B's head) leave the newer head beside the older
/// list, and a head that matches would keep it there until the next change. The value is
/// opened as a stream and cancelled, so none of the MBs is read.
async fn stored_snapshot_head(kv: &worker::kv::KvStore) -> Option<Head> {
    let (stream, metadata) = kv
        .get(KV_SNAPSHOT)
        .stream_with_metadata::<Head>()
        .await
        .ok()?;
    if let Some(stream) = stream {
        let _ = stream.cancel();
    }
    metadata
}

/// The list was not stored in KV (`error` says why: a write, a read it needed, no binding).
fn fail_kv(error: &str) -> SyncError {
    let error = format!("KV: the list was not stored: {error}");
    worker::console_error!("gatehouse: {error}");
    state::record_kv_write(Err(error.clone()));
    SyncError::KvWrite(error)
}

/// The view for this request: memory, with the base list refreshed from KV when the interval
/// has passed and KV's head says it holds a newer snapshot. An isolate that holds no base yet
/// (a new one) loads it once for all its requests (`first_list`).
pub async fn current(env: &Env, ctx: &Context, config: &Rc<Config>) -> RevocationView {
    if state::with_revocations(|view| view.base().is_none()) {
        first_list::wait(env, ctx, config).await;
    } else {
        refresh_from_kv(env, config).await;
    }
    // As held after the waits: another request may have installed a newer view meanwhile.
    state::revocations()
}

/// Whether the fast path keeps `held` whole over a young base, so KV has nothing it needs: a
/// delta that continues the base, issued at most `DELTA_MAX_ISSUED_AGE_SECS` before `now`, the
/// last poll that did not fail having begun at most `DELTA_MAX_AGE_SECS` ago (`feed_age_ms`,
/// this isolate's clock), over a base younger than `BASE_MAX_AGE_SECS`.
fn fast_path_covers(held: &RevocationView, now: i64, feed_age_ms: f64) -> bool {
    #[allow(clippy::cast_precision_loss)] // 10
    let feed_max_age_ms = DELTA_MAX_AGE_SECS as f64 * 1000.0;
    feed_age_ms <= feed_max_age_ms
        && held.delta_is_contiguous()
        && held
            .delta()
            .is_some_and(|d| d.list().age_secs(now) <= DELTA_MAX_ISSUED_AGE_SECS)
        && held
            .base()
            .is_some_and(|b| b.age_secs(now) < BASE_MAX_AGE_SECS)
}

/// Installs KV's snapshot if the interval has passed and KV's head says it is newer (or names
/// another list, while the signer of the base held has left the key set). While KV
/// has never held a list (a first deploy, before any push or cron) and the isolate holds none,
/// the issuer's is installed instead, so protected requests are not refused until the first
/// cron run. Only installed: the cron or a push stores it in KV, as KV writes are metered and
/// every isolate of every location would otherwise write the same list. Returns whether it
/// read KV (or the issuer) at all: the interval had passed.
pub(crate) async fn refresh_from_kv(env: &Env, config: &Config) -> bool {
    // While the fast path keeps the view whole over a young base, KV has nothing it needs.
    let feed_age_ms = state::delta_view_age_ms(state::now_ms());
    let whole =
        state::with_revocations(|held| fast_path_covers(held, state::now_secs(), feed_age_ms));
    if whole {
        return false;
    }
    let interval_ms = if state::with_revocations(|view| view.base().is_some()) {
        config.kv_refresh_ms
    } else {
        first_list::retry_interval_ms(config)
    };
    if !state::claim_list_check(state::now_ms(), interval_ms) {
        return false;
    }
    let Ok(kv) = env.kv(KV_BINDING) else {
        return true;
    };
    // A base whose signer left the key set (the issuer revoked it, or stopped publishing it)
    // does not keep a list KV holds out, even an older one: that one may revoke the signer
    // (`replaces`, which installing it applies).
    let trusted = |kid: &str| state::verifier().is_none_or(|(v, _)| v.keys().get(kid).is_some());
    let base = state::with_revocations(|view| view.base().map(|b| (b.rank(), trusted(b.signer()))));
    // KV's copy when the head names one this isolate should take; `None` where KV holds none,
    // or its copy could not be read, which an isolate with no list takes the issuer's for.
    let kv_copy = match kv.get(KV_HEAD).json::<Head>().await {
        Ok(Some(head)) => {
            let kv_has_no_other = base.is_some_and(|((seq, issued_at, signer), trusted)| {
                (seq, issued_at, signer) == head.rank()
                    || trusted && !is_newer((head.seq, head.issued_at), (seq, issued_at))
            });
            if kv_has_no_other {
                return true;
            }
            // Bytes, not text: a large string is slow to bring into wasm.
            let stored = kv.get(KV_SNAPSHOT).bytes().await.ok().flatten();
            stored.and_then(|bytes| String::from_utf8(bytes).ok())
        }
        Ok(None) => None,
        Err(_) => return true,
    };
    // An isolate with no list whose KV holds none (a first deploy, before any push or cron), or
    // whose read of KV's copy failed, takes the issuer's (as when KV's copy does not verify,
    // below): else it refused every request, and every push (`SyncError::ListMissing`), until
    // the cron stored or repaired KV's.
    let (jws, from_kv) = match kv_copy {
        Some(jws) => (jws, true),
        None if base.is_none() => {
            let Ok(jws) = fetch_snapshot(config, upstream::FIRST_LIST_LIMIT).await else {
                return true;
            };
            (jws, false)
        }
        None => return true,
    };
    let list = match verify(env, config, &jws, keys::Asker::SignedList).await {
        Ok(list) => list,
        // KV's copy, signed by a key the issuer no longer publishes (one stored before its
        // signer was recorded, or one a failed write left behind), would have an isolate with no
        // list refuse every request until the next change: it takes the issuer's instead. With
        // no keys at all, or a runtime whose WebCrypto failed, the issuer's would not verify
        // either, and KV's copy may well be good.
        Err(e)
            if from_kv
                && base.is_none()
                && !matches!(e, SyncError::NoKeys | SyncError::CryptoFault) =>
        {
            worker::console_warn!(
                "gatehouse: KV's revocation list is unusable ({e}); reading the issuer's"
            );
            let Ok(jws) = fetch_snapshot(config, upstream::FIRST_LIST_LIMIT).await else {
                return true;
            };
            let Ok(list) = verify(env, config, &jws, keys::Asker::SignedList).await else {
                return true;
            };
            list
        }
        Err(e) => {
            let from = if from_kv { "KV" } else { "the issuer" };
            worker::console_warn!("gatehouse: the revocation list from {from} was not taken ({e})");
            return true;
        }
    };
    // An older list than the one held is refused by the view; nothing to do then.
    let _ = state::update_revocations(|v| v.with_base(list));
    true
}

/// The issuer's current signed snapshot, fetched within `limit`.
async fn fetch_snapshot(config: &Config, limit: Duration) -> Result<String, String> {
    let url = format!("{}/v1/revocations", config.issuer_url);
    let bytes = upstream::get(&url, limit, crate::MAX_SNAPSHOT_BYTES).await?;
    String::from_utf8(bytes).map_err(|_| "the snapshot is not UTF-8".to_owned())
}

/// The cron path: fetch the issuer's current snapshot and accept it. What the issuer signs now
/// tells whether it is behind the list held (a pushed list may be a late retry, so pushes do
/// not).
pub async fn pull(env: &Env, config: &Config) -> Result<RevocationView, String> {
    let jws = fetch_snapshot(config, upstream::SNAPSHOT_LIMIT).await?;
    // Against the whole view held, its delta included, not only its base.
    let held = state::with_revocations(RevocationView::seq);
    let accepted = accept(env, config, &jws, keys::Asker::SignedList).await;
    match &accepted {
        Err(SyncError::Snapshot(SnapshotError::Stale { seq, held })) => {
            state::record_issuer_seq(*seq, Some(*held));
        }
        Ok((_, seq)) => state::record_issuer_seq(*seq, Some(held)),
        Err(_) => {}
    }
    match accepted {
        Ok((view, _)) => Ok(view),
        // Nothing new is not a failure of the pull.
        Err(SyncError::Snapshot(SnapshotError::Stale { .. })) => Ok(state::revocations()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_shared::{RevocationDelta, RevocationList, RevocationView};

    use super::fast_path_covers;

    /// A base at seq 5 issued at `base_at`, and a delta over it issued at `delta_at`.
    fn view(base_at: i64, delta_at: i64) -> RevocationView {
        let base = RevocationList::builder("https://issuer.test", 5, base_at).build();
        let delta = RevocationList::builder("https://issuer.test", 6, delta_at).build();
        RevocationView::default()
            .with_base(base)
            .and_then(|v| v.with_delta(RevocationDelta::new(5, delta)))
            .expect("a view")
    }

    #[test]
    fn the_fast_path_is_judged_by_when_the_feed_answered_not_by_the_issuers_clock() {
        let now = 1_000_000;
        // An issuer whose clock runs 20 s behind (inside the 30 s allowed): its deltas look
        // 20 s old here, and the feed that answered 0.5 s ago keeps the view whole. Before,
        // every such delta looked stale, and every isolate read KV every KV_REFRESH_SECS.
        assert!(fast_path_covers(&view(now - 100, now - 20), now, 500.0));
        // A feed that has not answered for over 10 s has stopped, whatever the delta says.
        assert!(!fast_path_covers(&view(now - 100, now), now, 10_001.0));
        // A delta issued longer ago than the feed's 10 s plus the 30 s of skew allowed.
        assert!(!fast_path_covers(&view(now - 100, now - 41), now, 500.0));
        // A base too old to keep (BASE_MAX_AGE_SECS), and a view with no delta.
        assert!(!fast_path_covers(&view(now - 300, now), now, 500.0));
        let base_only = RevocationView::default()
            .with_base(RevocationList::builder("https://issuer.test", 5, now).build())
            .expect("a view");
        assert!(!fast_path_covers(&base_only, now, 500.0));
    }
}
