//! Lockout per account and client, holding across replicas and under concurrency.
//!
//! Every password check first *reserves* an attempt on two counters, each with a conditional
//! increment: the client's on this account (`threshold` failures in a window lock that client
//! out of the account, no one else), and the account's over every client (`account_threshold`,
//! looser: it bounds guessing spread over many addresses). A client that logged in to the
//! account within `KNOWN_CLIENT_SECS` is neither counted nor held by the account's counter, so
//! strangers who lock the account keep out new clients, not the owner's usual ones. Only a
//! granted reservation gets its password checked, so N parallel wrong passwords never check
//! more than the threshold, whatever the timing. A success gives the attempt back.
//!
//! Lock order: a transaction that writes both kinds of row writes its client's row before its
//! account's, and no statement writes both kinds, so none holds an account's row while it waits
//! for a client's: on PostgreSQL that would deadlock with a reservation. A user's deletion
//! deletes them so too ([`delete_of`]), not by the cascade from the user's row, and a password
//! confirmed for a write records its success after the write ([`crate::credentials`]).

use std::net::IpAddr;

use diesel::prelude::*;

use super::{is_foreign_key_violation, is_unique_violation, write_tx};
use crate::config::LockoutConfig;
use crate::db::DbConn;
use crate::db::schema::lockouts_by_client as rows;
use crate::error::ApiError;

/// The `client` of the row that counts every client's attempts on the account.
const EVERY_CLIENT: &str = "";
/// The `client` of requests without an address (no socket address, as from Rocket's local
/// client): they share one client's row. Behind a proxy without `ip_header`, every client is
/// the proxy's address, and shares its row the same way.
const UNKNOWN_CLIENT: &str = "?";
/// How long a login keeps its client known to the account.
const KNOWN_CLIENT_SECS: i64 = 30 * 86_400;

/// One reserved password check: whose, from which client, and whether the account's counter
/// was charged (not for a known client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    user_id: String,
    client: String,
    account_charged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Granted(Attempt),
    Refused { retry_after: u64 },
}

/// Which locks a failure set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locks {
    /// The client is locked out of the account.
    pub client: bool,
    /// Every client not known to the account is.
    pub account: bool,
}

/// The lockout's name for a client: the rate limit's (an IPv6 /64 is one client).
fn client_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(
        || UNKNOWN_CLIENT.to_owned(),
        |ip| crate::ratelimit::client(ip).to_string(),
    )
}

