//! What a token request asks for: its grant and the client it names, read and checked before
//! anything else decides (RFC 6749 §4.3, §6, §3.2.1).

use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gatehouse_shared::{fits_a_header, trim_http_whitespace};
use percent_encoding::percent_decode_str;
use rocket::Request;
use rocket::request::{FromRequest, Outcome};
use serde::Deserialize;

use crate::context::omitted_if_empty;
use crate::error::ApiError;

const MAX_REFRESH_TOKEN_LEN: usize = 512;
/// The longest `client_id` taken: the edge forwards it to the origin as a header value.
const MAX_CLIENT_ID_CHARS: usize = 255;

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    #[serde(default, deserialize_with = "omitted_if_empty")]
    grant_type: Option<String>,
    #[serde(default, deserialize_with = "omitted_if_empty")]
    username: Option<String>,
    #[serde(default, deserialize_with = "omitted_if_empty")]
    password: Option<String>,
    #[serde(default, deserialize_with = "omitted_if_empty")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "omitted_if_empty")]
    refresh_token: Option<String>,
    /// A public client's own name for itself (RFC 6749 §3.2.1): not authenticated (there is
    /// no client registry), named in the access tokens (RFC 9068 §2.2).
    #[serde(default, deserialize_with = "omitted_if_empty")]
    client_id: Option<String>,
}

/// A grant request and the client it names.
pub(super) struct ClientRequest {
    pub grant: GrantRequest,
    pub client_id: Option<String>,
}

/// The grants this endpoint serves (RFC 6749 §4.3, §6), each with the fields it requires.
pub(super) enum GrantRequest {
    Password {
        username: String,
        password: String,
        scope: Option<String>,
    },
    RefreshToken {
        presented: String,
        scope: Option<String>,
    },
}

impl ClientRequest {
    /// The request's own faults, found before anything this replica or the client's history
    /// decides (the signing key, the failure budget): a request that can never succeed gets its
    /// 400 at once, not a 503 or 429 that tells the client to send it again.
    pub fn read(request: TokenRequest, basic: BasicClient) -> Result<Self, ApiError> {
        // The client first, as a server authenticating clients would (RFC 6749 §3.2.1).
        let client_id = match (request.client_id, basic.0.transpose()?) {
            (Some(body), Some(header)) if body != header => {
                return Err(ApiError::invalid_request(
                    "the client_id of the body is not the one of the Authorization header",
                ));
            }
            (body, header) => header.or(body),
        };
        if client_id.as_deref().is_some_and(|id| !is_client_id(id)) {
            return Err(ApiError::invalid_request(
                "client_id must be 1 to 255 printable ASCII characters without surrounding spaces",
            ));
        }
        let required = |field: Option<String>, missing: &'static str| {
            field.ok_or_else(|| ApiError::invalid_request(missing))
        };
        let grant = match request.grant_type.as_deref() {
            Some("password") => Ok(GrantRequest::Password {
                username: required(request.username, "username is required")?,
                password: required(request.password, "password is required")?,
                scope: request.scope,
            }),
            Some("refresh_token") => {
                let presented = required(request.refresh_token, "refresh_token is required")?;
                if presented.len() > MAX_REFRESH_TOKEN_LEN {
                    return Err(ApiError::InvalidGrant(
                        "the refresh token is invalid or expired",
                    ));
                }
                Ok(GrantRequest::RefreshToken {
                    presented,
                    scope: request.scope,
                })
            }
            None => Err(ApiError::invalid_request("grant_type is required")),
            Some(_) => Err(ApiError::UnsupportedGrantType),
        }?;
        Ok(Self { grant, client_id })
    }
}

/// RFC 6749 allows any printable ASCII in a `client_id` (Appendix A.1); the tokens' rule also
/// refuses surrounding spaces, which a header value would lose.
fn is_client_id(id: &str) -> bool {
    id.len() <= MAX_CLIENT_ID_CHARS && fits_a_header(id)
}

/// The client a token request names in `Authorization: Basic`, as a client set up for
/// `client_secret_basic` sends it (RFC 6749 §2.3.1): `client_id:client_secret`, each
/// form-urlencoded, then base64. There is no client registry, so every client is public: a
/// secret is taken and not checked, as in the body (§2.3 lets a server accept a public client's
/// credentials, never rely on them). Credentials that cannot be read are refused. A header of
/// another scheme is not this guard's (the token endpoint reads no bearer).
pub(super) struct BasicClient(Option<Result<String, ApiError>>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BasicClient {
    type Error = Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Infallible> {
        // Repeated headers read as one, as a bearer's are (`context::bearer_token`): two Basic
        // credentials are unreadable, not the first taken.
        let values: Vec<&str> = request.headers().get("Authorization").collect();
        Outcome::Success(Self(basic_client(&values.join(", "))))
    }
}

/// RFC 7617's credentials, `None` for another scheme or none.
fn basic_client(authorization: &str) -> Option<Result<String, ApiError>> {
    let value = trim_http_whitespace(authorization);
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    scheme
        .eq_ignore_ascii_case("Basic")
        .then(|| client_of(trim_http_whitespace(credentials)))
}

fn client_of(credentials: &str) -> Result<String, ApiError> {
    const UNREADABLE: &str = "the Basic credentials are not base64 of client_id:client_secret";
    let decoded = STANDARD
        .decode(credentials)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(ApiError::InvalidClient(UNREADABLE))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(ApiError::InvalidClient(UNREADABLE))?;
    match (form_decoded(id), form_decoded(secret)) {
        (Some(id), Some(_)) if !id.is_empty() => Ok(id),
        _ => Err(ApiError::InvalidClient(UNREADABLE)),
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space; `None` if not UTF-8.
fn form_decoded(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}
