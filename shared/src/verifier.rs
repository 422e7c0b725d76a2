//! The access-token verifier: the only way an untrusted token becomes [`AccessClaims`].

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
