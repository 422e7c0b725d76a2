//! The one path every revocation takes. [`Revoker::run`] owns the write transaction; inside it
//! the caller looks up, authorises and writes what belongs with the revocation, and records each
//! revocation through [`Revocations`]: the entry and its audit row, in that same transaction.
//! After the commit, and only then, the revoker does what must follow a revocation: the metric,
//! the bearer check's cache (this replica applies it at once), and the push to the edges.

use std::sync::Arc;

use gatehouse_shared::{AccessClaims, RevocationKind as Kind};
use rocket::fairing::AdHoc;

use crate::auth_cache::AuthCache;
use crate::config::Config;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{audit, write_tx};
use crate::store::{revocations, users};
use crate::sync::Snapshots;

/// What must follow a committed revocation in a serving issuer. A CLI process has none of it:
/// the serving replicas' caches expire within `auth_cache_ms`, and their pushers or the edge's
/// delta poll carry the entry.
struct AfterCommit {
    metrics: Arc<Metrics>,
    auth_cache: Arc<AuthCache>,
    snapshots: Arc<Snapshots>,
}

pub struct Revoker {
    db: Db,
    config: Config,
    after_commit: Option<AfterCommit>,
}

/// Revocations written inside one [`Revoker::run`] transaction.
pub struct Revocations<'c> {
    conn: &'c mut DbConn,
    now: i64,
    horizon: i64,
    written: u64,
}

impl Revocations<'_> {
    /// The transaction's connection, for what belongs with the revocations.
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }

    pub const fn now(&self) -> i64 {
        self.now
    }

    /// One access token, until it would have expired anyway (`expires_at`). Returns whether an
    /// entry was written: a token an entry already refuses until then (its own, its session's,
    /// its user's cut-off or its key's) gets none, so repeating a revocation writes and pushes
    /// nothing.
    pub fn token(&mut self, claims: &AccessClaims, expires_at: i64) -> Result<bool, ApiError> {
        // Only an entry that outlives the token counts (a session's or user's entry may end
        // sooner, e.g. after a rise of access_token_ttl_secs).
        if revocations::is_revoked(self.conn, claims, expires_at - 1)? {
            return Ok(false);
        }
        revocations::insert(self.conn, Kind::Token, &claims.jti, 0, expires_at, self.now)?;
        let detail = serde_json::json!({"jti": claims.jti});
        audit::record(
            self.conn,
            self.now,
            "token_revoked",
            Some(&claims.sub),
            &detail,
        )?;
        self.written += 1;
        Ok(true)
    }

    /// One session: no more refreshes, and its access tokens are refused. Returns whether it
    /// was live (a session revoked before is left as it is).
    pub fn session(&mut self, sid: &str, reason: &str) -> Result<bool, ApiError> {
        let Some(user_id) = revocations::end_session(self.conn, sid, self.now)? else {
            return Ok(false);
        };
        revocations::insert(self.conn, Kind::Session, sid, 0, self.horizon, self.now)?;
        let detail = serde_json::json!({"sid": sid, "reason": reason});
        audit::record(
            self.conn,
            self.now,
            "session_revoked",
            Some(&user_id),
            &detail,
        )?;
        self.written += 1;
        Ok(true)
    }

    /// Everything of a user: every session, each with its own entry, and a cut-off for every
    /// access token issued up to now (`issued_before` is exclusive, hence `now + 1`).
    pub fn user(&mut self, user_id: &str, reason: &str) -> Result<(), ApiError> {
        // A login holds this row while it starts a session: waiting for it here means its
        // session is ended below, not left alive beside the cut-off.
        users::lock_current(self.conn, user_id)?;
        // The cut-off alone would miss a token a refresh (which does not take the user row) or
        // a login issued with a later clock than this request's `now`: the sessions' own
        // entries refuse every token of theirs, whenever it was issued.
        for sid in revocations::end_sessions_of(self.conn, user_id, self.now)? {
            revocations::insert(self.conn, Kind::Session, &sid, 0, self.horizon, self.now)?;
        }
        revocations::insert(
            self.conn,
            Kind::User,
            user_id,
            self.now + 1,
            self.horizon,
            self.now,
        )?;
        let detail = serde_json::json!({"reason": reason});
        audit::record(self.conn, self.now, "user_revoked", Some(user_id), &detail)?;
        self.written += 1;
        Ok(())
    }

    /// A signing key, in an emergency: every edge drops it as soon as its list names it.
    pub fn key(&mut self, kid: &str, expires_at: i64, was: &str) -> Result<(), ApiError> {
        revocations::insert(self.conn, Kind::Key, kid, 0, expires_at, self.now)?;
        let detail = serde_json::json!({"kid": kid, "was": was});
        audit::record(self.conn, self.now, "key_revoked", None, &detail)?;
        self.written += 1;
        Ok(())
    }
}

impl Revoker {
    /// For a command-line process (`keys revoke`): the transaction and the audit rows, nothing
    /// to notify in this process.
    pub fn for_command(db: Db, config: Config) -> Self {
        Self {
            db,
            config,
            after_commit: None,
        }
    }

    fn transaction<T>(
        conn: &mut DbConn,
        now: i64,
        horizon: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<T, ApiError>,
    ) -> Result<(T, u64), ApiError> {
        write_tx(conn, |conn| {
            revocations::order_writes(conn)?;
            let mut revocations = Revocations {
                conn,
                now,
                horizon,
                written: 0,
            };
            let value = work(&mut revocations)?;
            Ok((value, revocations.written))
        })
    }

    /// Runs `work` in one write transaction, then what follows the revocations it recorded. A
    /// failed transaction writes nothing and notifies nobody.
    pub async fn run<T: Send + 'static>(
        &self,
        now: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let horizon = self.config.revocation_horizon(now);
        let (value, written) = self
            .db
            .run(move |conn| Self::transaction(conn, now, horizon, work))
            .await?;
        self.committed(written);
        Ok(value)
    }

    /// [`Self::run`] on the calling thread (command-line processes).
    pub fn run_sync<T>(
        &self,
        now: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let horizon = self.config.revocation_horizon(now);
        let (value, written) = self
            .db
            .run_sync(|conn| Self::transaction(conn, now, horizon, work))?;
        self.committed(written);
        Ok(value)
    }

    fn committed(&self, written: u64) {
        let Some(after) = &self.after_commit else {
            return;
        };
        if written > 0 {
            after.metrics.revocations.inc_by(written);
            after.auth_cache.invalidate();
            after.snapshots.changed();
        }
    }
}

/// The revoker, at ignite, over the database, the metrics, the bearer cache and the pusher.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Revocation service", |rocket| async {
        let parts = (
            rocket.state::<Db>(),
            rocket.state::<Config>(),
            rocket.state::<Arc<Metrics>>(),
            rocket.state::<Arc<AuthCache>>(),
            rocket.state::<Arc<Snapshots>>(),
        );
        let (Some(db), Some(config), Some(metrics), Some(auth_cache), Some(snapshots)) = parts
        else {
            tracing::error!(
                "revocation service needs the database, config, metrics, auth cache and snapshots"
            );
            return Err(rocket);
        };
        let revoker = Revoker {
            db: db.clone(),
            config: config.clone(),
            after_commit: Some(AfterCommit {
                metrics: Arc::clone(metrics),
                auth_cache: Arc::clone(auth_cache),
                snapshots: Arc::clone(snapshots),
            }),
        };
        Ok(rocket.manage(revoker))
    })
}
