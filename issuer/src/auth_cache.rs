//! What the bearer check needs from the database, held in memory: the live revocations and the
//! users' state. Asking the database twice per request capped `GET /v1/me` at about 6k req/s.
//!
//! Freshness: the view is re-read (incrementally, by `seq`) when it is older than
//! `auth_cache_ms`, so another replica's revocation applies here within that bound, like the
//! edge's push delay. A revocation committed by this process invalidates the view at once, so it
//! applies to the very next request. `auth_cache_ms = 0` asks the database on every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use gatehouse_shared::AccessClaims;
use rocket::fairing::AdHoc;

use crate::config::Config;
use crate::db::schema::revocations;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::store::users::{self, User};
use gatehouse_shared::{RevocationKind, entry_revokes};

/// Rows re-read below the highest `seq` seen: a transaction that took its `seq` before another
/// but committed after it is still picked up.
const SEQ_LOOKBACK: i64 = 1024;
/// Expired entries are dropped from memory this often.
const PRUNE_EVERY: Duration = Duration::from_mins(1);

#[derive(Default)]
struct View {
    /// Live entries by kind and subject: (`issued_before`, `expires_at`), merged as the shared
    /// list merges them (see `gatehouse_shared::entry_revokes`).
    /// Keyed by kind first, so a lookup borrows the claim instead of copying it.
    entries: HashMap<RevocationKind, HashMap<String, (i64, i64)>>,
    max_seq: i64,
    users: HashMap<String, (User, Instant)>,
    /// The invalidation generation this view was read at.
    generation: u64,
    read_at: Option<Instant>,
    pruned_at: Option<Instant>,
}

pub struct AuthCache {
    ttl: Duration,
    view: RwLock<View>,
    /// Bumped by every local revocation; a view read before the bump is stale.
    generation: std::sync::atomic::AtomicU64,
    /// One refresh at a time; concurrent requests wait for it instead of repeating it. Holds
    /// when the last refresh failed, so that its waiters fail with it instead of each retrying
    /// in turn (with the database away, one after another would each wait out the pool).
    refreshing: tokio::sync::Mutex<Option<Instant>>,
}

/// The bearer check's answer.
pub enum Standing {
    Revoked,
    /// An existing, enabled user.
    Active(User),
    /// Unknown or disabled.
    NoUser,
}

