//! `users create|list|show|events|unlock|disable|enable|reset-password|delete`.

use std::io::BufRead as _;

use super::{Outcome, UsersCommand, fail, load, now, push_after_revocation};
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::password::{HashPolicy, check_password_policy, normalize_username};
use crate::revoker::{Revocations, Revoker};
use crate::store::users::User;
use crate::store::{audit, lockout, users};

pub(super) fn run(command: UsersCommand) -> Outcome {
    match command {
        UsersCommand::List => users_list(None),
        UsersCommand::Show { username } => users_list(Some(&username)),
        UsersCommand::Events { username, limit } => users_events(&username, limit),
        UsersCommand::Create { username, admin } => users_create(&username, admin),
        UsersCommand::Unlock { username } => users_unlock(&username),
        UsersCommand::Disable { username } => users_set_standing(&username, true),
        UsersCommand::Enable { username } => users_set_standing(&username, false),
        UsersCommand::ResetPassword { username } => users_reset_password(&username),
        UsersCommand::Delete { username } => users_delete(&username),
    }
}

/// `users list`, or `users show NAME` (an unknown name is an error).
fn users_list(only: Option<&str>) -> Outcome {
    let (_, db) = load()?;
    let users = match only {
        Some(name) => {
            let name = normalize_username(name).map_err(fail)?;
            let found = db
                .run_sync(|c| users::by_username(c, &name))
                .map_err(fail)?
                .ok_or_else(|| format!("no user named {name}"))?;
            vec![found]
        }
        None => db.run_sync(users::list).map_err(fail)?,
    };
    for u in users {
        say!(
            "{}\t{}\t{}\t{}\tcreated {}",
            u.id,
            u.username,
            if u.is_admin { "admin" } else { "user" },
            if u.disabled { "disabled" } else { "enabled" },
            u.created_at
        );
    }
    Ok(())
}

/// `users events NAME`: the user's most recent audit events, newest first, one a line: the
/// time (Unix seconds), the kind and the detail (JSON).
fn users_events(username: &str, limit: i64) -> Outcome {
    let (_, db) = load()?;
    let name = normalize_username(username).map_err(fail)?;
    let events = db
        .run_sync(|c| {
            let user = users::by_username(c, &name)?.ok_or(ApiError::NotFound)?;
            audit::recent(c, &user.id, limit)
        })
        .map_err(|e| no_such_user(e, &name))?;
    for event in events {
        say!("{}\t{}\t{}", event.at, event.kind, event.detail);
    }
    Ok(())
}

/// On a terminal: asked twice, without echo (rpassword turns the terminal's echo off). From a
/// pipe or file: the first line, so scripts and provisioning keep working; said on standard
/// error, since a session without a terminal (`ssh` without `-t`) would otherwise wait with no
/// prompt while the typed password shows.
fn read_new_password() -> Result<String, String> {
    use std::io::{IsTerminal as _, Read as _};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("reading the password: {e}"))?;
        let again = rpassword::prompt_password("Password (again): ")
            .map_err(|e| format!("reading the password: {e}"))?;
        if first != again {
            return Err("the two passwords differ; nothing changed".into());
        }
        return Ok(first);
    }
    warn_operator!(
        "standard input is not a terminal: the password is its first line (for a prompt \
         without echo, run this on a terminal: ssh -t, docker exec -it)"
    );
    let mut line = Vec::new();
    // Bounded: a file given by mistake is not read whole. Measured before it is decoded, so a
    // cut through a character is not what gets reported.
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD_LINE_BYTES + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    if line.is_empty() {
        return Err(
            "standard input was empty: give the password as its first line, or run \
                    this on a terminal; nothing changed"
                .into(),
        );
    }
    if line.len() as u64 > MAX_PASSWORD_LINE_BYTES {
        return Err(format!(
            "the first line of standard input is over {MAX_PASSWORD_LINE_BYTES} bytes: not a \
             password; nothing changed"
        ));
    }
    let line = String::from_utf8(line)
        .map_err(|_| "the password read from standard input is not UTF-8; nothing changed")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The longest first line read as a password: the policy's most characters, each of up to four
/// bytes in UTF-8, and the line's end (`\r\n`).
const MAX_PASSWORD_LINE_BYTES: u64 = crate::password::MAX_PASSWORD_CHARS as u64 * 4 + 2;

