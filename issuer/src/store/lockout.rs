//! Per-account lockout that holds across replicas and under concurrency.
//!
//! Every password attempt first *reserves* one of the `threshold` attempts of the current window
//! with a conditional increment; only a granted reservation gets its password checked. So N
//! parallel wrong passwords can never verify more than `threshold` times, whatever the timing.
//! A success gives the budget back.

use diesel::prelude::*;

use super::{is_unique_violation, write_tx};
use crate::config::LockoutConfig;
use crate::db::DbConn;
use crate::db::schema::lockouts;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Granted,
    Refused { retry_after: u64 },
}

/// Reserves one password check for `user_id` before the password is hashed, so parallel
/// guesses cannot overshoot the threshold: granted while fewer than `threshold` attempts are
/// counted in the window and the account is not locked.
pub fn reserve(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Reservation, ApiError> {
    for _ in 0..3 {
        if let Some(reservation) = write_tx(conn, |c| try_reserve(c, user_id, now, cfg))? {
            return Ok(reservation);
        }
        // This user's first attempt (or cleanup just removed a stale row): create the row (a
        // concurrent creator wins just as well), then reserve again. Outside the transaction,
        // where a unique violation cannot abort it.
        let inserted = diesel::insert_into(lockouts::table)
            .values((
                lockouts::user_id.eq(user_id),
                lockouts::failures.eq(0),
                lockouts::window_start.eq(now),
                lockouts::locked_until.eq(0),
                lockouts::lock_count.eq(0),
            ))
            .execute(conn);
        match inserted {
            Err(e) if !is_unique_violation(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Err(ApiError::unavailable(
        "the account's login state kept changing",
    ))
}

/// One transaction (one commit) per attempt; `None` when the user has no lockout row yet.
fn try_reserve(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Option<Reservation>, ApiError> {
    let window = i64::from(cfg.window_secs);
    diesel::update(
        lockouts::table
            .find(user_id)
            .filter(lockouts::window_start.lt(now - window))
            .filter(lockouts::locked_until.le(now)),
    )
    .set((lockouts::failures.eq(0), lockouts::window_start.eq(now)))
    .execute(conn)?;
    let threshold = i32::try_from(cfg.threshold).unwrap_or(i32::MAX);
    let granted = diesel::update(
        lockouts::table
            .find(user_id)
            .filter(lockouts::failures.lt(threshold))
            .filter(lockouts::locked_until.le(now)),
    )
    .set(lockouts::failures.eq(lockouts::failures + 1))
    .execute(conn)?;
    if granted == 1 {
        return Ok(Some(Reservation::Granted));
    }
    let row = lockouts::table
        .find(user_id)
        .select((
            lockouts::failures,
            lockouts::window_start,
            lockouts::locked_until,
        ))
        .first::<(i32, i64, i64)>(conn)
        .optional()?;
    // No row, or one a concurrent first attempt created after the updates above looked: not a
    // refusal, try again with the row in place.
    let Some((_, window_start, locked_until)) =
        row.filter(|(failures, _, locked_until)| *failures >= threshold || *locked_until > now)
    else {
        return Ok(None);
    };
    // Not locked: the attempts are other logins' checks still under way, over within a second
    // (a client honouring `Retry-After` would otherwise wait out the whole window).
    let until = if locked_until > now {
        locked_until
    } else {
        (now + 1).min(window_start + window)
    };
    Ok(Some(Reservation::Refused {
        retry_after: u64::try_from(until - now).unwrap_or(1).max(1),
    }))
}

pub fn record_failure(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<bool, ApiError> {
    let threshold = i32::try_from(cfg.threshold).unwrap_or(i32::MAX);
    let previous: Option<i32> = lockouts::table
        .find(user_id)
        .filter(lockouts::failures.ge(threshold))
        .filter(lockouts::locked_until.le(now))
        .select(lockouts::lock_count)
        .first(conn)
        .optional()?;
    let Some(previous) = previous else {
        return Ok(false);
    };
    let exponent = u32::try_from(previous).unwrap_or(0).min(20);
    let backoff = u64::from(cfg.base_backoff_secs)
        .saturating_mul(1 << exponent)
        .min(u64::from(cfg.max_backoff_secs));
    // Conditional on the state read above, so concurrent failures lock once.
    let locked = diesel::update(
        lockouts::table
            .find(user_id)
            .filter(lockouts::failures.ge(threshold))
            .filter(lockouts::locked_until.le(now))
            .filter(lockouts::lock_count.eq(previous)),
    )
    .set((
        lockouts::locked_until.eq(now + i64::try_from(backoff).unwrap_or(i64::MAX / 2)),
        lockouts::lock_count.eq(previous + 1),
        lockouts::failures.eq(0),
        lockouts::window_start.eq(now),
    ))
    .execute(conn)?;
    Ok(locked == 1)
}

/// Gives one reserved attempt back, the lock history untouched: the password was never
/// checked (the hasher was saturated, say), so it was no failed guess.
pub fn release(conn: &mut DbConn, user_id: &str) -> Result<(), ApiError> {
    diesel::update(
        lockouts::table
            .find(user_id)
            .filter(lockouts::failures.gt(0)),
    )
    .set(lockouts::failures.eq(lockouts::failures - 1))
    .execute(conn)?;
    Ok(())
}

pub fn record_success(conn: &mut DbConn, user_id: &str) -> Result<(), ApiError> {
    diesel::update(lockouts::table.find(user_id))
        .set((lockouts::failures.eq(0), lockouts::lock_count.eq(0)))
        .execute(conn)?;
    Ok(())
}
