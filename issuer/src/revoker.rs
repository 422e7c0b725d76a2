//! The one path every revocation takes. [`Revoker::run`] owns the write transaction; inside it
//! the caller looks up, authorises and writes what belongs with the revocation, and records each
//! revocation through [`Revocations`]: the entry and its audit row, in that same transaction.
//! After the commit, and only then, the revoker does what must follow a revocation: the metric,
//! the bearer check's cache (this replica applies it at once), and the push to the edges.

use std::sync::Arc;

use gatehouse_shared::{AccessClaims, RevocationKind as Kind, entry_expiry};
use rocket::fairing::AdHoc;

use crate::auth_cache::AuthCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::revocations::NewEntry;
use crate::store::{audit, write_tx};
use crate::store::{lifetimes, revocations, users};
use crate::sync::Snapshots;

/// How many live entries one user's revoked access tokens may hold. Each revoked token is an
/// entry every edge holds and every location polls until the token expires, and a refresh mints
/// another cheaply, so one user could otherwise grow the list past what edges take (8 MiB) and
/// stop every revocation from reaching them. Past the bound a revocation is one cut-off of the
/// user's access tokens issued up to the one revoked, in place of the previous cut-off: at
/// most this many token entries and, mostly, one cut-off per user. Their sessions go on: a
/// client refreshes and gets a token the cut-off does not cover (in the cut-off's own second it
/// is issued at the cut-off's end, as a login's is).
pub const MAX_TOKEN_ENTRIES_PER_USER: i64 = 32;

/// What must follow a committed revocation in a serving issuer. A CLI process has none of it:
/// the serving replicas' caches expire within `auth_cache_ms`, and their pushers or the edge's
/// delta poll carry the entry.
#[derive(Clone)]
struct AfterCommit {
    metrics: Arc<Metrics>,
    auth_cache: Arc<AuthCache>,
    snapshots: Arc<Snapshots>,
}

#[derive(Clone)]
pub struct Revoker {
    db: Db,
    config: Config,
    clock: Arc<Clock>,
    after_commit: Option<AfterCommit>,
}

/// Revocations written inside one [`Revoker::run`] transaction.
pub struct Revocations<'c> {
    conn: &'c mut DbConn,
    now: i64,
    /// The longest access-token lifetime any replica may have issued with (`store::lifetimes`).
    longest: i64,
    clock: Arc<Clock>,
    written: u64,
    /// Who asked, when it is not the owner (an admin, or the holder of another user's token
    /// revoking it): named in every audit row written here.
    by: Option<String>,
}

