//! Which key-encryption keys the replicas hold, by fingerprint: a replica records its current
//! secret's when it loads its ring, and a command that seals signing keys under the secret of
//! the shell it runs in refuses one no replica has run with. A mistyped new secret, given with
//! the real one as the fallback, opens the ring all the same; sealing under it would leave every
//! replica unable to open its keys.

use diesel::prelude::*;

use super::seal::Sealer;
use crate::db::DbConn;
use crate::db::schema::sealing_secrets;
use crate::error::ApiError;
use crate::store::is_unique_violation;

/// A replica holds `sealer`'s current secret, as of `now`.
pub fn record(conn: &mut DbConn, sealer: &Sealer, now: i64) -> Result<(), ApiError> {
    let seen = diesel::update(sealing_secrets::table.find(sealer.fingerprint()))
        .set(sealing_secrets::last_seen.eq(now))
        .execute(conn)?;
    if seen == 1 {
        return Ok(());
    }
    let inserted = diesel::insert_into(sealing_secrets::table)
        .values((
            sealing_secrets::fingerprint.eq(sealer.fingerprint()),
            sealing_secrets::last_seen.eq(now),
        ))
        .execute(conn);
    match inserted {
        // Another replica with the same secret recorded it first.
        Err(e) if !is_unique_violation(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Refuses `sealer`'s current secret unless a replica has run with it, or none has recorded
/// any yet (a first key made before any replica started).
pub fn ensure_replicas_hold(
    conn: &mut DbConn,
    sealer: &Sealer,
    command: &str,
) -> Result<(), ApiError> {
    let known: Vec<String> = sealing_secrets::table
        .select(sealing_secrets::fingerprint)
        .load(conn)?;
    if known.is_empty() || known.iter().any(|f| f == sealer.fingerprint()) {
        return Ok(());
    }
    Err(ApiError::invalid_request(format!(
        "{command}: no replica has run with this GATEHOUSE_KEY_ENCRYPTION_KEY (mistyped?), and \
         keys sealed under it would open on none; start the replicas with it first (the earlier \
         secret in GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS), then run this again"
    )))
}
