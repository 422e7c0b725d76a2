//! Bringing in a signing key from a private JWK file (`GATEHOUSE_SIGNING_KEY_FILE` at start,
//! `keys import`).

use std::path::Path;

use gatehouse_shared::{Algorithm, SigningKey, VerifyingJwk};

use super::seal::Sealer;
use super::store::{self, NEXT};
use crate::db::DbConn;
use crate::error::ApiError;

/// A private JWK from a file (`GATEHOUSE_SIGNING_KEY_FILE`, `keys import`). Ed25519 only: the
/// edge and the JS package verify nothing else, so a token signed otherwise would fail at every
/// verifier.
pub(super) fn read_key_file(path: &Path) -> Result<SigningKey, ApiError> {
    let json = std::fs::read_to_string(path).map_err(|e| {
        ApiError::Internal(format!(
            "cannot read the signing key file {} (GATEHOUSE_SIGNING_KEY_FILE or `keys import`): {e}",
            path.display()
        ))
    })?;
    let key = SigningKey::from_jwk_json(&json)
        .map_err(|e| ApiError::Internal(format!("bad signing key {}: {e}", path.display())))?;
    if key.algorithm() != Algorithm::EdDsa {
        return Err(ApiError::Internal(format!(
            "signing key {} is {}; Gatehouse signs with Ed25519 (EdDSA) only, the algorithm \
             the edge and @gatehouse/verify verify",
            path.display(),
            key.algorithm().as_str()
        )));
    }
    Ok(key)
}

/// What importing a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    /// Its kid was new (or an earlier import left it scheduled): it is the signing key now.
    Signing,
    /// Imported before; nothing changed. Its status, as the ring holds it.
    Before { status: String },
}

/// Imports `key` sealed. The first time its kid is seen it becomes the signing key (and still
/// does while an earlier import left it scheduled); after that, importing it again changes
/// nothing, so replicas and restarts that still hold an older
/// file never take the active key back.
pub(super) fn import(
    conn: &mut DbConn,
    sealer: &Sealer,
    key: &SigningKey,
    now: i64,
) -> Result<Imported, ApiError> {
    let mut rows = store::records(conn)?;
    if !rows.iter().any(|r| r.kid == key.kid()) {
        // The material of a key the ring holds, under another kid (a file re-imported with its
        // `kid` edited, or without one): a revoked key would sign again, its revocation naming
        // the old kid only.
        let material = key.verifying_jwk();
        let same = |r: &&store::KeyRecord| {
            VerifyingJwk::from_json(&r.public_jwk).is_ok_and(|held| held.key() == material.key())
        };
        if let Some(row) = rows.iter().find(same) {
            return Err(ApiError::Internal(format!(
                "the key ring already holds this key, as {} ({}): import a newly generated key",
                row.kid, row.status
            )));
        }
        // Stored and made the signing key in one transaction under the activations' lock, as
        // `store::rotate_now` does: an import that fails leaves no scheduled key, which the
        // rotation schedule would make the signing key later although the import failed.
        let imported = store::activation_tx(conn, |conn| {
            let like_active = store::sealer_like_active(conn, sealer)?;
            Ok(store::insert(conn, &like_active, key, NEXT, now)?
                && store::activate_in(conn, key.kid(), now, "imported", false)?)
        })?;
        if imported {
            return Ok(Imported::Signing);
        }
        // Another import of this key (a replica starting with the same file) came first.
        rows = store::records(conn)?;
    }
    let Some(row) = rows.iter().find(|r| r.kid == key.kid()) else {
        return Err(dropped_meanwhile(key));
    };
    // The same kid with other key material (a tool that writes a fixed kid, a file replaced in
    // place) would otherwise be ignored while the old key went on signing.
    let held = VerifyingJwk::from_json(&row.public_jwk).ok();
    if held.as_ref() != Some(&key.verifying_jwk()) {
        return Err(ApiError::Internal(format!(
            "the key ring already holds another key with kid {}: give the new key a kid of its \
             own (without one, its RFC 7638 thumbprint is used)",
            key.kid()
        )));
    }
    // Recorded before keys lived in the database: keep the private part now. Only then: the
    // file is imported again at every ring refresh, which must not take the activations' lock.
    if row.sealed_private_jwk.is_none() {
        store::activation_tx(conn, |conn| {
            let like_active = store::sealer_like_active(conn, sealer)?;
            store::store_sealed(conn, &like_active, key)
        })?;
    }
    // Still scheduled: an import that stopped between its insert and its activation (past its
    // deadline, or interrupted). Finish it rather than report the key as imported before.
    if row.status == NEXT {
        // Not activated: dropped since it was read (another key promoted, or rotation turned
        // off), so the ring does not hold it, which "imported before" would hide.
        return if store::activate(conn, key.kid(), now, "imported")? {
            Ok(Imported::Signing)
        } else {
            Err(dropped_meanwhile(key))
        };
    }
    Ok(Imported::Before {
        status: row.status.clone(),
    })
}

fn dropped_meanwhile(key: &SigningKey) -> ApiError {
    ApiError::Internal(format!(
        "{} was not made the signing key: other activations ran at the same time and dropped \
         it; import it again",
        key.kid()
    ))
}