/// Reserves one password check for `user_id` from `client_ip` before the password is hashed,
/// so parallel guesses cannot overshoot a threshold: granted while the client's counter and,
/// for a client not known to the account, the account's are under their thresholds and not
/// locked. `NotFound` when the user was deleted since it was read.
pub fn reserve(
    conn: &mut DbConn,
    user_id: &str,
    client_ip: Option<IpAddr>,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Reservation, ApiError> {
    let client = client_key(client_ip);
    for _ in 0..3 {
        if let Some(reservation) = write_tx(conn, |c| try_reserve(c, user_id, &client, now, cfg))? {
            return Ok(reservation);
        }
        // A first attempt (or cleanup just removed a stale row): create the missing rows (a
        // concurrent creator wins just as well), then reserve again. Outside the transaction,
        // where a unique violation cannot abort it.
        let present: Vec<String> = rows::table
            .filter(rows::user_id.eq(user_id))
            .filter(rows::client.eq_any([client.as_str(), EVERY_CLIENT]))
            .select(rows::client)
            .load(conn)?;
        for row in [client.as_str(), EVERY_CLIENT] {
            if present.iter().any(|p| p == row) {
                continue;
            }
            let inserted = diesel::insert_into(rows::table)
                .values((
                    rows::user_id.eq(user_id),
                    rows::client.eq(row),
                    rows::failures.eq(0),
                    rows::window_start.eq(now),
                    rows::locked_until.eq(0),
                    rows::lock_count.eq(0),
                    rows::known_until.eq(0),
                ))
                .execute(conn);
            match inserted {
                // The user was deleted since it was read: no such user (`NotFound`).
                Err(e) if is_foreign_key_violation(&e) => return Err(ApiError::NotFound),
                Err(e) if !is_unique_violation(&e) => return Err(e.into()),
                _ => {}
            }
        }
    }
    Err(ApiError::unavailable(
        "the account's login state kept changing",
    ))
}

/// One transaction (one commit) per attempt; `None` when a row is missing.
fn try_reserve(
    conn: &mut DbConn,
    user_id: &str,
    client: &str,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Option<Reservation>, ApiError> {
    let Some(known_until) = rows::table
        .filter(rows::user_id.eq(user_id))
        .filter(rows::client.eq(client))
        .select(rows::known_until)
        .first::<i64>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let account_charged = known_until <= now;
    let client_take = take(conn, (user_id, client), cfg.threshold, now, cfg)?;
    if client_take != Some(Taken::Granted) || !account_charged {
        return Ok(client_take.map(|taken| taken.into_reservation(user_id, client, false)));
    }
    let account_take = take(
        conn,
        (user_id, EVERY_CLIENT),
        cfg.account_threshold(),
        now,
        cfg,
    )?;
    if account_take != Some(Taken::Granted) {
        // Not checked after all: the client's attempt goes back, in this same transaction.
        uncount(conn, user_id, client)?;
    }
    Ok(account_take.map(|taken| taken.into_reservation(user_id, client, true)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Granted,
    Refused { retry_after: u64 },
}

impl Taken {
    fn into_reservation(self, user_id: &str, client: &str, account_charged: bool) -> Reservation {
        match self {
            Self::Granted => Reservation::Granted(Attempt {
                user_id: user_id.to_owned(),
                client: client.to_owned(),
                account_charged,
            }),
            Self::Refused { retry_after } => Reservation::Refused { retry_after },
        }
    }
}

/// Takes one attempt from a row's counter of `threshold`; `None` when the row is missing.
fn take(
    conn: &mut DbConn,
    (user_id, client): (&str, &str),
    threshold: u32,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Option<Taken>, ApiError> {
    let window = i64::from(cfg.window_secs);
    let row = || {
        rows::table
            .filter(rows::user_id.eq(user_id))
            .filter(rows::client.eq(client))
    };
    diesel::update(
        row()
            .filter(rows::window_start.lt(now - window))
            .filter(rows::locked_until.le(now)),
    )
    .set((rows::failures.eq(0), rows::window_start.eq(now)))
    .execute(conn)?;
    let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
    let granted = diesel::update(
        row()
            .filter(rows::failures.lt(threshold))
            .filter(rows::locked_until.le(now)),
    )
    .set(rows::failures.eq(rows::failures + 1))
    .execute(conn)?;
    if granted == 1 {
        return Ok(Some(Taken::Granted));
    }
    let state = row()
        .select((rows::failures, rows::window_start, rows::locked_until))
        .first::<(i32, i64, i64)>(conn)
        .optional()?;
    // No row, or one a concurrent first attempt created after the updates above looked: not a
    // refusal, try again with the row in place.
    let Some((_, window_start, locked_until)) =
        state.filter(|(failures, _, locked_until)| *failures >= threshold || *locked_until > now)
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
    Ok(Some(Taken::Refused {
        retry_after: u64::try_from(until - now).unwrap_or(1).max(1),
    }))
}

/// Records a failed check of `attempt`: locks its client out of the account at `threshold`
/// failures in the window, and the account (for clients not known to it) at
/// `account_threshold`.
pub fn record_failure(
    conn: &mut DbConn,
    attempt: &Attempt,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<Locks, ApiError> {
    let user_id = attempt.user_id.as_str();
    Ok(Locks {
        client: lock_if_due(conn, (user_id, &attempt.client), cfg.threshold, now, cfg)?,
        account: attempt.account_charged
            && lock_if_due(
                conn,
                (user_id, EVERY_CLIENT),
                cfg.account_threshold(),
                now,
                cfg,
            )?,
    })
}

/// Locks a row whose counter reached `threshold`, for a backoff that doubles with each lock.
fn lock_if_due(
    conn: &mut DbConn,
    (user_id, client): (&str, &str),
    threshold: u32,
    now: i64,
    cfg: &LockoutConfig,
) -> Result<bool, ApiError> {
    let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
    let due = || {
        rows::table
            .filter(rows::user_id.eq(user_id))
            .filter(rows::client.eq(client))
            .filter(rows::failures.ge(threshold))
            .filter(rows::locked_until.le(now))
    };
    let Some(previous) = due()
        .select(rows::lock_count)
        .first::<i32>(conn)
        .optional()?
    else {
        return Ok(false);
    };
    let exponent = u32::try_from(previous).unwrap_or(0).min(20);
    let backoff = u64::from(cfg.base_backoff_secs)
        .saturating_mul(1 << exponent)
        .min(u64::from(cfg.max_backoff_secs));
    // Conditional on the state read above, so concurrent failures lock once.
    let locked = diesel::update(due().filter(rows::lock_count.eq(previous)))
        .set((
            rows::locked_until.eq(now + i64::try_from(backoff).unwrap_or(i64::MAX / 2)),
            rows::lock_count.eq(previous + 1),
            rows::failures.eq(0),
            rows::window_start.eq(now),
        ))
        .execute(conn)?;
    Ok(locked == 1)
}

/// Gives one reserved attempt back, the lock history untouched: the password was never
/// checked (the hasher was saturated, say), so it was no failed guess.
pub fn release(conn: &mut DbConn, attempt: &Attempt) -> Result<(), ApiError> {
    uncount(conn, &attempt.user_id, &attempt.client)?;
    if attempt.account_charged {
        uncount(conn, &attempt.user_id, EVERY_CLIENT)?;
    }
    Ok(())
}

fn uncount(conn: &mut DbConn, user_id: &str, client: &str) -> Result<(), ApiError> {
    diesel::update(
        rows::table
            .filter(rows::user_id.eq(user_id))
            .filter(rows::client.eq(client))
            .filter(rows::failures.gt(0)),
    )
    .set(rows::failures.eq(rows::failures - 1))
    .execute(conn)?;
    Ok(())
}

/// The password was right: the client's failures, lock and lock history are forgotten (a
/// wrong password checked beside it may have locked the client meanwhile: it knows the password
/// all the same), the client is known to the account from now on, and the account's counter
/// gets the attempt back.
pub fn record_success(conn: &mut DbConn, attempt: &Attempt, now: i64) -> Result<(), ApiError> {
    diesel::update(
        rows::table
            .filter(rows::user_id.eq(&attempt.user_id))
            .filter(rows::client.eq(&attempt.client)),
    )
    .set((
        rows::failures.eq(0),
        rows::lock_count.eq(0),
        rows::locked_until.eq(0),
        rows::known_until.eq(now.saturating_add(KNOWN_CLIENT_SECS)),
    ))
    .execute(conn)?;
    if attempt.account_charged {
        uncount(conn, &attempt.user_id, EVERY_CLIENT)?;
    }
    Ok(())
}

/// Deletes every lockout row of `user_id`, each client's before the account's (the lock order
/// above): the cascade from the user's row would take the account's first, and deadlock with
/// a reservation holding its client's row. A step of deleting the user.
pub fn delete_of(conn: &mut DbConn, user_id: &str) -> Result<(), ApiError> {
    let of_user = || rows::table.filter(rows::user_id.eq(user_id));
    diesel::delete(of_user().filter(rows::client.ne(EVERY_CLIENT))).execute(conn)?;
    diesel::delete(of_user().filter(rows::client.eq(EVERY_CLIENT))).execute(conn)?;
    Ok(())
}

/// Lifts every lock on `user_id`'s account, each client's and the account's, and forgets the
/// failures counted. The lock history stays (a guesser who goes on gets the doubled locks, not
/// the first again), ending now, and so do the clients known. Audited as `user_unlocked`, with
/// who asked (`who`: an admin's `("by", sub)`, the CLI's `("via", "cli")`) and the number of
/// locks lifted (`locks`), which is also returned. Run it in a write transaction.
pub fn unlock(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    who: (&str, &str),
) -> Result<usize, ApiError> {
    let mut lifted = 0;
    // Clients' rows first, then the account's (the lock order above).
    for accounts in [false, true] {
        let kind = || {
            rows::table
                .filter(rows::user_id.eq(user_id))
                .filter(rows::client.eq(EVERY_CLIENT).eq(accounts))
        };
        lifted += diesel::update(kind().filter(rows::locked_until.gt(now)))
            .set(rows::locked_until.eq(now))
            .execute(conn)?;
        diesel::update(kind())
            .set(rows::failures.eq(0))
            .execute(conn)?;
    }
    let mut detail = super::audit::who(who);
    detail.insert("locks".to_owned(), lifted.into());
    super::audit::record(conn, now, "user_unlocked", Some(user_id), &detail.into())?;
    Ok(lifted)
}

/// How long past its window a row is kept for the checks reserved in it still under way: a
/// failure recorded on a deleted row locks nothing, and the next attempt starts a new count.
/// A check is a queued hash (a bounded queue, 503 when full) and a few statements, each under
/// `db_timeout_ms`: seconds, far under this.
const CHECK_MARGIN_SECS: i64 = 300;

/// Deletes up to `batch` rows of each kind that neither lock nor count anything any more, nor
/// keep a client known to its account. A row with earlier locks is kept until
/// `max_backoff_secs` after its last one ended: its `lock_count` is what doubles the next lock,
/// and forgetting it would let a guesser take the first, shortest lock again and again.
pub fn delete_stale(
    conn: &mut DbConn,
    now: i64,
    cfg: &LockoutConfig,
    batch: i64,
) -> Result<usize, ApiError> {
    let (window, decay) = (i64::from(cfg.window_secs), i64::from(cfg.max_backoff_secs));
    let stale_rows = || {
        rows::table
            .filter(rows::locked_until.le(now))
            .filter(rows::window_start.lt(now - window - CHECK_MARGIN_SECS))
            .filter(rows::known_until.le(now))
            .filter(
                rows::lock_count
                    .eq(0)
                    .or(rows::locked_until.le(now - decay)),
            )
    };
    // Clients' rows, then accounts' rows, never both in one statement (the lock order above).
    let mut deleted = 0;
    for accounts in [false, true] {
        let stale: Vec<i64> = stale_rows()
            .filter(rows::client.eq(EVERY_CLIENT).eq(accounts))
            .select(rows::id)
            .limit(batch)
            .load(conn)?;
        if !stale.is_empty() {
            // The same conditions again: an attempt reserved since the select reopened its
            // row's window, and deleting that row would forget the attempt.
            deleted +=
                diesel::delete(stale_rows().filter(rows::id.eq_any(&stale))).execute(conn)?;
        }
    }
    Ok(deleted)
}
