//! Login sessions and their rotating refresh tokens (the session is the token family).

use diesel::prelude::*;

use super::{audit, revocations};
use crate::db::DbConn;
use crate::db::schema::{refresh_tokens, sessions, users};
use crate::error::ApiError;
use crate::ids;
use crate::revoker::Revocations;

#[derive(Debug, Clone, Queryable)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// The client the login named (RFC 6749 §3.2.1): its access tokens name it, and a refresh
    /// naming another client is refused.
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Queryable)]
struct RefreshRow {
    token_hash: String,
    created_at: i64,
    rotated_at: Option<i64>,
    rotation_nonce: Option<String>,
}

/// The columns of [`RefreshRow`].
type RefreshColumns = (
    refresh_tokens::token_hash,
    refresh_tokens::created_at,
    refresh_tokens::rotated_at,
    refresh_tokens::rotation_nonce,
);
const REFRESH_COLUMNS: RefreshColumns = (
    refresh_tokens::token_hash,
    refresh_tokens::created_at,
    refresh_tokens::rotated_at,
    refresh_tokens::rotation_nonce,
);

/// What a successful login or refresh hands out (the refresh token in plain text, once).
#[derive(Debug, Clone)]
pub struct Grant {
    pub session: Session,
    pub refresh_token: String,
    /// The end of the cut-offs of the user's tokens that cover the grant's time, read in its
    /// transaction ([`revocations::user_cut_off_end`]): its access token is not issued before.
    pub cut_off_end: Option<i64>,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated(Grant),
    /// The same token again within the grace window, while its successor is still current:
    /// the same successor, nothing rotated.
    Retried(Grant),
    /// An already-rotated token outside the grace window: its session must end
    /// ([`end_for_reuse`]).
    ReuseDetected(Reuse),
    /// The session was started for another client than the one refreshing (RFC 6749 §6):
    /// refused, and not spent.
    OtherClient,
    Invalid,
}

/// A refresh token presented again after its rotation's grace: theft, or a broken client.
#[derive(Debug)]
pub struct Reuse {
    session_id: String,
    user_id: String,
    token_created_at: i64,
}

/// What a login starts a session for: its user, the scopes granted and the client named.
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub scope: &'a str,
    pub client_id: Option<&'a str>,
}

/// Starts a session with its first refresh token. Call it inside a write transaction, with the
/// rest of the login's writes (one commit per login).
pub fn start(
    conn: &mut DbConn,
    new: &NewSession<'_>,
    now: i64,
    ttl_secs: u32,
) -> Result<Grant, ApiError> {
    let session = Session {
        id: ids::new_id()?,
        user_id: new.user_id.to_owned(),
        scope: new.scope.to_owned(),
        created_at: now,
        expires_at: now + i64::from(ttl_secs),
        revoked_at: None,
        client_id: new.client_id.map(str::to_owned),
    };
    let refresh_token = ids::new_secret()?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(&session.id),
            sessions::user_id.eq(&session.user_id),
            sessions::scope.eq(&session.scope),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(session.expires_at),
            sessions::client_id.eq(&session.client_id),
        ))
        .execute(conn)?;
    insert_token(
        conn,
        &ids::hash_secret(&refresh_token),
        &session.id,
        None,
        now,
    )?;
    // Every session of the user revoked while the password was checked (the cut-off's writer
    // locked the user's row first), or earlier in this second.
    let cut_off_end = revocations::user_cut_off_end(conn, &session.id, now)?;
    Ok(Grant {
        session,
        refresh_token,
        cut_off_end,
    })
}

