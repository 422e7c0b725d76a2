//! Each client's failed password grants across every replica (`failed_logins_per_minute`, a
//! burst of the same size): a client whose recorded failures spent the budget is refused
//! before its next check on any replica, whatever the password, until one failure is paid off.
//! The lockout (`store::lockout`) bounds guesses per account; a spray of one password over many
//! accounts stays under each account's threshold, and only this sees it.
//!
//! A row holds when the client's failures are all paid off, in Unix ms of the replica that last
//! recorded one (replicas' clocks differ by their skew, which moves the budget by as much). Only
//! failures are written: a correct login reads the row and writes nothing. Checks under way are
//! charged in each replica's memory (`ratelimit`), so one replica's parallel guesses cannot
//! overdraw the budget; parallel guesses on several replicas can, by those still under way
//! on the others when the budget ran out.

use diesel::prelude::*;

use super::{is_unique_violation, write_tx};
use crate::db::DbConn;
use crate::db::schema::client_failure_budgets as rows;
use crate::error::ApiError;

/// `size` failures, one paid off every `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    interval_ms: i64,
    size: i64,
}

impl Budget {
    /// `None` for 0 a minute: the budget is off.
    pub fn per_minute(failures: u32) -> Option<Self> {
        (failures > 0).then(|| Self {
            interval_ms: 60_000 / i64::from(failures),
            size: i64::from(failures),
        })
    }

    /// How far ahead of now a client's row may be for it to try again.
    const fn headroom_ms(self) -> i64 {
        self.interval_ms * (self.size - 1)
    }
}

/// Waits this short are none: the stamps are whole milliseconds from two readings of the
/// clock, and a parallel attempt's failure recorded just as `now_ms` was read may carry a stamp
/// a millisecond or two after it.
const STAMP_SLACK_MS: i64 = 10;

/// How long until `client` may try again at `now_ms`: `None` while its recorded failures leave
/// room for one more.
pub fn spent(
    conn: &mut DbConn,
    client: &str,
    now_ms: i64,
    budget: Budget,
) -> Result<Option<i64>, ApiError> {
    let paid_off_at = rows::table
        .filter(rows::client.eq(client))
        .select(rows::paid_off_at)
        .first::<i64>(conn)
        .optional()?;
    Ok(paid_off_at
        .map(|at| at - now_ms - budget.headroom_ms())
        // A tenth of the interval at most, so even a budget of thousands a minute holds.
        .filter(|wait| *wait > STAMP_SLACK_MS.min(budget.interval_ms / 10)))
}

/// Records one failed password grant of `client` at `now_ms`: its row, brought up to now if it
/// is behind, moves on one interval, in one transaction whose updates serialise on the row, so
/// failures recorded at once on any replicas all count.
pub fn record_failure(
    conn: &mut DbConn,
    client: &str,
    now_ms: i64,
    budget: Budget,
) -> Result<(), ApiError> {
    let row = || rows::table.filter(rows::client.eq(client));
    for _ in 0..3 {
        let recorded = write_tx(conn, |c| {
            diesel::update(row().filter(rows::paid_off_at.lt(now_ms)))
                .set(rows::paid_off_at.eq(now_ms))
                .execute(c)?;
            Ok(diesel::update(row())
                .set(rows::paid_off_at.eq(rows::paid_off_at + budget.interval_ms))
                .execute(c)?)
        })?;
        if recorded == 1 {
            return Ok(());
        }
        // The client's first failure (or cleanup just removed its row): a concurrent creator
        // wins just as well. Outside the transaction, where a unique violation cannot abort it.
        let inserted = diesel::insert_into(rows::table)
            .values((rows::client.eq(client), rows::paid_off_at.eq(now_ms)))
            .execute(conn);
        match inserted {
            Err(e) if !is_unique_violation(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Err(ApiError::unavailable(
        "the client's failure budget kept changing",
    ))
}

/// Deletes up to `batch` rows whose failures were all paid off before `now_ms`.
pub fn delete_paid_off(conn: &mut DbConn, now_ms: i64, batch: i64) -> Result<usize, ApiError> {
    let paid_off: Vec<String> = rows::table
        .filter(rows::paid_off_at.lt(now_ms))
        .select(rows::client)
        .limit(batch)
        .load(conn)?;
    if paid_off.is_empty() {
        return Ok(0);
    }
    // The condition again: a charge since the select moved its row on.
    Ok(diesel::delete(
        rows::table
            .filter(rows::client.eq_any(&paid_off))
            .filter(rows::paid_off_at.lt(now_ms)),
    )
    .execute(conn)?)
}
