//! `POST /v1/token`: the OAuth 2.0 token endpoint (RFC 6749) for the password and refresh-token
//! grants.

use gatehouse_shared::{Audience, TokenClaims, sign_access_token};
use rocket::serde::json::Json;
use rocket::{Route, post, routes};
use serde::{Deserialize, Serialize};

use super::NoStore;
use crate::context::{Ctx, FormOrJson};
use crate::error::ApiError;
use crate::ids;
use crate::password::{MAX_PASSWORD_CHARS, normalize_username};
use crate::store::lockout::{self, Reservation};
use crate::store::sessions::{self, Grant, Rotation};
use crate::store::users::{self, User};
use crate::store::{audit, write_tx};

/// One message for an unknown user and a wrong password alike.
const BAD_CREDENTIALS: &str = "invalid username or password";
const MAX_REFRESH_TOKEN_LEN: usize = 512;

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
    // Accepted and ignored: public clients (RFC 6749 §2.1) may send them.
    #[serde(default, rename = "client_id")]
    _client_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

#[post("/v1/token", data = "<body>")]
async fn token(
    ctx: Result<Ctx<'_>, ApiError>,
    body: Result<FormOrJson<TokenRequest>, ApiError>,
) -> Result<NoStore<Json<TokenResponse>>, ApiError> {
    let ctx = ctx?;
    ctx.rate_limit.check(ctx.client_ip)?;
    let request = body?.0;
    let grant = match request.grant_type.as_deref() {
        Some("password") => password_grant(&ctx, request).await?,
        Some("refresh_token") => refresh_grant(&ctx, request).await?,
        Some(_) => return Err(ApiError::UnsupportedGrantType),
        None => return Err(ApiError::invalid_request("grant_type is required")),
    };
    Ok(NoStore::new(Json(respond(&ctx, grant)?)))
}

async fn password_grant(ctx: &Ctx<'_>, request: TokenRequest) -> Result<Grant, ApiError> {
    let username = request
        .username
        .ok_or_else(|| ApiError::invalid_request("username is required"))?;
    let password = request
        .password
        .ok_or_else(|| ApiError::invalid_request("password is required"))?;
    let (now, cfg) = (ctx.now, ctx.config.lockout);
    // The user and, for an enabled one, a lockout reservation: one trip to the pool.
    let found = match normalize_username(&username) {
        Ok(name) if password.chars().count() <= MAX_PASSWORD_CHARS => {
            ctx.db
                .run(move |c| {
                    let Some(user) = users::by_username(c, &name)?.filter(|u| !u.disabled) else {
                        return Ok(None);
                    };
                    let reservation = lockout::reserve(c, &user.id, now, &cfg)?;
                    Ok(Some((user, reservation)))
                })
                .await?
        }
        _ => None,
    };
    let Some((user, reservation)) = found else {
        // Same work as a real check, so timing does not tell which usernames exist.
        ctx.hasher.verify(password, None).await?;
        ctx.metrics.logins_failed.inc();
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    };
    if let Reservation::Refused { retry_after } = reservation {
        ctx.metrics.logins_failed.inc();
        return Err(ApiError::LockedOut { retry_after });
    }
    let ok = ctx
        .hasher
        .verify(password.clone(), Some(user.password_hash.clone()))
        .await?;
    if !ok {
        let uid = user.id.clone();
        let locked = ctx
            .db
            .run(move |c| {
                let locked = lockout::record_failure(c, &uid, now, &cfg)?;
                audit::record(c, now, "login_failed", Some(&uid), &serde_json::json!({}))?;
                if locked {
                    audit::record(c, now, "account_locked", Some(&uid), &serde_json::json!({}))?;
                }
                Ok(locked)
            })
            .await?;
        ctx.metrics.logins_failed.inc();
        if locked {
            ctx.metrics.lockouts.inc();
        }
        return Err(ApiError::InvalidGrant(BAD_CREDENTIALS));
    }
    let scope = granted_scope(ctx, request.scope.as_deref(), &user);
    let new_hash = if ctx.hasher.policy().requires_upgrade(&user.password_hash) {
        Some(ctx.hasher.hash(password).await?)
    } else {
        None
    };
    let ttl = ctx.config.session_ttl_secs;
    let grant = ctx
        .db
        .run(move |c| {
            write_tx(c, |c| {
                lockout::record_success(c, &user.id)?;
                let scope = scope?;
                if let Some(hash) = new_hash {
                    users::set_password_hash(c, &user.id, &hash)?;
                    audit::record(
                        c,
                        now,
                        "password_rehashed",
                        Some(&user.id),
                        &serde_json::json!({}),
                    )?;
                }
                let grant = sessions::start(c, &user.id, &scope, now, ttl)?;
                let detail = serde_json::json!({"sid": grant.session.id});
                audit::record(c, now, "login_ok", Some(&user.id), &detail)?;
                Ok(grant)
            })
        })
        .await?;
    ctx.metrics.logins_ok.inc();
    Ok(grant)
}

/// The requested scopes if the user may have them all, else the default scopes.
fn granted_scope(ctx: &Ctx<'_>, requested: Option<&str>, user: &User) -> Result<String, ApiError> {
    let base: Vec<&str> = ctx.config.user_scopes.split_whitespace().collect();
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        return Ok(base.join(" "));
    };
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split_whitespace() {
        let allowed = base.contains(&scope) || (scope == "admin" && user.is_admin);
        if !allowed {
            return Err(ApiError::InvalidScope(
                "a requested scope is not available to this user",
            ));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted.join(" "))
}

async fn refresh_grant(ctx: &Ctx<'_>, request: TokenRequest) -> Result<Grant, ApiError> {
    let presented = request
        .refresh_token
        .ok_or_else(|| ApiError::invalid_request("refresh_token is required"))?;
    if presented.len() > MAX_REFRESH_TOKEN_LEN {
        return Err(ApiError::InvalidGrant(
            "the refresh token is invalid or expired",
        ));
    }
    let grace = ctx.config.refresh_grace_secs;
    match ctx
        .revoker
        .run(ctx.now, move |r| sessions::rotate(r, &presented, grace))
        .await?
    {
        Rotation::Rotated(grant) => {
            ctx.metrics.refreshes.inc();
            Ok(grant)
        }
        Rotation::ReuseDetected { .. } => {
            ctx.metrics.refresh_reuse_detected.inc();
            Err(ApiError::InvalidGrant(
                "the refresh token was already used; the session has been revoked",
            ))
        }
        Rotation::Invalid => Err(ApiError::InvalidGrant(
            "the refresh token is invalid or expired",
        )),
    }
}

/// Signs the access token for a grant. It never outlives its session.
fn respond(ctx: &Ctx<'_>, grant: Grant) -> Result<TokenResponse, ApiError> {
    let now = ctx.now;
    let exp = (now + i64::from(ctx.config.access_token_ttl_secs)).min(grant.session.expires_at);
    let claims = TokenClaims {
        iss: ctx.config.issuer.clone(),
        sub: grant.session.user_id.clone(),
        aud: Audience::single(&ctx.config.audience),
        exp,
        iat: now,
        nbf: Some(now),
        jti: ids::new_id()?,
        sid: grant.session.id.clone(),
        scope: grant.session.scope.clone(),
    };
    let access_token = sign_access_token(&ctx.keys.current().signer, &claims)
        .map_err(|e| ApiError::Internal(format!("signing: {e}")))?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: exp - now,
        refresh_token: grant.refresh_token,
        scope: claims.scope,
    })
}

pub fn routes() -> Vec<Route> {
    routes![token]
}
