//! Periodic upkeep: cleanup in bounded batches, key-ring refresh (rotations by the CLI or other
//! replicas, retired keys leaving JWKS), and rate-limiter pruning.

use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::AdHoc;

use crate::clock::Clock;
use crate::config::{Config, MAX_REFRESH_GRACE_SECS};
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimit;
use crate::revoker::Revoker;
use crate::store::{audit, failure_budget, lockout, revocations, sessions};

/// Ended sessions are kept this long before deletion, for an operator to look up beside the
/// audit rows that name them. A token of an ended session is refused either way, and a late
/// presentation of one is not audited as reuse (the session's end is what refuses it).
const SESSION_RETENTION_SECS: i64 = 24 * 3600;

/// How long a rotated refresh token keeps its nonce: past the longest grace window any replica
/// may have (replicas may disagree on `refresh_grace_secs`), and a minute more, as the window is
/// judged on the database's clock and the cleanup on this replica's, which may be off from it.
pub const NONCE_KEPT_SECS: i64 = MAX_REFRESH_GRACE_SECS as i64 + 60;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    pub sessions: usize,
    pub revocations: usize,
    /// Lockout rows and paid-off failure budgets (`store::failure_budget`).
    pub lockouts: usize,
    /// Audit rows past `audit_retention_days` (none while it is 0).
    pub audit_events: usize,
    /// Rotated refresh tokens whose nonce was forgotten (`sessions::forget_nonces`).
    pub nonces: usize,
}

impl CleanupReport {
    pub const fn total(&self) -> usize {
        self.sessions + self.revocations + self.lockouts + self.audit_events + self.nonces
    }
}

/// What a cleanup deletes: everything due, or only what expired by its own times, ended
/// sessions and expired revocation entries (the CLI's). Which lockout rows are stale and which
/// audit rows are old enough is for the replicas' settings to say (`lockout.*`,
/// `audit_retention_days`): a shell without them would judge by the defaults, forgetting counts
/// and lock histories the replicas keep, or audit rows they keep longer. Nonces are forgotten
/// by the replicas too, as their cleanup runs every minute anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    ExpiredOnly,
}

/// One batch of each kind. Call again while it returns a full batch.
pub fn cleanup_batch(
    conn: &mut DbConn,
    config: &Config,
    now: i64,
    scope: Scope,
) -> Result<CleanupReport, ApiError> {
    let batch = i64::from(config.cleanup_batch.max(1));
    let sessions = sessions::delete_ended(conn, now - SESSION_RETENTION_SECS, batch)?;
    let revocations = revocations::delete_expired(conn, now, batch)?;
    let (lockouts, audit_events, nonces) = match scope {
        Scope::Everything => (
            lockout::delete_stale(conn, now, &config.lockout, batch)?
                + failure_budget::delete_paid_off(conn, now.saturating_mul(1000), batch)?,
            match config.audit_retention_days {
                0 => 0,
                days => audit::delete_before(conn, now - i64::from(days) * 24 * 3600, batch)?,
            },
            sessions::forget_nonces(conn, now - NONCE_KEPT_SECS, batch)?,
        ),
        Scope::ExpiredOnly => (0, 0, 0),
    };
    Ok(CleanupReport {
        sessions,
        revocations,
        lockouts,
        audit_events,
        nonces,
    })
}

/// Runs batches until everything due is gone, yielding between batches so the service never
/// stalls behind cleanup.
pub async fn cleanup(db: &Db, config: &Config, now: i64) -> Result<CleanupReport, ApiError> {
    cleanup_until(db, config, now, None, Scope::Everything).await
}

/// [`cleanup`] of what expired only: `gatehouse-issuer cleanup`, in a shell that may not have
/// the replicas' settings ([`Scope::ExpiredOnly`]). Judged at the earlier of
/// `clock`'s time and the database's: the command runs on any machine (a laptop, a CI job),
/// and one whose clock runs ahead would delete revocation entries a verifier still needs.
pub async fn cleanup_from_a_shell(
    db: &Db,
    config: &Config,
    clock: &Clock,
) -> Result<CleanupReport, ApiError> {
    let now = clock.now();
    let now = now.min(clock.on_database_clock(db, now).await);
    cleanup_until(db, config, now, None, Scope::ExpiredOnly).await
}

