//! The thin layer around jwt-compact's `UntrustedToken` and validators: what jwt-compact does not
//! check, and nothing it does.
//!
//! jwt-compact splits the compact JWS, decodes base64url strictly, parses the header, checks the
//! header `alg` against the algorithm, the signature length and the signature, and deserializes
//! the claims. Around it, this module adds, in this order:
//! 1. the size limit, before anything is decoded;
//! 2. `crit` refused whenever present (`null` included; RFC 7515 §4.1.11: we support no
//!    extension), and any repeated header member refused (RFC 7515 §4; serde's derive only
//!    catches repeats of the members it declares);
//! 3. `typ` compared as a media type (RFC 7515 §4.1.9, RFC 8725 §3.11);
//! 4. the key chosen by `kid`, and the algorithm by the key: the header `alg` only has to name it.
//!
//! `cty` is left to jwt-compact: absent or `JSON` means JSON claims; anything else (`CBOR`, which
//! jwt-compact reads only with its `std` feature, or `JWT`, a nested token) is refused as
//! `unsupported_header`. The revocation lists are signed binary payloads with no `cty`, read
//! through [`UntrustedList`]; their `typ` keeps them apart from tokens.

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use jwt_compact::{AlgorithmExt as _, Token};
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::alg::{ED25519_NAME, StrictEd25519};
use crate::error::{ParseError, ValidationError};
use crate::jwk::{KeySet, PublicKey};

/// The header members jwt-compact does not model, as far as Gatehouse cares: whether `crit` is
/// there. Deserializing it refuses repeated members.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderExtensions {
    critical: bool,
}

impl<'de> Deserialize<'de> for HeaderExtensions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtensionsVisitor;
        impl<'de> Visitor<'de> for ExtensionsVisitor {
            type Value = HeaderExtensions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = UniqueNames::default();
                let mut critical = false;
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    critical |= name == "crit";
                    seen.insert(name)?;
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(HeaderExtensions { critical })
            }
        }
        deserializer.deserialize_map(ExtensionsVisitor)
    }
}

/// Member names of one JSON object, refusing a repeat, and refusing more than `MAX_MEMBERS`:
/// the check compares each name with those before it, and objects here have a handful (a
/// 64 KiB header or a 1 MiB key set of distinct names would otherwise cost billions).
#[derive(Default)]
pub(crate) struct UniqueNames<'de>(Vec<std::borrow::Cow<'de, str>>);

/// Far more members than any token header, claims set or JWK here has.
const MAX_MEMBERS: usize = 256;

impl<'de> UniqueNames<'de> {
    pub(crate) fn insert<E: de::Error>(
        &mut self,
        name: std::borrow::Cow<'de, str>,
    ) -> Result<(), E> {
        if self.0.len() >= MAX_MEMBERS {
            return Err(E::custom("more than 256 members"));
        }
        if self.0.contains(&name) {
            return Err(E::custom(format_args!("repeated member `{name}`")));
        }
        self.0.push(name);
        Ok(())
    }
}

pub type Header = jwt_compact::Header<HeaderExtensions>;

/// What an Ed25519 signature check done elsewhere needs: the key the verifier chose, the JWS
/// signing input and the 64-byte signature, already checked for form.
#[derive(Debug, Clone, Copy)]
pub struct Ed25519Input<'a> {
    pub kid: &'a str,
    pub key: &'a crate::alg::Ed25519Key,
    pub signed: &'a [u8],
    pub signature: [u8; 64],
}

impl Ed25519Input<'_> {
    /// Whether the signature holds: its form first (what `verify_strict` refuses beyond the
    /// equation), then the equation, by `oracle`. The error: the oracle could not check.
    pub(crate) async fn holds_by<O: crate::Ed25519Oracle>(
        &self,
        oracle: &O,
    ) -> Result<bool, O::Fault> {
        Ok(crate::alg::strict_signature_form(&self.signature) && oracle.verify(self).await?)
    }
}

/// A token split and decoded, but not trusted: nothing in it has been checked but its form.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    text: &'a str,
    inner: jwt_compact::UntrustedToken<'a, HeaderExtensions>,
}

impl<'a> UntrustedToken<'a> {
    /// Splits a compact JWS. The size limit is checked before anything is decoded.
    pub fn parse(token: &'a str, max_bytes: usize) -> Result<Self, ParseError> {
        check_size(token, max_bytes)?;
        let inner = jwt_compact::UntrustedToken::<HeaderExtensions>::try_from(token)
            .map_err(|e| parse_error(&e))?;
        Self::with_header_checked(token, inner)
    }

    fn with_header_checked(
        text: &'a str,
        inner: jwt_compact::UntrustedToken<'a, HeaderExtensions>,
    ) -> Result<Self, ParseError> {
        if inner.header().other_fields.critical {
            return Err(ParseError::UnsupportedCritical);
        }
        Ok(Self { text, inner })
    }

    pub fn header(&self) -> &Header {
        self.inner.header()
    }

    /// The header `alg`, as sent.
    pub fn algorithm(&self) -> &str {
        self.inner.algorithm()
    }

