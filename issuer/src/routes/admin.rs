//! Admin endpoints (bearer with the `admin` scope, held by an admin user): revoke any user or
//! session; disable, enable, delete or unlock users, reset their password or read their audit
//! events; and RFC 7662 introspection for origins that want a hard online check.

use std::sync::Arc;

use gatehouse_shared::ErrorCode;
use rocket::serde::json::{Json, Value, json};
use rocket::{Route, State, get, post, routes};
use serde::Deserialize;

use super::naming_client;
use crate::auth_cache::AuthCache;
use crate::config::{ADMIN_SCOPE, Config};
use crate::context::{Authenticated, FormOrJson, Now, authenticate, omitted_if_empty};
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::password::{Hasher, check_password_policy};
use crate::revoker::{Revocations, Revoker};
use crate::store::{audit, lockout, sessions, users, write_tx};

/// Ids are base64url; anything else (a NUL byte, say, which PostgreSQL would refuse) cannot
/// name a user or session, so it is simply not found.
pub(super) fn checked_id(raw: &str) -> Result<String, ApiError> {
    let plausible = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plausible {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::NotFound)
    }
}

fn admin(auth: Result<Authenticated, ApiError>) -> Result<Authenticated, ApiError> {
    let auth = auth?;
    auth.require_scope(ADMIN_SCOPE)?;
    Ok(auth)
}

/// First in an admin action's transaction: the acting admin `by`, read again once the writes'
/// order is this transaction's, must still be an enabled admin. The request guard read it
/// before the write lock: an admin disabled by the write that held it (another admin's, at
/// the same moment) would still act, and two admins disabling each other could leave none.
fn still_admin(conn: &mut DbConn, by: &str) -> Result<(), ApiError> {
    match users::by_id(conn, by)? {
        Some(user) if user.is_admin && !user.disabled => Ok(()),
        _ => Err(ApiError::InvalidToken(ErrorCode::Revoked)),
    }
}

/// Runs `work` in the revocation service's transaction for admin `by`: first [`still_admin`],
/// and `by` named in every audit row the revocations write.
async fn as_admin<T: Send + 'static>(
    revoker: &Revoker,
    now: i64,
    by: String,
    work: impl FnOnce(&mut Revocations<'_>, &str) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    revoker
        .run(now, move |r| {
            still_admin(r.conn(), &by)?;
            r.acting_for(&by);
            work(r, &by)
        })
        .await
}

/// An admin locked out of their own account could not undo it: another admin must.
fn not_own_account(uid: &str, by: &str, action: &str) -> Result<(), ApiError> {
    if uid == by {
        return Err(ApiError::NotPermitted(
            format!("an admin cannot {action} their own account; another admin can").into(),
        ));
    }
    Ok(())
}

#[post("/v1/admin/users/<user_id>/revoke")]
async fn revoke_user(
    revoker: &State<Revoker>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    let uid = checked_id(user_id)?;
    as_admin(revoker, now, by, move |r, _| {
        users::by_id(r.conn(), &uid)?.ok_or(ApiError::NotFound)?;
        r.user(&uid, "admin")
    })
    .await?;
    Ok(Json(json!({"revoked": "user", "sub": user_id})))
}

#[post("/v1/admin/sessions/<sid>/revoke")]
async fn revoke_session(
    revoker: &State<Revoker>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    sid: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    let id = checked_id(sid)?;
    as_admin(revoker, now, by, move |r, _| {
        sessions::by_id(r.conn(), &id)?.ok_or(ApiError::NotFound)?;
        r.session(&id, "admin")
    })
    .await?;
    Ok(Json(json!({"revoked": "session", "sid": sid})))
}

async fn set_disabled(
    revoker: &Revoker,
    auth_cache: &AuthCache,
    now: i64,
    by: String,
    user_id: &str,
    disabled: bool,
) -> Result<(), ApiError> {
    let uid = checked_id(user_id)?;
    if disabled {
        not_own_account(&uid, &by, "disable")?;
    }
    // Through the revocation service both ways: disabling revokes in the same transaction, and
    // either way the bearer check must not keep the old standing.
    as_admin(revoker, now, by, move |r, by| {
        users::set_standing(r, &uid, disabled, ("by", by))?.ok_or(ApiError::NotFound)
    })
    .await?;
    if !disabled {
        auth_cache.invalidate();
    }
    Ok(())
}

