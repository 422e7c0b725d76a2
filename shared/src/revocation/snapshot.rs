//! The signed snapshot: a JWT made by jwt-compact whose claims are CBOR (`cty: CBOR`) holding the
//! binary revocation list as one byte string, so the list costs its own size plus a few bytes
//! (JSON claims would base64 it twice). It has a `typ` of its own, so it can never pass as an
//! access token, nor an access token as it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::RevocationList;
use crate::error::{SnapshotError, ValidationError};
use crate::jwk::KeySet;
use crate::token::UntrustedToken;

/// The snapshot's claims besides jwt-compact's: `rev`, the encoded list.
#[derive(Serialize, Deserialize)]
struct SnapshotClaims {
    #[serde(with = "serde_bytes")]
    rev: Vec<u8>,
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
pub(super) fn verify_signed<C: DeserializeOwned + ListClaims>(
    jws: &str,
    typ: &str,
    keys: &KeySet,
    options: &SnapshotOptions,
    now: i64,
) -> Result<(C, RevocationList), SnapshotError> {
    let untrusted = UntrustedToken::parse(jws, options.max_bytes)?;
    let claims = untrusted.validate::<C>(keys, typ)?.into_parts().1.custom;
    let list = RevocationList::from_bytes(claims.encoded_list())?;
    if list.issuer != options.issuer {
        return Err(ValidationError::WrongIssuer.into());
    }
    if list.issued_at > now.saturating_add(i64::from(options.leeway_secs)) {
        return Err(ValidationError::NotYetValid.into());
    }
    Ok((claims, list))
}

/// Claims that carry an encoded [`RevocationList`].
pub(super) trait ListClaims {
    fn encoded_list(&self) -> &[u8];
}

impl ListClaims for SnapshotClaims {
    fn encoded_list(&self) -> &[u8] {
        &self.rev
    }
}

impl RevocationList {
    /// Verifies a signed snapshot against the issuer's keys and decodes it.
    pub fn verify_snapshot(
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        verify_signed::<SnapshotClaims>(jws, SNAPSHOT_TYPE, keys, options, now)
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
        let claims = jwt_compact::Claims::new(SnapshotClaims {
            rev: self.to_bytes(),
        });
        key.sign_claims(SNAPSHOT_TYPE, &claims, true)
    }
}
