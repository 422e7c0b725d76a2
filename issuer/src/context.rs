//! Request guards shared by the routes: the application context (every managed piece plus the
//! request's `now` and client IP), form-or-JSON bodies, and the bearer check.

use std::net::IpAddr;

use gatehouse_shared::{AccessClaims, ErrorCode};
use rocket::data::{self, Data, FromData, ToByteUnit as _};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::auth_cache::{AuthCache, Standing};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::password::Hasher;
use crate::ratelimit::RateLimit;
use crate::revoker::Revoker;
use crate::sync::Snapshots;

/// Everything a handler needs, with the clock read once for the whole request.
pub struct Ctx<'r> {
    pub config: &'r Config,
    pub db: &'r Db,
    pub keys: &'r KeyRing,
    pub hasher: &'r Hasher,
    pub metrics: &'r Metrics,
    pub snapshots: &'r Snapshots,
    pub auth_cache: &'r AuthCache,
    pub rate_limit: &'r RateLimit,
    /// Every revocation goes through it (see `crate::revoker`).
    pub revoker: &'r Revoker,
    pub now: i64,
    pub client_ip: Option<IpAddr>,
}

fn state<'r, T: Send + Sync + 'static>(req: &'r Request<'_>) -> Result<&'r T, ApiError> {
    req.rocket()
        .state::<T>()
        .ok_or_else(|| ApiError::Internal(format!("{} is not managed", std::any::type_name::<T>())))
}

impl<'r> Ctx<'r> {
    fn from(req: &'r Request<'_>) -> Result<Self, ApiError> {
        Ok(Self {
            config: state(req)?,
            db: state(req)?,
            keys: state::<std::sync::Arc<KeyRing>>(req)?,
            hasher: state(req)?,
            metrics: state::<std::sync::Arc<Metrics>>(req)?,
            snapshots: state::<std::sync::Arc<Snapshots>>(req)?,
            auth_cache: state::<std::sync::Arc<AuthCache>>(req)?,
            rate_limit: state::<std::sync::Arc<RateLimit>>(req)?,
            revoker: state(req)?,
            now: state::<std::sync::Arc<Clock>>(req)?.now(),
            client_ip: req.client_ip(),
        })
    }

    /// When a revocation written now stops mattering.
    pub fn revocation_horizon(&self) -> i64 {
        self.config.revocation_horizon(self.now)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Ctx<'r> {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        match Ctx::from(req) {
            Ok(ctx) => Outcome::Success(ctx),
            Err(e) => Outcome::Error((Status::InternalServerError, e)),
        }
    }
}

/// A body sent as `application/x-www-form-urlencoded` (like an OAuth2 password form) or as
/// JSON. Handlers take `Result<FormOrJson<T>, ApiError>` so every failure keeps its code.
pub struct FormOrJson<T>(pub T);

const BODY_LIMIT_BYTES: u64 = 16 * 1024;

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for FormOrJson<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let fail = |e: ApiError| Outcome::Error((e.status(), e));
        let is_form = match req.content_type() {
            Some(ct) if ct.is_form() => true,
            Some(ct) if ct.is_json() => false,
            _ => return fail(ApiError::UnsupportedMediaType),
        };
        let body = match data.open(BODY_LIMIT_BYTES.bytes()).into_string().await {
            Ok(s) if s.is_complete() => s.into_inner(),
            Ok(_) => return fail(ApiError::PayloadTooLarge),
            Err(_) => return fail(ApiError::invalid_request("the body is not UTF-8 text")),
        };
        let parsed = if is_form {
            serde_urlencoded::from_str(&body).map_err(|e| format!("invalid form body: {e}"))
        } else {
            serde_json::from_str(&body).map_err(|e| format!("invalid JSON body: {e}"))
        };
        match parsed {
            Ok(value) => Outcome::Success(Self(value)),
            Err(message) => fail(ApiError::invalid_request(message)),
        }
    }
}

/// A verified, unrevoked access token of an existing, enabled user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub username: String,
    pub is_admin: bool,
}

impl Authenticated {
    pub fn require_scope(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.claims.has_scope(scope) && (scope != "admin" || self.is_admin) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one (the shared rule).
pub fn bearer_token<'a>(req: &'a Request<'_>) -> Option<&'a str> {
    gatehouse_shared::bearer_token(req.headers().get_one("Authorization"))
}

/// Verifies an access token the way every protected route does: signature and claims with the
/// shared verifier, then revocations and the user's state in the database.
pub async fn authenticate(ctx: &Ctx<'_>, token: &str) -> Result<Authenticated, ApiError> {
    let claims = ctx
        .keys
        .current()
        .verifier
        .verify(token, ctx.now)
        .map_err(|e| ApiError::InvalidToken(e.code()))?;
    match ctx.auth_cache.standing(ctx.db, &claims, ctx.now).await? {
        Standing::Active(user) => Ok(Authenticated {
            claims,
            username: user.username,
            is_admin: user.is_admin,
        }),
        // A deleted or disabled user's tokens are as good as revoked.
        Standing::Revoked | Standing::NoUser => Err(ApiError::InvalidToken(ErrorCode::Revoked)),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authenticated {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        let result = async {
            let ctx = Ctx::from(req)?;
            let token = bearer_token(req).ok_or(ApiError::MissingToken)?;
            authenticate(&ctx, token).await
        }
        .await;
        match result {
            Ok(auth) => Outcome::Success(auth),
            Err(e) => Outcome::Error((e.status(), e)),
        }
    }
}