fn users_create(username: &str, admin: bool) -> Outcome {
    let (config, db) = load()?;
    let username = normalize_username(username).map_err(fail)?;
    // Before the password is asked for, as `reset-password` checks its name.
    if db
        .run_sync(|c| users::by_username(c, &username))
        .map_err(fail)?
        .is_some()
    {
        return Err(format!(
            "a user named {username} exists (`users reset-password {username}` sets its password)"
        )
        .into());
    }
    let password = read_new_password()?;
    check_password_policy(&password, &username).map_err(fail)?;
    let hash = HashPolicy::from_config(&config.password)
        .hash(&password)
        .map_err(fail)?;
    let id = crate::ids::new_id().map_err(fail)?;
    let now = now();
    // One transaction, as registration's: an admin without its audit row must not remain.
    db.run_sync(|c| {
        crate::store::write_tx(c, |c| {
            users::create(c, &id, &username, &hash, admin, now)?;
            let detail = serde_json::json!({"via": "cli", "admin": admin});
            audit::record(c, now, "user_created", Some(&id), &detail)
        })
    })
    .map_err(fail)?;
    say!("{id}\t{username}{}", if admin { "\tadmin" } else { "" });
    Ok(())
}

fn users_unlock(username: &str) -> Outcome {
    let (_, db) = load()?;
    let name = normalize_username(username).map_err(fail)?;
    let now = now();
    let lifted = db
        .run_sync(|c| {
            crate::store::write_tx(c, |c| {
                let user = users::by_username(c, &name)?.ok_or(ApiError::NotFound)?;
                lockout::unlock(c, &user.id, now, ("via", "cli"))
            })
        })
        .map_err(|e| no_such_user(e, &name))?;
    say!("{name}\tlocks lifted: {lifted}");
    Ok(())
}

/// `users disable|enable NAME`, as the admin endpoints do ([`users::set_standing`]); a disable's
/// revocations are then pushed to the edges, as a serving replica's are.
fn users_set_standing(username: &str, disabled: bool) -> Outcome {
    let (config, db) = load()?;
    let name = normalize_username(username).map_err(fail)?;
    let changed = on_named_user(&config, &db, &name, |r, user| {
        users::set_standing(r, &user.id, disabled, ("via", "cli"))?.ok_or(ApiError::NotFound)
    })?;
    let state = if disabled { "disabled" } else { "enabled" };
    if !changed {
        say!("{name}\talready {state}; nothing changed");
        return Ok(());
    }
    if !disabled {
        say!("{name}\tenabled");
        return Ok(());
    }
    say!("{name}\tdisabled: every session ended and every access token revoked");
    push_after_revocation(&config, &db)
}

/// `users reset-password NAME`: the new password as `users create` reads it, checked by the
/// same policy, then set as the admin endpoint sets it ([`users::reset_password`]); the list is
/// then pushed, as a disable's is.
fn users_reset_password(username: &str) -> Outcome {
    let (config, db) = load()?;
    let name = normalize_username(username).map_err(fail)?;
    // Before the password is asked for: a mistyped name is said at once.
    db.run_sync(|c| users::by_username(c, &name)?.ok_or(ApiError::NotFound))
        .map_err(|e| no_such_user(e, &name))?;
    let password = read_new_password()?;
    check_password_policy(&password, &name).map_err(fail)?;
    let hash = HashPolicy::from_config(&config.password)
        .hash(&password)
        .map_err(fail)?;
    on_named_user(&config, &db, &name, |r, user| {
        users::reset_password(r, &user.id, &hash, ("via", "cli"))?
            .then_some(())
            .ok_or(ApiError::NotFound)
    })?;
    say!("{name}\tpassword reset: every session ended and every access token revoked");
    push_after_revocation(&config, &db)
}

/// `users delete NAME`, as the admin endpoint does ([`users::delete`]); the revocations are then
/// pushed, as a disable's are.
fn users_delete(username: &str) -> Outcome {
    let (config, db) = load()?;
    let name = normalize_username(username).map_err(fail)?;
    // Its id and role: the audit rows (`GET /v1/admin/users/<id>/events`) stay under the id,
    // and a second run finds no user of that name.
    let (id, role) = on_named_user(&config, &db, &name, |r, user| {
        users::delete(r, &user.id, ("via", "cli"))?
            .then(|| {
                (
                    user.id.clone(),
                    if user.is_admin { "admin" } else { "user" },
                )
            })
            .ok_or(ApiError::NotFound)
    })?;
    say!("{name}\t{id}\t{role}\tdeleted: every session ended and every access token revoked");
    push_after_revocation(&config, &db)
}

/// Runs `work` on the user named `name` in one revocation transaction of this command; an
/// unknown name, or a user `work` finds gone (`NotFound`), is "no user named".
fn on_named_user<T>(
    config: &Config,
    db: &Db,
    name: &str,
    work: impl FnOnce(&mut Revocations<'_>, &User) -> Result<T, ApiError>,
) -> Result<T, String> {
    Revoker::for_command(db.clone(), config.clone())
        .run_sync(now(), |r| {
            let user = users::by_username(r.conn(), name)?.ok_or(ApiError::NotFound)?;
            work(r, &user)
        })
        .map_err(|e| no_such_user(e, name))
}

#[allow(clippy::needless_pass_by_value)] // used as a map_err adapter, as `fail` is
fn no_such_user(e: ApiError, name: &str) -> String {
    match e {
        ApiError::NotFound => format!("no user named {name}"),
        e => fail(e),
    }
}
