//! The signed revocation snapshot: built from the database, cached while nothing changes, served
//! at `GET /v1/revocations` and pushed, coalesced, to each edge sync URL by its own task
//! (`push`). Beside it, the signed delta (`GET /v1/revocations/delta`), the edge's fast path:
//! rebuilt when a revocation lands and re-signed at most once a second otherwise, so every
//! location that polls it learns a revocation within about a second.

mod push;

pub use push::{FLUSH_LIMIT, Push, database_behind};

use std::sync::atomic::AtomicU64;
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
    snapshot: ListSlot,
    delta: ListSlot,
    changed: Notify,
    /// The newest snapshot to push, and the revocations committed here that it carries (the
    /// `generation` read before it was built); each edge URL's delivery task watches it.
    latest: watch::Sender<Option<(Arc<str>, u64)>>,
    /// Each delivery task's progress: the generation of the last snapshot whose push ended
    /// (taken, held already, or given up), for [`Self::flush`].
    delivered: std::sync::Mutex<Vec<Arc<AtomicU64>>>,
    client: reqwest::Client,
}

/// One kind of signed list: the last one built, and its size and seq in `/metrics`.
struct ListSlot {
    cache: Mutex<Option<Cached>>,
    bytes: Gauge,
    seq: Gauge,
}

impl ListSlot {
    fn new(metrics: &Metrics, list: &'static str) -> Self {
        let (bytes, seq) = metrics.list_gauges_of(list);
        Self {
            cache: Mutex::new(None),
            bytes,
            seq,
        }
    }
}

impl Snapshots {
    pub fn new(metrics: &Metrics) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .timeout(push::PUSH_TIMEOUT)
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
            snapshot: ListSlot::new(metrics, "snapshot"),
            delta: ListSlot::new(metrics, "delta"),
            changed: Notify::new(),
            latest: watch::Sender::new(None),
            delivered: std::sync::Mutex::default(),
            client,
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
        let (slot, seq) = (&self.snapshot, self.high_water(db).await?);
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
        let (slot, seq) = (&self.delta, self.high_water(db).await?);
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
    /// signed as of the time it is given) replaces it, and its size and seq are recorded.
    async fn signed(
        slot: &ListSlot,
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
        let mut cache = slot.cache.lock().await;
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
        slot.bytes.set(i64::try_from(jws.len()).unwrap_or(i64::MAX));
        let built_seq = i64::try_from(built_seq).unwrap_or(seq);
        slot.seq.set(built_seq);
        *cache = Some(Cached {
            seq: built_seq,
            built_at: at,
            kid: signer.signer.kid().to_owned(),
            jws: Arc::clone(&jws),
        });
        Ok(jws)
    }
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
