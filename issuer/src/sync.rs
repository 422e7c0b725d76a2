//! The signed revocation snapshot: built from the database, cached while nothing changes, served
//! at `GET /v1/revocations` and pushed, coalesced, to each edge sync URL by its own task. Beside it, the
//! signed delta (`GET /v1/revocations/delta`), the edge's fast path: rebuilt when a revocation
//! lands and re-signed at most once a second otherwise, so every location that polls it learns a
//! revocation within about a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use gatehouse_shared::SigningKey;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rocket::fairing::AdHoc;
use tokio::sync::{Mutex, Notify, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::revocations;

/// A cached snapshot is re-signed after this long even when nothing changed, so its issue time
/// (which the edge uses to judge staleness) stays fresh.
const MAX_CACHE_AGE_SECS: i64 = 15;
/// A burst of revocations within this window becomes one push.
const COALESCE: Duration = Duration::from_millis(25);
/// KV takes one write a second per key (Cloudflare's documented limit, which the simulation
/// enforces). Each push is a write of the same KV keys at the edge: a faster one is refused,
/// answered 503 `kv_write_failed` and retried, each retry another upload.
const KV_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// One replica's pushes start at least this far apart: KV's interval, and a margin for the
/// time between this build and the edge's write, which varies (pushes a second apart here
/// reached KV 998 ms apart in the simulation, and were refused). What changed meanwhile goes in
/// the next push.
const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(1200);
const PUSH_ATTEMPTS: u32 = 5;
/// Tries of a snapshot build that failed (the database past its deadline, say), per burst of
/// revocations.
const BUILD_ATTEMPTS: u32 = 5;
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping replica waits for the last revocations' pushes (`Snapshots::flush`): the
/// push spacing, a build and a quick attempt of each; an edge slower than that is not waited
/// for.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(6);
/// The longest `Retry-After` a push waits for, the edge's own: a push's tries then still end
/// within 45 s of the first (five 5 s timeouts or busy answers, four waits of at most 5 s),
/// which the edge's rule for a list with nothing to compare it with (60 s) relies on.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long one read of the newest revocation's seq serves the lists' requests. Anyone may ask
/// for the lists, unauthenticated: each request took a pool permit for that read, which logins
/// and revocations need. A revocation committed here is seen at once (`changed`); another
/// replica's, up to this much later.
const SEQ_READ_TTL: Duration = Duration::from_millis(100);

struct Cached {
    seq: i64,
    built_at: i64,
    kid: String,
    jws: Arc<str>,
}

/// The newest revocation's seq as last read, and when that read began; `generation` counts the
/// revocations committed here, so a read that overlapped one is not kept.
#[derive(Default)]
struct SeqRead {
    generation: u64,
    read: Option<(tokio::time::Instant, i64)>,
    /// Reads that failed: a request that waited for one does not try again in turn (each try
    /// may take `db_timeout_ms`, and the waiters would queue behind each other).
    failed: u64,
}

pub struct Snapshots {
    seq: std::sync::Mutex<SeqRead>,
    /// Held by the one request reading the seq: the others wait for its read.
    seq_reader: Mutex<()>,
    /// Reads of the newest revocation's seq (`SEQ_READ_TTL`).
    seq_reads: Counter,
    cache: Mutex<Option<Cached>>,
    delta: Mutex<Option<Cached>>,
    changed: Notify,
    /// The newest snapshot to push, and the revocations committed here that it carries (the
    /// `generation` read before it was built); each edge URL's delivery task watches it.
    latest: watch::Sender<Option<(Arc<str>, u64)>>,
    /// Each delivery task's progress: the generation of the last snapshot whose push ended
    /// (taken, held already, or given up), for [`Self::flush`].
    delivered: std::sync::Mutex<Vec<Arc<AtomicU64>>>,
    client: reqwest::Client,
    /// The size of the last snapshot and delta built (`Metrics::list_bytes`).
    snapshot_bytes: Gauge,
    delta_bytes: Gauge,
}

impl Snapshots {
    pub fn new(metrics: &Metrics) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            // Cloudflare's Browser Integrity Check challenges a request without one, before the
            // worker sees it (so its documentation reads; not tested against Cloudflare).
            .user_agent(concat!("gatehouse-issuer/", env!("CARGO_PKG_VERSION")))
            // Only the worker's own answer counts: a redirect followed would take a 2xx from
            // wherever it leads (an origin, another host) for a delivered list, and turn the
            // POST into a GET on a 301 or 302.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Internal(format!("http client: {e}")))?;
        Ok(Self {
            seq: std::sync::Mutex::default(),
            seq_reader: Mutex::new(()),
            seq_reads: metrics.revocation_seq_reads.clone(),
            cache: Mutex::new(None),
            delta: Mutex::new(None),
            changed: Notify::new(),
            latest: watch::Sender::new(None),
            delivered: std::sync::Mutex::default(),
            client,
            snapshot_bytes: metrics.list_bytes_of("snapshot"),
            delta_bytes: metrics.list_bytes_of("delta"),
        })
    }

    /// Signals that a revocation was committed: the lists' next request reads the seq again, and
    /// the pusher wakes (once per burst).
    pub fn changed(&self) {
        let mut held = self.seq_read();
        held.generation += 1;
        held.read = None;
        drop(held);
        self.changed.notify_one();
    }

    fn delivered_guard(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AtomicU64>>> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// At a stop, once the server no longer answers: waits, at most `limit`, until every edge's
    /// push has ended (taken, held already, or given up) on a snapshot carrying each revocation
    /// committed here, including one a request still running commits meanwhile. The tasks die
    /// with the process, and a revocation made in the last second before the stop would
    /// otherwise reach an edge without the delta feed only at its cron.
    pub async fn flush(&self, limit: Duration) {
        // A builder that gave up (the database down a while ago) waits for a revocation that may
        // never come: it tries once more now.
        let published = self.latest.borrow().as_ref().map_or(0, |(_, g)| *g);
        if published < self.seq_read().generation {
            self.changed.notify_one();
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let target = self.seq_read().generation;
            let behind = self
                .delivered_guard()
                .iter()
                .filter(|done| done.load(Ordering::Acquire) < target)
                .count();
            if behind == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    edges = behind,
                    "stopping before the last revocations' snapshot reached every edge: they get \
                     it through their delta feed or cron"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The newest revocation's seq: as read within `SEQ_READ_TTL`, unless a revocation was
    /// committed here since; else read from the database by one request, which the others
    /// arriving meanwhile wait for.
    async fn high_water(&self, db: &Db) -> Result<i64, ApiError> {
        if let Some(seq) = self.recent_seq() {
            return Ok(seq);
        }
        let failed_before = self.seq_read().failed;
        let _reader = self.seq_reader.lock().await;
        if let Some(seq) = self.recent_seq() {
            return Ok(seq);
        }
        let generation = {
            let held = self.seq_read();
            if held.failed != failed_before {
                return Err(ApiError::unavailable("database unavailable"));
            }
            held.generation
        };
        self.seq_reads.inc();
        // Timed from when the read starts, not from a wait for a pool permit.
        let read = db
            .run(|conn| Ok((tokio::time::Instant::now(), revocations::high_water(conn)?)))
            .await;
        let mut held = self.seq_read();
        let (began, seq) = read.inspect_err(|_| held.failed += 1)?;
        if held.generation == generation {
            held.read = Some((began, seq));
        }
        Ok(seq)
    }

    fn recent_seq(&self) -> Option<i64> {
        let held = self.seq_read();
        let (began, seq) = held.read?;
        (began.elapsed() < SEQ_READ_TTL).then_some(seq)
    }

    fn seq_read(&self) -> std::sync::MutexGuard<'_, SeqRead> {
        self.seq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current signed snapshot: rebuilt when a revocation landed, the key changed or it is
    /// `MAX_CACHE_AGE_SECS` old.
    pub async fn current(
        &self,
        db: &Db,
        keys: &Arc<KeyRing>,
        config: &Config,
        now: i64,
    ) -> Result<Arc<str>, ApiError> {
        let issuer = config.issuer.clone();
        let fresh = |c: &Cached| now - c.built_at < MAX_CACHE_AGE_SECS;
        let slot = (&self.cache, &self.snapshot_bytes);
        let seq = self.high_water(db).await?;
        Self::signed(slot, seq, db, keys, now, fresh, move |conn, key, at| {
            let list = revocations::live_list(conn, &issuer, at)?;
            let jws = list
                .sign_snapshot(key)
                .map_err(|e| ApiError::Internal(format!("signing the snapshot: {e}")))?;
            Ok((list.seq(), jws))
        })
        .await
    }

    /// The current signed delta: rebuilt when a revocation landed, the key changed or the
    /// second did.
    pub async fn current_delta(
        &self,
        db: &Db,
        keys: &Arc<KeyRing>,
        config: &Config,
        now: i64,
    ) -> Result<Arc<str>, ApiError> {
        let issuer = config.issuer.clone();
        let window = i64::from(config.delta_window_secs);
        // `>=`: a delta stamped a second ahead (below) serves its own second too.
        let fresh = |c: &Cached| c.built_at >= now;
        let slot = (&self.delta, &self.delta_bytes);
        let seq = self.high_water(db).await?;
        Self::signed(slot, seq, db, keys, now, fresh, move |conn, key, at| {
            let delta = revocations::delta(conn, &issuer, at, window)?;
            let jws = delta
                .sign(key)
                .map_err(|e| ApiError::Internal(format!("signing the delta: {e}")))?;
            Ok((delta.list().seq(), jws))
        })
        .await
    }

    /// The document in `slot` while the newest revocation's `seq` and the signing key are
    /// unchanged and `fresh` holds; else `build` (list and signature, on a database connection,
    /// signed as of the time it is given) replaces it, and its size is recorded in `bytes`.
    async fn signed(
        (slot, bytes): (&Mutex<Option<Cached>>, &Gauge),
        seq: i64,
        db: &Db,
        keys: &Arc<KeyRing>,
        now: i64,
        fresh: impl Fn(&Cached) -> bool,
        build: impl FnOnce(&mut DbConn, &SigningKey, i64) -> Result<(u64, String), ApiError>
        + Send
        + 'static,
    ) -> Result<Arc<str>, ApiError> {
        // The same rule as tokens: no list signed with a ring too old to sign with.
        let signer = keys.for_signing(db, now).await?;
        let mut cache = slot.lock().await;
        // `>=`: a list built after another replica's revocation holds more than a seq read
        // just before it says.
        if let Some(c) = cache.as_ref()
            && c.seq >= seq
            && c.kid == signer.signer.kid()
            && fresh(c)
        {
            return Ok(Arc::clone(&c.jws));
        }
        // Re-signed by a new key in the second the held one was signed, the list would carry the
        // same (seq, issued_at), which an edge holding the old one refuses as not newer (409):
        // it is signed a second later instead. Only this replica's own last list is known here:
        // another replica signing in that second with the new key still ties (the edge then
        // keeps the same list signed by the old key, which is still published).
        let at = match cache.as_ref() {
            Some(c) if c.seq >= seq && c.kid != signer.signer.kid() && c.built_at >= now => {
                c.built_at + 1
            }
            _ => now,
        };
        let key = Arc::clone(&signer);
        let (built_seq, jws) = db.run(move |conn| build(conn, &key.signer, at)).await?;
        let jws: Arc<str> = jws.into();
        bytes.set(i64::try_from(jws.len()).unwrap_or(i64::MAX));
        *cache = Some(Cached {
            seq: i64::try_from(built_seq).unwrap_or(seq),
            built_at: at,
            kid: signer.signer.kid().to_owned(),
            jws: Arc::clone(&jws),
        });
        Ok(jws)
    }

    /// Pushes `jws` to `url`, retrying with exponential backoff. A wait between attempts ends
    /// early when `newer` resolves: a newer document is due, and retrying this one is moot.
    /// `last_sent` is when the last attempt was sent.
    pub async fn push(
        &self,
        url: &str,
        jws: &str,
        metrics: &Metrics,
        newer: impl Future<Output = ()>,
        last_sent: &mut Option<tokio::time::Instant>,
    ) -> Push {
        let mut newer = std::pin::pin!(newer);
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=PUSH_ATTEMPTS {
            let mut wait = delay;
            let mut rejected = false;
            *last_sent = Some(tokio::time::Instant::now());
            let sent = self
                .client
                .post(url)
                .header("Content-Type", "application/jwt")
                .body(jws.to_owned())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    metrics.pushes_ok.inc();
                    return Push::Landed;
                }
                // The edge already holds something newer: nothing to retry.
                Ok(resp) if resp.status().as_u16() == 409 => {
                    metrics.pushes_already_held.inc();
                    return Push::EdgeHolds(held_seq(resp).await);
                }
                // A list the edge rejected for what it is (too old to take without one to
                // compare with, malformed, a bad signature) is rejected again as sent: the next
                // list, or the edges' own pull, brings it. A kid the edge could not fetch yet,
                // or a list from a clock ahead of its own, may pass a moment later.
                // The same answer however often it is sent: a URL that redirects (give the
                // final one), or a list over the edge's limit.
                Ok(resp) if resp.status().is_redirection() || resp.status().as_u16() == 413 => {
                    let status = resp.status();
                    let location = resp.headers().get("location").cloned();
                    tracing::warn!(%url, %status, ?location, "snapshot push refused for good");
                    rejected = true;
                }
                Ok(resp) if resp.status().as_u16() == 400 => {
                    let code = error_code(resp).await.unwrap_or_default();
                    tracing::warn!(%url, %code, attempt, "snapshot push rejected");
                    rejected = !matches!(code.as_str(), "unknown_kid" | "not_yet_valid");
                }
                Ok(resp) => {
                    let status = resp.status();
                    // A busy edge (`push_busy`) says when to come back; sooner fails again. A
                    // refused KV write (`kv_write_failed`) is most often KV's per-key limit: a
                    // retry within its interval is refused again.
                    wait = wait.max(least_wait(resp).await);
                    tracing::warn!(%url, %status, attempt, "snapshot push refused");
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, attempt, "snapshot push failed");
                }
            }
            metrics.push_attempts_failed.inc();
            if rejected {
                break;
            }
            if attempt < PUSH_ATTEMPTS {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut newer => return Push::Superseded,
                }
                delay *= 2;
            }
        }
        metrics.pushes_failed.inc();
        Push::Failed
    }

    /// Builds the snapshot after each burst of revocations and hands it to the URLs' delivery
    /// tasks, without waiting for any of them.
    async fn run_builder(
        self: Arc<Self>,
        db: Db,
        keys: Arc<KeyRing>,
        config: Config,
        clock: Arc<Clock>,
    ) {
        let mut last_build: Option<tokio::time::Instant> = None;
        let mut failed_builds = 0;
        loop {
            self.changed.notified().await;
            tokio::time::sleep(COALESCE).await;
            if let Some(last) = last_build {
                tokio::time::sleep_until(last + MIN_PUSH_INTERVAL).await;
            }
            last_build = Some(tokio::time::Instant::now());
            let generation = self.seq_read().generation;
            match self.current(&db, &keys, &config, clock.now()).await {
                Ok(jws) => {
                    failed_builds = 0;
                    self.latest.send_replace(Some((jws, generation)));
                }
                Err(e) => {
                    failed_builds += 1;
                    tracing::warn!(error = %e, failed_builds, "cannot build the snapshot to push");
                    // Built again (at least a second after this try began, as builds are
                    // spaced), a few times: else the revocations that asked for it reach the
                    // edge only through its delta feed or its cron pull. A push that then
                    // fails is retried on its own.
                    if failed_builds < BUILD_ATTEMPTS {
                        self.changed.notify_one();
                    } else {
                        failed_builds = 0;
                    }
                }
            }
        }
    }

    /// One edge's delivery: the newest snapshot, retried until it lands or a newer one replaces
    /// it. One task per URL, so a dead or hung edge delays no push to the others, this one's or
    /// the next. What a push misses, the edge's cron pull repairs.
    async fn deliver(
        self: Arc<Self>,
        db: Db,
        url: String,
        mut latest: watch::Receiver<Option<(Arc<str>, u64)>>,
        metrics: Arc<Metrics>,
    ) {
        let done = Arc::new(AtomicU64::new(0));
        self.delivered_guard().push(Arc::clone(&done));
        let mut last_sent = None;
        while latest.changed().await.is_ok() {
            loop {
                // Builds are spaced, but a push retried late (after a refused KV write, say)
                // would otherwise be followed at once by the next, whose write KV refuses too.
                if let Some(sent) = last_sent {
                    tokio::time::sleep_until(sent + MIN_PUSH_INTERVAL).await;
                }
                let Some((jws, generation)) = latest.borrow_and_update().clone() else {
                    break;
                };
                let newer = async {
                    // The sender lives as long as `self`: an error cannot happen while we run.
                    let _ = latest.changed().await;
                };
                match self.push(&url, &jws, &metrics, newer, &mut last_sent).await {
                    Push::Superseded => continue,
                    Push::EdgeHolds(Some(held)) => {
                        edge_ahead_of_database(&db, &url, held, &metrics).await;
                    }
                    _ => {}
                }
                done.store(generation, Ordering::Release);
                break;
            }
        }
    }
}

