//! The access-token verifier: the only way an untrusted token becomes [`AccessClaims`].

use std::collections::HashMap;

use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims};
use crate::error::{ValidationError, VerifyError};
use crate::jwk::KeySet;
use crate::jws::UntrustedToken;
use crate::revocation::RevocationList;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must contain this.
    pub audience: String,
    /// Allowed clock difference, in seconds, for `exp`, `nbf` and `iat`.
    pub leeway_secs: u32,
    /// Longer tokens are rejected before any decoding.
    pub max_token_bytes: usize,
    /// Required header `typ`.
    pub token_type: String,
}

impl VerifierOptions {
    pub const DEFAULT_LEEWAY_SECS: u32 = 30;
    pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
            max_token_bytes: Self::DEFAULT_MAX_TOKEN_BYTES,
            token_type: ACCESS_TOKEN_TYPE.into(),
        }
    }

    #[must_use]
    pub fn with_leeway_secs(mut self, leeway_secs: u32) -> Self {
        self.leeway_secs = leeway_secs;
        self
    }

    #[must_use]
    pub fn with_max_token_bytes(mut self, max_token_bytes: usize) -> Self {
        self.max_token_bytes = max_token_bytes;
        self
    }

    #[must_use]
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }
}

/// Verifies access tokens against a key set. Time is passed in; nothing here reads a clock.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeySet,
    options: VerifierOptions,
}

impl Verifier {
    pub fn new(keys: KeySet, options: VerifierOptions) -> Self {
        Self { keys, options }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn options(&self) -> &VerifierOptions {
        &self.options
    }

    /// Size, structure, `typ`, key (`kid` → key → algorithm), signature, then claims: required
    /// members, `iss`, `aud`, `exp`, `nbf` and `iat` against `now` (Unix seconds) with leeway.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, VerifyError> {
        let payload = UntrustedToken::parse(token, self.options.max_token_bytes)?
            .verify(&self.keys, &self.options.token_type)?;
        let claims = AccessClaims::from_json(&payload)?;
        self.validate_claims(&claims, now)?;
        Ok(claims)
    }

    /// [`Self::verify`], remembering success in `cache`: a token seen before costs a hash
    /// lookup instead of an Ed25519 verification, while its time claims are checked against
    /// `now` on every call. The cache must be cleared whenever this verifier's keys change.
    pub fn verify_cached(
        &self,
        cache: &mut VerifiedCache,
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, VerifyError> {
        if let Some(claims) = cache.entries.get(token) {
            self.validate_claims(claims, now)?;
            return Ok(claims.clone());
        }
        let claims = self.verify(token, now)?;
        if cache.capacity > 0 {
            if cache.entries.len() >= cache.capacity {
                // Tokens are short-lived: starting over beats LRU bookkeeping.
                cache.entries.clear();
            }
            cache.entries.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    /// [`Self::verify`], then the revocation list.
    pub fn verify_not_revoked(
        &self,
        token: &str,
        now: i64,
        revocations: &RevocationList,
    ) -> Result<AccessClaims, VerifyError> {
        let claims = self.verify(token, now)?;
        match revocations.check(&claims) {
            Some(reason) => Err(ValidationError::Revoked(reason).into()),
            None => Ok(claims),
        }
    }

    fn validate_claims(&self, claims: &AccessClaims, now: i64) -> Result<(), ValidationError> {
        if claims.iss != self.options.issuer {
            return Err(ValidationError::WrongIssuer);
        }
        if !claims.aud.contains(&self.options.audience) {
            return Err(ValidationError::WrongAudience);
        }
        let leeway = i64::from(self.options.leeway_secs);
        // Valid while now < exp (RFC 7519 §4.1.4), stretched by the leeway.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(ValidationError::Expired);
        }
        let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
        if now < not_before.saturating_sub(leeway) {
            return Err(ValidationError::NotYetValid);
        }
        Ok(())
    }
}

/// Tokens that passed [`Verifier::verify`], by their exact text (as Envoy's `jwt_authn` caches
/// them): clients send one token many times. Only successes are kept, so only holders of valid
/// tokens can fill it; a full cache starts over.
#[derive(Debug, Clone, Default)]
pub struct VerifiedCache {
    entries: HashMap<String, AccessClaims>,
    capacity: usize,
}

impl VerifiedCache {
    /// At most `capacity` tokens; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Forget everything: required when the key set changes, so a removed key stops admitting
    /// its tokens at once.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
