//! The signed delta: the fast path's unit. It carries the live entries committed after seq
//! `from` up to its list's `seq`, in the snapshot's binary form, so a poll costs bytes in
//! proportion to what changed, not to the whole list. It has its own `typ`: a delta can never be
//! taken for a full snapshot (which would drop the base list) nor a snapshot for a delta.
//!
//! Its payload, signed as the snapshot's is (see `snapshot`): `from:u64` (little-endian, the seq
//! the entries start after, exclusive), then the list's binary form.

use super::RevocationList;
use super::snapshot::{SnapshotOptions, verify_signed, verify_signed_with};
use crate::Ed25519Oracle;
use crate::error::{EncodingError, SnapshotError};
use crate::jwk::KeySet;

/// `typ` header of a revocation delta.
pub const DELTA_TYPE: &str = "gatehouse-revocation-delta+jws";

/// A delta's payload: `from`, then the list. A range that starts after its end is a form error,
/// found with the others, before the issuer and time are judged.
fn decode(payload: &[u8]) -> Result<(u64, RevocationList), SnapshotError> {
    let (from, list) = payload
        .split_first_chunk::<8>()
        .ok_or(EncodingError::Truncated)?;
    let (from, list) = (u64::from_le_bytes(*from), RevocationList::from_bytes(list)?);
    if from > list.seq {
        return Err(EncodingError::BadRange.into());
    }
    Ok((from, list))
}

/// Every live entry with a seq in `(from, list.seq()]`, as of `list.issued_at()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationDelta {
    from: u64,
    list: RevocationList,
}

impl RevocationDelta {
    /// `list` holds the entries after seq `from`; its `seq` is the newest seq they cover.
    pub const fn new(from: u64, list: RevocationList) -> Self {
        Self { from, list }
    }

    /// Verifies a signed delta against the issuer's keys and decodes it.
    pub fn verify(
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        verify_signed(jws, DELTA_TYPE, keys, (options, now), decode).map(Self::from_parts)
    }

    /// [`Self::verify`] with the signature's equation checked by `oracle` (the worker: the
    /// runtime's WebCrypto), every other stage and code the same, for Ed25519 keys (a delta by
    /// another key type is `alg_mismatch`). The outer error: the oracle could not check, and the
    /// delta may be good.
    pub async fn verify_with<O: Ed25519Oracle>(
        oracle: &O,
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Result<Self, SnapshotError>, O::Fault> {
        let verified =
            verify_signed_with(oracle, jws, DELTA_TYPE, keys, (options, now), decode).await?;
        Ok(verified.map(Self::from_parts))
    }

    fn from_parts((from, list): (u64, RevocationList)) -> Self {
        Self { from, list }
    }

    /// The seq the delta starts after: it completes any list whose seq is at least this.
    pub const fn from_seq(&self) -> u64 {
        self.from
    }

    /// The entries, stamped with the newest seq they cover and the time they were read.
    pub const fn list(&self) -> &RevocationList {
        &self.list
    }

    /// Whether applying this delta to a list at `base_seq` leaves no gap.
    pub const fn extends(&self, base_seq: u64) -> bool {
        self.from <= base_seq
    }

    /// Signs the delta.
    #[cfg(feature = "sign")]
    pub fn sign(
        &self,
        key: &crate::sign::SigningKey,
    ) -> Result<String, crate::error::CreationError> {
        let list = self.list.to_bytes();
        let mut payload = Vec::with_capacity(8 + list.len());
        payload.extend_from_slice(&self.from.to_le_bytes());
        payload.extend_from_slice(&list);
        key.sign_payload(DELTA_TYPE, &payload)
    }
}