fn insert_token(
    conn: &mut DbConn,
    hash: &str,
    session_id: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<(), ApiError> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(hash),
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::parent_hash.eq(parent),
            refresh_tokens::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Rotates a refresh token, inside a write transaction. The conditional update
/// (`rotated_at IS NULL`) is the arbiter: of any number of concurrent presentations, across any
/// number of issuers, exactly one rotates; the others see the rotation and, within
/// `grace_secs`, re-derive the same successor. The rotation is stamped, and a retry judged, at
/// `database_now`: the request's time on the database's clock
/// ([`crate::clock::Clock::on_database_clock`]), one clock for every replica, so a replica whose
/// own clock runs ahead neither takes a prompt retry for reuse nor gives one behind a longer
/// window. A reuse writes nothing here: the caller ends the session in the revocation
/// service's own transaction ([`end_for_reuse`]), so only a reuse, not every refresh, takes the
/// revocations' write lock. What makes it a reuse (a rotation past its grace, a successor
/// rotated in turn) never goes back, so nothing is lost between. A `client_id` the refresh
/// names must be the session's; a refresh naming none is taken from the session's client.
pub fn rotate(
    conn: &mut DbConn,
    (presented, client_id): (&str, Option<&str>),
    (now, database_now): (i64, i64),
    grace_secs: u32,
) -> Result<Rotation, ApiError> {
    let hash = ids::hash_secret(presented);
    let nonce = ids::random(16)?;
    {
        let won = diesel::update(
            refresh_tokens::table
                .find(&hash)
                .filter(refresh_tokens::rotated_at.is_null()),
        )
        .set((
            refresh_tokens::rotated_at.eq(database_now),
            refresh_tokens::rotation_nonce.eq(&nonce),
        ))
        .execute(conn)?
            == 1;
        let Some(Presented {
            row,
            session,
            user_disabled,
            cut_off_end,
        }) = read_presented(conn, &hash, now)?
        else {
            return Ok(Rotation::Invalid);
        };
        let dead = session.revoked_at.is_some() || session.expires_at <= now || user_disabled;
        // Another client is refused only where the token would be taken: a token past its use
        // is reuse, whichever client names it.
        let other_client = client_id
            .is_some_and(|asked| session.client_id.as_deref().is_some_and(|own| own != asked));
        if dead || (won && other_client) {
            // Refused, so not spent: a replica whose clock is behind this one's may still take
            // it, and would otherwise find it rotated with no successor and call it reuse.
            if won {
                diesel::update(refresh_tokens::table.find(&hash))
                    .set((
                        refresh_tokens::rotated_at.eq(None::<i64>),
                        refresh_tokens::rotation_nonce.eq(None::<String>),
                    ))
                    .execute(conn)?;
            }
            return Ok(if dead {
                Rotation::Invalid
            } else {
                Rotation::OtherClient
            });
        }
        // Whole seconds: a grace of N admits a retry N to N + 1 s after the rotation; 0 none.
        let within_grace = grace_secs > 0
            && row
                .rotated_at
                .is_some_and(|at| database_now - at <= i64::from(grace_secs));
        if won || within_grace {
            // A won rotation has just stored its nonce. A retry whose nonce the cleanup already
            // forgot (judged by a replica clock far ahead of the database's) cannot be given
            // its successor: refused, and not taken for reuse.
            let Some(nonce) = row.rotation_nonce.as_deref() else {
                return Ok(Rotation::Invalid);
            };
            let successor = ids::successor_secret(presented, nonce);
            let successor_hash = ids::hash_secret(&successor);
            if won {
                insert_token(
                    conn,
                    &successor_hash,
                    &session.id,
                    Some(&row.token_hash),
                    now,
                )?;
                return Ok(Rotation::Rotated(Grant {
                    session,
                    refresh_token: successor,
                    cut_off_end,
                }));
            }
            // A retry: only while the successor itself is still the current token.
            let successor_current = refresh_tokens::table
                .find(&successor_hash)
                .select(refresh_tokens::rotated_at)
                .first::<Option<i64>>(conn)
                .optional()?
                .is_some_and(|rotated| rotated.is_none());
            if successor_current {
                return Ok(if other_client {
                    Rotation::OtherClient
                } else {
                    Rotation::Retried(Grant {
                        session,
                        refresh_token: successor,
                        cut_off_end,
                    })
                });
            }
        }
        Ok(Rotation::ReuseDetected(Reuse {
            session_id: session.id,
            user_id: session.user_id,
            token_created_at: row.created_at,
        }))
    }
}

/// Ends the session of a reused refresh token, with its audit row, in the revocation
/// service's transaction.
pub fn end_for_reuse(revocations: &mut Revocations<'_>, reuse: &Reuse) -> Result<(), ApiError> {
    let detail = serde_json::json!({"sid": reuse.session_id, "created_at": reuse.token_created_at});
    let now = revocations.now();
    audit::record(
        revocations.conn(),
        now,
        "refresh_reuse",
        Some(&reuse.user_id),
        &detail,
    )?;
    revocations.session(&reuse.session_id, "refresh_token_reuse")?;
    Ok(())
}

/// The live session a refresh token names, as the refresh grant reads it (in one round trip).
pub struct NamedSession {
    pub session: Session,
    /// The token is the session's current one (not rotated yet).
    pub current: bool,
    /// Its user is disabled: the refresh grant refuses the token, but a revocation still ends
    /// the session (the user may be enabled again).
    pub user_disabled: bool,
}

impl NamedSession {
    /// Whether the refresh grant would rotate this token: current, of an enabled user.
    pub const fn is_usable(&self) -> bool {
        self.current && !self.user_disabled
    }
}

/// The session a refresh token belongs to, not revoked and not expired at `alive_at`: the
/// refresh grant and introspection ask at `now`, a revocation earlier (a session's last access
/// token still verifies a while past its end).
pub fn session_of_refresh_token(
    conn: &mut DbConn,
    presented: &str,
    alive_at: i64,
) -> Result<Option<NamedSession>, ApiError> {
    let found = refresh_tokens::table
        .inner_join(sessions::table.inner_join(users::table))
        .filter(refresh_tokens::token_hash.eq(ids::hash_secret(presented)))
        .select((
            refresh_tokens::rotated_at,
            sessions::all_columns,
            users::disabled,
        ))
        .first::<(Option<i64>, Session, bool)>(conn)
        .optional()?;
    Ok(found
        .filter(|(_, s, _)| s.revoked_at.is_none() && s.expires_at > alive_at)
        .map(|(rotated_at, session, user_disabled)| NamedSession {
            session,
            current: rotated_at.is_none(),
            user_disabled,
        }))
}

/// Deletes every refresh token of `user_id`'s sessions: the first step of deleting the user,
/// taking the tokens before the sessions, in the order a rotation locks them ([`rotate`]). The
/// cascade from the user's row would lock them after [`Revocations::user`] locked the sessions,
/// and a rotation under way, holding its token and waiting for its session, would deadlock.
pub fn delete_refresh_tokens_of(conn: &mut DbConn, user_id: &str) -> Result<usize, ApiError> {
    let of_user = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select(sessions::id);
    Ok(
        diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq_any(of_user)))
            .execute(conn)?,
    )
}

