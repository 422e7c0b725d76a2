//! The bearer contract every Gatehouse component answers with (RFC 6750), written once: how an
//! `Authorization` header yields a token, and what a refusal is (status, a JSON body with the
//! stable code, `WWW-Authenticate`). The issuer and the edge both build their 401 and 403 here.

use crate::error::ErrorCode;

/// The token of an `Authorization: Bearer <token>` header. Another scheme, or an empty token,
/// is no token (`missing_token`): there is nothing there to find invalid. Only HTTP's own
/// whitespace (space, tab) around it is dropped: a token with a Unicode space (`U+00A0`,
/// `U+3000`) is that token, and not the one without (RFC 6750 §2.1 allows ASCII only).
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.split_once(' ')?;
    let token = trim_http_whitespace(token);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `text` without the space and tab around it (HTTP's optional whitespace), and nothing else: a
/// token, in a header or a cookie, that ends in a Unicode space is not the token without it.
pub fn trim_http_whitespace(text: &str) -> &str {
    // By bytes: a `char` pattern links Unicode-aware matching into the worker (577 bytes).
    let is_text = |b: &u8| *b != b' ' && *b != b'\t';
    let bytes = text.as_bytes();
    let start = bytes.iter().position(is_text).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(is_text)
        .map_or(start, |last| last + 1);
    // Space and tab are ASCII: both ends fall on character boundaries.
    text.get(start..end).unwrap_or_default()
}

/// Whether `scope` is one RFC 6750 scope-token: it is written into `WWW-Authenticate` as is,
/// and a token's `scope` claim is split on spaces, so a name with a space could never be held.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(is_visible_unquoted)
}

/// Whether `realm` can be written inside the challenge's quoted string without escapes
/// (RFC 9110 §5.6.4).
pub fn is_realm_text(realm: &str) -> bool {
    realm.bytes().all(|b| b == b' ' || is_visible_unquoted(b))
}

/// RFC 6750's NQCHAR without the space: visible ASCII but `"` and `\`.
fn is_visible_unquoted(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"' && b != b'\\'
}

/// A refusal of a bearer-protected request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// `{"error", "code", "error_description"}`, plus `scope` for a 403.
    pub body: String,
    pub www_authenticate: String,
}

impl Refusal {
    /// Unauthorized (401). No token gets a bare challenge: RFC 6750 section 3.1 sends no error
    /// code when the request had no credentials. A token that failed gets `invalid_token` and
    /// the shared code.
    pub fn unauthorized(realm: &str, code: ErrorCode) -> Self {
        let www_authenticate = if code == ErrorCode::MissingToken {
            format!("Bearer realm=\"{realm}\"")
        } else {
            format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                code.description()
            )
        };
        Self {
            status: 401,
            body: ErrorBody::new("invalid_token", code.as_str(), code.description()).to_json(),
            www_authenticate,
        }
    }

    /// Forbidden (403): a valid token without the `scope` the route requires.
    pub fn insufficient_scope(realm: &str, scope: &str) -> Self {
        let code = ErrorCode::InsufficientScope;
        Self {
            status: 403,
            body: ErrorBody {
                scope: Some(scope),
                ..ErrorBody::new("insufficient_scope", code.as_str(), code.description())
            }
            .to_json(),
            www_authenticate: format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""
            ),
        }
    }
}

/// The JSON body of a refusal: the OAuth `error`, the stable `code`, a description, for a 403
/// the `scope` wanted, and for a pushed list refused as not newer (the edge's 409) the seq it
/// holds. The edge writes all its refusals with it. A struct, not `json!`: with the edge's
/// other bodies written the same way, the worker links no `serde_json::Value` (2.2 KB less
/// gzipped `.wasm`).
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub code: &'a str,
    pub error_description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_seq: Option<u64>,
}

impl<'a> ErrorBody<'a> {
    pub const fn new(error: &'a str, code: &'a str, description: &'a str) -> Self {
        Self {
            error,
            code,
            error_description: description,
            scope: None,
            held_seq: None,
        }
    }

    /// Borrowed strings into a `String`: cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_header_yields_a_token_and_nothing_else_does() {
        assert_eq!(
            bearer_token(Some("Bearer abc.def.ghi")),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(Some("bearer  abc \t")), Some("abc"));
        for kept in ["abc\u{a0}", "\u{3000}abc", "abc\u{2028}", "abc\n"] {
            assert_eq!(
                bearer_token(Some(&format!("Bearer {kept}"))),
                Some(kept),
                "{kept:?}"
            );
        }
        for none in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic abc"),
        ] {
            assert_eq!(bearer_token(none), None, "{none:?}");
        }
    }

    #[test]
    fn scopes_and_realms_are_what_a_challenge_can_carry_unescaped() {
        for good in ["admin", "read:all", "a!#$%&'()*+,-./[]^_`{|}~"] {
            assert!(is_scope_token(good), "{good}");
        }
        for bad in [
            "",
            "admin write",
            "a\"b",
            "a\\b",
            "caf\u{e9}",
            "a\nb",
            "a\u{7f}",
        ] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
        assert!(is_realm_text("my api") && is_realm_text(""));
        for bad in ["a\"b", "a\\b", "a\r\nX-Injected: 1", "a\tb"] {
            assert!(!is_realm_text(bad), "{bad:?}");
        }
    }

    #[test]
    fn refusals_carry_the_code_and_the_challenge() {
        let missing = Refusal::unauthorized("gatehouse", ErrorCode::MissingToken);
        assert_eq!(
            (missing.status, missing.www_authenticate.as_str()),
            (401, "Bearer realm=\"gatehouse\"")
        );
        let body: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
        assert_eq!(
            (body["error"].as_str(), body["code"].as_str()),
            (Some("invalid_token"), Some("missing_token"))
        );

        let expired = Refusal::unauthorized("gatehouse", ErrorCode::Expired);
        assert!(expired.www_authenticate.contains("error=\"invalid_token\""));
        let body: serde_json::Value = serde_json::from_str(&expired.body).unwrap();
        assert_eq!(body["code"], "expired");

        let scope = Refusal::insufficient_scope("gatehouse", "admin");
        assert_eq!(scope.status, 403);
        assert!(scope.www_authenticate.ends_with("scope=\"admin\""));
        let body: serde_json::Value = serde_json::from_str(&scope.body).unwrap();
        assert_eq!(
            (body["code"].as_str(), body["scope"].as_str()),
            (Some("insufficient_scope"), Some("admin"))
        );
    }
}
