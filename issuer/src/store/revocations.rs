//! Revocation entries. `seq` comes from the database (BIGSERIAL / AUTOINCREMENT), so it grows
//! across replicas, and entries commit in `seq` order ([`order_writes`]); an entry is kept until
//! the last access token it can affect has expired.

use diesel::connection::SimpleConnection as _;
use diesel::dsl::max;
use diesel::prelude::*;
use gatehouse_shared::{
    AccessClaims, RevocationDelta, RevocationKind, RevocationList, entry_expiry,
};

use crate::db::DbConn;
use crate::db::schema::{revocations, sessions};
use crate::error::ApiError;

/// The PostgreSQL advisory lock that orders revocation writes.
const WRITE_ORDER_LOCK: i64 = 0x6761_7465_7265_766b;

/// Makes entries commit in `seq` order. A BIGSERIAL number is taken at insert, not at commit, so
/// without this a transaction holding `seq` 10 could commit after one holding 11, and a list
/// stamped 11 (the snapshot cache's key, what edges compare) would lack 10. Every revocation
/// transaction takes this lock first, before any row lock, so waiting on it cannot deadlock,
/// and holds it to its commit. SQLite's `BEGIN IMMEDIATE` already serialises writers.
pub(crate) fn order_writes(conn: &mut DbConn) -> Result<(), ApiError> {
    if let DbConn::Postgres(c) = conn {
        c.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_ORDER_LOCK})"))?;
    }
    Ok(())
}

/// One entry as the revocation service writes it.
pub(crate) struct NewEntry<'a> {
    pub kind: RevocationKind,
    pub subject: &'a str,
    /// A user cut-off's bound (exclusive); 0 for the other kinds.
    pub issued_before: i64,
    pub expires_at: i64,
    /// The user whose access token a token entry revokes; `None` for the other kinds.
    pub owner: Option<&'a str>,
}

/// Writes one entry and returns its `seq`. Only the revocation service (`crate::revoker`)
/// writes entries, so each comes with its audit row and what must follow it.
pub(crate) fn insert(conn: &mut DbConn, entry: &NewEntry<'_>, now: i64) -> Result<i64, ApiError> {
    Ok(diesel::insert_into(revocations::table)
        .values((
            revocations::kind.eq(entry.kind.code()),
            revocations::subject.eq(entry.subject),
            revocations::issued_before.eq(entry.issued_before),
            revocations::expires_at.eq(entry.expires_at),
            revocations::created_at.eq(now),
            revocations::owner.eq(entry.owner),
        ))
        .returning(revocations::seq)
        .get_result(conn)?)
}

/// How many token entries revoking `owner`'s access tokens are live at `now`.
pub(crate) fn live_token_entries(
    conn: &mut DbConn,
    owner: &str,
    now: i64,
) -> Result<i64, ApiError> {
    Ok(revocations::table
        .filter(revocations::owner.eq(owner))
        .filter(revocations::expires_at.gt(now))
        .filter(revocations::kind.eq(RevocationKind::Token.code()))
        .count()
        .get_result(conn)?)
}

/// Deletes the cut-offs of `user_id` that a cut-off of tokens issued before `issued_before`,
/// kept until `expires_at`, covers: each refuses a subset of its tokens for no longer. Edges
/// that hold one keep it until it lapses, which refuses nothing the new one does not.
pub(crate) fn delete_covered_cut_offs(
    conn: &mut DbConn,
    user_id: &str,
    issued_before: i64,
    expires_at: i64,
) -> Result<usize, ApiError> {
    Ok(diesel::delete(
        revocations::table
            .filter(revocations::kind.eq(RevocationKind::User.code()))
            .filter(revocations::subject.eq(user_id))
            .filter(revocations::issued_before.le(issued_before))
            .filter(revocations::expires_at.le(expires_at)),
    )
    .execute(conn)?)
}

/// Whether an entry refuses the token for as long as any verifier may accept it (until its
/// entry would lapse, `entry_expiry(exp)`): a revocation of it then has nothing to add. Only an
/// entry that outlives the token counts (a session's or user's may end sooner, e.g. after a rise
/// of `access_token_ttl_secs`).
pub fn refused_until_expiry(conn: &mut DbConn, claims: &AccessClaims) -> Result<bool, ApiError> {
    is_revoked(conn, claims, entry_expiry(claims.exp) - 1)
}

/// Whether the claims are revoked: `gatehouse_shared::entry_revokes` as SQL, asked of the
/// database so every replica sees every revocation at once (tested against the shared rule on
/// random sets).
pub fn is_revoked(conn: &mut DbConn, claims: &AccessClaims, now: i64) -> Result<bool, ApiError> {
    let hits: i64 = revocations::table
        .filter(revocations::expires_at.gt(now))
        .filter(
            revocations::kind
                .eq(RevocationKind::Token.code())
                .and(revocations::subject.eq(&claims.jti))
                .or(revocations::kind
                    .eq(RevocationKind::Session.code())
                    .and(revocations::subject.eq(&claims.sid)))
                .or(revocations::kind
                    .eq(RevocationKind::User.code())
                    .and(revocations::subject.eq(&claims.sub))
                    .and(revocations::issued_before.gt(claims.iat)))
                .or(revocations::kind
                    .eq(RevocationKind::Key.code())
                    .and(revocations::subject.eq(claims.kid()))),
        )
        .count()
        .get_result(conn)?;
    Ok(hits > 0)
}