/// The least an edge's 503 asks the retry to wait: a busy edge's `Retry-After` (at most
/// `MAX_RETRY_AFTER`; on other answers that header is for clients), KV's write interval after a
/// refused KV write, nothing otherwise.
async fn least_wait(resp: reqwest::Response) -> Duration {
    if resp.status().as_u16() != 503 {
        return Duration::ZERO;
    }
    let asked = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    match (error_code(resp).await.as_deref(), asked) {
        (Some("push_busy"), Some(asked)) => asked.min(MAX_RETRY_AFTER),
        (Some("kv_write_failed"), _) => KV_WRITE_INTERVAL,
        _ => Duration::ZERO,
    }
}

/// The stable `code` of an edge's refusal.
async fn error_code(resp: reqwest::Response) -> Option<String> {
    let body = resp.bytes().await.ok()?;
    let json = serde_json::from_slice::<serde_json::Value>(&body).ok()?;
    Some(json.get("code")?.as_str()?.to_owned())
}

/// The `held_seq` of an edge's 409: the seq of the list it holds.
async fn held_seq(resp: reqwest::Response) -> Option<u64> {
    let body = resp.bytes().await.ok()?;
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()?
        .get("held_seq")?
        .as_u64()
}

/// An edge holding a list newer than anything in this database means the database went back
/// (a restore from backup), or the edge follows another issuer: either way it refuses every list
/// signed here, new revocations included, until the seq passes it. Nothing here can repair that
/// safely (the 409 is not signed), so callers report it, for an operator (deploy.md, "Restoring
/// the issuer's database"). A race with another replica's newer push is told apart by reading the
/// database's high-water seq after the refusal. Returns that seq when the edge is ahead of it.
pub async fn database_behind(db: &Db, held: u64) -> Result<Option<i64>, ApiError> {
    let high_water = db.run(revocations::high_water).await?;
    Ok(u64::try_from(high_water)
        .is_ok_and(|ours| held > ours)
        .then_some(high_water))
}

