//! The signed snapshot: a JWT made by jwt-compact whose claims are CBOR (`cty: CBOR`) holding the
//! binary revocation list as one byte string, so the list costs its own size plus a few bytes
//! (JSON claims would base64 it twice). It has a `typ` of its own, so it can never pass as an
//! access token, nor an access token as it.

use serde::{Deserialize, Serialize};

use super::RevocationList;
use crate::error::{SnapshotError, ValidationError};
use crate::jwk::KeySet;
use crate::token::UntrustedToken;
use crate::verifier::Ed25519Oracle;

/// The claims of a signed list besides jwt-compact's: `rev`, the encoded list, and for a delta
/// `from`, the seq its entries start after. One type for both, so the worker carries one CBOR
/// claims decoder; the `typ` keeps a snapshot and a delta apart.
#[derive(Serialize, Deserialize)]
pub(super) struct ListClaims {
    #[serde(with = "serde_bytes")]
    pub rev: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

impl ListClaims {
    /// Signs `rev` (and `from`) as a list of type `typ`.
    #[cfg(feature = "sign")]
    pub fn sign(
        self,
        typ: &str,
        key: &crate::sign::SigningKey,
    ) -> Result<String, crate::error::CreationError> {
        key.sign_claims(typ, &jwt_compact::Claims::new(self), true)
    }
}

/// `typ` header of a revocation snapshot.
pub const SNAPSHOT_TYPE: &str = "gatehouse-revocations+jws";

/// What a snapshot must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The issuer recorded in the list must be this one.
    pub issuer: String,
    /// Larger snapshots are rejected before decoding. 100k entries take about 1.6 MiB.
    pub max_bytes: usize,
    /// Allowed clock difference for `issued_at`, in seconds.
    pub leeway_secs: u32,
}

impl SnapshotOptions {
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            leeway_secs: 30,
        }
    }
}

/// Checks a signed list of type `typ` (a snapshot or a delta) and decodes its claims and list:
/// signature first, then the list's issuer and issue time.
pub(super) fn verify_signed(
    jws: &str,
    typ: &str,
    keys: &KeySet,
    options: &SnapshotOptions,
    now: i64,
) -> Result<(ListClaims, RevocationList), SnapshotError> {
    let untrusted = UntrustedToken::parse(jws, options.max_bytes)?;
    let claims = untrusted.validate(keys, typ)?.into_parts().1.custom;
    decode_list(claims, options, now)
}

/// [`verify_signed`] with the Ed25519 equation checked by `oracle` (the worker: WebCrypto, which
/// also hashes the signing input natively), every other check kept.
pub(super) async fn verify_signed_with<O: Ed25519Oracle>(
    oracle: &O,
    jws: &str,
    typ: &str,
    keys: &KeySet,
    options: &SnapshotOptions,
    now: i64,
) -> Result<(ListClaims, RevocationList), SnapshotError> {
    let untrusted = UntrustedToken::parse(jws, options.max_bytes)?;
    let (claims, _) = untrusted.validate_with(oracle, keys, typ).await?;
    decode_list(claims.custom, options, now)
}

/// The list a verified signed list carries, held to the options: its issuer and issue time.
fn decode_list(
    claims: ListClaims,
    options: &SnapshotOptions,
    now: i64,
) -> Result<(ListClaims, RevocationList), SnapshotError> {
    let list = RevocationList::from_bytes(&claims.rev)?;
    if list.issuer != options.issuer {
        return Err(ValidationError::WrongIssuer.into());
    }
    if list.issued_at > now.saturating_add(i64::from(options.leeway_secs)) {
        return Err(ValidationError::NotYetValid.into());
    }
    Ok((claims, list))
}

impl RevocationList {
    /// Verifies a signed snapshot against the issuer's keys and decodes it.
    pub fn verify_snapshot(
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        verify_signed(jws, SNAPSHOT_TYPE, keys, options, now).map(|(_, list)| list)
    }

    /// [`Self::verify_snapshot`] with the Ed25519 equation checked by `oracle`.
    pub async fn verify_snapshot_with<O: Ed25519Oracle>(
        oracle: &O,
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        verify_signed_with(oracle, jws, SNAPSHOT_TYPE, keys, options, now)
            .await
            .map(|(_, list)| list)
    }

    /// Accepts `self` only if it is newer than the list currently held: a higher `seq`, or the
    /// same `seq` re-signed later (the issuer re-signs an unchanged list so its age stays fresh).
    pub fn ensure_newer_than(
        &self,
        held_seq: u64,
        held_issued_at: i64,
    ) -> Result<(), SnapshotError> {
        if super::is_newer((self.seq, self.issued_at), (held_seq, held_issued_at)) {
            Ok(())
        } else {
            Err(SnapshotError::Stale {
                seq: self.seq,
                held: held_seq,
            })
        }
    }

    /// Signs the list as a snapshot.
    #[cfg(feature = "sign")]
    pub fn sign_snapshot(
        &self,
        key: &crate::sign::SigningKey,
    ) -> Result<String, crate::error::CreationError> {
        let claims = ListClaims {
            rev: self.to_bytes(),
            from: None,
        };
        claims.sign(SNAPSHOT_TYPE, key)
    }
}
