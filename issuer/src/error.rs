//! The issuer's one error type, and the one place it becomes HTTP. Every answer is JSON with a
//! stable `error` code; bearer failures add `WWW-Authenticate` (RFC 6750) and the shared
//! verification `code`.

use std::borrow::Cow;
use std::io::Cursor;

use gatehouse_shared::{ErrorCode, Refusal};
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder};
use rocket::{Request, Response, catch, catchers};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    // OAuth 2.0 token endpoint (RFC 6749 §5.2).
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("the grant type is not supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(&'static str),
    #[error("too many failed attempts; try again later")]
    LockedOut { retry_after: u64 },
    /// Client credentials in `Authorization: Basic` that cannot be read (RFC 6749 §2.3.1): 401
    /// with a `Basic` challenge (§5.2).
    #[error("{0}")]
    InvalidClient(&'static str),

    // Bearer-protected resources (RFC 6750 §3.1).
    #[error("no bearer token")]
    MissingToken,
    #[error("{}", .0.description())]
    InvalidToken(ErrorCode),
    #[error("the token lacks the `{0}` scope")]
    InsufficientScope(&'static str),

    // Accounts.
    #[error("{0}")]
    InvalidUsername(&'static str),
    /// A new password the policy refuses (`code: password_policy`).
    #[error("{0}")]
    InvalidPassword(&'static str),
    /// The current password, asked again for a change or a deletion, is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The password was changed while this request checked it.
    #[error("the password was changed meanwhile")]
    PasswordChanged,
    #[error("that username is taken")]
    UsernameTaken,
    #[error("registration is closed")]
    RegistrationClosed,
    /// A well-formed request its caller may not make (an admin acting on their own account, or
    /// on another admin's password): not a malformed one, so not `invalid_request`.
    #[error("{0}")]
    NotPermitted(Cow<'static, str>),

    // Generic.
    #[error("not found")]
    NotFound,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("send application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType,
    #[error("too many requests")]
    RateLimited { retry_after: u64 },
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        retry_after: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// A failure the database reported with no kind of its own: a 500 like `Internal`, unless
    /// `Db::run` finds the server gone or the call past its deadline (then 503). Kept apart so
    /// that only the database's own failures are judged that way.
    #[error("database error: {0}")]
    Database(String),
}

/// The least `Retry-After` of a 503 that the database's or the replica's state gave.
const UNAVAILABLE_RETRY_SECS: u64 = 2;

impl ApiError {
    /// A 503 whose end nobody knows: `Retry-After` is 2 to 4 s at random, so that the clients
    /// that honour it (`@gatehouse/verify`'s `GatehouseClient` does) do not all come back in the
    /// same second after an outage (before 2026-12-07 it was always 2).
    pub fn unavailable(message: &'static str) -> Self {
        let mut byte = [0_u8];
        let jitter = getrandom::fill(&mut byte)
            .map_or(0, |()| u64::from(byte[0]) % (UNAVAILABLE_RETRY_SECS + 1));
        Self::Unavailable {
            message,
            retry_after: UNAVAILABLE_RETRY_SECS + jitter,
        }
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest(message.into())
    }

    /// For the OAuth endpoints (token, revocation, introspection), whose errors are RFC 6749
    /// §5.2's: a body too large or of another type is a malformed request there, 400
    /// `invalid_request`, which OAuth client libraries know, not 413 or 415.
    #[must_use]
    pub fn as_oauth(self) -> Self {
        match self {
            Self::PayloadTooLarge | Self::UnsupportedMediaType => {
                Self::InvalidRequest(self.to_string().into())
            }
            other => other,
        }
    }

    pub const fn status(&self) -> Status {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidGrant(_)
            | Self::UnsupportedGrantType
            | Self::InvalidScope(_)
            | Self::LockedOut { .. }
            | Self::InvalidUsername(_)
            | Self::InvalidPassword(_)
            | Self::WrongPassword
            | Self::PasswordChanged => Status::BadRequest,
            Self::MissingToken | Self::InvalidToken(_) | Self::InvalidClient(_) => {
                Status::Unauthorized
            }
            Self::InsufficientScope(_) | Self::RegistrationClosed | Self::NotPermitted(_) => {
                Status::Forbidden
            }
            Self::UsernameTaken => Status::Conflict,
            Self::NotFound => Status::NotFound,
            Self::PayloadTooLarge => Status::PayloadTooLarge,
            Self::UnsupportedMediaType => Status::UnsupportedMediaType,
            Self::RateLimited { .. } => Status::TooManyRequests,
            Self::Unavailable { .. } => Status::ServiceUnavailable,
            Self::Internal(_) | Self::Database(_) => Status::InternalServerError,
        }
    }

    /// The stable `error` code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidGrant(_) | Self::LockedOut { .. } => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidScope(_) => "invalid_scope",
            Self::MissingToken | Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::InvalidUsername(_) => "invalid_username",
            Self::InvalidPassword(_) | Self::WrongPassword | Self::PasswordChanged => {
                "invalid_password"
            }
            Self::UsernameTaken => "username_taken",
            Self::RegistrationClosed => "registration_closed",
            Self::NotPermitted(_) => "not_permitted",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::Internal(_) | Self::Database(_) => "server_error",
        }
    }

    /// The body of every error but the bearer refusals: `{error, error_description}`, and
    /// `code` where a client acts on a difference RFC 6749's `error` does not name.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"error": self.code(), "error_description": self.description()});
        if let (Some(code), Some(members)) = (self.finer_code(), body.as_object_mut()) {
            members.insert("code".into(), code.into());
        }
        body
    }

    /// A locked-out login (its client, or the account) is `invalid_grant`, as a wrong password
    /// is (RFC 6749 §5.2), but a client should say "try again later" rather than "wrong
    /// password": `locked_out`. An `invalid_password` says which field to fix: the current
    /// password (`wrong_password`), the new one (`password_policy`), or neither, the password
    /// having changed meanwhile (`password_changed`).
    const fn finer_code(&self) -> Option<&'static str> {
        match self {
            Self::LockedOut { .. } => Some("locked_out"),
            Self::WrongPassword => Some("wrong_password"),
            Self::InvalidPassword(_) => Some("password_policy"),
            Self::PasswordChanged => Some("password_changed"),
            _ => None,
        }
    }

    fn description(&self) -> String {
        match self {
            // Details stay in the log; clients learn only that it was our fault.
            Self::Internal(_) | Self::Database(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

/// By diesel's error kind only. A server that went away mid-query is reported by diesel as
/// `ClosedConnection` or, for some drops, `Unknown`: both are `Database` here, and `Db::run`
/// tells them apart from a failing statement by asking the connection afterwards (and counts
/// them), never by reading the message.
impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            // Not a lost server (that is `Db::run`'s to judge and count): a retry may pass.
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Self::unavailable("database unavailable")
            }
            Error::NotFound => Self::NotFound,
            other => Self::Database(other.to_string()),
        }
    }
}

const REALM: &str = "gatehouse";

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        if let Self::Internal(detail) | Self::Database(detail) = &self {
            // The path alone: a query is the client's, and may carry a token.
            let request_id = crate::request_id::of(request);
            tracing::error!(%detail, request_id, method = %request.method(), path = %request.uri().path(), "internal error");
        }
        // Bearer refusals follow the contract the edge answers with too (shared::challenge).
        let refusal = match &self {
            Self::MissingToken => Some(Refusal::unauthorized(REALM, ErrorCode::MissingToken)),
            Self::InvalidToken(code) => Some(Refusal::unauthorized(REALM, *code)),
            Self::InsufficientScope(scope) => Some(Refusal::insufficient_scope(REALM, scope)),
            _ => None,
        };
        let body = refusal
            .as_ref()
            .map_or_else(|| self.body().to_string(), |r| r.body.clone());
        let mut response = Response::build();
        response
            .status(status)
            .header(ContentType::JSON)
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(body.len(), Cursor::new(body));
        if let Some(refusal) = refusal {
            response.header(Header::new("WWW-Authenticate", refusal.www_authenticate));
        }
        // RFC 6749 §5.2: the scheme the client authenticated with.
        if let Self::InvalidClient(_) = &self {
            let challenge = format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"");
            response.header(Header::new("WWW-Authenticate", challenge));
        }
        if let Self::LockedOut { retry_after }
        | Self::RateLimited { retry_after }
        | Self::Unavailable { retry_after, .. } = &self
        {
            response.header(Header::new("Retry-After", retry_after.to_string()));
        }
        response.ok()
    }
}

#[catch(404)]
fn not_found() -> ApiError {
    ApiError::NotFound
}

#[catch(default)]
fn default_catcher(status: Status, _request: &Request<'_>) -> ApiError {
    match status.code {
        404 => ApiError::NotFound,
        413 => ApiError::PayloadTooLarge,
        415 => ApiError::UnsupportedMediaType,
        401 => ApiError::MissingToken,
        500..=599 => ApiError::Internal(format!("unhandled status {status}")),
        _ => ApiError::invalid_request(format!("the request could not be processed ({status})")),
    }
}

pub fn catchers() -> Vec<rocket::Catcher> {
    catchers![not_found, default_catcher]
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    /// 2 to 4 s, not one value: 64 draws all alike would happen once in 3^63.
    #[test]
    fn an_unavailable_answer_spreads_its_retry_after() {
        let waits: Vec<u64> = (0..64)
            .map(|_| match ApiError::unavailable("database busy") {
                ApiError::Unavailable { retry_after, .. } => retry_after,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(waits.iter().all(|w| (2..=4).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "{waits:?}");
    }
}
