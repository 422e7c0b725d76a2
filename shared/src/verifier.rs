//! The access-token verifier: the only way an untrusted token becomes [`AccessClaims`].

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use jwt_compact::TimeOptions;
use sha2::{Digest, Sha256};

use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims, CustomClaims, TokenClaims};
use crate::error::{ValidationError, VerifyError};
use crate::jwk::KeySet;
use crate::revocation::RevocationList;
use crate::token::{Ed25519Input, UntrustedToken};

/// What a token must satisfy besides its signature. Start from [`Self::new`] and set fields
/// with struct update syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must contain this.
    pub audience: String,
    /// Allowed clock difference, in seconds, for `exp`, `nbf` and `iat`; at most
    /// [`Self::MAX_LEEWAY_SECS`], which the verifier uses for anything larger.
    pub leeway_secs: u32,
    /// Longer tokens are rejected before any decoding.
    pub max_token_bytes: usize,
    /// Required header `typ`.
    pub token_type: String,
}

impl VerifierOptions {
    pub const DEFAULT_LEEWAY_SECS: u32 = 30;
    pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
    /// The longest leeway revocation entries cover ([`crate::revocation::entry_expiry`] keeps
    /// one this long past `exp`, and 30 s more for clocks): a verifier that stretched `exp`
    /// further would take the token back once the entry is gone.
    pub const MAX_LEEWAY_SECS: u32 = 60;

    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
            max_token_bytes: Self::DEFAULT_MAX_TOKEN_BYTES,
            token_type: ACCESS_TOKEN_TYPE.into(),
        }
    }
}

/// Checks an Ed25519 signature outside this crate: the worker hands it to the runtime's native
/// WebCrypto. It sees only what [`Verifier::verify_with`] chose: the key by `kid`, the signing
/// input and a signature already checked for form; it answers whether the equation holds, or
/// that it could not check at all.
#[allow(async_fn_in_trait)] // used single-threaded (wasm), never boxed
pub trait Ed25519Oracle {
    /// Why the oracle could not answer (the runtime failed): no fault of the token's.
    type Fault;
    async fn verify(&self, input: &Ed25519Input<'_>) -> Result<bool, Self::Fault>;
}

/// Verifies access tokens against a key set. Time is passed in; nothing here reads a clock.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeySet,
    options: VerifierOptions,
    /// What a [`VerifiedCache`] entry was verified under: keys, type and size limit.
    fingerprint: [u8; 32],
}

impl Verifier {
    pub fn new(keys: KeySet, mut options: VerifierOptions) -> Self {
        options.leeway_secs = options.leeway_secs.min(VerifierOptions::MAX_LEEWAY_SECS);
        let fingerprint = Sha256::new()
            .chain_update(keys.fingerprint())
            .chain_update((options.max_token_bytes as u64).to_be_bytes())
            .chain_update(options.token_type.as_bytes())
            .finalize()
            .into();
        Self {
            keys,
            options,
            fingerprint,
        }
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
        let untrusted = UntrustedToken::parse(token, self.options.max_token_bytes)?;
        let (header, wire) = untrusted
            .validate::<CustomClaims>(&self.keys, &self.options.token_type)?
            .into_parts();
        let claims = TokenClaims::from_wire(wire)?;
        self.validate_claims(&claims, now)?;
        // The validator found the key by this kid, so it names the key that signed.
        Ok(AccessClaims::verified(
            claims,
            header.key_id.as_deref().unwrap_or_default(),
        ))
    }

    /// [`Self::verify`] with the signature checked by `oracle` (the worker: the runtime's native
    /// WebCrypto) instead of this crate's Ed25519. Every stage stays here and in the same order
    /// as jwt-compact's validator, so each input gets the same error code either way: size and
    /// structure, `typ`, the key by `kid`, the header `alg` against the key, the signature's
    /// length, the claims' form, what `verify_strict` refuses beyond the equation, the equation
    /// (the oracle), and only then the claims' values. Keys other than Ed25519 are refused
    /// (`alg_mismatch`). The outer error: the oracle could not check, and the token may be good.
    pub async fn verify_with<O: Ed25519Oracle>(
        &self,
        oracle: &O,
        token: &str,
        now: i64,
    ) -> Result<Result<AccessClaims, VerifyError>, O::Fault> {
        let untrusted = match UntrustedToken::parse(token, self.options.max_token_bytes) {
            Ok(untrusted) => untrusted,
            Err(e) => return Ok(Err(e.into())),
        };
        // The claims are decoded before the signature is checked, as jwt-compact does, so that
        // both paths give the same code; nothing in them is trusted until the oracle said yes.
        let checked = untrusted
            .ed25519_input(&self.keys, &self.options.token_type)
            .and_then(|input| Ok((input, untrusted.claims_unverified::<CustomClaims>()?)));
        let (input, wire) = match checked {
            Ok(checked) => checked,
            Err(e) => return Ok(Err(e.into())),
        };
        if !input.holds_by(oracle).await? {
            return Ok(Err(ValidationError::BadSignature.into()));
        }
        Ok(TokenClaims::from_wire(wire)
            .map_err(VerifyError::from)
            .and_then(|claims| {
                self.validate_claims(&claims, now)?;
                Ok(AccessClaims::verified(claims, input.kid))
            }))
    }

