//! JSON Web Keys (RFC 7517) on jwt-compact's `JsonWebKey`: Ed25519 as OKP (RFC 8037), P-256 as
//! EC (feature `es256`), with the RFC 7638 thumbprint as the default `kid`.
//!
//! A [`KeySet`] keeps only keys it can verify with; everything else in a JWKS is skipped and
//! remembered in [`KeySet::skipped`], so one odd key never takes the whole set down.

use std::borrow::Cow;

use jwt_compact::jwk::JsonWebKey;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use crate::alg::Algorithm;
use crate::alg::{ED25519_NAME, Ed25519Key, Ed25519Name};
use crate::error::JwkError;
use crate::token::UniqueNames;

/// A public key that can verify signatures. Each variant holds a key type whose constructor
/// checks the key, so a `PublicKey` is always safe to verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    Ed25519(Ed25519Key),
    #[cfg(feature = "es256")]
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDsa,
            #[cfg(feature = "es256")]
            Self::P256(_) => Algorithm::Es256,
        }
    }

    /// Whether a JWS header `alg` (or a JWK `alg`) names this key's algorithm.
    pub fn accepts_alg(&self, alg: &str) -> bool {
        match self {
            Self::Ed25519(_) => alg == "EdDSA" || alg == ED25519_NAME,
            #[cfg(feature = "es256")]
            Self::P256(_) => alg == "ES256",
        }
    }

    /// Verifies a raw JWS signature over `message` with the same verifier tokens go through.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
        match self {
            Self::Ed25519(key) => ed25519_dalek::Signature::try_from_slice(signature)
                .is_ok_and(|sig| crate::alg::StrictEd25519.verify_signature(&sig, key, message)),
            #[cfg(feature = "es256")]
            Self::P256(key) => p256::ecdsa::Signature::try_from_slice(signature)
                .is_ok_and(|sig| jwt_compact::alg::Es256.verify_signature(&sig, key, message)),
        }
    }

    /// The key as jwt-compact's JWK (public members only).
    pub fn to_jwk(&self) -> JsonWebKey<'_> {
        match self {
            Self::Ed25519(key) => JsonWebKey::KeyPair {
                curve: Cow::Borrowed(ED25519_NAME),
                x: Cow::Borrowed(key.as_bytes()),
                secret: None,
            },
            #[cfg(feature = "es256")]
            Self::P256(key) => JsonWebKey::from(key),
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): Gatehouse uses it as the `kid`.
    pub fn thumbprint(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.to_jwk().thumbprint::<Sha256>())
    }

    pub(crate) fn from_jwk(jwk: &JsonWebKey<'_>) -> Result<Self, JwkError> {
        match jwk {
            JsonWebKey::KeyPair { curve, x, .. } if curve == ED25519_NAME => {
                Ed25519Key::from_bytes(x).map(Self::Ed25519)
            }
            #[cfg(feature = "es256")]
            JsonWebKey::EllipticCurve { curve, .. } if curve == "P-256" => {
                p256::ecdsa::VerifyingKey::try_from(jwk)
                    .map(Self::P256)
                    .map_err(|_| JwkError::Invalid("P-256 point is not on the curve"))
            }
            JsonWebKey::KeyPair { .. } | JsonWebKey::EllipticCurve { .. } => {
                Err(JwkError::Unsupported("curve"))
            }
            _ => Err(JwkError::Unsupported("key type")),
        }
    }
}

/// One entry of a JWKS on the wire: jwt-compact's key members plus `kid`, `alg` and `use`.
/// serde refuses a repeat of any member either side declares.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JwkEntry<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    #[serde(flatten)]
    pub key: JsonWebKey<'a>,
}

