//! Whether this replica can open a key, where the configuration is at hand: the signing key
//! when the ring is read, the scheduled key at start (as it will be opened when it signs), and
//! the active key before a command changes the ring. (The scheduled rotation in store.rs opens
//! keys with the sealer alone: it has no data directory for a legacy key's file.)

use gatehouse_shared::SigningKey;

use super::import::read_key_file;
use super::seal::{SealedUnder, Sealer};
use super::store::{self, KeyRecord};
use crate::config::Config;
use crate::db::DbConn;
use crate::error::ApiError;

/// The private part of the signing key: sealed in its row, or, for a key recorded before keys
/// lived in the database, the data directory's file of that time (then sealed into the row).
pub(super) fn open_signer(
    conn: &mut DbConn,
    config: &Config,
    sealer: &Sealer,
    record: &KeyRecord,
) -> Result<SigningKey, ApiError> {
    if let Some(sealed) = &record.sealed_private_jwk {
        let (key, under) = sealer
            .open_any(&record.kid, sealed)
            .map_err(ApiError::Internal)?;
        if under == SealedUnder::Fallback {
            tracing::warn!(
                kid = %record.kid,
                "the signing key opened only with GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS: run \
                 `keys reseal` before removing the fallback"
            );
        }
        return Ok(key);
    }
    let legacy = config
        .data_dir
        .join("keys")
        .join(format!("{}.jwk", record.kid));
    if legacy.is_file() {
        let key = read_key_file(&legacy)?;
        store::store_sealed(conn, sealer, &key)?;
        return Ok(key);
    }
    Err(ApiError::Internal(format!(
        "the signing key {} has no private part in the database: import it (`keys import FILE`) \
         or rotate (`keys rotate`)",
        record.kid
    )))
}

/// At start, the scheduled key must open too: sealed under a secret since removed from the
/// fallbacks, or a key recorded before keys lived in the database whose file is gone, it would
/// fail on every replica at once when it comes to sign, days later, where a start refused now
/// names it while the old secret or file is still at hand. It is opened as it will be then
/// (a legacy file is sealed into its row now).
pub(super) fn ensure_scheduled_key_opens(
    conn: &mut DbConn,
    config: &Config,
    sealer: &Sealer,
    rows: &[KeyRecord],
) -> Result<(), ApiError> {
    let Some(next) = store::next(rows) else {
        return Ok(());
    };
    open_signer(conn, config, sealer, next)
        .map(drop)
        .map_err(|e| {
            let reason = match e {
                ApiError::Internal(reason) => reason,
                other => other.to_string(),
            };
            ApiError::Internal(format!(
                "the scheduled signing key does not open: {reason}. It would fail when it comes to \
                 sign. If it was sealed under an earlier secret, set that secret in \
                 GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS and run `keys reseal`; else `keys \
                 revoke {}`",
                next.kid
            ))
        })
}

/// Before any write to the ring, the configured secret must open the active key. A CLI run (or
/// a replica) without the replicas' `GATEHOUSE_KEY_ENCRYPTION_KEY` seals under another secret
/// (in development, one it generates), and would otherwise make active, or schedule, a key that
/// no replica can open.
pub(super) fn ensure_sealer_opens_ring(conn: &mut DbConn, sealer: &Sealer) -> Result<(), ApiError> {
    let rows = store::records(conn)?;
    let Some(active) = store::signing(&rows) else {
        return Ok(());
    };
    match &active.sealed_private_jwk {
        Some(private_jwk) => sealer
            .open_any(&active.kid, private_jwk)
            .map(drop)
            .map_err(|e| {
                ApiError::Internal(format!(
                    "the key ring is left unchanged: {e}. Check that GATEHOUSE_KEY_ENCRYPTION_KEY \
                     is the replicas' secret; only if that secret is lost, `keys rotate \
                     --replace-unopenable` makes a new key under the one set here"
                ))
            }),
        None => Ok(()),
    }
}
