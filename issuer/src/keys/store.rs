//! The key ring's rows: every key's public JWK, status and sealed private part. Replicas agree
//! without coordination because every decision is a rule over the rows: the signing key is the
//! newest active one, the next key is the oldest scheduled one, and a replica that sees two
//! active keys (two rotations at once) retires all but the newest.

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use gatehouse_shared::{Algorithm, SigningKey};

use super::seal::{SealedUnder, Sealer};
use crate::db::DbConn;
use crate::db::schema::signing_keys;
use crate::error::ApiError;
use crate::store::{audit, is_unique_violation, write_tx};

pub const ACTIVE: &str = "active";
pub const RETIRED: &str = "retired";
/// Published ahead of use by scheduled rotation; becomes active after the publish-ahead time.
pub const NEXT: &str = "next";
/// Revoked in an emergency: never published again, and named in the revocation list so every
/// edge drops it at once.
pub const REVOKED: &str = "revoked";

#[derive(Clone, Queryable)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub sealed_private_jwk: Option<String>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Newest first.
pub fn records(conn: &mut DbConn) -> Result<Vec<KeyRecord>, ApiError> {
    Ok(signing_keys::table
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .load(conn)?)
}

/// The one signing key every replica picks: the newest active row.
pub fn signing(records: &[KeyRecord]) -> Option<&KeyRecord> {
    records
        .iter()
        .filter(|r| r.status == ACTIVE)
        .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
}

/// The key scheduled rotation promotes next: the oldest scheduled row.
pub fn next(records: &[KeyRecord]) -> Option<&KeyRecord> {
    records
        .iter()
        .filter(|r| r.status == NEXT)
        .min_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
}

