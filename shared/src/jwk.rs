//! JSON Web Keys (RFC 7517): Ed25519 as OKP (RFC 8037), P-256 as EC (feature `es256`).
//!
//! A [`KeySet`] keeps only keys it can verify with; everything else in a JWKS is skipped and
//! remembered in [`KeySet::skipped`], so one odd key never takes the whole set down.

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::b64;
use crate::ed25519::PrecomputedKey;
use crate::error::JwkError;

/// A JWS signature algorithm Gatehouse can verify. The algorithm is a property of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 (RFC 8037). Header `alg` is `EdDSA`, or the fully specified `Ed25519` (RFC 9864).
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    #[cfg(feature = "es256")]
    Es256,
}

impl Algorithm {
    /// The `alg` name this crate writes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            #[cfg(feature = "es256")]
            Self::Es256 => "ES256",
        }
    }

    /// Whether a JWS header `alg` names this algorithm.
    pub fn matches_header(self, alg: &str) -> bool {
        match self {
            Self::EdDsa => alg == "EdDSA" || alg == "Ed25519",
            #[cfg(feature = "es256")]
            Self::Es256 => alg == "ES256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JWK as it appears on the wire. Members Gatehouse does not use are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Private part. Only ever present in a private JWK; [`VerifyingJwk::to_jwk`] never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

/// A public key that can verify signatures.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    #[cfg(feature = "es256")]
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ed25519(_) => f.write_str("PublicKey::Ed25519"),
            #[cfg(feature = "es256")]
            Self::P256(_) => f.write_str("PublicKey::P256"),
        }
    }
}

impl PublicKey {
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDsa,
            #[cfg(feature = "es256")]
            Self::P256(_) => Algorithm::Es256,
        }
    }

    /// Verifies a raw JWS signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(key) => {
                ed25519_dalek::Signature::from_slice(signature).is_ok_and(|sig| {
                    use ed25519_dalek::Verifier as _;
                    key.verify(message, &sig).is_ok()
                })
            }
            #[cfg(feature = "es256")]
            Self::P256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
        }
    }

    /// The public JWK members that identify this key (no `kid`, `alg` or `use`).
    pub fn to_jwk(&self) -> Jwk {
        match self {
            Self::Ed25519(key) => Jwk {
                kty: "OKP".into(),
                crv: Some("Ed25519".into()),
                x: Some(b64::encode(key.as_bytes())),
                ..Jwk::default()
            },
            #[cfg(feature = "es256")]
            Self::P256(key) => {
                let point = key.to_encoded_point(false);
                Jwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: point.x().map(b64::encode),
                    y: point.y().map(b64::encode),
                    ..Jwk::default()
                }
            }
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): Gatehouse uses it as the `kid`.
    pub fn thumbprint(&self) -> String {
        let jwk = self.to_jwk();
        let x = jwk.x.unwrap_or_default();
        let crv = jwk.crv.unwrap_or_default();
        // Members in lexicographic order, no whitespace, as RFC 7638 §3 requires.
        let canonical = match jwk.y {
            Some(y) => format!(
                r#"{{"crv":"{crv}","kty":"{}","x":"{x}","y":"{y}"}}"#,
                jwk.kty
            ),
            None => format!(r#"{{"crv":"{crv}","kty":"{}","x":"{x}"}}"#, jwk.kty),
        };
        b64::encode(Sha256::digest(canonical.as_bytes()))
    }

    fn from_jwk(jwk: &Jwk) -> Result<Self, JwkError> {
        let x = jwk.x.as_deref().ok_or(JwkError::Invalid("missing x"))?;
        match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => {
                let bytes = b64::decode_array::<32>(x).ok_or(JwkError::Invalid("bad Ed25519 x"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| JwkError::Invalid("Ed25519 x is not a curve point"))?;
                if key.is_weak() {
                    return Err(JwkError::Invalid("Ed25519 key has small order"));
                }
                Ok(Self::Ed25519(key))
            }
            #[cfg(feature = "es256")]
            ("EC", Some("P-256")) => {
                let y = jwk.y.as_deref().ok_or(JwkError::Invalid("missing y"))?;
                let x = b64::decode_array::<32>(x).ok_or(JwkError::Invalid("bad P-256 x"))?;
                let y = b64::decode_array::<32>(y).ok_or(JwkError::Invalid("bad P-256 y"))?;
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(Self::P256)
                    .map_err(|_| JwkError::Invalid("P-256 point is not on the curve"))
            }
            ("OKP" | "EC", _) => Err(JwkError::Unsupported("curve")),
            _ => Err(JwkError::Unsupported("key type")),
        }
    }
}

/// A usable verification key: its `kid`, its algorithm and the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingJwk {
    kid: String,
    key: PublicKey,
    /// Ed25519 keys verify through a per-key table (see `ed25519`).
    precomputed: Option<PrecomputedKey>,
}

impl VerifyingJwk {
    pub fn new(kid: impl Into<String>, key: PublicKey) -> Self {
        let precomputed = match &key {
            PublicKey::Ed25519(k) => Some(PrecomputedKey::new(k)),
            #[cfg(feature = "es256")]
            PublicKey::P256(_) => None,
        };
        Self {
            kid: kid.into(),
            key,
            precomputed,
        }
    }