pub fn by_id(conn: &mut DbConn, sid: &str) -> Result<Option<Session>, ApiError> {
    Ok(sessions::table.find(sid).first(conn).optional()?)
}

/// A presented refresh token as a rotation reads it.
struct Presented {
    row: RefreshRow,
    session: Session,
    /// Disabled, or gone.
    user_disabled: bool,
    cut_off_end: Option<i64>,
}

/// The refresh token `hash`, its session, its user's state and the end of the cut-offs of the
/// user's tokens that cover `now`, in one round trip. On PostgreSQL it share-locks the token's
/// row, then the session's, until the transaction ends: a revocation that has ended the session
/// but not committed yet is waited for, and the session then read as it committed (READ
/// COMMITTED reads anew the rows it waited for, only those: the subqueries read the statement's
/// snapshot). Without the lock the session reads live, and the token signed after the
/// revocation's entry began could outlive it. Every write a rotation can wait on here ends or
/// deletes the session or the token itself (a user's disabling and "log out everywhere" end
/// every session), so what it reads stale cannot matter. The token first, as the rotation's
/// `UPDATE` takes it and as a user's deletion does ([`delete_refresh_tokens_of`]), so that a
/// rotation that did not take the token cannot hold the session while the deletion holds the
/// token. SQLite's write transaction already excludes the revocation's.
fn read_presented(conn: &mut DbConn, hash: &str, now: i64) -> Result<Option<Presented>, ApiError> {
    type Row = (RefreshRow, Session, Option<bool>, Option<i64>);
    let user_disabled = users::table
        .filter(users::id.eq(sessions::user_id))
        .select(users::disabled)
        .single_value();
    let query = refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(hash))
        .select((
            REFRESH_COLUMNS,
            sessions::all_columns,
            user_disabled,
            revocations::user_cut_off_end_of_session(now),
        ));
    let found = match conn {
        DbConn::Postgres(c) => query.for_share().first::<Row>(c),
        DbConn::Sqlite(c) => query.first::<Row>(c),
    }
    .optional()?;
    Ok(
        found.map(|(row, session, user_disabled, cut_off_end)| Presented {
            row,
            session,
            user_disabled: user_disabled.unwrap_or(true),
            cut_off_end,
        }),
    )
}

/// Rotated tokens whose nonce is held, rotated before `cutoff`: what the cleanup makes forget
/// it, found by the partial index `refresh_tokens_nonce_held`.
#[diesel::dsl::auto_type]
pub fn nonces_held_before(cutoff: i64, batch: i64) -> _ {
    refresh_tokens::table
        .filter(refresh_tokens::rotation_nonce.is_not_null())
        .filter(refresh_tokens::rotated_at.lt(cutoff))
        .select(refresh_tokens::token_hash)
        .limit(batch)
}

/// Forgets the rotation nonces of up to `batch` tokens rotated before `cutoff`. A nonce only
/// serves a retry within the grace window; kept, it let a dump of the database and any old
/// refresh token of a session derive each successor in turn, up to the current one.
pub fn forget_nonces(conn: &mut DbConn, cutoff: i64, batch: i64) -> Result<usize, ApiError> {
    let spent: Vec<String> = nonces_held_before(cutoff, batch).load(conn)?;
    if spent.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::update(refresh_tokens::table.filter(refresh_tokens::token_hash.eq_any(&spent)))
            .set(refresh_tokens::rotation_nonce.eq(None::<String>))
            .execute(conn)?,
    )
}

/// Sessions that ended, expired or revoked, at or before `cutoff`: what cleanup deletes, and
/// what the index on `revoked_at` is for.
#[diesel::dsl::auto_type]
pub fn ended_by(cutoff: i64) -> _ {
    sessions::expires_at
        .le(cutoff)
        .or(sessions::revoked_at.le(cutoff))
}

/// Deletes up to `batch` sessions (with their tokens, by cascade) that ended before `cutoff`.
pub fn delete_ended(conn: &mut DbConn, cutoff: i64, batch: i64) -> Result<usize, ApiError> {
    let doomed: Vec<String> = sessions::table
        .filter(ended_by(cutoff))
        .select(sessions::id)
        .limit(batch)
        .load(conn)?;
    if doomed.is_empty() {
        return Ok(0);
    }
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::session_id.eq_any(&doomed)))
        .execute(conn)?;
    Ok(diesel::delete(sessions::table.filter(sessions::id.eq_any(&doomed))).execute(conn)?)
}
