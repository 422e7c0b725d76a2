//! The access-token lifetimes the replicas issue with. Each replica announces its own at start
//! and on every maintenance tick, until the last token it may have issued by its next
//! announcement expires. A revocation of a session or a user must outlive every token of it,
//! and those may come from a replica with a longer lifetime than the one that revokes: another
//! replica in a rolling deploy, or this one before its `access_token_ttl_secs` was lowered.

use diesel::dsl::max;
use diesel::prelude::*;

use super::is_unique_violation;
use crate::db::DbConn;
use crate::db::schema::token_lifetimes;
use crate::error::ApiError;

/// Records that tokens of `ttl_secs` may be valid until `until`. Never shortens an earlier
/// announcement of the same lifetime. The row is updated first and inserted only when missing:
/// every replica announces each tick, and an insert refused as a duplicate is an ERROR line in
/// PostgreSQL's log each time (and, inside a transaction, aborts it).
pub fn announce(conn: &mut DbConn, ttl_secs: i64, until: i64) -> Result<(), ApiError> {
    let row = || token_lifetimes::table.find(ttl_secs);
    let extend = |conn: &mut DbConn| {
        diesel::update(row().filter(token_lifetimes::announced_until.lt(until)))
            .set(token_lifetimes::announced_until.eq(until))
            .execute(conn)
    };
    if extend(conn)? > 0 || row().count().get_result::<i64>(conn)? > 0 {
        return Ok(());
    }
    let inserted = diesel::insert_into(token_lifetimes::table)
        .values((
            token_lifetimes::ttl_secs.eq(ttl_secs),
            token_lifetimes::announced_until.eq(until),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        // Another replica's first announcement of this lifetime, between the count and here
        // (once per lifetime ever): announce again over its row.
        Err(e) if is_unique_violation(&e) => extend(conn).map(drop).map_err(Into::into),
        Err(e) => Err(e.into()),
    }
}

/// The longest lifetime a token valid at `now` may have been issued with: the longest any
/// replica announced, and at least this replica's own `own_ttl_secs`.
pub fn longest(conn: &mut DbConn, now: i64, own_ttl_secs: i64) -> Result<i64, ApiError> {
    let announced: Option<i64> = token_lifetimes::table
        .filter(token_lifetimes::announced_until.gt(now))
        .select(max(token_lifetimes::ttl_secs))
        .first(conn)?;
    Ok(announced.unwrap_or(0).max(own_ttl_secs))
}