    /// Verifies a raw JWS signature over `message` with this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.precomputed {
            Some(key) => key.verify(message, signature),
            None => self.key.verify(message, signature),
        }
    }

    /// Accepts a public JWK. A `kid` is required (tokens name their key); `use`, when present,
    /// must be `sig`; `alg`, when present, must be the algorithm of the key type.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwkError> {
        let kid = jwk.kid.clone().ok_or(JwkError::Invalid("missing kid"))?;
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::Unsupported("use is not sig"));
        }
        let key = PublicKey::from_jwk(jwk)?;
        if jwk
            .alg
            .as_deref()
            .is_some_and(|alg| !key.algorithm().matches_header(alg))
        {
            return Err(JwkError::Invalid("alg does not match the key type"));
        }
        Ok(Self::new(kid, key))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub const fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    pub const fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The public JWK with `kid`, `alg` and `use: sig`.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kid: Some(self.kid.clone()),
            alg: Some(self.algorithm().as_str().into()),
            key_use: Some("sig".into()),
            ..self.key.to_jwk()
        }
    }
}

/// A key of a JWKS that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// Its `kid`, if it had a string one.
    pub kid: Option<String>,
    pub reason: JwkError,
}

/// The verification keys of a JWKS, looked up by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingJwk>,
    skipped: Vec<SkippedKey>,
}

#[derive(Serialize)]
struct JwksOut {
    keys: Vec<Jwk>,
}

impl KeySet {
    pub fn new(keys: impl IntoIterator<Item = VerifyingJwk>) -> Self {
        let mut set = Self::default();
        for key in keys {
            set.insert(key);
        }
        set
    }

    /// Parses a JWKS document (`{"keys": [...]}`). Fails only when the document itself is not a
    /// key set; unusable keys and repeated `kid`s are skipped and listed in [`Self::skipped`].
    pub fn from_json(json: &str) -> Result<Self, JwkError> {
        #[derive(Deserialize)]
        struct JwksIn {
            keys: Vec<serde_json::Value>,
        }
        let doc: JwksIn = serde_json::from_str(json)
            .map_err(|_| JwkError::NotAKeySet("expected an object with a `keys` array"))?;
        let mut set = Self::default();
        for (index, value) in doc.keys.into_iter().enumerate() {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|_| JwkError::Invalid("members of the wrong type"))
                .and_then(|jwk| VerifyingJwk::from_jwk(&jwk));
            match parsed {
                Ok(key) if set.get(key.kid()).is_some() => set.skipped.push(SkippedKey {
                    index,
                    kid,
                    reason: JwkError::Invalid("duplicate kid"),
                }),
                Ok(key) => set.keys.push(key),
                Err(reason) => set.skipped.push(SkippedKey { index, kid, reason }),
            }
        }
        Ok(set)
    }

    /// The public JWKS document.
    pub fn to_json(&self) -> String {
        let doc = JwksOut {
            keys: self.keys.iter().map(VerifyingJwk::to_jwk).collect(),
        };
        serde_json::to_string(&doc).unwrap_or_else(|_| String::from(r#"{"keys":[]}"#))
    }

    /// Adds a key unless its `kid` is already present. Returns whether it was added.
    pub fn insert(&mut self, key: VerifyingJwk) -> bool {
        if self.get(key.kid()).is_some() {
            return false;
        }
        self.keys.push(key);
        true
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingJwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[VerifyingJwk] {
        &self.keys
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(VerifyingJwk::kid)
    }

    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn okp(kid: &str, x: &str) -> String {
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"{kid}"}}"#)
    }

    #[test]
    fn skips_unusable_keys_but_keeps_good_ones() {
        let json = format!(
            r#"{{"keys":[
                {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"}},
                {{"kty":"OKP","crv":"X25519","x":"{RFC8037_X}","kid":"x"}},
                {good},
                {{"kty":"OKP","crv":"Ed25519","x":"short","kid":"bad-x"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"enc","use":"enc"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"hs","alg":"HS256"}},
                {{"kty":7,"kid":"typed"}},
                {dup},
                "not an object"
            ]}}"#,
            good = okp("good", RFC8037_X),
            dup = okp("good", RFC8037_X),
        );
        let set = KeySet::from_json(&json).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["good"]);
        let skipped: Vec<_> = set.skipped().iter().map(|s| s.index).collect();
        assert_eq!(skipped, [0, 1, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(set.get("good").unwrap().algorithm(), Algorithm::EdDsa);
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_an_error() {
        for doc in ["", "[]", "{}", r#"{"keys":{}}"#, "null"] {
            assert!(KeySet::from_json(doc).is_err(), "{doc}");
        }
    }

    #[test]
    fn round_trips_through_json_without_private_members() {
        let json = format!(r#"{{"keys":[{}]}}"#, okp("k1", RFC8037_X));
        let set = KeySet::from_json(&json).unwrap();
        let out = set.to_json();
        assert!(out.contains(r#""alg":"EdDSA""#) && out.contains(r#""use":"sig""#));
        assert!(!out.contains(r#""d""#));
        assert_eq!(KeySet::from_json(&out).unwrap(), set);
    }

    #[test]
    fn rfc8037_thumbprint() {
        // RFC 8037 appendix A.3.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some(RFC8037_X.into()),
            ..Jwk::default()
        };
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[cfg(feature = "es256")]
    #[test]
    fn p256_point_must_be_on_the_curve() {
        let zero = b64::encode([0u8; 32]);
        let json = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{zero}","y":"{zero}","kid":"p"}}]}}"#
        );
        let set = KeySet::from_json(&json).unwrap();
        assert!(set.is_empty());
        assert_eq!(
            set.skipped()[0].reason,
            JwkError::Invalid("P-256 point is not on the curve")
        );
    }
}
