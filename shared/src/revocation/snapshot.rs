//! The signed snapshot: a compact JWS whose payload is the binary revocation list. It has a
//! `typ` of its own, so it can never pass as an access token, nor an access token as it.

use super::RevocationList;
use crate::error::{SnapshotError, ValidationError};
use crate::jwk::KeySet;
use crate::jws::verify_compact;

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

impl RevocationList {
    /// Verifies a signed snapshot against the issuer's keys and decodes it.
    pub fn verify_snapshot(
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        let payload = verify_compact(jws, keys, SNAPSHOT_TYPE, options.max_bytes)?;
        let list = Self::from_bytes(&payload)?;
        if list.issuer != options.issuer {
            return Err(ValidationError::WrongIssuer.into());
        }
        if list.issued_at > now.saturating_add(i64::from(options.leeway_secs)) {
            return Err(ValidationError::NotYetValid.into());
        }
        Ok(list)
    }

    /// Accepts `self` only if it is newer than the list currently held: a higher `seq`, or the
    /// same `seq` re-signed later (the issuer re-signs an unchanged list so its age stays fresh).
    pub fn ensure_newer_than(
        &self,
        held_seq: u64,
        held_issued_at: i64,
    ) -> Result<(), SnapshotError> {
        if (self.seq, self.issued_at) > (held_seq, held_issued_at) {
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
        key.sign_jws(SNAPSHOT_TYPE, &self.to_bytes())
    }
}
