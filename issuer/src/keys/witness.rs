//! Which key-encryption keys the replicas hold, by fingerprint: a replica records its current
//! secret's when it loads or refreshes its ring, and a command that seals signing keys under the
//! secret of the shell it runs in refuses one no replica holds. A mistyped new secret, given with
//! the real one as the fallback, opens the ring all the same; sealing under it would leave every
//! replica unable to open its keys.
//!
//! A replica also forgets its fallbacks' fingerprints: those are the secrets being rotated away
//! from, so a shell still set up with the old secret as its current one (and the new one as
//! fallback) is refused once a replica runs the other way round. While a rotation rolls out, the
//! replicas on either side record and forget in turn; a command is meant to run once all are on
//! one side (docs/deploy.md, "Rotating the key-encryption key").

use diesel::prelude::*;

use super::seal::Sealer;
use crate::db::DbConn;
use crate::db::schema::sealing_secrets;
use crate::error::ApiError;
use crate::store::is_unique_violation;

/// A replica holds `sealer`'s current secret as of `now`, and is moving away from its fallbacks.
pub fn record(conn: &mut DbConn, sealer: &Sealer, now: i64) -> Result<(), ApiError> {
    diesel::delete(
        sealing_secrets::table
            .filter(sealing_secrets::fingerprint.eq_any(sealer.fallback_fingerprints())),
    )
    .execute(conn)?;
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

/// Refuses `sealer`'s current secret unless a replica holds it, or none has recorded one yet (a
/// first key made before any replica started, or a database from before this check: then it
/// says so, and checks nothing). A secret counts as held if a replica recorded it within
/// `recent_secs` of the latest record: running replicas record theirs every maintenance
/// period, so one no replica has run with lately (a mistyped secret, since fixed) no longer
/// counts, while replicas that all stopped together still do.
pub fn ensure_replicas_hold(
    conn: &mut DbConn,
    sealer: &Sealer,
    command: &str,
    recent_secs: i64,
) -> Result<(), ApiError> {
    let records: Vec<(String, i64)> = sealing_secrets::table
        .select((sealing_secrets::fingerprint, sealing_secrets::last_seen))
        .load(conn)?;
    let latest = records.iter().map(|(_, seen)| *seen).max().unwrap_or(0);
    let known: Vec<&String> = records
        .iter()
        .filter(|(_, seen)| *seen >= latest.saturating_sub(recent_secs))
        .map(|(fingerprint, _)| fingerprint)
        .collect();
    if known.is_empty() {
        tracing::warn!(
            "{command}: no replica has recorded its GATEHOUSE_KEY_ENCRYPTION_KEY yet, so this \
             one cannot be checked against theirs"
        );
        return Ok(());
    }
    if known.iter().any(|f| *f == sealer.fingerprint()) {
        return Ok(());
    }
    Err(ApiError::invalid_request(format!(
        "{command}: no replica runs with this GATEHOUSE_KEY_ENCRYPTION_KEY (mistyped, or the \
         secret being rotated away from?), and keys sealed under it would open on none; start \
         the replicas with it first (the earlier secret in \
         GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS), then run this again"
    )))
}