pub fn generate() -> Result<SigningKey, ApiError> {
    SigningKey::generate(Algorithm::EdDsa).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Stores `key` sealed with `status`; `false` if its kid was already there (another replica won
/// the race, or the file was imported before): the row is there either way.
pub fn insert(
    conn: &mut DbConn,
    sealer: &Sealer,
    key: &SigningKey,
    status: &str,
    now: i64,
) -> Result<bool, ApiError> {
    let public = key
        .verifying_jwk()
        .to_json()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Asked first: a key file is imported again at every ring refresh, and a refused insert is
    // an ERROR line in PostgreSQL's log, every minute on every replica.
    let present: i64 = signing_keys::table
        .find(key.kid())
        .count()
        .get_result(conn)?;
    if present > 0 {
        return Ok(false);
    }
    let private = sealer.seal(key).map_err(ApiError::Internal)?;
    // Outside a transaction, losing the race (a unique violation) aborts nothing; a caller in
    // one holds the activations' lock ([`rotate_now`]), so no race is there to lose.
    let inserted = diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(key.kid()),
            signing_keys::alg.eq(key.algorithm().as_str()),
            signing_keys::public_jwk.eq(public),
            signing_keys::status.eq(status),
            signing_keys::created_at.eq(now),
            signing_keys::sealed_private_jwk.eq(private),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Stores the sealed private part of a key recorded before keys lived in the database.
pub fn store_sealed(conn: &mut DbConn, sealer: &Sealer, key: &SigningKey) -> Result<(), ApiError> {
    let private = sealer.seal(key).map_err(ApiError::Internal)?;
    diesel::update(
        signing_keys::table
            .find(key.kid())
            .filter(signing_keys::sealed_private_jwk.is_null()),
    )
    .set(signing_keys::sealed_private_jwk.eq(private))
    .execute(conn)?;
    Ok(())
}

/// Makes `kid` the signing key: every other active key is retired (and stays published for its
/// grace). Promoting a scheduled key also drops every other scheduled key (duplicates from
/// replicas that scheduled at once; none ever signed); settling on a key that is already active
/// keeps them, since the next rotation's key is published ahead. Only a scheduled (or already
/// active) key qualifies: a retired or revoked key never signs again, and a key dropped by a
/// concurrent activation lost. Activations are serialised (a table lock on PostgreSQL, the write
/// lock on SQLite), so two at once end with one active key. Returns whether `kid` signs now.
pub fn activate(conn: &mut DbConn, kid: &str, now: i64, why: &str) -> Result<bool, ApiError> {
    activation_tx(conn, |conn| activate_in(conn, kid, now, why, false))
}

/// A write transaction that activations are serialised on: PostgreSQL's table lock taken
/// first (self-conflicting, so activations queue; plain reads are not blocked), SQLite's write
/// lock by the transaction itself.
pub(super) fn activation_tx<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    write_tx(conn, |conn| {
        if !matches!(conn, DbConn::Sqlite(_)) {
            conn.batch_execute("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")?;
        }
        f(conn)
    })
}

/// [`activate`]'s work, inside [`activation_tx`]. With `only_if_none`, `kid` becomes the
/// signing key only if there is none yet (the first start on an empty ring, where the first
/// replica must win, not the last).
pub(super) fn activate_in(
    conn: &mut DbConn,
    kid: &str,
    now: i64,
    why: &str,
    only_if_none: bool,
) -> Result<bool, ApiError> {
    let status: Option<String> = signing_keys::table
        .find(kid)
        .select(signing_keys::status)
        .first(conn)
        .optional()?;
    if !matches!(status.as_deref(), Some(NEXT | ACTIVE)) {
        return Ok(false);
    }
    if only_if_none {
        let active: i64 = signing_keys::table
            .filter(signing_keys::status.eq(ACTIVE))
            .count()
            .get_result(conn)?;
        if active > 0 {
            diesel::delete(signing_keys::table.find(kid)).execute(conn)?;
            return Ok(false);
        }
    }
    diesel::update(signing_keys::table.find(kid))
        .set((
            signing_keys::status.eq(ACTIVE),
            signing_keys::retired_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    let retired = diesel::update(
        signing_keys::table
            .filter(signing_keys::status.eq(ACTIVE))
            .filter(signing_keys::kid.ne(kid)),
    )
    .set((
        signing_keys::status.eq(RETIRED),
        signing_keys::retired_at.eq(now),
    ))
    .execute(conn)?;
    if status.as_deref() == Some(NEXT) {
        diesel::delete(
            signing_keys::table
                .filter(signing_keys::status.eq(NEXT))
                .filter(signing_keys::kid.ne(kid)),
        )
        .execute(conn)?;
    }
    if status.as_deref() == Some(NEXT) || retired > 0 {
        let detail = serde_json::json!({"kid": kid, "retired": retired, "why": why});
        audit::record(conn, now, "key_activated", None, &detail)?;
    }
    Ok(true)
}

/// A new key that signs from now on (`keys rotate`). Stored and activated in one transaction:
/// a rotation that fails leaves no scheduled key behind, which a replica's scheduled rotation
/// would otherwise promote later, the rotation the operator was told had failed.
pub fn rotate_now(
    conn: &mut DbConn,
    sealer: &Sealer,
    now: i64,
    why: &str,
) -> Result<SigningKey, ApiError> {
    let key = generate()?;
    activation_tx(conn, |conn| {
        if !insert(conn, sealer, &key, NEXT, now)? {
            return Err(ApiError::Internal(
                "a newly generated key's kid is already in the ring".into(),
            ));
        }
        // Cannot be refused: activations are serialised, and this one's key is stored above.
        if activate_in(conn, key.kid(), now, why, false)? {
            Ok(())
        } else {
            Err(ApiError::Internal(
                "a key stored for rotation could not be activated".into(),
            ))
        }
    })?;
    Ok(key)
}

/// The first key of an empty ring. Replicas igniting at once each make one; the first to
/// activate wins and the others drop theirs, so every replica loads the same key. Stored and
/// activated in one transaction, as [`rotate_now`]'s: stored first, a key whose activation
/// failed stayed scheduled, published, and was promoted later by another replica's schedule.
pub fn first_key(
    conn: &mut DbConn,
    sealer: &Sealer,
    now: i64,
) -> Result<Option<SigningKey>, ApiError> {
    let key = generate()?;
    let won = activation_tx(conn, |conn| {
        insert(conn, sealer, &key, NEXT, now)?;
        activate_in(conn, key.kid(), now, "first key", true)
    })?;
    Ok(won.then_some(key))
}

/// The sealer a key added to the ring (scheduled, or imported from a file) seals under: the
/// secret the active key is sealed under, so that every replica able to sign now can sign with
/// it. Under this replica's current secret, a mistyped one (the real one as the fallback) would
/// seal a key no other replica opens, and its activation would stop them all signing. During a
/// rotation of the secret that is the old one, until `keys reseal` moves every key. With no
/// active key, or one recorded before keys were sealed in the database: `sealer` itself. Call
/// it inside [`activation_tx`], which `keys reseal` also takes: a reseal committed after the
/// read would leave the new key under the secret it moved every other key away from.
pub(super) fn sealer_like_active(conn: &mut DbConn, sealer: &Sealer) -> Result<Sealer, ApiError> {
    let rows = records(conn)?;
    let Some(active) = signing(&rows) else {
        return Ok(sealer.clone());
    };
    match &active.sealed_private_jwk {
        Some(held) => sealer.sealing_like(&active.kid, held).ok_or_else(|| {
            ApiError::Internal(format!(
                "the active key {} does not open here, so a key added now would not open where \
                 it does",
                active.kid
            ))
        }),
        None => Ok(sealer.clone()),
    }
}

/// Scheduled rotation, run by every replica at each key-ring refresh. Idempotent, and safe when
/// replicas run it at once: two scheduled keys resolve to the oldest, which alone is promoted.
/// `overdue_secs`: how long past its promotion time a scheduled key is left to a replica that
/// still rotates (two maintenance periods, in each of which every replica runs this).
pub fn schedule(
    conn: &mut DbConn,
    sealer: &Sealer,
    rotation_secs: i64,
    publish_ahead_secs: i64,
    overdue_secs: i64,
    now: i64,
) -> Result<(), ApiError> {
    let rows = records(conn)?;
    let Some(active) = signing(&rows) else {
        return Ok(());
    };
    if rotation_secs <= 0 {
        // Rotation turned off: a key scheduled before never signed, so it leaves the ring,
        // rather than stay published for good (a key every verifier takes that never signs) or
        // be promoted, which an operator who turned rotation off does not expect. Only once it
        // is overdue, though: a replica that still rotates (a rolling deploy, a mistyped
        // setting) promotes it before then, and replicas that disagree then rotate, where they
        // used to schedule and drop a key at every tick and never rotate.
        return match next(&rows) {
            Some(next) if now >= next.created_at + publish_ahead_secs + overdue_secs => {
                tracing::warn!(
                    kid = %next.kid,
                    "key_rotation_days is 0 here, and no replica promoted the key scheduled \
                     before (none rotates, or none could): it leaves the ring unsigned"
                );
                unschedule(conn, now)
            }
            Some(_) | None => Ok(()),
        };
    }
    match next(&rows) {
        Some(next) if next.created_at + publish_ahead_secs <= now => {
            // Promoted only by a replica that can sign with it. (Keys scheduled by this
            // version always open wherever the active key does: see below.)
            if let Some(Err(e)) = next
                .sealed_private_jwk
                .as_ref()
                .map(|sealed| sealer.open_any(&next.kid, sealed))
            {
                tracing::error!(
                    kid = %next.kid,
                    error = %e,
                    "the scheduled signing key is due but does not open here: this replica \
                     does not promote it, and keeps signing with the active key. If no replica \
                     opens it, `keys revoke` it (it never signed); the next is then scheduled"
                );
                return Ok(());
            }
            activate(conn, &next.kid, now, "scheduled rotation").map(drop)
        }
        None if now >= active.created_at + rotation_secs - publish_ahead_secs => {
            let key = generate()?;
            activation_tx(conn, |conn| {
                let like_active = sealer_like_active(conn, sealer)?;
                if insert(conn, &like_active, &key, NEXT, now)? {
                    let detail = serde_json::json!({
                        "kid": key.kid(),
                        "signs_from": now + publish_ahead_secs,
                    });
                    audit::record(conn, now, "key_scheduled", None, &detail)?;
                }
                Ok(())
            })
        }
        Some(_) | None => Ok(()),
    }
}

/// Drops every scheduled key (none ever signed), with an audit row naming them.
fn unschedule(conn: &mut DbConn, now: i64) -> Result<(), ApiError> {
    activation_tx(conn, |conn| {
        let scheduled = signing_keys::table.filter(signing_keys::status.eq(NEXT));
        let kids: Vec<String> = scheduled.select(signing_keys::kid).load(conn)?;
        if kids.is_empty() {
            return Ok(());
        }
        diesel::delete(scheduled).execute(conn)?;
        let detail = serde_json::json!({"kids": kids, "why": "key_rotation_days is 0"});
        audit::record(conn, now, "key_unscheduled", None, &detail)
    })
}

/// What `keys reseal` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Sealed again under the current secret: they opened only with a fallback.
    pub resealed: Vec<String>,
    /// Already under the current secret.
    pub current: usize,
    /// Active or scheduled keys no configured secret opens, each with why (naming its kid):
    /// left as they are.
    pub unopened: Vec<String>,
    /// Retired or revoked keys no configured secret opens (after `keys rotate
    /// --replace-unopenable`, say): they never sign again and verify from their public half,
    /// so they need no secret. Left as they are.
    pub set_aside: Vec<String>,
}

/// Seals every stored private key that opens only with a fallback secret again under the
/// current one, in one transaction (all rows and the audit record, or nothing). Idempotent.
pub fn reseal(conn: &mut DbConn, sealer: &Sealer, now: i64) -> Result<Resealed, ApiError> {
    // Under the activations' lock: a key added meanwhile is sealed like the active key as this
    // leaves it ([`sealer_like_active`]).
    activation_tx(conn, |conn| {
        let mut report = Resealed::default();
        for record in records(conn)? {
            let Some(stored) = record.sealed_private_jwk else {
                continue;
            };
            let key = match sealer.open_any(&record.kid, &stored) {
                Ok((_, SealedUnder::Current)) => {
                    report.current += 1;
                    continue;
                }
                Ok((key, SealedUnder::Fallback)) => key,
                Err(_) if !matches!(record.status.as_str(), ACTIVE | NEXT) => {
                    report.set_aside.push(record.kid);
                    continue;
                }
                Err(why) => {
                    report.unopened.push(why);
                    continue;
                }
            };
            let again = sealer.seal(&key).map_err(ApiError::Internal)?;
            // Only the row as it was read: one a concurrent writer changed is left to it.
            let changed = diesel::update(
                signing_keys::table
                    .find(&record.kid)
                    .filter(signing_keys::sealed_private_jwk.eq(&stored)),
            )
            .set(signing_keys::sealed_private_jwk.eq(again))
            .execute(conn)?;
            if changed > 0 {
                report.resealed.push(record.kid);
            }
        }
        if !report.resealed.is_empty() {
            let detail = serde_json::json!({"kids": report.resealed});
            audit::record(conn, now, "keys_resealed", None, &detail)?;
        }
        Ok(report)
    })
}

/// Retires every active key but the one all replicas sign with (after concurrent rotations).
pub fn settle(conn: &mut DbConn, rows: &[KeyRecord], now: i64) -> Result<bool, ApiError> {
    let actives = rows.iter().filter(|r| r.status == ACTIVE).count();
    match signing(rows) {
        Some(chosen) if actives > 1 => activate(conn, &chosen.kid, now, "rotations settled"),
        _ => Ok(false),
    }
}
