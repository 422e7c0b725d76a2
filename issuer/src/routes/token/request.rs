//! What a token request asks for: its grant and the client it names, read and checked before
//! anything else decides (RFC 6749 §4.3, §6, §3.2.1).

use gatehouse_shared::fits_a_header;
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
    pub fn read(request: TokenRequest) -> Result<Self, ApiError> {
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
        let client_id = request.client_id;
        if client_id.as_deref().is_some_and(|id| !is_client_id(id)) {
            return Err(ApiError::invalid_request(
                "client_id must be 1 to 255 printable ASCII characters without surrounding spaces",
            ));
        }
        Ok(Self { grant, client_id })
    }
}

/// RFC 6749 allows any printable ASCII in a `client_id` (Appendix A.1); the tokens' rule also
/// refuses surrounding spaces, which a header value would lose.
fn is_client_id(id: &str) -> bool {
    id.len() <= MAX_CLIENT_ID_CHARS && fits_a_header(id)
}
