//! Key generation and signing (feature `sign`): the issuer's side. Access tokens through
//! jwt-compact's `AlgorithmExt::token`; the revocation lists' binary payloads by this key's
//! jwt-compact algorithm over the same header.

use core::fmt;

use jwt_compact::{AlgorithmExt as _, Claims, Header, Renamed};
use rand_core::OsRng;
use serde::Serialize;

use crate::alg::{Algorithm, Ed25519Key, Ed25519Name, StrictEd25519};
use crate::claims::{ACCESS_TOKEN_TYPE, TokenClaims};
use crate::error::{CreationError, JwkError};
use crate::jwk::{JwkEntry, PublicKey, VerifyingJwk};

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    #[cfg(feature = "es256")]
    P256(p256::ecdsa::SigningKey),
}

/// A private signing key with its `kid` (the RFC 7638 thumbprint unless given otherwise).
/// `Debug` never prints the secret.
pub struct SigningKey {
    kid: String,
    secret: Secret,
    public: PublicKey,
    /// The `alg` an Ed25519 key's JWS headers carry; not a property of the key, never stored.
    ed25519_name: Ed25519Name,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(alg: Algorithm) -> Result<Self, CreationError> {
        let secret = match alg {
            Algorithm::EdDsa => Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            #[cfg(feature = "es256")]
            Algorithm::Es256 => Secret::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        };
        Ok(Self::new(None, secret)?)
    }

    fn new(kid: Option<String>, secret: Secret) -> Result<Self, JwkError> {
        let public = match &secret {
            Secret::Ed25519(k) => {
                PublicKey::Ed25519(Ed25519Key::from_bytes(k.verifying_key().as_bytes())?)
            }
            #[cfg(feature = "es256")]
            Secret::P256(k) => PublicKey::P256(*k.verifying_key()),
        };
        let kid = kid.unwrap_or_else(|| public.thumbprint());
        Ok(Self {
            kid,
            secret,
            public,
            ed25519_name: Ed25519Name::default(),
        })
    }

    /// The same key, writing `name` as an Ed25519 key's `alg` from now on (an ES256 key's stays).
    #[must_use]
    pub fn naming_ed25519(self, name: Ed25519Name) -> Self {
        Self {
            ed25519_name: name,
            ..self
        }
    }

    /// Reads a private JWK (with `d`, and the public members it must match). Without a `kid`,
    /// the thumbprint is used.
    pub fn from_jwk_json(json: &str) -> Result<Self, JwkError> {
        use jwt_compact::jwk::JsonWebKey;
        let entry: JwkEntry<'_> =
            serde_json::from_str(json).map_err(|_| JwkError::Invalid("not a private JWK"))?;
        let secret = match &entry.key {
            JsonWebKey::KeyPair { curve, .. } if curve == "Ed25519" => Secret::Ed25519(
                ed25519_dalek::SigningKey::try_from(&entry.key).map_err(|_| {
                    JwkError::Invalid("d is missing, malformed or does not match x")
                })?,
            ),
            #[cfg(feature = "es256")]
            JsonWebKey::EllipticCurve { curve, .. } if curve == "P-256" => {
                Secret::P256(p256::ecdsa::SigningKey::try_from(&entry.key).map_err(|_| {
                    JwkError::Invalid("d is missing, malformed or does not match x and y")
                })?)
            }
            _ => return Err(JwkError::Unsupported("key type or curve")),
        };
        Self::new(entry.kid, secret)
    }

    /// The private JWK as JSON, for storing the key. Treat the result as a secret.
    pub fn to_private_jwk_json(&self) -> Result<String, JwkError> {
        use jwt_compact::jwk::JsonWebKey;
        let key = match &self.secret {
            Secret::Ed25519(k) => JsonWebKey::from(k),
            #[cfg(feature = "es256")]
            Secret::P256(k) => JsonWebKey::from(k),
        };
        let entry = JwkEntry {
            kid: Some(self.kid.clone()),
            alg: Some(self.algorithm().as_str().into()),
            key_use: Some("sig".into()),
            key,
        };
        serde_json::to_string(&entry).map_err(|_| JwkError::Invalid("cannot be written as JSON"))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The public half, ready for a JWKS.
    pub fn verifying_jwk(&self) -> VerifyingJwk {
        VerifyingJwk::new(self.kid.clone(), self.public.clone())
    }

    /// The raw JWS signature of `message` (64 bytes for both algorithms): for tests that build
    /// tokens by hand.
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
        match &self.secret {
            Secret::Ed25519(k) => StrictEd25519.sign(k, message).as_bytes().into_owned(),
            #[cfg(feature = "es256")]
            Secret::P256(k) => jwt_compact::alg::Es256
                .sign(k, message)
                .as_bytes()
                .into_owned(),
        }
    }

    /// A compact JWS with any header and payload, signed by this key: for tests that need
    /// tokens the issuer would never make (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn sign_raw_jws(&self, header_json: &str, payload: &[u8]) -> String {
        self.jws(header_json.as_bytes(), payload)
    }

    /// The compact JWS of `header` and `payload` (the lists' binary payloads; jwt-compact signs
    /// only serialized claims).
    fn jws(&self, header: &[u8], payload: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(header), b64.encode(payload));
        let signature = b64.encode(self.sign_message(input.as_bytes()));
        format!("{input}.{signature}")
    }

    /// A compact JWS with header `{alg, kid, typ}` over JSON `claims`.
    pub(crate) fn sign_claims<T: Serialize>(
        &self,
        typ: &str,
        claims: &Claims<T>,
    ) -> Result<String, CreationError> {
        let header = Header::empty()
            .with_key_id(self.kid.clone())
            .with_token_type(typ);
        let token = match &self.secret {
            // Named as the payload's header names it (`Algorithm::named`).
            Secret::Ed25519(k) => {
                let name = self.algorithm().named(self.ed25519_name);
                Renamed::new(StrictEd25519, name).token(&header, claims, k)
            }
            #[cfg(feature = "es256")]
            Secret::P256(k) => jwt_compact::alg::Es256.token(&header, claims, k),
        };
        token.map_err(CreationError::Encode)
    }

    /// A compact JWS with the header `{alg, kid, typ}` that [`Self::sign_claims`] writes, over
    /// a binary `payload` (no `cty`: the `typ` says what the payload is).
    pub(crate) fn sign_payload(&self, typ: &str, payload: &[u8]) -> Result<String, CreationError> {
        #[derive(Serialize)]
        struct PayloadHeader<'a> {
            alg: &'a str,
            kid: &'a str,
            typ: &'a str,
        }
        let header = serde_json::to_vec(&PayloadHeader {
            alg: self.algorithm().named(self.ed25519_name),
            kid: &self.kid,
            typ,
        })
        .map_err(|_| CreationError::Claims("the header cannot be written as JSON"))?;
        Ok(self.jws(&header, payload))
    }
}

/// Signs an access token: header `typ: at+jwt` and this key's `kid`.
pub fn sign_access_token(key: &SigningKey, claims: &TokenClaims) -> Result<String, CreationError> {
    let wire = claims.to_wire().map_err(CreationError::Claims)?;
    key.sign_claims(ACCESS_TOKEN_TYPE, &wire)
}
