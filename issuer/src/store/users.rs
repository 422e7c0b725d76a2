use diesel::prelude::*;

use super::{audit, is_unique_violation};
use crate::db::DbConn;
use crate::db::schema::users;
use crate::error::ApiError;
use crate::revoker::Revocations;

#[derive(Debug, Clone, Queryable)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

pub fn create(
    conn: &mut DbConn,
    id: &str,
    username: &str,
    password_hash: &str,
    is_admin: bool,
    now: i64,
) -> Result<(), ApiError> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(id),
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::is_admin.eq(is_admin),
            users::disabled.eq(false),
            users::created_at.eq(now),
        ))
        .execute(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                ApiError::UsernameTaken
            } else {
                e.into()
            }
        })?;
    Ok(())
}

pub fn by_username(conn: &mut DbConn, username: &str) -> Result<Option<User>, ApiError> {
    Ok(users::table
        .filter(users::username.eq(username))
        .first::<User>(conn)
        .optional()?)
}

/// Every user, by name (the operator's `users list`).
pub fn list(conn: &mut DbConn) -> Result<Vec<User>, ApiError> {
    Ok(users::table
        .order(users::username.asc())
        .load::<User>(conn)?)
}

pub fn by_id(conn: &mut DbConn, id: &str) -> Result<Option<User>, ApiError> {
    Ok(users::table.find(id).first::<User>(conn).optional()?)
}

/// The user, with their row locked until the transaction ends (PostgreSQL `FOR UPDATE`; an
/// SQLite write transaction already holds the database's write lock).
pub fn lock_current(conn: &mut DbConn, id: &str) -> Result<Option<User>, ApiError> {
    let query = users::table.find(id);
    Ok(match conn {
        DbConn::Postgres(c) => query.for_update().first::<User>(c).optional()?,
        DbConn::Sqlite(c) => query.first::<User>(c).optional()?,
    })
}

pub fn set_password_hash(conn: &mut DbConn, id: &str, hash: &str) -> Result<(), ApiError> {
    diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(conn)?;
    Ok(())
}

/// Sets the user's `disabled`: `None` when there is no such user, else whether it changed (a
/// user already so needs no cut-off, audit row or push).
pub fn set_disabled(conn: &mut DbConn, id: &str, disabled: bool) -> Result<Option<bool>, ApiError> {
    let changed = diesel::update(users::table.find(id).filter(users::disabled.ne(disabled)))
        .set(users::disabled.eq(disabled))
        .execute(conn)?
        == 1;
    if changed {
        return Ok(Some(true));
    }
    let exists = users::table
        .find(id)
        .select(users::id)
        .first::<String>(conn)
        .optional()?
        .is_some();
    Ok(exists.then_some(false))
}

/// Disables or enables a user in the revocation service's transaction: the one way both the
/// admin endpoints and `users disable|enable` take. Audited as `user_disabled` or
/// `user_enabled` with who asked (`who`: an admin's `("by", sub)`, the CLI's `("via", "cli")`).
/// Disabling also ends every session and cuts off every access token
/// ([`Revocations::user`]). `None` when there is no such user; `Some(false)` when it already
/// was so, and nothing is written.
pub fn set_standing(
    r: &mut Revocations<'_>,
    user_id: &str,
    disabled: bool,
    who: (&str, &str),
) -> Result<Option<bool>, ApiError> {
    let changed = set_disabled(r.conn(), user_id, disabled)?;
    if changed != Some(true) {
        return Ok(changed);
    }
    let kind = if disabled {
        "user_disabled"
    } else {
        "user_enabled"
    };
    let now = r.now();
    audit::record(r.conn(), now, kind, Some(user_id), &audit::who(who).into())?;
    if disabled {
        r.user(user_id, "disabled")?;
    }
    Ok(changed)
}

/// Sets a new password for a user who cannot sign in, in the revocation service's transaction,
/// the one way the admin endpoint and `users reset-password` take: the hash, its audit row
/// (`password_reset`, with who asked), and the end of every session with a cut-off of every
/// token, so whoever held the account is out. Lockouts stay (an unlock is its own act). A login
/// checked against the old hash meanwhile is refused at its commit
/// ([`crate::credentials::recheck`]). `false` when there is no such user.
pub fn reset_password(
    r: &mut Revocations<'_>,
    user_id: &str,
    hash: &str,
    who: (&str, &str),
) -> Result<bool, ApiError> {
    if lock_current(r.conn(), user_id)?.is_none() {
        return Ok(false);
    }
    set_password_hash(r.conn(), user_id, hash)?;
    let now = r.now();
    audit::record(
        r.conn(),
        now,
        "password_reset",
        Some(user_id),
        &audit::who(who).into(),
    )?;
    r.user(user_id, "password_reset")?;
    Ok(true)
}

/// Deletes a user in the revocation service's transaction, the one way the admin endpoint and
/// `users delete` take. Every session ends and every access token is cut off first
/// ([`Revocations::user`]: those entries outlive the row, so verifiers go on refusing its
/// tokens). Its refresh tokens are deleted before its sessions, as a rotation locks them, and
/// its lockout rows each client's before the account's, as a reservation locks them
/// ([`super::lockout::delete_of`]); then the row goes with its sessions (`ON DELETE CASCADE`),
/// and its name is free again (a new account under it gets a new id). Audited
/// `user_deleted` with who asked; the account's earlier audit rows stay (they hold its id,
/// never its name or a secret). `false` when there is no such user.
pub fn delete(r: &mut Revocations<'_>, user_id: &str, who: (&str, &str)) -> Result<bool, ApiError> {
    if lock_current(r.conn(), user_id)?.is_none() {
        return Ok(false);
    }
    super::sessions::delete_refresh_tokens_of(r.conn(), user_id)?;
    r.user(user_id, "deleted")?;
    let now = r.now();
    audit::record(
        r.conn(),
        now,
        "user_deleted",
        Some(user_id),
        &audit::who(who).into(),
    )?;
    super::lockout::delete_of(r.conn(), user_id)?;
    diesel::delete(users::table.find(user_id)).execute(r.conn())?;
    Ok(true)
}
