//! A user's own account: registration, `/v1/me`, revocation (RFC 7009) and logout.

use std::net::IpAddr;
use std::sync::Arc;

use rocket::response::status::Created;
use rocket::serde::json::{Json, Value, json};
use rocket::{Route, State, get, post, routes};
use serde::Deserialize;

use crate::config::{ADMIN_SCOPE, Config};
use crate::context::{Authenticated, FormOrJson, Now, omitted_if_empty};
use crate::credentials::Reauthentication;
use crate::db::Db;
use crate::error::ApiError;
use crate::ids;
use crate::keys::KeyRing;
use crate::password::{Hasher, check_password_policy, normalize_username};
use crate::ratelimit::RateLimit;
use crate::revoker::Revoker;
use crate::store::{audit, revocations, sessions, users, write_tx};

#[derive(Debug, Deserialize)]
pub struct Registration {
    username: String,
    password: String,
}

#[post("/v1/users", data = "<body>")]
async fn register(
    config: &State<Config>,
    db: &State<Db>,
    hasher: &State<Hasher>,
    limit: &State<Arc<RateLimit>>,
    client_ip: Option<IpAddr>,
    now: Now,
    body: Result<FormOrJson<Registration>, ApiError>,
) -> Result<Created<Json<Value>>, ApiError> {
    let Now(now) = now;
    limit.check(client_ip)?;
    if !config.open_registration {
        return Err(ApiError::RegistrationClosed);
    }
    let FormOrJson(Registration { username, password }, _) = body?;
    let username = normalize_username(&username)?;
    check_password_policy(&password, &username)?;
    let hash = hasher.hash(password).await?;
    let id = ids::new_id()?;
    let (uid, name) = (id.clone(), username.clone());
    db.run(move |c| {
        write_tx(c, |c| {
            users::create(c, &uid, &name, &hash, false, now)?;
            audit::record(c, now, "user_created", Some(&uid), &json!({"via": "api"}))
        })
    })
    .await?;
    Ok(Created::new(format!("/v1/users/{id}")).body(Json(json!({"id": id, "username": username}))))
}

#[derive(Debug, Deserialize)]
pub struct PasswordChange {
    #[serde(default, deserialize_with = "omitted_if_empty")]
    current_password: Option<String>,
    new_password: String,
}