/// A public JWK as a verifier reads it: the members of the key types it can use, as plain
/// fields. Its `JsonWebKey` is then built from them. Deserializing `JsonWebKey` itself (an
/// internally tagged enum, every key type, flattened under `JwkEntry`) buffers each member
/// through serde's `Content` and cost the worker 49 KB of its `.wasm`. Any repeated member is
/// refused, declared here or not (RFC 7517 §4 allows keeping the last; two parsers that differ
/// there would read two keys), and so is `null` for any member read here (each is a string or
/// an array of them; `"use": null` is not an absent `use`); `x` and `y` are strict unpadded
/// base64url, as jwt-compact reads them.
#[derive(Default)]
struct PublicJwkIn {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    /// A private part (`d`): a key set that publishes one has leaked its key.
    private: bool,
    kid: Option<String>,
    alg: Option<String>,
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for PublicJwkIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct JwkVisitor;
        impl<'de> Visitor<'de> for JwkVisitor {
            type Value = PublicJwkIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JWK object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PublicJwkIn, A::Error> {
                let mut seen = UniqueNames::default();
                let mut jwk = PublicJwkIn::default();
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    match name.as_ref() {
                        "kty" => jwk.kty = Some(map.next_value()?),
                        "crv" => jwk.crv = Some(map.next_value()?),
                        "x" => jwk.x = Some(map.next_value()?),
                        "y" => jwk.y = Some(map.next_value()?),
                        "kid" => jwk.kid = Some(map.next_value()?),
                        "alg" => jwk.alg = Some(map.next_value()?),
                        "use" => jwk.key_use = Some(map.next_value()?),
                        "key_ops" => jwk.key_ops = Some(map.next_value()?),
                        other => {
                            jwk.private |= other == "d";
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    seen.insert(name)?;
                }
                Ok(jwk)
            }
        }
        deserializer.deserialize_map(JwkVisitor)
    }
}

impl PublicJwkIn {
    fn to_jwk(&self) -> Result<JsonWebKey<'static>, JwkError> {
        use base64::Engine as _;
        let coordinate = |value: &Option<String>| {
            let text = value
                .as_deref()
                .ok_or(JwkError::Invalid("a key member is missing"))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .map(Cow::Owned)
                .map_err(|_| JwkError::Invalid("a key member is not base64url"))
        };
        if self.private {
            return Err(JwkError::Invalid("a private key (d) in a public key set"));
        }
        let curve = Cow::Owned(self.crv.clone().unwrap_or_default());
        match self.kty.as_deref() {
            Some("OKP") => Ok(JsonWebKey::KeyPair {
                curve,
                x: coordinate(&self.x)?,
                secret: None,
            }),
            Some("EC") => Ok(JsonWebKey::EllipticCurve {
                curve,
                x: coordinate(&self.x)?,
                y: coordinate(&self.y)?,
                secret: None,
            }),
            Some(_) => Err(JwkError::Unsupported("key type")),
            None => Err(JwkError::Invalid("missing kty")),
        }
    }
}

/// A usable verification key: its `kid` and the key, whose type decides the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingJwk {
    kid: String,
    key: PublicKey,
}

impl VerifyingJwk {
    pub fn new(kid: impl Into<String>, key: PublicKey) -> Self {
        Self {
            kid: kid.into(),
            key,
        }
    }