/// [`cleanup`], stopping after the batch that ends past `deadline`; the rest is left for the
/// next call.
async fn cleanup_until(
    db: &Db,
    config: &Config,
    now: i64,
    deadline: Option<tokio::time::Instant>,
    scope: Scope,
) -> Result<CleanupReport, ApiError> {
    let mut total = CleanupReport::default();
    let full = usize::try_from(config.cleanup_batch.max(1)).unwrap_or(usize::MAX);
    loop {
        let cfg = config.clone();
        let report = db
            .run(move |conn| cleanup_batch(conn, &cfg, now, scope))
            .await?;
        total.sessions += report.sessions;
        total.revocations += report.revocations;
        total.lockouts += report.lockouts;
        total.audit_events += report.audit_events;
        total.nonces += report.nonces;
        let done = [
            report.sessions,
            report.revocations,
            report.lockouts,
            report.audit_events,
            report.nonces,
        ]
        .iter()
        .all(|&n| n < full);
        if done || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

async fn tick(
    period: Duration,
    db: &Db,
    config: &Config,
    clock: &Clock,
    keys: &Arc<KeyRing>,
    revoker: &Revoker,
    metrics: &Metrics,
) {
    let now = clock.now();
    // The ring and the lifetime announcement first, each on the time it is done at: a retired
    // key's grace counts on every replica re-reading the ring each period, and revocations on
    // the announcement never lapsing while this replica issues tokens. A long cleanup (a
    // backlog of expired rows) must delay neither, so it stops at half the period and goes on
    // at the next tick; run to its end, it held the next ticks back, and the announcement
    // lapsed after three periods.
    let cleanup_deadline = tokio::time::Instant::now() + period / 2;
    let ring = Arc::clone(keys);
    if let Err(e) = db.run(move |conn| ring.refresh(conn, now)).await {
        tracing::warn!(error = %e, "key refresh failed");
        metrics.task_failed("key_refresh");
    }
    if let Err(e) = revoker.announce_lifetime(clock.now()).await {
        tracing::warn!(error = %e, "announcing the access-token lifetime failed");
        metrics.task_failed("lifetime_announcement");
    }
    match cleanup_until(db, config, now, Some(cleanup_deadline), Scope::Everything).await {
        Ok(report) if report.total() > 0 => tracing::info!(?report, "cleanup"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cleanup failed");
            metrics.task_failed("cleanup");
        }
    }
}

pub fn stage() -> AdHoc {
    AdHoc::on_liftoff("Maintenance", |rocket| {
        Box::pin(async move {
            let (
                Some(config),
                Some(db),
                Some(clock),
                Some(keys),
                Some(revoker),
                Some(limiter),
                Some(metrics),
            ) = (
                rocket.state::<Config>(),
                rocket.state::<Db>(),
                rocket.state::<Arc<Clock>>(),
                rocket.state::<Arc<KeyRing>>(),
                rocket.state::<Revoker>(),
                rocket.state::<Arc<RateLimit>>(),
                rocket.state::<Arc<Metrics>>(),
            )
            else {
                tracing::error!("maintenance is missing its state; cleanup is off");
                return;
            };
            let (config, db, clock, keys, revoker, limiter, metrics) = (
                config.clone(),
                db.clone(),
                Arc::clone(clock),
                Arc::clone(keys),
                revoker.clone(),
                Arc::clone(limiter),
                Arc::clone(metrics),
            );
            let period = Duration::from_secs(u64::from(config.cleanup_interval_secs.max(1)));
            tokio::spawn(async move {
                // The first tick one period after start, not at once: the ring was just
                // loaded at ignite, and a refresh racing the first requests (a revocation
                // right after start, say) would only make their outcome depend on timing.
                let start = tokio::time::Instant::now() + period;
                let mut interval = tokio::time::interval_at(start, period);
                loop {
                    interval.tick().await;
                    tick(period, &db, &config, &clock, &keys, &revoker, &metrics).await;
                    limiter.prune();
                }
            });
        })
    })
}
