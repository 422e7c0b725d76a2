//! Request guards shared by the routes: the request's `now`, form-or-JSON bodies, and the
//! bearer check. Handlers take the managed state they use as typed `&State<T>` guards; Rocket
//! refuses to launch when any of it is not managed (its sentinels, ours below for the guards
//! that read state themselves), so a missing stage is a launch error, never a 500.

use std::sync::Arc;

use gatehouse_shared::{AccessClaims, ErrorCode};
use rocket::data::{self, Data, FromData, ToByteUnit as _};
use rocket::http::{ContentType, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::{Ignite, Rocket, Sentinel};
use serde::de::DeserializeOwned;

use crate::auth_cache::{AuthCache, Standing};
use crate::clock::Clock;
use crate::config::{ADMIN_SCOPE, Config};
use crate::credentials::Reauthentication;
use crate::db::Db;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::password::Hasher;
use crate::revoker::Revoker;

/// State a guard reads itself. Its `Sentinel` has made sure at launch that it is managed; the
/// error is for a guard whose sentinel forgot it.
fn managed<'r, T: Send + Sync + 'static>(req: &'r Request<'_>) -> Result<&'r T, ApiError> {
    req.rocket()
        .state::<T>()
        .ok_or_else(|| ApiError::Internal(format!("{} is not managed", std::any::type_name::<T>())))
}

/// The request's time (Unix seconds): the clock is read once per request, and every guard and
/// handler of that request sees the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now(pub i64);

impl Now {
    fn of(req: &Request<'_>) -> Result<Self, ApiError> {
        let clock = managed::<Arc<Clock>>(req)?;
        Ok(*req.local_cache(|| Self(clock.now())))
    }
}

impl Sentinel for Now {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        rocket.state::<Arc<Clock>>().is_none()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Now {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        match Self::of(req) {
            Ok(now) => Outcome::Success(now),
            Err(e) => Outcome::Error((Status::InternalServerError, e)),
        }
    }
}

/// A body sent as `application/x-www-form-urlencoded` (like an OAuth2 password form) or as
/// JSON. Handlers take `Result<FormOrJson<T>, ApiError>` so every failure keeps its code.
/// The second field is when the body had arrived (Unix seconds), read after it and not with the
/// headers as [`Now`] is: a route that judges or stamps by time (a refresh's grace window, a
/// lockout failure, a revocation entry) must not be steered by a body sent over many minutes.
pub struct FormOrJson<T>(pub T, pub i64);

/// Two passwords of the policy's longest (a password change) and room for the rest. The policy
/// counts characters in NFKC, where one may be typed as three (Hangul jamo composing into a
/// syllable), each escaped in 9 bytes in a form (`%E1%84%80`): 27 bytes a character. Before,
/// 16 KiB refused a change between two such passwords that registration and login took.
const BODY_LIMIT_BYTES: u64 = (2 * crate::password::MAX_PASSWORD_CHARS as u64 * 27) + 8 * 1024;