impl Revocations<'_> {
    /// Records `sub` as the one who asked for the revocations that follow (an admin acting on
    /// another user's tokens, sessions or account, or a user revoking another's token it holds).
    pub fn acting_for(&mut self, sub: &str) {
        self.by = Some(sub.to_owned());
    }

    /// An audit detail, with who asked when that is set.
    fn detail(&self, mut detail: serde_json::Value) -> serde_json::Value {
        if let (Some(by), Some(fields)) = (&self.by, detail.as_object_mut()) {
            fields.insert("by".into(), by.clone().into());
        }
        detail
    }

    /// An entry of a kind that is no one user's token (a session, a user, a key).
    fn insert_unowned(
        &mut self,
        kind: Kind,
        subject: &str,
        issued_before: i64,
        expires_at: i64,
    ) -> Result<i64, ApiError> {
        let entry = NewEntry {
            kind,
            subject,
            issued_before,
            expires_at,
            owner: None,
        };
        revocations::insert(self.conn, &entry, self.written_at())
    }

    /// A cut-off of the user's access tokens issued before `issued_before`, in place of the
    /// user's earlier cut-offs it covers: one per user, however often it is written.
    fn replace_cut_off(
        &mut self,
        user_id: &str,
        issued_before: i64,
        expires_at: i64,
    ) -> Result<i64, ApiError> {
        revocations::delete_covered_cut_offs(self.conn, user_id, issued_before, expires_at)?;
        self.insert_unowned(Kind::User, user_id, issued_before, expires_at)
    }

    /// The transaction's connection, for what belongs with the revocations.
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }

    pub const fn now(&self) -> i64 {
        self.now
    }

    /// How long a session's (or user's, or key's) entry lasts: until the longest-lived token it
    /// may cover has expired at every verifier. Read when the entry is written, after the
    /// session row is ended: a refresh that rotated before that, while this request waited for
    /// a connection or a lock, signed with its own later `now`; one after it waits for the
    /// commit and finds the session revoked (`sessions::rotate` locks the session row).
    fn horizon(&self) -> i64 {
        entry_expiry(self.written_at().saturating_add(self.longest))
    }

    /// When an entry is written: the request's `now`, or later if it waited for a connection or
    /// the write lock. Its `created_at`, which places it in the delta's window: stamped with
    /// the arrival time, an entry that waited longer than the window would commit already
    /// outside it, and the delta would leave it out with every entry below its `seq`.
    fn written_at(&self) -> i64 {
        self.now.max(self.clock.now())
    }

    /// One access token, until no verifier would accept it anyway (`entry_expiry(exp)`). Returns
    /// whether an entry was written: a token an entry already refuses until then (its own, its
    /// session's, its user's cut-off or its key's) gets none, so repeating a revocation writes
    /// and pushes nothing. Past [`MAX_TOKEN_ENTRIES_PER_USER`], the entry is a cut-off of the
    /// user's tokens issued up to this one.
    pub fn token(&mut self, claims: &AccessClaims) -> Result<bool, ApiError> {
        if revocations::refused_until_expiry(self.conn, claims)? {
            return Ok(false);
        }
        let over_bound = revocations::live_token_entries(self.conn, &claims.sub, self.now)?
            >= MAX_TOKEN_ENTRIES_PER_USER;
        let detail = if over_bound {
            // Tokens issued up to this one's `iat`, for as long as any of them may be valid.
            let issued_before = claims.iat.saturating_add(1);
            let expires_at = self.horizon().max(entry_expiry(claims.exp));
            self.replace_cut_off(&claims.sub, issued_before, expires_at)?;
            serde_json::json!({"jti": claims.jti, "cut_off_issued_before": issued_before})
        } else {
            let entry = NewEntry {
                kind: Kind::Token,
                subject: &claims.jti,
                issued_before: 0,
                expires_at: entry_expiry(claims.exp),
                owner: Some(&claims.sub),
            };
            revocations::insert(self.conn, &entry, self.written_at())?;
            serde_json::json!({"jti": claims.jti})
        };
        let detail = self.detail(detail);
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

    /// One session: no more refreshes, and its access tokens are refused (with an entry while
    /// one of them may still verify: [`Self::may_still_verify`]). Returns whether it was not
    /// revoked before (one that was is left as it is).
    pub fn session(&mut self, sid: &str, reason: &str) -> Result<bool, ApiError> {
        let Some((user_id, expires_at)) = revocations::end_session(self.conn, sid, self.now)?
        else {
            return Ok(false);
        };
        if self.may_still_verify(expires_at) {
            self.insert_unowned(Kind::Session, sid, 0, self.horizon())?;
            self.written += 1;
        }
        let detail = self.detail(serde_json::json!({"sid": sid, "reason": reason}));
        audit::record(
            self.conn,
            self.now,
            "session_revoked",
            Some(&user_id),
            &detail,
        )?;
        Ok(true)
    }

    /// Whether a token of a session ending at `expires_at` may still verify somewhere: none
    /// outlives its session, nor lives longer than `longest`; an entry must outlast it.
    fn may_still_verify(&self, expires_at: i64) -> bool {
        entry_expiry(expires_at.saturating_add(self.longest)) > self.now
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
        let (_, session_entries) = self.end_sessions(user_id, None)?;
        // Replacing, not adding: "log out everywhere" again and again left one each time.
        self.replace_cut_off(user_id, self.now + 1, self.horizon())?;
        let detail = self.detail(serde_json::json!({"reason": reason}));
        audit::record(self.conn, self.now, "user_revoked", Some(user_id), &detail)?;
        self.written += 1 + session_entries;
        Ok(())
    }

    /// Ends every other session of the user (a password change), with one audit row that names
    /// them; returns how many were live. One past its expiry that cleanup has not deleted yet is
    /// ended too (with its entry, as any) and named apart (`expired_sids`), but not counted: it
    /// was no longer signed in.
    pub fn other_sessions(
        &mut self,
        user_id: &str,
        except: &str,
        reason: &str,
    ) -> Result<usize, ApiError> {
        let (ended, entries) = self.end_sessions(user_id, Some(except))?;
        self.written += entries;
        let (mut live, mut expired) = (Vec::new(), Vec::new());
        for (sid, expires_at) in ended {
            if expires_at > self.now {
                live.push(sid);
            } else {
                expired.push(sid);
            }
        }
        if !live.is_empty() || !expired.is_empty() {
            let mut detail = serde_json::json!({"sids": live, "reason": reason});
            if let Some(members) = detail.as_object_mut().filter(|_| !expired.is_empty()) {
                members.insert("expired_sids".into(), expired.into());
            }
            let detail = self.detail(detail);
            audit::record(
                self.conn,
                self.now,
                "sessions_revoked",
                Some(user_id),
                &detail,
            )?;
        }
        Ok(live.len())
    }

    /// Ends every session of `user_id` but `except` not ended before; returns their ids with
    /// their expiry, and how many entries were written. Each that may still have a valid access
    /// token gets its entry; one expired long enough ago has none left, and writing entries for
    /// those (they stay in the table a day past expiry) would let one request add thousands.
    fn end_sessions(
        &mut self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<(Vec<(String, i64)>, u64), ApiError> {
        let ended = revocations::end_sessions_of(self.conn, user_id, except, self.now)?;
        let mut entries = 0;
        for (sid, expires_at) in &ended {
            if self.may_still_verify(*expires_at) {
                self.insert_unowned(Kind::Session, sid, 0, self.horizon())?;
                entries += 1;
            }
        }
        Ok((ended, entries))
    }

    /// A signing key, in an emergency: every edge drops it as soon as its list names it. The
    /// entry lasts until `expires_at`, and at least as long as any token it signed up to now (a
    /// replica that has not re-read its ring may sign with a key retired less than two
    /// maintenance periods ago: `keys::still_signing_until`, which the command warns of).
    pub fn key(&mut self, kid: &str, expires_at: i64, was: &str) -> Result<(), ApiError> {
        let expires_at = expires_at.max(self.horizon());
        self.insert_unowned(Kind::Key, kid, 0, expires_at)?;
        let detail = serde_json::json!({"kid": kid, "was": was});
        audit::record(self.conn, self.now, "key_revoked", None, &detail)?;
        self.written += 1;
        Ok(())
    }
}

impl Revoker {
    /// For a command-line process (`keys revoke`, the `users` commands that revoke): the
    /// transaction and the audit rows, nothing to notify in this process.
    pub fn for_command(db: Db, config: Config) -> Self {
        Self {
            db,
            config,
            clock: Arc::default(),
            after_commit: None,
        }
    }

    fn transaction<T>(
        conn: &mut DbConn,
        now: i64,
        clock: Arc<Clock>,
        own_ttl_secs: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<T, ApiError>,
    ) -> Result<(T, u64), ApiError> {
        write_tx(conn, |conn| {
            revocations::order_writes(conn)?;
            // The longest lifetime any replica may have issued a still-valid token with, not
            // only this one's (`store::lifetimes`).
            let longest = lifetimes::longest(conn, now, own_ttl_secs)?;
            let mut revocations = Revocations {
                conn,
                now,
                longest,
                clock,
                written: 0,
                by: None,
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
        let ttl = i64::from(self.config.access_token_ttl_secs);
        let clock = Arc::clone(&self.clock);
        let (value, written) = self
            .db
            .run(move |conn| Self::transaction(conn, now, clock, ttl, work))
            .await?;
        self.committed(written);
        Ok(value)
    }

    /// [`Self::run`] on the calling thread (command-line processes), at the later of `now` and
    /// the database's clock: a command runs on any machine, and one whose clock is behind would
    /// date its entries early, so that they left the lists while the tokens they revoke still
    /// verify. (Refusing longer is safe; `maintenance::cleanup_from_a_shell` takes the earlier,
    /// to delete nothing early.)
    pub fn run_sync<T>(
        &self,
        now: i64,
        work: impl FnOnce(&mut Revocations<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let ttl = i64::from(self.config.access_token_ttl_secs);
        let (value, written) = self.db.run_sync(|conn| {
            let now = now.max(crate::clock::database_now(conn)?);
            Self::transaction(conn, now, Arc::clone(&self.clock), ttl, work)
        })?;
        self.committed(written);
        Ok(value)
    }

    /// Announces this replica's access-token lifetime (`store::lifetimes`), at start and on
    /// every maintenance tick: until the last token it may issue before its third tick from
    /// now has expired, so a late tick or two cannot let the announcement lapse.
    pub async fn announce_lifetime(&self, now: i64) -> Result<(), ApiError> {
        let ttl = i64::from(self.config.access_token_ttl_secs);
        let until = now + 3 * i64::from(self.config.cleanup_interval_secs.max(1)) + ttl;
        self.db
            .run(move |conn| lifetimes::announce(conn, ttl, until))
            .await
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
            rocket.state::<Arc<Clock>>(),
        );
        let (Some(db), Some(config), Some(metrics), Some(auth_cache), Some(snapshots), Some(clock)) =
            parts
        else {
            tracing::error!(
                "revocation service needs the database, config, metrics, auth cache, snapshots \
                 and clock"
            );
            return Err(rocket);
        };
        let now = clock.now();
        let revoker = Revoker {
            db: db.clone(),
            config: config.clone(),
            clock: Arc::clone(clock),
            after_commit: Some(AfterCommit {
                metrics: Arc::clone(metrics),
                auth_cache: Arc::clone(auth_cache),
                snapshots: Arc::clone(snapshots),
            }),
        };
        // Before this replica issues a token: a revocation elsewhere must cover its lifetime.
        if let Err(e) = revoker.announce_lifetime(now).await {
            tracing::error!(error = %e, "cannot announce the access-token lifetime");
            return Err(rocket);
        }
        Ok(rocket.manage(revoker))
    })
}
