//! The signed delta: the fast path's unit. It carries the live entries committed after seq
//! `from` up to its list's `seq`, in the snapshot's binary form, so a poll costs bytes in
//! proportion to what changed, not to the whole list. It has its own `typ`: a delta can never be
//! taken for a full snapshot (which would drop the base list) nor a snapshot for a delta.

use super::RevocationList;
use super::snapshot::{ListClaims, SnapshotOptions, verify_signed, verify_signed_with};
use crate::error::{EncodingError, SnapshotError, ValidationError};
use crate::jwk::KeySet;
use crate::verifier::Ed25519Oracle;

/// `typ` header of a revocation delta.
pub const DELTA_TYPE: &str = "gatehouse-revocation-delta+jws";

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
        Self::checked(verify_signed(jws, DELTA_TYPE, keys, options, now)?)
    }

    /// [`Self::verify`] with the Ed25519 equation checked by `oracle`.
    pub async fn verify_with<O: Ed25519Oracle>(
        oracle: &O,
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        Self::checked(verify_signed_with(oracle, jws, DELTA_TYPE, keys, options, now).await?)
    }

    fn checked((claims, list): (ListClaims, RevocationList)) -> Result<Self, SnapshotError> {
        let from = claims.from.ok_or(ValidationError::MalformedClaims(
            "a delta names the seq it starts after",
        ))?;
        if from > list.seq {
            return Err(EncodingError::BadRange.into());
        }
        Ok(Self { from, list })
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
        let claims = ListClaims {
            rev: self.list.to_bytes(),
            from: Some(self.from),
        };
        claims.sign(DELTA_TYPE, key)
    }
}
