//! Each client's budget of failed password checks (`failed_logins_per_minute`, a burst of the
//! same size), held in the database so that every replica spends from the one budget. A client
//! that spent it is refused before its next check, whatever the password, until one failure is
//! paid off. The lockout (`store::lockout`) bounds guesses per account; a spray of one password
//! over many accounts stays under each account's threshold, and only this sees it.
//!
//! A row holds when the client's failures are all paid off, in Unix ms of the replica that last
//! charged it (replicas' clocks differ by their skew, which moves the budget by as much). A
//! charge is two conditional updates in one transaction, so charges racing on any replicas
//! cannot all pass one budget: the row is brought up to now if it is behind, then moved on one
//! interval if it was at most `size - 1` intervals ahead.

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

    /// How far ahead of now a client's row may be when it is charged again.
    const fn headroom_ms(self) -> i64 {
        self.interval_ms * (self.size - 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Charged: the client's failures, this one counted, are paid off at `until` (Unix ms).
    Granted { until: i64 },
    /// Spent: the next failure is paid off in `wait_ms`.
    Refused { wait_ms: i64 },
}

/// Charges `client` one failure at `now_ms` before its password is checked, or refuses it.
pub fn charge(
    conn: &mut DbConn,
    client: &str,
    now_ms: i64,
    budget: Budget,
) -> Result<Charge, ApiError> {
    for _ in 0..3 {
        if let Some(charge) = write_tx(conn, |c| try_charge(c, client, now_ms, budget))? {
            return Ok(charge);
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

/// One transaction; `None` when the row is missing.
fn try_charge(
    conn: &mut DbConn,
    client: &str,
    now_ms: i64,
    budget: Budget,
) -> Result<Option<Charge>, ApiError> {
    let row = || rows::table.filter(rows::client.eq(client));
    diesel::update(row().filter(rows::paid_off_at.lt(now_ms)))
        .set(rows::paid_off_at.eq(now_ms))
        .execute(conn)?;
    let granted = diesel::update(row().filter(rows::paid_off_at.le(now_ms + budget.headroom_ms())))
        .set(rows::paid_off_at.eq(rows::paid_off_at + budget.interval_ms))
        .execute(conn)?;
    let Some(paid_off_at) = row()
        .select(rows::paid_off_at)
        .first::<i64>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    Ok(Some(if granted == 1 {
        Charge::Granted { until: paid_off_at }
    } else {
        Charge::Refused {
            wait_ms: paid_off_at - now_ms - budget.headroom_ms(),
        }
    }))
}

/// Gives back, at `now_ms`, what is left unpaid of a charge that set `until`: no more, so a
/// check that outlasted its own charge cannot give back a later failure's.
pub fn refund(
    conn: &mut DbConn,
    client: &str,
    until: i64,
    now_ms: i64,
    budget: Budget,
) -> Result<(), ApiError> {
    let left = (until - now_ms).clamp(0, budget.interval_ms);
    if left > 0 {
        diesel::update(rows::table.filter(rows::client.eq(client)))
            .set(rows::paid_off_at.eq(rows::paid_off_at - left))
            .execute(conn)?;
    }
    Ok(())
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