impl AuthCache {
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl: Duration::from_millis(ttl_ms),
            view: RwLock::new(View::default()),
            generation: std::sync::atomic::AtomicU64::new(1),
            refreshing: tokio::sync::Mutex::new(None),
        }
    }

    /// Called after this process commits a revocation or changes a user.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn current_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn is_fresh(&self, view: &View) -> bool {
        view.generation == self.current_generation()
            && view.read_at.is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Whether `claims` are revoked, and the state of their user.
    pub async fn standing(
        &self,
        db: &Db,
        claims: &AccessClaims,
        now: i64,
    ) -> Result<Standing, ApiError> {
        if self.ttl.is_zero() {
            let claims = claims.clone();
            return db.run(move |c| standing_from_db(c, &claims, now)).await;
        }
        self.refresh_if_stale(db, now).await?;
        let cached_user = {
            let view = self.view.read().map_err(poisoned)?;
            if view.is_revoked(claims, now) {
                return Ok(Standing::Revoked);
            }
            view.users
                .get(&claims.sub)
                .filter(|(_, at)| at.elapsed() < self.ttl)
                .map(|(user, _)| user.clone())
        };
        let user = if let Some(user) = cached_user {
            Some(user)
        } else {
            let sub = claims.sub.clone();
            let found = db.run(move |c| users::by_id(c, &sub)).await?;
            if let Some(user) = &found {
                let mut view = self.view.write().map_err(poisoned)?;
                view.users
                    .insert(user.id.clone(), (user.clone(), Instant::now()));
            }
            found
        };
        Ok(match user {
            Some(user) if !user.disabled => Standing::Active(user),
            _ => Standing::NoUser,
        })
    }

    async fn refresh_if_stale(&self, db: &Db, now: i64) -> Result<(), ApiError> {
        if self.is_fresh(&*self.view.read().map_err(poisoned)?) {
            return Ok(());
        }
        let waiting_since = Instant::now();
        let mut failed_at = self.refreshing.lock().await;
        if failed_at.is_some_and(|at| at >= waiting_since) {
            return Err(ApiError::unavailable("database unavailable"));
        }
        let (since, prune) = {
            let view = self.view.read().map_err(poisoned)?;
            if self.is_fresh(&view) {
                return Ok(()); // another request refreshed it while this one waited
            }
            let prune = view.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            (view.max_seq - SEQ_LOOKBACK, prune)
        };
        let generation = self.current_generation();
        let read_at = Instant::now();
        let rows = match db.run(move |c| rows_since(c, since, now)).await {
            Ok(rows) => rows,
            Err(e) => {
                *failed_at = Some(Instant::now());
                return Err(e);
            }
        };
        let mut view = self.view.write().map_err(poisoned)?;
        for (seq, kind, subject, issued_before, expires_at) in rows {
            view.max_seq = view.max_seq.max(seq);
            // An unknown kind (written by a newer version) is skipped, as the shared list does.
            // A revoked key's tokens are refused here at once, not only when the key ring's next
            // refresh drops the key from this replica's verifier.
            if let Some(kind) = RevocationKind::from_code(kind) {
                let entry = view
                    .entries
                    .entry(kind)
                    .or_default()
                    .entry(subject)
                    .or_insert((i64::MIN, 0));
                *entry = (entry.0.max(issued_before), entry.1.max(expires_at));
            }
        }
        if prune {
            for by_subject in view.entries.values_mut() {
                by_subject.retain(|_, (_, expires_at)| *expires_at > now);
            }
            view.pruned_at = Some(read_at);
        }
        // Users changed by this process since the last read are re-read too.
        if view.generation != generation {
            view.users.clear();
        }
        view.users.retain(|_, (_, at)| at.elapsed() < self.ttl);
        view.generation = generation;
        view.read_at = Some(read_at);
        Ok(())
    }
}

impl View {
    fn is_revoked(&self, claims: &AccessClaims, now: i64) -> bool {
        RevocationKind::ALL.into_iter().any(|kind| {
            let Some(subject) = kind.subject_of(claims) else {
                return false;
            };
            self.entries
                .get(&kind)
                .and_then(|by_subject| by_subject.get(subject))
                .is_some_and(|&(issued_before, expires_at)| {
                    entry_revokes(kind, subject, issued_before, expires_at, claims, now)
                })
        })
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ApiError {
    ApiError::Internal("auth cache lock poisoned".into())
}

type Row = (i64, i16, String, i64, i64);

/// Live revocation rows with `seq` above `since`.
fn rows_since(conn: &mut DbConn, since: i64, now: i64) -> Result<Vec<Row>, ApiError> {
    Ok(revocations::table
        .filter(revocations::seq.gt(since))
        .filter(revocations::expires_at.gt(now))
        .select((
            revocations::seq,
            revocations::kind,
            revocations::subject,
            revocations::issued_before,
            revocations::expires_at,
        ))
        .load(conn)?)
}

fn standing_from_db(
    conn: &mut DbConn,
    claims: &AccessClaims,
    now: i64,
) -> Result<Standing, ApiError> {
    if crate::store::revocations::is_revoked(conn, claims, now)? {
        return Ok(Standing::Revoked);
    }
    Ok(match users::by_id(conn, &claims.sub)? {
        Some(user) if !user.disabled => Standing::Active(user),
        _ => Standing::NoUser,
    })
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Auth cache", |rocket| async {
        let ttl_ms = rocket.state::<Config>().map_or(0, |c| c.auth_cache_ms);
        rocket.manage(Arc::new(AuthCache::new(ttl_ms)))
    })
}
