//! Compact JWS (RFC 7515): parsing an untrusted token and checking its signature.
//!
//! The algorithm is always taken from the key the `kid` names; the header `alg` must agree with
//! it, so `none`, HS* and any other confusion fails before a signature is looked at.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::b64;
use crate::error::{ParseError, ValidationError, VerifyError};
use crate::jwk::KeySet;

/// The JOSE header members Gatehouse reads. Others (`jku`, `x5u`, `jwk`, …) are ignored and
/// never dereferenced; a repeated member is malformed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// A token split and decoded, but not trusted: nothing in it has been checked yet.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    signing_input: &'a str,
    header: Header,
    payload: Vec<u8>,
    /// Any length: the key decides what a valid signature is, so an HS256 or `none` token
    /// fails as an algorithm mismatch, not as noise.
    signature: Vec<u8>,
}

impl<'a> UntrustedToken<'a> {
    /// Splits a compact JWS. The size limit is checked before anything is decoded.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Self, ParseError> {
        if token.len() > max_bytes {
            return Err(ParseError::TooLarge {
                len: token.len(),
                max: max_bytes,
            });
        }
        let (signing_input, signature_b64) = token
            .rsplit_once('.')
            .ok_or(ParseError::Malformed("expected three dot-separated parts"))?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(ParseError::Malformed("expected three dot-separated parts"))?;
        if payload_b64.contains('.') {
            return Err(ParseError::Malformed("expected three dot-separated parts"));
        }
        let header_json =
            b64::decode(header_b64).ok_or(ParseError::Malformed("header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| ParseError::Malformed("header is not a valid JOSE header"))?;
        if header.crit.is_some() {
            return Err(ParseError::UnsupportedCritical);
        }
        let payload =
            b64::decode(payload_b64).ok_or(ParseError::Malformed("payload is not base64url"))?;
        let signature = b64::decode(signature_b64)
            .ok_or(ParseError::Malformed("signature is not base64url"))?;
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload bytes, without any check of the signature. For display only.
    pub fn payload_unverified(&self) -> &[u8] {
        &self.payload
    }

    /// Whether `typ` names `expected`, compared as a media type: case-insensitive, with an
    /// optional `application/` prefix (RFC 7515 §4.1.9).
    pub fn has_type(&self, expected: &str) -> bool {
        self.header.typ.as_deref().is_some_and(|typ| {
            let typ = match (typ.get(..12), typ.get(12..)) {
                (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
                _ => typ,
            };
            typ.eq_ignore_ascii_case(expected)
        })
    }

    /// Checks `typ`, finds the key by `kid`, requires the header `alg` to be that key's
    /// algorithm, verifies the signature, and only then hands out the payload.
    pub fn verify(self, keys: &KeySet, expected_typ: &str) -> Result<Vec<u8>, ValidationError> {
        if !self.has_type(expected_typ) {
            return Err(ValidationError::WrongType);
        }
        let key = self
            .header
            .kid
            .as_deref()
            .and_then(|kid| keys.get(kid))
            .ok_or(ValidationError::UnknownKid)?;
        if !key.algorithm().matches_header(&self.header.alg) {
            return Err(ValidationError::AlgMismatch);
        }
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(ValidationError::BadSignature);
        }
        Ok(self.payload)
    }
}

/// Parses and verifies a compact JWS of type `expected_typ`, returning its payload.
pub fn verify_compact(
    token: &str,
    keys: &KeySet,
    expected_typ: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, VerifyError> {
    Ok(UntrustedToken::parse(token, max_bytes)?.verify(keys, expected_typ)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(header),
            b64::encode(payload),
            b64::encode([0u8; 64])
        )
    }

    #[test]
    fn structure_errors() {
        let good = token(r#"{"alg":"EdDSA","kid":"k"}"#, "{}");
        assert!(UntrustedToken::parse(&good, 4096).is_ok());
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], parts[2], parts[1], parts[2]
            ),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
            token("not json", "{}"),
            token(r#"{"kid":"k"}"#, "{}"),
            token(r#"{"alg":"EdDSA","alg":"none","kid":"k"}"#, "{}"),
            token(r#"{"alg":5}"#, "{}"),
        ];
        for case in &cases {
            let err = UntrustedToken::parse(case, 4096).unwrap_err();
            assert!(matches!(err, ParseError::Malformed(_)), "{case}: {err:?}");
        }
    }

    #[test]
    fn size_is_checked_first() {
        let huge = "x".repeat(10_000);
        assert_eq!(
            UntrustedToken::parse(&huge, 8192).unwrap_err(),
            ParseError::TooLarge {
                len: 10_000,
                max: 8192
            }
        );
    }

    #[test]
    fn critical_headers_are_refused() {
        let t = token(r#"{"alg":"EdDSA","kid":"k","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(
            UntrustedToken::parse(&t, 4096).unwrap_err(),
            ParseError::UnsupportedCritical
        );
    }

    #[test]
    fn typ_is_a_case_insensitive_media_type() {
        for (typ, ok) in [
            ("at+jwt", true),
            ("AT+JWT", true),
            ("application/at+jwt", true),
            ("Application/At+Jwt", true),
            ("jwt", false),
            ("application/jwt", false),
            ("xapplication/at+jwt", false),
            ("at+jwt ", false),
        ] {
            let t = token(&format!(r#"{{"alg":"EdDSA","typ":"{typ}"}}"#), "{}");
            assert_eq!(
                UntrustedToken::parse(&t, 4096).unwrap().has_type("at+jwt"),
                ok,
                "{typ}"
            );
        }
    }
}