    /// The payload bytes as sent, WITHOUT any check of the signature: for display only.
    /// (jwt-compact keeps its decoded copy private; the part was already checked as base64url.)
    pub fn payload_unverified(&self) -> Option<Vec<u8>> {
        let payload = self.text.split('.').nth(1)?;
        URL_SAFE_NO_PAD.decode(payload).ok()
    }

    /// The claims WITHOUT any check of the signature: for display, or for a verifier that
    /// checks the signature itself before it trusts them (`Verifier::verify_with`).
    pub fn claims_unverified<T: DeserializeOwned>(
        &self,
    ) -> Result<jwt_compact::Claims<T>, ValidationError> {
        self.inner
            .deserialize_claims_unchecked()
            .map_err(|e| validation_error(&e))
    }

    /// Whether `typ` names `expected`, compared as a media type: case-insensitive, with an
    /// optional `application/` prefix (RFC 7515 §4.1.9).
    pub fn has_type(&self, expected: &str) -> bool {
        self.header().token_type.as_deref().is_some_and(|typ| {
            let typ = match (typ.get(..12), typ.get(12..)) {
                (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
                _ => typ,
            };
            typ.eq_ignore_ascii_case(expected)
        })
    }

    /// Stage 3 for a signature checked elsewhere: `typ`, the key by `kid`, the header `alg`
    /// against that key's algorithm (Ed25519 only) and the signature's length, in jwt-compact's
    /// order. Returns the key, the signing input and the signature for an
    /// [`crate::Ed25519Oracle`].
    pub(crate) fn ed25519_input(
        &self,
        keys: &'a KeySet,
        expected_typ: &str,
    ) -> Result<Ed25519Input<'a>, ValidationError>
    where
        Self: 'a,
    {
        let jwk = self.checked_key(keys, expected_typ)?;
        #[allow(clippy::infallible_destructuring_match)] // one key type without `es256`
        let key = match jwk.key() {
            PublicKey::Ed25519(key) => key,
            #[cfg(feature = "es256")]
            PublicKey::P256(_) => return Err(ValidationError::AlgMismatch),
        };
        let signature: &[u8; 64] = self
            .inner
            .signature_bytes()
            .try_into()
            .map_err(|_| ValidationError::BadSignature)?;
        let signed = self.signing_input();
        Ok(Ed25519Input {
            kid: jwk.kid(),
            key,
            signed,
            signature: *signature,
        })
    }

    /// The JWS signing input, `header.payload`, as sent (parsing checked it has three parts).
    fn signing_input(&self) -> &'a [u8] {
        self.text
            .rsplit_once('.')
            .map_or(&[][..], |(signed, _)| signed.as_bytes())
    }

    /// `typ` first, then the key the header's `kid` names.
    fn key_for<'k>(
        &self,
        keys: &'k KeySet,
        expected_typ: &str,
    ) -> Result<&'k crate::jwk::VerifyingJwk, ValidationError> {
        if !self.has_type(expected_typ) {
            return Err(ValidationError::WrongType);
        }
        self.header()
            .key_id
            .as_deref()
            .and_then(|kid| keys.get(kid))
            .ok_or(ValidationError::UnknownKid)
    }

    /// The key `kid` names (after `typ`), if the header `alg` names that key's algorithm: the
    /// one place where the algorithm is chosen, by the key.
    fn checked_key<'k>(
        &self,
        keys: &'k KeySet,
        expected_typ: &str,
    ) -> Result<&'k crate::jwk::VerifyingJwk, ValidationError> {
        let jwk = self.key_for(keys, expected_typ)?;
        if !jwk.key().accepts_alg(self.algorithm()) {
            return Err(ValidationError::AlgMismatch);
        }
        Ok(jwk)
    }

    /// Checks `typ`, finds the key by `kid`, lets that key's algorithm validate the token
    /// (header `alg`, then signature), and only then hands out the claims.
    pub(crate) fn validate<T: DeserializeOwned>(
        &self,
        keys: &KeySet,
        expected_typ: &str,
    ) -> Result<Token<T, HeaderExtensions>, ValidationError> {
        // jwt-compact checks the header `alg` against the algorithm's name: Ed25519 answers to
        // the name the header used.
        let validated = match self.checked_key(keys, expected_typ)?.key() {
            PublicKey::Ed25519(key) if self.algorithm() == ED25519_NAME => {
                StrictEd25519::fully_specified()
                    .validator(key)
                    .validate(&self.inner)
            }
            PublicKey::Ed25519(key) => StrictEd25519.validator(key).validate(&self.inner),
            #[cfg(feature = "es256")]
            PublicKey::P256(key) => jwt_compact::alg::Es256.validator(key).validate(&self.inner),
        };
        validated.map_err(|e| validation_error(&e))
    }
}

/// A list's header holds `alg`, `typ` and `kid` (about 140 bytes of base64url).
const MAX_LIST_HEADER_BYTES: usize = 1024;

