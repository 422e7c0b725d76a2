//! Key generation and signing (feature `sign`): the issuer's side.

use core::fmt;

use serde::Serialize;

use crate::b64;
use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims};
use crate::error::{CreationError, JwkError};
use crate::jwk::{Algorithm, Jwk, PublicKey, VerifyingJwk};

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
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

fn random_32() -> Result<[u8; 32], CreationError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| CreationError::Random)?;
    Ok(bytes)
}

impl SigningKey {
    /// A fresh key from the system random source.
    pub fn generate(alg: Algorithm) -> Result<Self, CreationError> {
        let secret = match alg {
            Algorithm::EdDsa => {
                Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&random_32()?))
            }
            #[cfg(feature = "es256")]
            Algorithm::Es256 => loop {
                // Fewer than 1 in 2^32 draws fall outside the scalar range; draw again.
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&random_32()?) {
                    break Secret::P256(key);
                }
            },
        };
        Ok(Self::with_thumbprint_kid(secret))
    }

    fn with_thumbprint_kid(secret: Secret) -> Self {
        let mut key = Self {
            kid: String::new(),
            secret,
        };
        key.kid = key.public_key().thumbprint();
        key
    }

    /// Reads a private JWK (with `d`). Without a `kid`, the thumbprint is used.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwkError> {
        let d = jwk
            .d
            .as_deref()
            .ok_or(JwkError::Invalid("missing private member d"))?;
        let d = b64::decode_array::<32>(d).ok_or(JwkError::Invalid("bad private member d"))?;
        let secret = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&d)),
            #[cfg(feature = "es256")]
            ("EC", Some("P-256")) => Secret::P256(
                p256::ecdsa::SigningKey::from_slice(&d)
                    .map_err(|_| JwkError::Invalid("P-256 d is out of range"))?,
            ),
            _ => return Err(JwkError::Unsupported("key type or curve")),
        };
        let key = Self::with_thumbprint_kid(secret);
        // The public members, when given, must belong to this private key.
        if jwk.x.is_some() && key.public_key().to_jwk().x != jwk.x {
            return Err(JwkError::Invalid("x does not match d"));
        }
        Ok(match &jwk.kid {
            Some(kid) => Self {
                kid: kid.clone(),
                ..key
            },
            None => key,
        })
    }

    pub fn from_jwk_json(json: &str) -> Result<Self, JwkError> {
        let jwk: Jwk =
            serde_json::from_str(json).map_err(|_| JwkError::Invalid("not a JWK object"))?;
        Self::from_jwk(&jwk)
    }

    /// The private JWK, for storing the key. Treat the result as a secret.
    pub fn to_private_jwk(&self) -> Jwk {
        let d = match &self.secret {
            Secret::Ed25519(k) => b64::encode(k.to_bytes()),
            #[cfg(feature = "es256")]
            Secret::P256(k) => b64::encode(k.to_bytes()),
        };
        Jwk {
            d: Some(d),
            ..self.verifying_jwk().to_jwk()
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public_key().algorithm()
    }

    pub fn public_key(&self) -> PublicKey {
        match &self.secret {
            Secret::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            #[cfg(feature = "es256")]
            Secret::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// The public half, ready for a JWKS.
    pub fn verifying_jwk(&self) -> VerifyingJwk {
        VerifyingJwk::new(self.kid.clone(), self.public_key())
    }

    /// The raw JWS signature of `message` (64 bytes for both algorithms).
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(message).to_bytes().to_vec()
            }
            #[cfg(feature = "es256")]
            Secret::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
        }
    }

    /// A compact JWS over `payload` with header `{alg, typ, kid}`.
    pub fn sign_jws(&self, typ: &str, payload: &[u8]) -> Result<String, CreationError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: self.algorithm().as_str(),
            typ,
            kid: &self.kid,
        })?;
        let mut token = b64::encode(header);
        token.push('.');
        token.push_str(&b64::encode(payload));
        let signature = self.sign_message(token.as_bytes());
        token.push('.');
        token.push_str(&b64::encode(signature));
        Ok(token)
    }
}

/// Signs an access token: header `typ: at+jwt` and this key's `kid`.
pub fn sign_access_token(key: &SigningKey, claims: &AccessClaims) -> Result<String, CreationError> {
    key.sign_jws(ACCESS_TOKEN_TYPE, &serde_json::to_vec(claims)?)
}
