//! The `keys` commands an operator runs (and tests drive): rotate, import, revoke, reseal,
//! list. Each works on the database the replicas share; replicas see the change at their next
//! ring refresh.

use std::path::Path;

use diesel::prelude::*;
use gatehouse_shared::SigningKey;

use super::store::{self, ACTIVE, KeyRecord, RETIRED, REVOKED, Resealed};
use super::{
    Imported, KEY_REVOCATION_SECS, ensure_sealer_opens_ring, import, max_ring_age, read_key_file,
    seal, witness,
};
use crate::config::Config;
use crate::db::DbConn;
use crate::db::schema::signing_keys;
use crate::error::ApiError;
use crate::revoker::Revocations;

/// `keys rotate`: a new key signs from now on; the old one stays published for its grace.
/// Verifiers learn the new kid from the JWKS (the edge refetches it on an unknown kid).
pub fn rotate(conn: &mut DbConn, config: &Config, now: i64) -> Result<SigningKey, ApiError> {
    let sealer = ring_sealer(conn, config, "keys rotate")?;
    store::rotate_now(conn, &sealer, now, "keys rotate")
}

/// The sealer a command adds a key to the ring under: the configured secret, refused unless it
/// opens the active key (a shell without the replicas' secret) and a replica runs with it (a
/// mistyped one, given with the real one as the fallback).
fn ring_sealer(
    conn: &mut DbConn,
    config: &Config,
    command: &str,
) -> Result<seal::Sealer, ApiError> {
    let sealer = seal::from_config(config)?;
    ensure_sealer_opens_ring(conn, &sealer)?;
    witness::ensure_replicas_hold(conn, &sealer, command, max_ring_age(config))?;
    Ok(sealer)
}

/// `keys rotate --replace-unopenable`: the recovery when the secret that sealed the active key
/// is lost. The new key is sealed under the configured secret, which every replica must then
/// hold; the old key stays published for its grace, so its tokens still verify. Nothing checks
/// that secret against the ring (that is the point), so it must be set, never a development
/// default made in this shell.
pub fn rotate_replacing_unopenable(
    conn: &mut DbConn,
    config: &Config,
    now: i64,
) -> Result<SigningKey, ApiError> {
    let sealer = configured_sealer(config, "keys rotate --replace-unopenable")?;
    store::rotate_now(conn, &sealer, now, "keys rotate --replace-unopenable")
}

/// The sealer of the configured `GATEHOUSE_KEY_ENCRYPTION_KEY`, for a command that seals keys
/// under it without the ring to check it against: without the setting, a development default
/// would be generated in this shell's directory, and every key sealed under a secret no replica
/// holds.
fn configured_sealer(config: &Config, command: &str) -> Result<seal::Sealer, ApiError> {
    if config.key_encryption_key.is_none() {
        return Err(ApiError::invalid_request(format!(
            "{command} needs GATEHOUSE_KEY_ENCRYPTION_KEY set to the secret every replica holds \
             (during a rotation of that secret, the new one, with the old one in \
             GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS); it never generates one"
        )));
    }
    seal::from_config(config)
}

/// `keys import FILE`: an existing private JWK becomes the signing key (if its kid is new).
pub fn import_file(
    conn: &mut DbConn,
    config: &Config,
    path: &Path,
    now: i64,
) -> Result<(SigningKey, Imported), ApiError> {
    let sealer = ring_sealer(conn, config, "keys import")?;
    let key = read_key_file(path)?;
    let imported = import(conn, &sealer, &key, now)?;
    Ok((key, imported))
}

/// `keys revoke KID`: an emergency, inside the revocation service's transaction. The key
/// leaves the JWKS (at each replica's next key-ring refresh) and enters the revocation list at
/// once, so the edge's fast path drops it from every location within about a second. The active
/// key cannot be revoked: rotate first.
pub fn revoke(revocations: &mut Revocations<'_>, kid: &str) -> Result<(), ApiError> {
    let now = revocations.now();
    let conn = revocations.conn();
    let record = store::records(conn)?
        .into_iter()
        .find(|r| r.kid == kid)
        .ok_or_else(|| ApiError::invalid_request(format!("no signing key with kid {kid}")))?;
    if record.status == ACTIVE {
        return Err(ApiError::invalid_request(format!(
            "{kid} is the active signing key: rotate first (`keys rotate`), then revoke it"
        )));
    }
    // Conditional: a promotion may have made it active since it was read.
    let revoked = diesel::update(
        signing_keys::table
            .find(kid)
            .filter(signing_keys::status.eq(&record.status)),
    )
    .set(signing_keys::status.eq(REVOKED))
    .execute(conn)?;
    if revoked == 0 {
        return Err(ApiError::unavailable(
            "the key changed status while being revoked; run the command again",
        ));
    }
    revocations.key(kid, now + KEY_REVOCATION_SECS, &record.status)
}

/// Until when replicas may still sign with `kid`, if that is later than `now`: a key retired
/// less than two maintenance periods ago, which a replica that has not re-read its ring since
/// still signs with. Revoking it before then refuses those replicas' tokens at the edge: the
/// price of an emergency, and a mistake otherwise.
pub fn still_signing_until(
    conn: &mut DbConn,
    config: &Config,
    kid: &str,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    let until = store::records(conn)?
        .into_iter()
        .find(|r| r.kid == kid && r.status == RETIRED)
        .and_then(|r| r.retired_at)
        .map(|at| at + max_ring_age(config));
    Ok(until.filter(|until| *until > now))
}

/// `keys reseal`: every stored private key under the current key-encryption key, after that
/// secret was rotated (the earlier one in `GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS`).
pub fn reseal(conn: &mut DbConn, config: &Config, now: i64) -> Result<Resealed, ApiError> {
    let sealer = configured_sealer(config, "keys reseal")?;
    witness::ensure_replicas_hold(conn, &sealer, "keys reseal", max_ring_age(config))?;
    store::reseal(conn, &sealer, now)
}

pub fn list(conn: &mut DbConn) -> Result<Vec<KeyRecord>, ApiError> {
    store::records(conn)
}