#[post("/v1/admin/users/<user_id>/disable")]
async fn disable(
    revoker: &State<Revoker>,
    auth_cache: &State<Arc<AuthCache>>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    set_disabled(revoker, auth_cache, now, by, user_id, true).await?;
    Ok(Json(json!({"sub": user_id, "disabled": true})))
}

#[post("/v1/admin/users/<user_id>/enable")]
async fn enable(
    revoker: &State<Revoker>,
    auth_cache: &State<Arc<AuthCache>>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    set_disabled(revoker, auth_cache, now, by, user_id, false).await?;
    Ok(Json(json!({"sub": user_id, "disabled": false})))
}

/// Deletes another user's account ([`users::delete`]): its sessions and tokens end with it.
#[post("/v1/admin/users/<user_id>/delete")]
async fn delete(
    revoker: &State<Revoker>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    let uid = checked_id(user_id)?;
    not_own_account(&uid, &by, "delete")?;
    as_admin(revoker, now, by, move |r, by| {
        users::delete(r, &uid, ("by", by))?
            .then_some(())
            .ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(Json(json!({"sub": user_id, "deleted": true})))
}

#[derive(Debug, Deserialize)]
pub struct PasswordReset {
    new_password: String,
}

/// Sets a new password for a user who cannot sign in ([`users::reset_password`]: every session
/// ends and every token is cut off, so whoever held the account is out), for a help desk that
/// has made sure who is asking. Held to the registration policy; lockouts stay (`unlock`). Not
/// for an admin's account: one admin taking over another's quietly, under the other's name,
/// is left to an operator at a shell (`users reset-password`). An admin changes their own with
/// `POST /v1/password`, which asks for the current one.
#[post("/v1/admin/users/<user_id>/password", data = "<body>")]
async fn reset_password(
    db: &State<Db>,
    hasher: &State<Hasher>,
    revoker: &State<Revoker>,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
    body: Result<FormOrJson<PasswordReset>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let by = admin(auth)?.claims.sub.clone();
    let FormOrJson(PasswordReset { new_password }, now) = body?;
    let uid = checked_id(user_id)?;
    let lookup = uid.clone();
    let user = db
        .run(move |c| users::by_id(c, &lookup))
        .await?
        .ok_or(ApiError::NotFound)?;
    if user.is_admin {
        // The caller's own account among them: an admin changes their own with `/v1/password`.
        return Err(ApiError::NotPermitted(
            "an admin's password is changed with /v1/password or reset at a shell \
             (`users reset-password`), not here"
                .into(),
        ));
    }
    check_password_policy(&new_password, &user.username)?;
    let hash = hasher.hash(new_password).await?;
    as_admin(revoker, now, by, move |r, by| {
        users::reset_password(r, &uid, &hash, ("by", by))?
            .then_some(())
            .ok_or(ApiError::NotFound)
    })
    .await?;
    Ok(Json(json!({"sub": user_id, "password_reset": true})))
}

/// Lifts every lock on a user's account ([`lockout::unlock`]): for a help desk that has made
/// sure who is asking. Audited as `user_unlocked`, with the admin and the locks lifted.
#[post("/v1/admin/users/<user_id>/unlock")]
async fn unlock(
    db: &State<Db>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let by = admin(auth)?.claims.sub.clone();
    let uid = checked_id(user_id)?;
    let lifted = db
        .run(move |c| {
            write_tx(c, |c| {
                still_admin(c, &by)?;
                users::by_id(c, &uid)?.ok_or(ApiError::NotFound)?;
                lockout::unlock(c, &uid, now, ("by", &by))
            })
        })
        .await?;
    Ok(Json(json!({"sub": user_id, "locks_lifted": lifted})))
}

/// A user's most recent audit events, newest first: what a help desk reads before it unlocks or
/// resets an account (failed logins, locks, sessions revoked, who acted). A deleted account's
/// events stay, so an id without a user answers its events too (none for an id never used).
#[get("/v1/admin/users/<user_id>/events?<limit>")]
async fn events(
    db: &State<Db>,
    auth: Result<Authenticated, ApiError>,
    user_id: &str,
    limit: Vec<&str>,
) -> Result<Json<Value>, ApiError> {
    admin(auth)?;
    let uid = checked_id(user_id)?;
    // Every `limit` given, so that a second one is refused rather than read as none.
    let limit = match limit.as_slice() {
        [] => audit::DEFAULT_RECENT,
        [text] => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=audit::MAX_RECENT).contains(n))
            .ok_or_else(|| {
                let max = audit::MAX_RECENT;
                ApiError::invalid_request(format!("limit must be a number from 1 to {max}"))
            })?,
        _ => return Err(ApiError::invalid_request("limit is given more than once")),
    };
    let events = db.run(move |c| audit::recent(c, &uid, limit)).await?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|event| {
            // Recorded by this service as JSON; kept as text should a row say otherwise.
            let detail = serde_json::from_str(&event.detail).unwrap_or(Value::String(event.detail));
            json!({"at": event.at, "kind": event.kind, "detail": detail})
        })
        .collect();
    Ok(Json(json!({"sub": user_id, "events": events})))
}

