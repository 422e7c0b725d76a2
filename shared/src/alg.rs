//! The signature algorithms, as jwt-compact [`Algorithm`](jwt_compact::Algorithm)s: one verifier
//! per key type, chosen by the key, never by the token.
//!
//! - Ed25519: [`StrictEd25519`], ed25519-dalek's `verify_strict` (canonical `s`, `R` and `A` not
//!   of small order), through an [`Ed25519Key`] that refuses small-order keys when it is made.
//!   jwt-compact's own `Ed25519` uses the permissive `verify` and takes any key, so it is not used.
//! - P-256: jwt-compact's `Es256` (feature `es256`); p256 refuses the identity as a key.

use core::fmt;
use std::borrow::Cow;

use jwt_compact::Renamed;

use crate::error::JwkError;

/// A key type Gatehouse can verify with; the algorithm is a property of the key.
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
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9864's fully specified name for Ed25519, accepted beside `EdDSA`.
pub const ED25519_NAME: &str = "Ed25519";

/// The name a signer writes for Ed25519, in a JWS header and in a JWKS: RFC 8037's `EdDSA`,
/// which every JOSE library knows (`PyJWT` 2.x knows only it), or RFC 9864's fully specified
/// `Ed25519`, which RFC 9864 recommends in its place. Verifiers here take both, whatever a key
/// set says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Ed25519Name {
    #[default]
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "Ed25519")]
    Ed25519,
}

impl Algorithm {
    /// The `alg` name a signer writes for this algorithm, Ed25519 named as `ed25519` says.
    pub const fn named(self, ed25519: Ed25519Name) -> &'static str {
        match (self, ed25519) {
            (Self::EdDsa, Ed25519Name::Ed25519) => ED25519_NAME,
            _ => self.as_str(),
        }
    }
}

/// An Ed25519 public key that is the canonical encoding of a point of the prime-order subgroup
/// other than the identity: with a small-order key (the identity, say), one `(R, s)` verifies
/// every message.
/// The only way to make one is [`Ed25519Key::from_bytes`], which checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519Key(ed25519_dalek::VerifyingKey);

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Key")
    }
}

impl Ed25519Key {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JwkError> {
        let bytes: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| JwkError::Invalid("Ed25519 x is not 32 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| JwkError::Invalid("Ed25519 x is not a curve point"))?;
        if key.is_weak() {
            return Err(JwkError::Invalid("Ed25519 key has small order"));
        }
        // A mixed-order key makes the cofactored and cofactorless equations disagree; keys
        // made from a secret (every issuer key) are always in the prime-order subgroup.
        if !key.to_edwards().is_torsion_free() {
            return Err(JwkError::Invalid(
                "Ed25519 key is not in the prime-order subgroup",
            ));
        }
        // A non-canonical encoding (y >= p) would be hashed as sent and differ from our own JWKS.
        if key.to_edwards().compress().as_bytes() != bytes {
            return Err(JwkError::Invalid("Ed25519 x is not canonical"));
        }
        Ok(Self(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

/// What `verify_strict` refuses beyond the verification equation, for a signature that an
/// external verifier (the runtime's WebCrypto, which checks the cofactorless equation) will
/// check against an [`Ed25519Key`]: an `s` that is not reduced (RFC 8032 §5.1.7; it would make
/// signatures malleable), and `R` the identity. With a key of prime order, `[s]B = R + [k]A` puts
/// `R` in the prime-order subgroup, so the identity, whose encoding is unique once `R` must
/// match the recomputed point byte for byte, is the only small-order `R` that could pass.
pub fn strict_signature_form(signature: &[u8; 64]) -> bool {
    let (r, s) = signature.split_at(32);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(s);
    let canonical_s: bool = curve25519_dalek::Scalar::from_canonical_bytes(s_bytes)
        .is_some()
        .into();
    let identity = r.first() == Some(&1) && r.iter().skip(1).all(|b| *b == 0);
    canonical_s && !identity
}

/// Ed25519 verified strictly (see the module docs). Named `EdDSA`; [`Self::fully_specified`] is
/// the same verifier named `Ed25519`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StrictEd25519;

impl StrictEd25519 {
    pub fn fully_specified() -> Renamed<Self> {
        Renamed::new(Self, ED25519_NAME)
    }
}

impl jwt_compact::Algorithm for StrictEd25519 {
    type SigningKey = ed25519_dalek::SigningKey;
    type VerifyingKey = Ed25519Key;
    type Signature = ed25519_dalek::Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("EdDSA")
    }

    fn sign(&self, signing_key: &Self::SigningKey, message: &[u8]) -> Self::Signature {
        use ed25519_dalek::Signer as _;
        signing_key.sign(message)
    }

    fn verify_signature(
        &self,
        signature: &Self::Signature,
        verifying_key: &Self::VerifyingKey,
        message: &[u8],
    ) -> bool {
        verifying_key.0.verify_strict(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_and_non_canonical_keys_are_refused() {
        // The identity (y = 1), a point of order 2 (y = -1) and y = 1 + p (non-canonical identity).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let mut one_plus_p = [0xffu8; 32];
        one_plus_p[0] = 0xee;
        one_plus_p[31] = 0x7f;
        for bytes in [identity, minus_one, one_plus_p] {
            assert!(Ed25519Key::from_bytes(&bytes).is_err(), "{bytes:?}");
        }
        assert!(Ed25519Key::from_bytes(&[0u8; 31]).is_err());
    }
}
