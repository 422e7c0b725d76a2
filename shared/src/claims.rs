//! The claims of a Gatehouse access token (RFC 9068 profile): [`TokenClaims`] is what the issuer
//! writes, [`AccessClaims`] what a verifier hands out, and only a verifier can make one.
//!
//! On the wire they are a jwt-compact `Claims<T>`: `exp`, `nbf` and `iat` are jwt-compact's, as
//! `NumericDate`s (RFC 7519 §2): a fractional value is accepted and truncated toward zero, the
//! earlier second after 1970: `exp` ends sooner, and `nbf` and `iat` allow a token up to a
//! second sooner than jose would (the issuer writes whole seconds; docs/token-core.md has the
//! decision). A value outside ±262,000 years is malformed.

use core::fmt;
use core::ops::Deref;

#[cfg(feature = "sign")]
use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ValidationError;
use crate::token::UniqueNames;

/// `typ` header of every access token (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3), written as a string
/// when there is exactly one audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn single(aud: impl Into<String>) -> Self {
        Self::One(aud.into())
    }

    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(one) => one == aud,
            Self::Many(many) => many.iter().any(|a| a == aud),
        }
    }
}

/// The claims of an access token as the issuer writes them. Times are Unix seconds. Making one
/// trusts nothing: a verifier never accepts this type, only produces [`AccessClaims`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The login session (refresh-token family) the token belongs to.
    pub sid: String,
    /// Space-separated scopes; empty when the token has none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The OAuth client the token was issued to (RFC 9068 §2.2), when the token request named
    /// one; the issuer keeps no client registry, so it is the client's own word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl TokenClaims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split_ascii_whitespace().any(|s| s == wanted)
    }

    /// Whether the token has expired at `now`, with `leeway_secs` of clock difference.
    pub fn has_expired(&self, now: i64, leeway_secs: u32) -> bool {
        exp_has_passed(self.exp, now, i64::from(leeway_secs))
    }
}

/// Whether an `exp` of `exp` has passed at `now`, with `leeway_secs` of clock difference: a
/// token is valid only while `now < exp` (RFC 7519 §4.1.4, the current time MUST be before
/// `exp`). The one rule, for verified claims and for an unverified token's `exp` alike.
pub fn exp_has_passed(exp: i64, now: i64, leeway_secs: i64) -> bool {
    now >= exp.saturating_add(leeway_secs)
}

/// Whether a claim's value reaches the origin whole as a header value, as the edge hands `sub`,
/// `sid`, `jti`, `scope` and `client_id` on: printable ASCII, no surrounding spaces (a header
/// loses them: `" alice"` would arrive as `alice`, another user).
pub fn fits_a_header(value: &str) -> bool {
    value.bytes().all(|b| (b' '..=b'~').contains(&b)) && value.trim() == value
}

/// Claims that passed a [`crate::Verifier`]: signature, type, key, issuer, audience and time,
/// with the `kid` of the key whose signature they carry (a revoked key refuses its tokens).
/// Read them through `Deref` (`claims.sub`); there is no public constructor, so code outside
/// this crate cannot make one:
///
/// ```compile_fail
/// # use gatehouse_shared::{AccessClaims, TokenClaims};
/// fn forge(claims: TokenClaims) -> AccessClaims {
///     AccessClaims { claims, kid: String::new() }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AccessClaims {
    claims: TokenClaims,
    #[serde(skip)]
    kid: String,
}

impl Deref for AccessClaims {
    type Target = TokenClaims;
    fn deref(&self) -> &TokenClaims {
        &self.claims
    }
}

impl AccessClaims {
    /// Only the verifier calls this, after every check passed, with the key it checked against.
    pub(crate) fn verified(claims: TokenClaims, kid: &str) -> Self {
        Self {
            claims,
            kid: kid.to_owned(),
        }
    }

    /// Claims that never went through a verifier, for tests of code that consumes them
    /// (feature `testing`, which only dev-dependencies enable).
    #[cfg(any(test, feature = "testing"))]
    pub fn unverified_for_tests(claims: TokenClaims, kid: &str) -> Self {
        Self::verified(claims, kid)
    }

    /// The `kid` of the key that verified the signature.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn into_inner(self) -> TokenClaims {
        self.claims
    }
}

/// The members jwt-compact leaves to us (all but `exp`, `nbf`, `iat`), as they arrive. Any
/// repeated member is malformed; unknown members are ignored.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CustomClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