#[derive(Debug, Deserialize)]
pub struct IntrospectionRequest {
    #[serde(default, deserialize_with = "omitted_if_empty")]
    token: Option<String>,
    #[serde(default, deserialize_with = "omitted_if_empty")]
    token_type_hint: Option<String>,
}

/// RFC 7662: `{"active": false}` for anything not currently valid. A refresh token is
/// introspected only when the caller names it (`token_type_hint=refresh_token`): an origin
/// asks about the bearer tokens it is sent, and one that checks only `active` must not take a
/// refresh token for an access token (RFC 7662 §4: active only where the caller may use it).
#[post("/v1/introspect", data = "<body>")]
async fn introspect(
    keys: &State<Arc<KeyRing>>,
    auth_cache: &State<Arc<AuthCache>>,
    db: &State<Db>,
    config: &State<Config>,
    auth: Result<Authenticated, ApiError>,
    body: Result<FormOrJson<IntrospectionRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    admin(auth)?;
    // The body's arrival: a token that expired while it came is not active.
    let FormOrJson(request, now) = body.map_err(ApiError::as_oauth)?;
    let token = request
        .token
        .ok_or_else(|| ApiError::invalid_request("token is required"))?;
    let refresh_tokens_too = request.token_type_hint.as_deref() == Some("refresh_token");
    match authenticate(keys, auth_cache, db, now, &token).await {
        // Past `exp` is not active (§2.2), though the leeway of our own checks still takes it.
        Ok(found) if found.claims.has_expired(now, 0) => {
            return Ok(Json(json!({"active": false})));
        }
        Ok(found) => {
            let c = found.claims;
            let answer = json!({
                "active": true, "token_type": "Bearer", "sub": c.sub,
                "username": found.username, "scope": c.scope, "exp": c.exp, "iat": c.iat,
                "iss": c.iss, "aud": c.aud, "jti": c.jti, "sid": c.sid,
            });
            return Ok(Json(naming_client(answer, c.client_id.clone())));
        }
        // Not a valid access token: perhaps a refresh token, if the caller asks about those.
        Err(ApiError::InvalidToken(_)) if refresh_tokens_too => {}
        Err(ApiError::InvalidToken(_)) => return Ok(Json(json!({"active": false}))),
        // The issuer could not tell (its database): an error, never `active: false`, which an
        // origin would take for a revoked token.
        Err(e) => return Err(e),
    }
    let session = db
        .run(move |c| sessions::session_of_refresh_token(c, &token, now))
        .await?;
    // A rotated refresh token is no longer active, though its session may be; nor is one the
    // refresh grant refuses for its disabled user.
    Ok(Json(
        match session
            .filter(sessions::NamedSession::is_usable)
            .map(|named| named.session)
        {
            // The scopes its next refresh would grant.
            Some(s) => naming_client(
                json!({
                    "active": true, "token_type": "refresh_token", "sub": s.user_id, "sid": s.id,
                    "scope": config.still_granted(&s.scope), "exp": s.expires_at,
                    "iat": s.created_at,
                }),
                s.client_id,
            ),
            None => json!({"active": false}),
        },
    ))
}

pub fn routes() -> Vec<Route> {
    routes![
        revoke_user,
        revoke_session,
        disable,
        enable,
        delete,
        reset_password,
        unlock,
        events,
        introspect
    ]
}