/// Changes the caller's password. The current password is checked as a login checks it (the
/// same lockout: a stolen access token is no way around it). Every other session of the user is
/// revoked with the change, in one transaction; the session that asked stays signed in.
#[post("/v1/password", data = "<body>")]
async fn change_password(
    reauth: Reauthentication<'_>,
    limit: &State<Arc<RateLimit>>,
    client_ip: Option<IpAddr>,
    auth: Result<Authenticated, ApiError>,
    body: Result<FormOrJson<PasswordChange>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let auth = auth?;
    // The body's arrival, as at the token endpoint: a failure recorded at the time of headers
    // sent long before would fall outside the lockout window of the next attempts.
    let FormOrJson(
        PasswordChange {
            current_password,
            new_password,
        },
        now,
    ) = body?;
    // As the password grant: none is a malformed request, not a wrong password (no attempt).
    let current_password = current_password
        .ok_or_else(|| ApiError::invalid_request("current_password is required"))?;
    limit.check(client_ip)?;
    // Before the lockout reservation: a weak new password is no failed attempt.
    check_password_policy(&new_password, &auth.username)?;
    let sid = auth.claims.sid.clone();
    let others_revoked = reauth
        .confirm(
            (&auth.claims.sub, client_ip, now),
            "password_change_failed",
            current_password,
            reauth.hasher.hash(new_password),
            move |r, user, hash| {
                users::set_password_hash(r.conn(), &user.id, &hash)?;
                let now = r.now();
                audit::record(
                    r.conn(),
                    now,
                    "password_changed",
                    Some(&user.id),
                    &json!({}),
                )?;
                r.other_sessions(&user.id, &sid, "password_changed")
            },
        )
        .await?;
    Ok(Json(
        json!({"changed": true, "sessions_revoked": others_revoked}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct AccountDeletion {
    #[serde(default, deserialize_with = "omitted_if_empty")]
    password: Option<String>,
}

/// Deletes the caller's own account ([`users::delete`]: every session ends, every token is
/// refused from then on, the name is free again), once their password is confirmed as a
/// password change confirms it: a stolen access token alone cannot. An admin's account is
/// deleted by another admin or at the shell, as the admin endpoint already has it, so no
/// installation loses its last admin this way.
#[post("/v1/me/delete", data = "<body>")]
async fn delete_account(
    reauth: Reauthentication<'_>,
    limit: &State<Arc<RateLimit>>,
    client_ip: Option<IpAddr>,
    auth: Result<Authenticated, ApiError>,
    body: Result<FormOrJson<AccountDeletion>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let auth = auth?;
    let FormOrJson(AccountDeletion { password }, now) = body?;
    let password = password.ok_or_else(|| ApiError::invalid_request("password is required"))?;
    limit.check(client_ip)?;
    if auth.is_admin {
        return Err(ApiError::NotPermitted(
            "an admin's account is deleted by another admin, or with `users delete` at a shell"
                .into(),
        ));
    }
    // `is_admin` is set when an account is made and never changes, so the guard's reading is
    // the account's.
    reauth
        .confirm(
            (&auth.claims.sub, client_ip, now),
            "account_deletion_failed",
            password,
            async { Ok(()) },
            |r, user, ()| {
                users::delete(r, &user.id, ("via", "self"))?
                    .then_some(())
                    .ok_or(ApiError::InvalidToken(gatehouse_shared::ErrorCode::Revoked))
            },
        )
        .await?;
    Ok(Json(json!({"sub": auth.claims.sub, "deleted": true})))
}

/// A user, by id: what `POST /v1/users` points its `Location` at. The user themself or an
/// admin may read it; anyone else gets 404, as for an id that does not exist.
#[get("/v1/users/<id>")]
async fn user(
    db: &State<Db>,
    auth: Result<Authenticated, ApiError>,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    let auth = auth?;
    if auth.claims.sub != id && auth.require_scope(ADMIN_SCOPE).is_err() {
        return Err(ApiError::NotFound);
    }
    let id = super::admin::checked_id(id)?;
    let found = db
        .run(move |c| users::by_id(c, &id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "id": found.id,
        "username": found.username,
        "is_admin": found.is_admin,
        "disabled": found.disabled,
        "created_at": found.created_at,
    })))
}

/// The protected example resource (the tutorial's `/items/me`).
#[get("/v1/me")]
fn me(auth: Result<Authenticated, ApiError>) -> Result<Json<Value>, ApiError> {
    let auth = auth?;
    Ok(Json(json!({
        "sub": auth.claims.sub,
        "username": auth.username,
        "scope": auth.claims.scope,
        "sid": auth.claims.sid,
    })))
}

#[derive(Debug, Deserialize)]
pub struct RevocationRequest {
    #[serde(default, deserialize_with = "omitted_if_empty")]
    token: Option<String>,
    /// Accepted and ignored (RFC 7009 §2.1 allows it): the token's shape says what it is, and
    /// trusting a wrong hint would leave the token alive.
    #[serde(default, rename = "token_type_hint")]
    _token_type_hint: Option<String>,
}

/// RFC 7009 for a public client (§2.1): holding a token is the proof, for an access token as
/// for a refresh token, which the refresh grant asks for no more. Answers 200 whether or not
/// there was anything to revoke; a write that failed is an error. A bearer token is not needed;
/// a valid one names who acted in the audit log.
#[post("/v1/revoke", data = "<body>")]
#[allow(clippy::too_many_arguments)] // one typed guard per managed piece (Rocket's idiom)
async fn revoke(
    db: &State<Db>,
    keys: &State<Arc<KeyRing>>,
    revoker: &State<Revoker>,
    limit: &State<Arc<RateLimit>>,
    client_ip: Option<IpAddr>,
    auth: Result<Authenticated, ApiError>,
    body: Result<FormOrJson<RevocationRequest>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    // Each revocation takes the cluster-wide write lock and is pushed to every edge.
    limit.check(client_ip)?;
    // The body's arrival: an entry stamped with the time its headers came (a body sent over
    // many minutes) would be older than the entries before it, and the delta feed, which starts
    // past the newest entry older than its window, would leave those out.
    let FormOrJson(request, now) = body.map_err(ApiError::as_oauth)?;
    let token = request
        .token
        .ok_or_else(|| ApiError::invalid_request("token is required"))?;
    // A valid bearer of someone other than the token's user is recorded as who acted.
    let bearer = auth.ok().map(|auth| auth.claims.sub.clone());
    let looks_like_jwt = token.bytes().filter(|&b| b == b'.').count() == 2;
    if looks_like_jwt {
        // Only our own access tokens that some verifier may still accept: with the longest
        // leeway any may use, not ours, or the edge would honour one we skipped. Anything else
        // needs no entry (§2.2). A ring that could not be read is an
        // error: answering 200 would say revoked with nothing written.
        let Ok(claims) = keys.verify_as_any_verifier(db, &token, now).await? else {
            return Ok(Json(json!({})));
        };
        // Already refused until it expires: nothing to write (a retry takes no write lock).
        let held = claims.clone();
        if db
            .run(move |c| revocations::refused_until_expiry(c, &held))
            .await?
        {
            return Ok(Json(json!({})));
        }
        // Holding a live token is the proof, as for a refresh token (§2.1, a public client):
        // its holder could use it, or send it as its own bearer, so asking for the owner's
        // bearer protected nothing and answered 200 to others while revoking nothing.
        let by = bearer.filter(|by| *by != claims.sub);
        revoker
            .run(now, move |r| {
                if let Some(by) = &by {
                    r.acting_for(by);
                }
                r.token(&claims)
            })
            .await?;
    } else {
        // A plain read first: a token that names no unrevoked session takes no write lock
        // (anyone may send one).
        let lookup = token.clone();
        // A session past its end too: one of its access tokens may still verify, and the
        // revocation service gives it an entry while one may (`Revocations::session`).
        let alive_at = i64::MIN;
        let named = db
            .run(move |c| sessions::session_of_refresh_token(c, &lookup, alive_at))
            .await?;
        if named.is_some() {
            revoker
                .run(now, move |r| {
                    // A rotated token still names its session: revoking it ends the session, so
                    // a user whose token was stolen and rotated can still end the thief's chain.
                    let Some(named) =
                        sessions::session_of_refresh_token(r.conn(), &token, alive_at)?
                    else {
                        return Ok(false);
                    };
                    if let Some(by) = bearer.filter(|by| *by != named.session.user_id) {
                        r.acting_for(&by);
                    }
                    r.session(&named.session.id, "revoked_with_refresh_token")
                })
                .await?;
        }
    }
    Ok(Json(json!({})))
}

/// Ends the caller's session: no more refreshes, and its access tokens stop at the edge.
#[post("/v1/logout")]
async fn logout(
    revoker: &State<Revoker>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let auth = auth?;
    let sid = auth.claims.sid.clone();
    revoker.run(now, move |r| r.session(&sid, "logout")).await?;
    Ok(Json(json!({"revoked": "session", "sid": auth.claims.sid})))
}

/// Ends every session of the caller and cuts off every access token issued until now.
#[post("/v1/logout/all")]
async fn logout_all(
    revoker: &State<Revoker>,
    now: Now,
    auth: Result<Authenticated, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Now(now) = now;
    let auth = auth?;
    let sub = auth.claims.sub.clone();
    revoker
        .run(now, move |r| r.user(&sub, "logout_all"))
        .await?;
    Ok(Json(json!({"revoked": "user", "sub": auth.claims.sub})))
}

pub fn routes() -> Vec<Route> {
    routes![
        register,
        me,
        user,
        change_password,
        delete_account,
        revoke,
        logout,
        logout_all
    ]
}