    /// A token this verifier accepted before, from `cache`, with its claims checked against
    /// `now` again; `None` if the cache does not hold it. A cache filled by another verifier is
    /// emptied first.
    pub fn cached(
        &self,
        cache: &mut VerifiedCache,
        token: &str,
        now: i64,
    ) -> Option<Result<AccessClaims, VerifyError>> {
        if cache.fingerprint != Some(self.fingerprint) {
            cache.entries.clear();
            cache.fingerprint = Some(self.fingerprint);
        }
        let claims = cache.entries.get(token)?;
        Some(
            self.validate_claims(claims, now)
                .map(|()| claims.clone())
                .map_err(VerifyError::from),
        )
    }

    /// Remembers claims this verifier just produced for `token`.
    pub fn remember(&self, cache: &mut VerifiedCache, token: &str, claims: &AccessClaims) {
        if cache.fingerprint != Some(self.fingerprint) || cache.capacity == 0 {
            return;
        }
        if cache.entries.len() >= cache.capacity {
            // Tokens are short-lived: starting over beats LRU bookkeeping.
            cache.entries.clear();
        }
        cache.entries.insert(token.to_owned(), claims.clone());
    }

    /// [`Self::verify`], remembering success in `cache`: a token seen before costs a hash
    /// lookup instead of a signature verification, while its issuer, audience and time claims
    /// are checked against `now` on every call. A cache filled by another verifier (other keys,
    /// type or size limit) is emptied first, so it can only serve what this one would accept.
    pub fn verify_cached(
        &self,
        cache: &mut VerifiedCache,
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, VerifyError> {
        if let Some(hit) = self.cached(cache, token, now) {
            return hit;
        }
        let claims = self.verify(token, now)?;
        self.remember(cache, token, &claims);
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

    /// Valid while `now < exp` (RFC 7519 §4.1.4: the current time MUST be before `exp`),
    /// stretched by the leeway. jwt-compact's `validate_expiration` still accepts `now == exp +
    /// leeway`, one second more than the RFC allows, so this check is ours; `nbf` goes through
    /// jwt-compact's `validate_maturity`, whose boundary is the RFC's. A token issued in the
    /// future (`iat` beyond the leeway) is not valid yet either, `nbf` or not.
    fn validate_claims(&self, claims: &TokenClaims, now: i64) -> Result<(), ValidationError> {
        if claims.iss != self.options.issuer {
            return Err(ValidationError::WrongIssuer);
        }
        if !claims.aud.contains(&self.options.audience) {
            return Err(ValidationError::WrongAudience);
        }
        if claims.has_expired(now, self.options.leeway_secs) {
            return Err(ValidationError::Expired);
        }
        let leeway = i64::from(self.options.leeway_secs);
        if let Some(not_before) = claims.nbf.and_then(|nbf| DateTime::from_timestamp(nbf, 0)) {
            let leeway = Duration::seconds(leeway);
            // chrono panics on `nbf - leeway` below its range; such an nbf is long past anyway.
            if not_before.checked_sub_signed(leeway).is_some() {
                let clock = DateTime::from_timestamp(now, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
                let mut maturity = jwt_compact::Claims::empty();
                maturity.not_before = Some(not_before);
                maturity
                    .validate_maturity(&TimeOptions::new(leeway, move || clock))
                    .map_err(|_| ValidationError::NotYetValid)?;
            }
        }
        if now < claims.iat.saturating_sub(leeway) {
            return Err(ValidationError::NotYetValid);
        }
        Ok(())
    }
}

/// Tokens that passed [`Verifier::verify`], by their exact text (as Envoy's `jwt_authn` caches
/// them): clients send one token many times. Only successes are kept, so only holders of valid
/// tokens can fill it; a full cache starts over. It remembers which verifier filled it.
#[derive(Debug, Clone, Default)]
pub struct VerifiedCache {
    entries: HashMap<String, AccessClaims>,
    capacity: usize,
    fingerprint: Option<[u8; 32]>,
}

impl VerifiedCache {
    /// At most `capacity` tokens; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            fingerprint: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