/// A signed revocation list (a snapshot or a delta, up to MBs), split and decoded but not
/// trusted. jwt-compact parses its header and signature but not its payload, which is decoded
/// here once (jwt-compact's constant-time base64 took 2.6 ms of a 100k-entry snapshot's 6.5 ms
/// native check) and handed out only once its signature holds ([`UntrustedList::verified_payload`],
/// or [`UntrustedList::verified_payload_with`] an oracle).
pub(crate) struct UntrustedList<'a> {
    token: UntrustedToken<'a>,
    payload: Vec<u8>,
}

impl<'a> UntrustedList<'a> {
    /// Stages 1 and 2, as [`UntrustedToken::parse`] does them, plus the payload's base64url.
    pub(crate) fn parse(text: &'a str, max_bytes: usize) -> Result<Self, ParseError> {
        check_size(text, max_bytes)?;
        let malformed = ParseError::Malformed("expected three dot-separated parts");
        let (header, rest) = text.split_once('.').ok_or(malformed.clone())?;
        // A list's size limit is MBs, and refusing repeated header members costs the square of
        // their number: anyone can push a list to the edge, whose isolate would spin on it.
        if header.len() > MAX_LIST_HEADER_BYTES {
            return Err(ParseError::Malformed("the header is over 1 KiB"));
        }
        let (payload, signature) = rest.split_once('.').ok_or(malformed)?;
        // First, as jwt-compact decodes a token's payload before it looks at `cty`, and the
        // layer at `crit`: a list with a bad payload and an odd header is `malformed`, as that
        // token is.
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ParseError::Malformed("a part is not base64url"))?;
        // A dot in `signature` makes four parts, which jwt-compact refuses.
        let without_payload = format!("{header}..{signature}");
        let inner = jwt_compact::UntrustedToken::<HeaderExtensions>::try_from(&*without_payload)
            .map_err(|e| parse_error(&e))?
            .into_owned();
        let token = UntrustedToken::with_header_checked(text, inner)?;
        Ok(Self { token, payload })
    }

    /// Stage 3 for a payload that is not JSON claims (the lists' binary form, which jwt-compact
    /// can only carry as CBOR claims, and its CBOR needs its `std` feature: see
    /// `revocation::snapshot`). The same `typ`, key and header `alg` checks as
    /// [`UntrustedToken::validate`], the signature by the key's jwt-compact algorithm over the
    /// original text, and only then the payload.
    /// Also the `kid` of the key that signed it.
    pub(crate) fn verified_payload(
        self,
        keys: &KeySet,
        expected_typ: &str,
    ) -> Result<(Vec<u8>, String), ValidationError> {
        let token = &self.token;
        let jwk = token.checked_key(keys, expected_typ)?;
        if !jwk
            .key()
            .verify(token.signing_input(), token.inner.signature_bytes())
        {
            return Err(ValidationError::BadSignature);
        }
        Ok((self.payload, jwk.kid().to_owned()))
    }

    /// [`Self::verified_payload`] with the equation checked by `oracle` (the worker: the
    /// runtime's WebCrypto), in the same order and with the same codes: `typ`, the key by
    /// `kid`, the header `alg` against it (Ed25519 only: another key type is `alg_mismatch`),
    /// the signature's length and form, the equation. The outer error: the oracle could not
    /// check.
    pub(crate) async fn verified_payload_with<O: crate::Ed25519Oracle>(
        self,
        oracle: &O,
        keys: &KeySet,
        expected_typ: &str,
    ) -> Result<Result<(Vec<u8>, String), ValidationError>, O::Fault> {
        let input = match self.token.ed25519_input(keys, expected_typ) {
            Ok(input) => input,
            Err(e) => return Ok(Err(e)),
        };
        if !input.holds_by(oracle).await? {
            return Ok(Err(ValidationError::BadSignature));
        }
        Ok(Ok((self.payload, input.kid.to_owned())))
    }
}

fn check_size(text: &str, max_bytes: usize) -> Result<(), ParseError> {
    if text.len() > max_bytes {
        return Err(ParseError::TooLarge {
            len: text.len(),
            max: max_bytes,
        });
    }
    Ok(())
}

fn parse_error(e: &jwt_compact::ParseError) -> ParseError {
    use jwt_compact::ParseError as E;
    match e {
        E::InvalidTokenStructure => ParseError::Malformed("expected three dot-separated parts"),
        E::InvalidBase64Encoding => ParseError::Malformed("a part is not base64url"),
        E::UnsupportedContentType(_) => ParseError::UnsupportedContentType,
        _ => ParseError::Malformed("header is not a valid JOSE header"),
    }
}

fn validation_error(e: &jwt_compact::ValidationError) -> ValidationError {
    use jwt_compact::ValidationError as E;
    match e {
        E::AlgorithmMismatch { .. } => ValidationError::AlgMismatch,
        E::InvalidSignatureLen { .. } | E::MalformedSignature(_) | E::InvalidSignature => {
            ValidationError::BadSignature
        }
        E::Expired => ValidationError::Expired,
        E::NotMature => ValidationError::NotYetValid,
        _ => ValidationError::MalformedClaims("claims are not a valid object of the right types"),
    }
}