impl<'de> Deserialize<'de> for CustomClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor;
        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = CustomClaims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = UniqueNames::default();
                let mut out = CustomClaims::default();
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match name.as_ref() {
                        "iss" => out.iss = Some(map.next_value()?),
                        "sub" => out.sub = Some(map.next_value()?),
                        "aud" => out.aud = Some(map.next_value()?),
                        "jti" => out.jti = Some(map.next_value()?),
                        "sid" => out.sid = Some(map.next_value()?),
                        "scope" => out.scope = Some(map.next_value()?),
                        "client_id" => out.client_id = Some(map.next_value()?),
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                    seen.insert(name)?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

pub(crate) type WireClaims = jwt_compact::Claims<CustomClaims>;

#[cfg(feature = "sign")]
fn to_time(secs: i64, name: &'static str) -> Result<DateTime<Utc>, &'static str> {
    DateTime::from_timestamp(secs, 0).ok_or(name)
}

impl TokenClaims {
    #[cfg(feature = "sign")]
    /// The jwt-compact form, for signing. Fails only for a time beyond chrono's range.
    pub(crate) fn to_wire(&self) -> Result<WireClaims, &'static str> {
        let mut wire = jwt_compact::Claims::new(CustomClaims {
            iss: Some(self.iss.clone()),
            sub: Some(self.sub.clone()),
            aud: Some(self.aud.clone()),
            jti: Some(self.jti.clone()),
            sid: Some(self.sid.clone()),
            scope: (!self.scope.is_empty()).then(|| self.scope.clone()),
            client_id: self.client_id.clone(),
        });
        wire.expiration = Some(to_time(self.exp, "exp is out of range")?);
        wire.issued_at = Some(to_time(self.iat, "iat is out of range")?);
        wire.not_before = self
            .nbf
            .map(|nbf| to_time(nbf, "nbf is out of range"))
            .transpose()?;
        Ok(wire)
    }

    /// Required members enforced: `iss`, `sub`, `aud`, `exp`, `iat`, `jti` and `sid`. An empty
    /// `sub`, `jti` or `sid` is missing: it names no user, token or session, and an origin
    /// handed `X-Gatehouse-Sub: ` might take it for nobody signed in, or match any revocation.
    pub(crate) fn from_wire(wire: WireClaims) -> Result<Self, ValidationError> {
        fn required<T>(value: Option<T>, name: &'static str) -> Result<T, ValidationError> {
            value.ok_or(ValidationError::MissingClaim(name))
        }
        fn id(value: Option<String>, name: &'static str) -> Result<String, ValidationError> {
            required(value.filter(|id| !id.is_empty()), name)
        }
        let custom = wire.custom;
        let claims = Self {
            iss: required(custom.iss, "iss")?,
            sub: id(custom.sub, "sub")?,
            aud: required(custom.aud, "aud")?,
            exp: required(wire.expiration, "exp")?.timestamp(),
            iat: required(wire.issued_at, "iat")?.timestamp(),
            nbf: wire.not_before.map(|t| t.timestamp()),
            jti: id(custom.jti, "jti")?,
            sid: id(custom.sid, "sid")?,
            scope: custom.scope.unwrap_or_default(),
            // Optional: tokens of clients that named none, and of issuers before it.
            client_id: custom.client_id,
        };
        // The issuer mints ids and scope tokens, which always fit, and takes only a client id
        // that does.
        let client_id = claims.client_id.as_deref();
        if ![&claims.sub, &claims.sid, &claims.jti, &claims.scope]
            .iter()
            .all(|value| fits_a_header(value))
            || client_id.is_some_and(|id| id.is_empty() || !fits_a_header(id))
        {
            return Err(ValidationError::MalformedClaims(
                "sub, sid, jti, scope and client_id must be printable ASCII without surrounding \
                 spaces",
            ));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TokenClaims, ValidationError> {
        let wire: WireClaims =
            serde_json::from_str(json).map_err(|_| ValidationError::MalformedClaims("test"))?;
        TokenClaims::from_wire(wire)
    }

    const FULL: &str = r#"{"iss":"i","sub":"s","aud":"a","exp":2,"iat":1,"jti":"j","sid":"d"}"#;

    #[test]
    fn claims_forwarded_as_headers_must_fit_in_one() {
        let with = |name: &str, value: &str| {
            let mut claims: serde_json::Value = serde_json::from_str(FULL).unwrap_or_default();
            claims[name] = value.into();
            parse(&claims.to_string())
        };
        for (name, value) in [
            ("sub", "a\nb"),
            ("sub", " s"),
            ("sid", "d\u{0}"),
            ("jti", "\u{e9}"),
            ("scope", "read\twrite"),
            ("client_id", ""),
            ("client_id", "web "),
            ("client_id", "w\u{7f}b"),
        ] {
            assert!(
                matches!(with(name, value), Err(ValidationError::MalformedClaims(_))),
                "{name}: {value:?}"
            );
        }
        assert_eq!(
            with("scope", "read write").map(|c| c.scope),
            Ok("read write".to_owned())
        );
        assert_eq!(
            with("client_id", "my app").map(|c| c.client_id),
            Ok(Some("my app".to_owned()))
        );
        assert_eq!(parse(FULL).map(|c| c.client_id), Ok(None));
        let wrong_type = FULL.replace(r#""sid":"d""#, r#""sid":"d","client_id":5"#);
        assert!(parse(&wrong_type).is_err());
    }

    #[test]
    fn audience_is_a_string_or_an_array() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.aud, Audience::single("a"));
        let many = FULL.replace(r#""aud":"a""#, r#""aud":["x","a"]"#);
        let c = parse(&many).unwrap();
        assert!(c.aud.contains("a") && c.aud.contains("x") && !c.aud.contains("y"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""aud":["x","a"]"#), "{json}");
        for bad in [r#""aud":5"#, r#""aud":[5]"#, r#""aud":{}"#, r#""aud":null"#] {
            let s = FULL.replace(r#""aud":"a""#, bad);
            assert!(parse(&s).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_required_claim_is_required() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "sid"] {
            let mut v: serde_json::Value = serde_json::from_str(FULL).unwrap();
            v.as_object_mut().unwrap().remove(name);
            let err = parse(&v.to_string()).unwrap_err();
            assert_eq!(err, ValidationError::MissingClaim(name));
        }
    }

    #[test]
    fn an_empty_id_is_a_missing_one() {
        for name in ["sub", "jti", "sid"] {
            let mut v: serde_json::Value = serde_json::from_str(FULL).unwrap();
            v[name] = "".into();
            assert_eq!(
                parse(&v.to_string()),
                Err(ValidationError::MissingClaim(name))
            );
        }
        let no_scope = FULL.replace(r#""jti":"j""#, r#""jti":"j","scope":"""#);
        assert_eq!(parse(&no_scope).map(|c| c.scope), Ok(String::new()));
    }

    #[test]
    fn repeated_members_are_malformed_known_or_not() {
        for dup in [
            r#""exp":2,"exp":3"#,
            r#""exp":2,"sub":"t""#,
            r#""exp":2,"x":1,"x":2"#,
            r#""exp":2,"s\u0075b":"t""#,
        ] {
            let s = FULL.replace(r#""exp":2"#, dup);
            assert!(parse(&s).is_err(), "{dup}");
        }
        // Repeats are found by comparing each name with those before it: a bounded number.
        let many = |n: usize| {
            let extra = (0..n).fold(String::new(), |mut extra, i| {
                use std::fmt::Write as _;
                let _ = write!(extra, r#","x{i}":0"#);
                extra
            });
            FULL.replace(r#""exp":2"#, &format!(r#""exp":2{extra}"#))
        };
        assert!(parse(&many(200)).is_ok());
        assert!(parse(&many(300)).is_err());
    }

    #[test]
    fn numeric_dates_per_rfc_7519() {
        // Fractional NumericDates are valid JSON numbers (RFC 7519 §2): truncated.
        for (exp, want) in [("2.9", 2), ("1e3", 1000), ("2", 2)] {
            let s = FULL.replace(r#""exp":2"#, &format!(r#""exp":{exp}"#));
            assert_eq!(parse(&s).unwrap().exp, want, "{exp}");
        }
        for bad in [r#""2""#, "1e20", "99999999999999999999999", "true", "null"] {
            let s = FULL.replace(r#""exp":2"#, &format!(r#""exp":{bad}"#));
            assert!(parse(&s).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_split_on_spaces() {
        let s = FULL.replace(r#""sid":"d""#, r#""sid":"d","scope":"read  write""#);
        let c = parse(&s).unwrap();
        assert!(c.has_scope("read") && c.has_scope("write"));
        assert!(!c.has_scope("admin") && !c.has_scope("") && !c.has_scope("read  write"));
    }
}