/// The end of the cut-offs of the tokens of session `sid`'s user that cover `iat`: the first
/// second an access token of theirs is issued at and not refused (`None`: none covers `iat`).
pub fn user_cut_off_end(conn: &mut DbConn, sid: &str, iat: i64) -> Result<Option<i64>, ApiError> {
    Ok(sessions::table
        .find(sid)
        .select(user_cut_off_end_of_session(iat))
        .first::<Option<i64>>(conn)?)
}

/// The end of the cut-offs of the tokens of a session's user that cover `iat`, as a subquery
/// over `sessions` (a rotation reads it with its session, in one round trip). The one rule is
/// [`is_revoked`]'s `issued_before > iat`.
#[diesel::dsl::auto_type]
pub fn user_cut_off_end_of_session(iat: i64) -> _ {
    let user_kind: i16 = RevocationKind::User.code();
    let latest: diesel::helper_types::max<revocations::issued_before> =
        max(revocations::issued_before);
    revocations::table
        .filter(revocations::kind.eq(user_kind))
        .filter(revocations::subject.eq(sessions::user_id))
        .filter(revocations::issued_before.gt(iat))
        .filter(revocations::expires_at.gt(iat))
        .select(latest)
        .single_value()
}

/// Marks a session revoked; returns its user and expiry if it was not revoked before. Only the
/// revocation service calls this, together with the entry and the audit row.
pub(crate) fn end_session(
    conn: &mut DbConn,
    sid: &str,
    now: i64,
) -> Result<Option<(String, i64)>, ApiError> {
    Ok(diesel::update(
        sessions::table
            .find(sid)
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .returning((sessions::user_id, sessions::expires_at))
    .get_result(conn)
    .optional()?)
}

/// Marks every live session of a user but `except` revoked (the revocation service's part of a
/// user cut-off or a password change); returns their ids and expiry times.
pub(crate) fn end_sessions_of(
    conn: &mut DbConn,
    user_id: &str,
    except: Option<&str>,
    now: i64,
) -> Result<Vec<(String, i64)>, ApiError> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(except.unwrap_or_default())),
    )
    .set(sessions::revoked_at.eq(now))
    .returning((sessions::id, sessions::expires_at))
    .get_results(conn)?)
}

/// The high-water mark of `seq`: never goes down, because cleanup keeps the newest row.
pub fn high_water(conn: &mut DbConn) -> Result<i64, ApiError> {
    let seq: Option<i64> = revocations::table
        .select(max(revocations::seq))
        .first(conn)?;
    Ok(seq.unwrap_or(0))
}

/// The live list, as the shared format, stamped with `seq` and `now`.
pub fn live_list(conn: &mut DbConn, issuer: &str, now: i64) -> Result<RevocationList, ApiError> {
    let seq = high_water(conn)?;
    live_list_after(conn, issuer, seq, 0, now)
}

/// The signed delta feed's content: every live entry committed within the last `window_secs`,
/// after the newest entry older than that. Entries are found by their place in the `seq` order
/// (the primary key), so the query reads the window, not the table.
pub fn delta(
    conn: &mut DbConn,
    issuer: &str,
    now: i64,
    window_secs: i64,
) -> Result<RevocationDelta, ApiError> {
    let seq = high_water(conn)?;
    // Rows older than the window may have been cleaned up; if none is left, the delta reaches
    // back to seq 0 and is the whole live list, which is then small by definition.
    let from: i64 = revocations::table
        .filter(revocations::created_at.le(now - window_secs))
        .order(revocations::seq.desc())
        .select(revocations::seq)
        .first(conn)
        .optional()?
        .unwrap_or(0);
    let list = live_list_after(conn, issuer, seq, from, now)?;
    Ok(RevocationDelta::new(u64::try_from(from).unwrap_or(0), list))
}

/// The live entries with a `seq` above `after` (seqs start at 1), stamped with `seq` and `now`.
fn live_list_after(
    conn: &mut DbConn,
    issuer: &str,
    seq: i64,
    after: i64,
    now: i64,
) -> Result<RevocationList, ApiError> {
    let rows: Vec<(i16, String, i64, i64)> = revocations::table
        .filter(revocations::seq.gt(after))
        .filter(revocations::expires_at.gt(now))
        .select((
            revocations::kind,
            revocations::subject,
            revocations::issued_before,
            revocations::expires_at,
        ))
        .load(conn)?;
    let mut builder = RevocationList::builder(issuer, u64::try_from(seq).unwrap_or(0), now);
    for (kind, subject, issued_before, expires_at) in rows {
        // An unknown kind (written by a newer version) is skipped rather than guessed at.
        if let Some(kind) = RevocationKind::from_code(kind) {
            builder = builder.entry(kind, &subject, issued_before, expires_at);
        }
    }
    Ok(builder.build())
}

/// Deletes up to `batch` expired entries, always keeping the newest row so `seq` never drops.
pub fn delete_expired(conn: &mut DbConn, now: i64, batch: i64) -> Result<usize, ApiError> {
    let newest = high_water(conn)?;
    let doomed: Vec<i64> = revocations::table
        .filter(revocations::expires_at.le(now))
        .filter(revocations::seq.lt(newest))
        .select(revocations::seq)
        .limit(batch)
        .load(conn)?;
    if doomed.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(revocations::table.filter(revocations::seq.eq_any(&doomed)))
            .execute(conn)?,
    )
}
