//! The claims of a Gatehouse access token (RFC 9068 profile).

use core::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValidationError;

/// `typ` header of every access token (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The `aud` claim: a single string or an array of strings on input; written as a string when
/// there is exactly one audience.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience(pub Vec<String>);

impl Audience {
    pub fn single(aud: impl Into<String>) -> Self {
        Self(vec![aud.into()])
    }

    pub fn contains(&self, aud: &str) -> bool {
        self.0.iter().any(|a| a == aud)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let [single] = self.0.as_slice() {
            return serializer.serialize_str(single);
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for aud in &self.0 {
            seq.serialize_element(aud)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudienceVisitor;
        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::single(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(aud) = seq.next_element::<String>()? {
                    out.push(aud);
                }
                Ok(Audience(out))
            }
        }
        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// The verified claims of an access token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
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
}

impl AccessClaims {
    /// Parses a claims JSON object, requiring `iss`, `sub`, `aud`, `exp`, `iat`, `jti` and `sid`.
    /// Unknown claims are ignored; a repeated claim or a claim of the wrong JSON type (a string or
    /// fractional `exp`, say) is malformed.
    pub fn from_json(json: &[u8]) -> Result<Self, ValidationError> {
        let raw: RawClaims = serde_json::from_slice(json)
            .map_err(|_| ValidationError::MalformedClaims("claims are not a valid JSON object"))?;
        raw.into_claims()
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }
}

/// Claims as they arrive, before required ones are enforced.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    sid: Option<String>,
    scope: Option<String>,
}

impl RawClaims {
    fn into_claims(self) -> Result<AccessClaims, ValidationError> {
        fn required<T>(value: Option<T>, name: &'static str) -> Result<T, ValidationError> {
            value.ok_or(ValidationError::MissingClaim(name))
        }
        Ok(AccessClaims {
            iss: required(self.iss, "iss")?,
            sub: required(self.sub, "sub")?,
            aud: required(self.aud, "aud")?,
            exp: required(self.exp, "exp")?,
            iat: required(self.iat, "iat")?,
            nbf: self.nbf,
            jti: required(self.jti, "jti")?,
            sid: required(self.sid, "sid")?,
            scope: self.scope.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"iss":"i","sub":"s","aud":"a","exp":2,"iat":1,"jti":"j","sid":"d"}"#;

    #[test]
    fn audience_is_a_string_or_an_array() {
        let c = AccessClaims::from_json(FULL.as_bytes()).unwrap();
        assert_eq!(c.aud, Audience::single("a"));
        let many = FULL.replace(r#""aud":"a""#, r#""aud":["x","a"]"#);
        let c = AccessClaims::from_json(many.as_bytes()).unwrap();
        assert!(c.aud.contains("a") && c.aud.contains("x") && !c.aud.contains("y"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""aud":["x","a"]"#), "{json}");
        for bad in [r#""aud":5"#, r#""aud":[5]"#, r#""aud":{}"#] {
            let s = FULL.replace(r#""aud":"a""#, bad);
            assert!(matches!(
                AccessClaims::from_json(s.as_bytes()),
                Err(ValidationError::MalformedClaims(_))
            ));
        }
    }

    #[test]
    fn every_required_claim_is_required() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "sid"] {
            let mut v: serde_json::Value = serde_json::from_str(FULL).unwrap();
            v.as_object_mut().unwrap().remove(name);
            let err = AccessClaims::from_json(v.to_string().as_bytes()).unwrap_err();
            assert_eq!(err, ValidationError::MissingClaim(name));
        }
    }

    #[test]
    fn times_must_be_integers_and_claims_unique() {
        for bad in [
            r#""exp":"2""#,
            r#""exp":2.5"#,
            r#""exp":1e3"#,
            r#""exp":99999999999999999999999"#,
            r#""exp":2,"exp":3"#,
            r#""exp":true"#,
        ] {
            let s = FULL.replace(r#""exp":2"#, bad);
            assert!(
                matches!(
                    AccessClaims::from_json(s.as_bytes()),
                    Err(ValidationError::MalformedClaims(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn scopes_split_on_spaces() {
        let s = FULL.replace(r#""sid":"d""#, r#""sid":"d","scope":"read  write""#);
        let c = AccessClaims::from_json(s.as_bytes()).unwrap();
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert!(c.has_scope("write") && !c.has_scope("admin") && !c.has_scope(""));
    }
}