async fn edge_ahead_of_database(db: &Db, url: &str, held: u64, metrics: &Metrics) {
    match database_behind(db, held).await {
        Ok(Some(database_seq)) => {
            metrics.pushes_behind_edge.inc();
            tracing::error!(
                %url,
                edge_seq = held,
                database_seq,
                "an edge holds a revocation list newer than this database: it refuses every \
                 list signed here until the seq passes it (was the database restored? see \
                 deploy.md)"
            );
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(%url, error = %e, "cannot compare the edge's seq with the database's");
        }
    }
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The edge took it.
    Landed,
    /// The edge already holds a list as new or newer (409), with its seq when the edge said.
    EdgeHolds(Option<u64>),
    /// Every attempt failed.
    Failed,
    /// A newer document arrived between attempts.
    Superseded,
}

/// The snapshot cache at ignite; the pusher at liftoff (only with edge sync URLs).
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Revocation sync", |rocket| async {
        let metrics = rocket
            .state::<Arc<Metrics>>()
            .map(Arc::clone)
            .unwrap_or_default();
        match Snapshots::new(&metrics) {
            Ok(s) => rocket.manage(Arc::new(s)).attach(AdHoc::on_liftoff("Snapshot pusher", |rocket| {
                Box::pin(async move {
                    let (Some(config), Some(snapshots), Some(db), Some(keys), Some(clock), Some(metrics)) = (
                        rocket.state::<Config>(),
                        rocket.state::<Arc<Snapshots>>(),
                        rocket.state::<Db>(),
                        rocket.state::<Arc<KeyRing>>(),
                        rocket.state::<Arc<Clock>>(),
                        rocket.state::<Arc<Metrics>>(),
                    ) else {
                        tracing::error!("snapshot pusher is missing its state; pushes are off");
                        return;
                    };
                    if config.edge_sync_urls.is_empty() {
                        tracing::info!("no GATEHOUSE_EDGE_SYNC_URLS: snapshots are served, not pushed");
                        return;
                    }
                    tracing::info!(urls = ?config.edge_sync_urls, "pushing revocation snapshots");
                    for url in &config.edge_sync_urls {
                        let latest = snapshots.latest.subscribe();
                        tokio::spawn(Arc::clone(snapshots).deliver(
                            db.clone(),
                            url.clone(),
                            latest,
                            Arc::clone(metrics),
                        ));
                    }
                    tokio::spawn(Arc::clone(snapshots).run_builder(
                        db.clone(),
                        Arc::clone(keys),
                        config.clone(),
                        Arc::clone(clock),
                    ));
                })
            })),
            Err(e) => {
                tracing::error!(error = %e, "revocation sync disabled");
                rocket
            }
        }
    })
}
