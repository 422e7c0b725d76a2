//! The one way a password is checked against an account, for the password grant and for a
//! password change alike: a lockout reservation first (`store::lockout`: parallel guesses never
//! check more passwords than the threshold), then the hash, then a failure recorded with its
//! audit rows in one transaction. A caller that goes on to write (a session, a new hash)
//! re-reads the account with [`recheck`] in its transaction, so a password change, disable or
//! revocation that landed during the hash is seen, not overwritten.

use std::net::IpAddr;

use crate::config::LockoutConfig;
use crate::db::Db;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::password::{Hasher, Match};
use crate::store::lockout::{self, Attempt, Reservation};
use crate::store::users::{self, User};
use crate::store::{audit, write_tx};

/// What checking a password found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// `rehash`: the stored hash is of the password as typed, made before passwords were
    /// normalised; a caller that writes should store the NFKC one. `attempt`: for
    /// [`lockout::record_success`] in the caller's write.
    Correct {
        rehash: bool,
        attempt: Attempt,
    },
    Wrong,
    /// Too many failures: not checked at all.
    LockedOut {
        retry_after: u64,
    },
}

/// The user `find` returns and a lockout reservation for them from `client_ip`, in one trip to
/// the pool.
pub async fn find_and_reserve(
    db: &Db,
    (now, cfg): (i64, LockoutConfig),
    client_ip: Option<IpAddr>,
    find: impl FnOnce(&mut crate::db::DbConn) -> Result<Option<User>, ApiError> + Send + 'static,
) -> Result<Option<(User, Reservation)>, ApiError> {
    db.run(move |c| {
        let Some(user) = find(c)? else {
            return Ok(None);
        };
        match lockout::reserve(c, &user.id, client_ip, now, &cfg) {
            Ok(reservation) => Ok(Some((user, reservation))),
            // Deleted since `find` read it: no such user, as if it had been read a moment later.
            Err(ApiError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Checks `password` against `user`'s hash under `reservation`; a wrong one is told to
/// `on_wrong` at once (before its recording, which may fail), counted, and audited as `failure`
/// (plus `account_locked` for each lock it sets: of its client, or of the account).
#[allow(clippy::too_many_arguments)] // the pieces of one check, each used once
pub async fn check(
    db: &Db,
    hasher: &Hasher,
    metrics: &Metrics,
    user: &User,
    reservation: Reservation,
    password: String,
    (now, cfg): (i64, LockoutConfig),
    (failure, on_wrong): (&'static str, impl FnOnce()),
) -> Result<Checked, ApiError> {
    let attempt = match reservation {
        Reservation::Granted(attempt) => attempt,
        Reservation::Refused { retry_after } => return Ok(Checked::LockedOut { retry_after }),
    };
    match hasher
        .check(password, Some(user.password_hash.clone()))
        .await
    {
        Ok(Match::No) => on_wrong(),
        Ok(found) => {
            return Ok(Checked::Correct {
                rehash: found == Match::AsTyped,
                attempt,
            });
        }
        Err(e) => {
            // Not checked (a full hashing queue answers 503): the attempt goes back, so a
            // burst of 503s cannot lock out a user who typed the right password. Only the one
            // attempt: the earlier failures stay counted.
            give_back(db, attempt).await;
            return Err(e);
        }
    }
    let uid = user.id.clone();
    let locks = db
        .run(move |c| {
            write_tx(c, |c| {
                let locks = lockout::record_failure(c, &attempt, now, &cfg)?;
                audit::record(c, now, failure, Some(&uid), &serde_json::json!({}))?;
                // Whose lock, not which address: the audit names users and sessions only.
                let client = serde_json::json!({"scope": "client"});
                let account = serde_json::json!({"scope": "account"});
                for (locked, detail) in [(locks.client, client), (locks.account, account)] {
                    if locked {
                        audit::record(c, now, "account_locked", Some(&uid), &detail)?;
                    }
                }
                Ok(locks)
            })
        })
        .await?;
    metrics
        .lockouts
        .inc_by(u64::from(locks.client) + u64::from(locks.account));
    Ok(Checked::Wrong)
}

/// What a locked re-read finds of the account a password was checked against.
pub enum Recheck {
    /// As checked: the check stands.
    Unchanged,
    /// Enabled, with another hash: a parallel login's rehash (an argon2 upgrade) or a password
    /// change. Only checking the password against it tells which.
    NewHash(User),
    /// Disabled or deleted since.
    Gone,
}

/// Inside a write transaction: the account `checked` came from, as it is now, locked for the
/// rest of the transaction, so a password change, disable or revocation that landed during
/// the hash is seen, not overwritten.
pub fn recheck(conn: &mut crate::db::DbConn, checked: &User) -> Result<Recheck, ApiError> {
    Ok(match users::lock_current(conn, &checked.id)? {
        Some(now) if now.disabled => Recheck::Gone,
        Some(now) if now.password_hash == checked.password_hash => Recheck::Unchanged,
        Some(now) => Recheck::NewHash(now),
        None => Recheck::Gone,
    })
}

/// Gives a reserved attempt back: the password was never checked, or it was right and whatever
/// failed after it is no failed attempt. Only the attempt: the client becomes known to the
/// account only with a login or change that commits ([`lockout::record_success`]). Best effort:
/// the error that brought us here is the one to report.
pub async fn give_back(db: &Db, attempt: Attempt) {
    let _ = db.run(move |c| lockout::release(c, &attempt)).await;
}
