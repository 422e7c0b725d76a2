//! Pushing the snapshot to each edge sync URL: a builder that coalesces a burst of revocations
//! into one snapshot, a delivery task per URL that retries with backoff and yields to a newer
//! snapshot, what an edge's refusal says, and the wait at a stop for the last pushes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::Snapshots;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::revocations;

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
pub(super) const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping replica waits for the last revocations' pushes (`Snapshots::flush`): the
/// push spacing, a build and a quick attempt of each; an edge slower than that is not waited
/// for.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(6);
/// The longest `Retry-After` a push waits for, the edge's own: a push's tries then still end
/// within 45 s of the first (five 5 s timeouts or busy answers, four waits of at most 5 s),
/// which the edge's rule for a list with nothing to compare it with (60 s) relies on.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Snapshots {
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
                    tracing::info!(%url, %code, attempt, "snapshot push rejected");
                    rejected = !matches!(code.as_str(), "unknown_kid" | "not_yet_valid");
                }
                Ok(resp) => {
                    let status = resp.status();
                    // A busy edge (`push_busy`) says when to come back; sooner fails again. A
                    // refused KV write (`kv_write_failed`) is most often KV's per-key limit: a
                    // retry within its interval is refused again.
                    wait = wait.max(least_wait(resp).await);
                    tracing::info!(%url, %status, attempt, "snapshot push refused");
                }
                Err(e) => {
                    tracing::info!(%url, error = %e, attempt, "snapshot push failed");
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
        // The one line to alert on: the attempts above are logged at info, as a later one may
        // land (a list refused for good, a redirect or one too large, warns as it happens).
        tracing::error!(
            %url,
            "snapshot push given up: the edge learns of this list through its delta feed or \
             its cron (`gatehouse-issuer revocations push` sends it again)"
        );
        Push::Failed
    }

    /// Builds the snapshot after each burst of revocations and hands it to the URLs' delivery
    /// tasks, without waiting for any of them.
    pub(super) async fn run_builder(
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
    pub(super) async fn deliver(
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
