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
use crate::password::{Hasher, Match, may_be_a_password};
use crate::revoker::{Revocations, Revoker};
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

/// What confirming a signed-in user's password takes: the route's managed state.
pub struct Reauthentication<'r> {
    pub lockout: LockoutConfig,
    pub db: &'r Db,
    pub hasher: &'r Hasher,
    pub metrics: &'r Metrics,
    pub revoker: &'r Revoker,
}

impl Reauthentication<'_> {
    /// The one way a signed-in user's current password guards a change to their account (a new
    /// password, the account's deletion): checked as a login checks it, under the same lockout,
    /// so a stolen access token is no way around it. `prepare` runs once the password is right
    /// (a new hash, say); then `write` runs in one revocation transaction against the account
    /// as it was checked ([`recheck`]), with the attempt recorded as a success. A rehash of the
    /// same password meanwhile is checked once more; another password, or a disabled or
    /// deleted account, is refused. Whatever fails after a right password is no failed attempt;
    /// a wrong one is audited as `failure`.
    pub async fn confirm<P, T, W>(
        &self,
        (user_id, client_ip, now): (&str, Option<IpAddr>, i64),
        failure: &'static str,
        password: String,
        prepare: impl Future<Output = Result<P, ApiError>>,
        write: W,
    ) -> Result<T, ApiError>
    where
        P: Clone + Send + 'static,
        T: Send + 'static,
        W: Fn(&mut Revocations<'_>, &User, P) -> Result<T, ApiError> + Clone + Send + 'static,
    {
        if !may_be_a_password(&password) {
            return Err(ApiError::WrongPassword);
        }
        let (sub, cfg) = (user_id.to_owned(), self.lockout);
        let (user, reservation) = find_and_reserve(self.db, (now, cfg), client_ip, move |c| {
            users::by_id(c, &sub)
        })
        .await?
        .ok_or(ApiError::InvalidToken(gatehouse_shared::ErrorCode::Revoked))?;
        let checked = check(
            self.db,
            self.hasher,
            self.metrics,
            &user,
            reservation,
            password.clone(),
            (now, cfg),
            (failure, || {}),
        )
        .await?;
        let attempt = match checked {
            Checked::Correct { attempt, .. } => attempt,
            Checked::Wrong => {
                return Err(ApiError::WrongPassword);
            }
            Checked::LockedOut { retry_after } => return Err(ApiError::LockedOut { retry_after }),
        };
        let written = async {
            let (prepared, mut checked) = (prepare.await?, user);
            for last_try in [false, true] {
                let (against, attempt) = (checked.clone(), attempt.clone());
                let (prepared, write) = (prepared.clone(), write.clone());
                let outcome = self
                    .revoker
                    .run(now, move |r| {
                        match recheck(r.conn(), &against)? {
                            Recheck::Unchanged => {}
                            changed => return Ok(Err(changed)),
                        }
                        // The write before the success: the account's lockout row is not held
                        // while a deletion takes every client's (`lockout::delete_of`).
                        let written = write(r, &against, prepared)?;
                        let now = r.now();
                        lockout::record_success(r.conn(), &attempt, now)?;
                        Ok(Ok(written))
                    })
                    .await?;
                match outcome {
                    Ok(written) => return Ok(written),
                    // A new hash of the same password (a parallel login's argon2 upgrade) is
                    // no change: check against it once. Another password, or a disabled
                    // account, is.
                    Err(Recheck::NewHash(current)) if !last_try => {
                        let stored = Some(current.password_hash.clone());
                        if !self.hasher.verify(password.clone(), stored).await? {
                            break;
                        }
                        checked = current;
                    }
                    // Disabled or deleted while the password was checked: the caller's token
                    // is revoked with it, and is told so rather than asked to try again.
                    Err(Recheck::Gone) => {
                        return Err(ApiError::InvalidToken(gatehouse_shared::ErrorCode::Revoked));
                    }
                    Err(_) => break,
                }
            }
            Err(ApiError::PasswordChanged)
        }
        .await;
        if written.is_err() {
            give_back(self.db, attempt).await;
        }
        written
    }
}