    /// Accepts one public JWK as JSON. A `kid` is required (tokens name their key); `use`, when
    /// present, must be `sig`, and `key_ops` must include `verify`, each operation once (RFC 7517
    /// §4.2-4.3); `alg`, when present, must be the algorithm of the key type.
    pub fn from_json(json: &str) -> Result<Self, JwkError> {
        let entry: PublicJwkIn =
            serde_json::from_str(json).map_err(|_| JwkError::Invalid("not a valid JWK object"))?;
        let jwk = entry.to_jwk();
        let kid = entry.kid.ok_or(JwkError::Invalid("missing kid"))?;
        if entry.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::Unsupported("use is not sig"));
        }
        if let Some(ops) = &entry.key_ops {
            if ops
                .iter()
                .enumerate()
                .any(|(i, op)| ops.iter().take(i).any(|earlier| earlier == op))
            {
                return Err(JwkError::Invalid("key_ops names an operation twice"));
            }
            if !ops.iter().any(|op| op == "verify") {
                return Err(JwkError::Unsupported("key_ops does not include verify"));
            }
        }
        let key = PublicKey::from_jwk(&jwk?)?;
        if entry
            .alg
            .as_deref()
            .is_some_and(|alg| !key.accepts_alg(alg))
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

    fn to_entry(&self, ed25519: Ed25519Name) -> JwkEntry<'_> {
        JwkEntry {
            kid: Some(self.kid.clone()),
            alg: Some(self.algorithm().named(ed25519).into()),
            key_use: Some("sig".into()),
            key: self.key.to_jwk(),
        }
    }

    /// The public JWK with `kid`, `alg` and `use: sig`, as JSON.
    pub fn to_json(&self) -> Result<String, JwkError> {
        serde_json::to_string(&self.to_entry(Ed25519Name::EdDsa))
            .map_err(|_| JwkError::Invalid("cannot be written as JSON"))
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

impl KeySet {
    /// How a key set fetched from the issuer is kept: the edge's defaults
    /// (`KEYS_TTL_SECS`, `JWKS_REFETCH_COOLDOWN_SECS`) and `@gatehouse/verify`'s remote
    /// verifier's (`keySetFetchDefaults()`). A fetched set is refetched, off the request path,
    /// once it is this old.
    pub const FETCHED_TTL_SECS: u32 = 300;
    /// A token naming an unknown `kid` refetches the set at most this often.
    pub const REFETCH_COOLDOWN_SECS: u32 = 30;
    /// A fetch of the set is given up after this.
    pub const FETCH_TIMEOUT_SECS: u64 = 5;
    /// A set longer than this is refused before it is parsed: a few keys take a few hundred
    /// bytes.
    pub const MAX_FETCHED_BYTES: usize = 1 << 20;

    pub fn new(keys: impl IntoIterator<Item = VerifyingJwk>) -> Self {
        let mut set = Self::default();
        for key in keys {
            set.insert(key);
        }
        set
    }

    /// Parses a JWKS document (`{"keys": [...]}`). Fails only when the document itself is not a
    /// key set; unusable keys and repeated `kid`s are skipped and listed in [`Self::skipped`].
    /// Each entry is parsed from its own text, never through a `serde_json::Value` (which would
    /// keep the last of two repeated members).
    pub fn from_json(json: &str) -> Result<Self, JwkError> {
        #[derive(Deserialize)]
        struct JwksIn<'a> {
            #[serde(borrow)]
            keys: Vec<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct KidOnly {
            kid: Option<String>,
        }
        let doc: JwksIn<'_> = serde_json::from_str(json)
            .map_err(|_| JwkError::NotAKeySet("expected an object with a `keys` array"))?;
        let mut set = Self::default();
        for (index, raw) in doc.keys.into_iter().enumerate() {
            let kid = serde_json::from_str::<KidOnly>(raw.get())
                .ok()
                .and_then(|k| k.kid);
            match VerifyingJwk::from_json(raw.get()) {
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

    /// The public JWKS document, Ed25519 keys named `EdDSA`.
    pub fn to_json(&self) -> String {
        self.to_json_naming(Ed25519Name::EdDsa)
    }

    /// The public JWKS document, Ed25519 keys' `alg` named as `ed25519` says: the name the
    /// tokens they sign carry, which some JOSE libraries match a key's `alg` against.
    pub fn to_json_naming(&self, ed25519: Ed25519Name) -> String {
        #[derive(Serialize)]
        struct JwksOut<'a> {
            keys: Vec<JwkEntry<'a>>,
        }
        let doc = JwksOut {
            keys: self.keys.iter().map(|k| k.to_entry(ed25519)).collect(),
        };
        serde_json::to_string(&doc).unwrap_or_else(|_| String::from(r#"{"keys":[]}"#))
    }

    /// SHA-256 over every `kid` and key, in order: two sets with the same fingerprint verify
    /// exactly the same tokens.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for key in &self.keys {
            hash.update((key.kid.len() as u64).to_be_bytes());
            hash.update(key.kid.as_bytes());
            hash.update(key.key.thumbprint().as_bytes());
        }
        hash.finalize().into()
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
mod tests;
