//! The signed snapshot: a compact JWS whose payload is the list's binary form itself (no
//! claims around it), so the list costs its own size once base64url'd and nothing more.
//!
//! Why not jwt-compact's claims: JSON claims would base64 the list twice (100k entries would
//! grow from 1.6 to 2.1 MiB), and its CBOR claims need its `std` feature, which links anyhow's
//! backtraces and a symbol demangler into the worker (31 KB of its 200 KB gzipped budget). So
//! the list is the payload; jwt-compact still parses the JWS, and the key's jwt-compact
//! algorithm checks the signature before a byte of the payload is read
//! (`UntrustedList`). Its own `typ` keeps a snapshot from ever passing as an
//! access token, or an access token as a snapshot.

use super::RevocationList;
use crate::Ed25519Oracle;
use crate::error::{SnapshotError, ValidationError};
use crate::jwk::KeySet;
use crate::token::UntrustedList;

/// `typ` header of a revocation snapshot.
pub const SNAPSHOT_TYPE: &str = "gatehouse-revocations+jws";

/// What a snapshot must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The issuer recorded in the list must be this one.
    pub issuer: String,
    /// Larger snapshots are rejected before decoding. 100k entries take about 1.6 MiB.
    pub max_bytes: usize,
}

impl SnapshotOptions {
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
    /// How far ahead of the verifier's clock a list's `issued_at` may be. Fixed, not an option:
    /// entries outlive their token by it ([`super::entry_expiry`]), so that an issuer whose
    /// clock runs this much ahead drops no entry a verifier still needs.
    pub const MAX_CLOCK_AHEAD_SECS: u32 = 30;
    /// How a list kept up to date by polling is kept: the edge's defaults (`KV_REFRESH_SECS`,
    /// `MAX_LIST_AGE_SECS`) and `@gatehouse/verify`'s remote verifier's
    /// (`revocationListFetchDefaults()`). The list is read again once this many seconds old.
    pub const REFRESH_SECS: u32 = 10;
    /// A list older than this (by its `issued_at`) is stale: protected requests are refused
    /// rather than checked against it. 90 minutes: the edge's KV copy of a quiet list is
    /// re-written every hour.
    pub const DEFAULT_MAX_AGE_SECS: u32 = 5400;

    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// How a list's payload is decoded: a snapshot's is the list, a delta's has its `from` first.
pub(super) type Decode<T> = fn(&[u8]) -> Result<(T, RevocationList), SnapshotError>;

/// Checks a signed list of type `typ` (a snapshot or a delta), signature first, and hands its
/// payload to `decode`; then [`checked`].
pub(super) fn verify_signed<T>(
    jws: &str,
    typ: &str,
    keys: &KeySet,
    (options, now): (&SnapshotOptions, i64),
    decode: Decode<T>,
) -> Result<(T, RevocationList), SnapshotError> {
    let (payload, signer) =
        UntrustedList::parse(jws, options.max_bytes)?.verified_payload(keys, typ)?;
    checked(&payload, signer, (options, now), decode)
}

/// [`verify_signed`] with the equation checked by `oracle` (the worker's WebCrypto); every other
/// stage and code is the same. The outer error: the oracle could not check.
pub(super) async fn verify_signed_with<O: Ed25519Oracle, T>(
    oracle: &O,
    jws: &str,
    typ: &str,
    keys: &KeySet,
    (options, now): (&SnapshotOptions, i64),
    decode: Decode<T>,
) -> Result<Result<(T, RevocationList), SnapshotError>, O::Fault> {
    let untrusted = match UntrustedList::parse(jws, options.max_bytes) {
        Ok(untrusted) => untrusted,
        Err(e) => return Ok(Err(e.into())),
    };
    Ok(
        match untrusted.verified_payload_with(oracle, keys, typ).await? {
            Ok((payload, signer)) => checked(&payload, signer, (options, now), decode),
            Err(e) => Err(e.into()),
        },
    )
}

/// A verified payload, decoded and held to the options (its issuer and issue time); refused if
/// it revokes its own signer, else stamped with that signer.
fn checked<T>(
    payload: &[u8],
    signer: String,
    (options, now): (&SnapshotOptions, i64),
    decode: Decode<T>,
) -> Result<(T, RevocationList), SnapshotError> {
    let (extra, mut list) = decode(payload)?;
    // The issuer revokes only a key it no longer signs with: a list by a key it revokes comes
    // from a replica that has not re-read its key ring since, or from whoever holds the key.
    // Taken, it would count as newer than lists that name the key, and an older list that names
    // it (public, replayable) would then replace it ([`super::replaces`]), taking entries back.
    if list.revokes_key(&signer) {
        return Err(ValidationError::UnknownKid.into());
    }
    list.signer = signer;
    if list.issuer != options.issuer {
        return Err(ValidationError::WrongIssuer.into());
    }
    if list.issued_at > now.saturating_add(i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS)) {
        return Err(ValidationError::NotYetValid.into());
    }
    Ok((extra, list))
}

fn decode_snapshot(payload: &[u8]) -> Result<((), RevocationList), SnapshotError> {
    Ok(((), RevocationList::from_bytes(payload)?))
}

impl RevocationList {
    /// Verifies a signed snapshot against the issuer's keys and decodes it.
    pub fn verify_snapshot(
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Self, SnapshotError> {
        verify_signed(jws, SNAPSHOT_TYPE, keys, (options, now), decode_snapshot)
            .map(|((), list)| list)
    }

    /// [`Self::verify_snapshot`] with the signature's equation checked by `oracle` (the worker:
    /// the runtime's WebCrypto), every other stage and code the same, for Ed25519 keys (the
    /// oracle's only kind: a list by another key type is `alg_mismatch`). The outer error: the
    /// oracle could not check, and the snapshot may be good.
    pub async fn verify_snapshot_with<O: Ed25519Oracle>(
        oracle: &O,
        jws: &str,
        keys: &KeySet,
        options: &SnapshotOptions,
        now: i64,
    ) -> Result<Result<Self, SnapshotError>, O::Fault> {
        let verified = verify_signed_with(
            oracle,
            jws,
            SNAPSHOT_TYPE,
            keys,
            (options, now),
            decode_snapshot,
        )
        .await?;
        Ok(verified.map(|((), list)| list))
    }

    /// Accepts `self` only if it replaces the list held, `(seq, issued_at, key_id of its
    /// signer)`, by [`super::replaces`].
    pub fn ensure_newer_than(
        &self,
        (held_seq, held_issued_at, held_signer): (u64, i64, u64),
    ) -> Result<(), SnapshotError> {
        if super::replaces(self, (held_seq, held_issued_at, held_signer)) {
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
        key.sign_payload(SNAPSHOT_TYPE, &self.to_bytes())
    }
}