/// For `#[serde(default, deserialize_with = "omitted_if_empty")]` on a request parameter: RFC
/// 6749 §3.1 treats a parameter sent without a value as omitted.
pub fn omitted_if_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for FormOrJson<T> {
    type Error = ApiError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let fail = |e: ApiError| Outcome::Error((e.status(), e));
        // Read as UTF-8 only: a body in another charset said so (`windows-1252`, say) would be
        // read as other text than the client meant, a password among it. (`utf8` is a common
        // misspelling of it.)
        let utf8 = |ct: &ContentType| {
            ct.param("charset").is_none_or(|c| {
                let c = c.trim_matches('"');
                c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8")
            })
        };
        let is_form = match req.content_type() {
            Some(ct) if ct.is_form() && utf8(ct) => true,
            Some(ct) if ct.is_json() && utf8(ct) => false,
            _ => return fail(ApiError::UnsupportedMediaType),
        };
        let body = match data.open(BODY_LIMIT_BYTES.bytes()).into_string().await {
            Ok(s) if s.is_complete() => s.into_inner(),
            Ok(_) => return fail(ApiError::PayloadTooLarge),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return fail(ApiError::invalid_request("the body is not UTF-8 text"));
            }
            Err(_) => return fail(ApiError::invalid_request("the body could not be read")),
        };
        let clock = match managed::<Arc<Clock>>(req) {
            Ok(clock) => clock,
            Err(e) => return fail(e),
        };
        match crate::body::decode(&body, is_form) {
            Ok(value) => Outcome::Success(Self(value, clock.now())),
            Err(e) => fail(e),
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
        if self.claims.has_scope(scope) && (scope != ADMIN_SCOPE || self.is_admin) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one (the shared rule). Two
/// such headers are read as one, joined by `, ` as the edge's runtime reads them (Fetch's
/// `Headers.get`): no token that verifies, so the issuer and the edge refuse them alike
/// (before, the issuer took the first, and the edge refused the pair as `malformed`).
pub fn bearer_token(req: &Request<'_>) -> Option<String> {
    let joined = req
        .headers()
        .get("Authorization")
        .collect::<Vec<_>>()
        .join(", ");
    gatehouse_shared::bearer_token(Some(&joined)).map(str::to_owned)
}

/// Verifies an access token the way every protected route does: signature and claims with the
/// shared verifier, then revocations and the user's state in the database.
pub async fn authenticate(
    keys: &Arc<KeyRing>,
    auth_cache: &AuthCache,
    db: &Db,
    now: i64,
    token: &str,
) -> Result<Authenticated, ApiError> {
    let claims = keys
        .verify(db, token, now)
        .await?
        .map_err(|e| ApiError::InvalidToken(e.code()))?;
    match auth_cache.standing(db, &claims, now).await? {
        Standing::Active(user) => Ok(Authenticated {
            claims,
            username: user.username,
            is_admin: user.is_admin,
        }),
        // A deleted or disabled user's tokens are as good as revoked.
        Standing::Revoked | Standing::NoUser => Err(ApiError::InvalidToken(ErrorCode::Revoked)),
    }
}

impl Sentinel for Authenticated {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        rocket.state::<Arc<KeyRing>>().is_none()
            || rocket.state::<Arc<AuthCache>>().is_none()
            || rocket.state::<Db>().is_none()
            || Now::abort(rocket)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authenticated {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        let result = async {
            let token = bearer_token(req).ok_or(ApiError::MissingToken)?;
            let (keys, cache) = (
                managed::<Arc<KeyRing>>(req)?,
                managed::<Arc<AuthCache>>(req)?,
            );
            authenticate(keys, cache, managed(req)?, Now::of(req)?.0, &token).await
        }
        .await;
        match result {
            Ok(auth) => Outcome::Success(auth),
            Err(e) => Outcome::Error((e.status(), e)),
        }
    }
}

/// What confirming the caller's password takes ([`Reauthentication::confirm`]), read from the
/// managed state as one guard.
impl Sentinel for Reauthentication<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        rocket.state::<Config>().is_none()
            || rocket.state::<Db>().is_none()
            || rocket.state::<Hasher>().is_none()
            || rocket.state::<Arc<Metrics>>().is_none()
            || rocket.state::<Revoker>().is_none()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Reauthentication<'r> {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        let guard = || -> Result<Self, ApiError> {
            Ok(Reauthentication {
                lockout: managed::<Config>(req)?.lockout,
                db: managed(req)?,
                hasher: managed(req)?,
                metrics: managed::<Arc<Metrics>>(req)?,
                revoker: managed(req)?,
            })
        };
        match guard() {
            Ok(reauth) => Outcome::Success(reauth),
            Err(e) => Outcome::Error((e.status(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The routes on a Rocket that manages nothing: the sentinels of their `&State<T>` and
    /// guards must stop the launch (before this change it launched and answered 500s).
    #[rocket::async_test]
    async fn routes_without_their_state_do_not_launch() {
        let bare = rocket::custom(rocket::Config::debug_default()).attach(crate::routes::stage());
        let err = bare.ignite().await.err().map(|e| format!("{:?}", e.kind()));
        assert!(
            err.as_deref()
                .is_some_and(|k| k.starts_with("SentinelAborts")),
            "{err:?}"
        );
    }

    /// The guards that read state themselves carry sentinels for exactly that state.
    #[rocket::async_test]
    async fn guard_sentinels_ask_for_their_state() {
        use rocket::Sentinel as _;
        let with_clock = rocket::custom(rocket::Config::debug_default())
            .manage(std::sync::Arc::new(crate::clock::Clock::default()))
            .ignite()
            .await
            .expect("ignites");
        assert!(!super::Now::abort(&with_clock));
        assert!(
            super::Authenticated::abort(&with_clock),
            "no key ring, cache or pool"
        );
        let empty = rocket::custom(rocket::Config::debug_default())
            .ignite()
            .await;
        assert!(super::Now::abort(&empty.expect("ignites")));
    }
}
