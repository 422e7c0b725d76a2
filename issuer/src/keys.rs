//! Signing keys: the active key signs; retired keys stay published until every token they
//! signed has expired. Private keys live in files (never in the database, never in logs); the
//! database records each key's public JWK and status so every replica publishes the same set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use diesel::prelude::*;
use gatehouse_shared::{Algorithm, KeySet, SigningKey, Verifier, VerifierOptions, VerifyingJwk};
use rocket::fairing::AdHoc;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::schema::signing_keys;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::store::{audit, is_unique_violation, revocations, write_tx};

const ACTIVE: &str = "active";
const RETIRED: &str = "retired";
/// Revoked in an emergency: never published again, and named in the revocation list so every
/// edge drops it at once.
const REVOKED: &str = "revoked";
/// How long a key revocation stays in the list: past every token the key signed and every key
/// set an edge holds (its TTL, plus KV's copy and the cron), with a wide margin.
const KEY_REVOCATION_SECS: i64 = 24 * 3600;

/// The signing key and the verifier over every published key, swapped as one on rotation.
pub struct KeyState {
    pub signer: SigningKey,
    pub published: KeySet,
    pub verifier: Verifier,
}

pub struct KeyRing {
    state: RwLock<Arc<KeyState>>,
}

#[derive(Debug, Clone, Queryable)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl KeyRing {
    pub fn current(&self) -> Arc<KeyState> {
        self.state.read().map_or_else(
            |poisoned| Arc::clone(&poisoned.into_inner()),
            |s| Arc::clone(&s),
        )
    }

    /// Loads the active key (from `signing_key_file`, or the dev key store, generating a key
    /// on a first dev start) and the published set.
    pub fn load(conn: &mut DbConn, config: &Config, now: i64) -> Result<Self, ApiError> {
        let state = build_state(conn, config, now)?;
        Ok(Self {
            state: RwLock::new(Arc::new(state)),
        })
    }

    /// Re-reads the database: picks up a rotation done by the CLI or another replica, and drops
    /// retired keys whose grace has ended.
    pub fn refresh(&self, conn: &mut DbConn, config: &Config, now: i64) -> Result<(), ApiError> {
        let state = build_state(conn, config, now)?;
        if let Ok(mut slot) = self.state.write() {
            *slot = Arc::new(state);
        }
        Ok(())
    }
}

fn key_path(config: &Config, kid: &str) -> PathBuf {
    config.data_dir.join("keys").join(format!("{kid}.jwk"))
}

fn read_key(path: &Path) -> Result<SigningKey, ApiError> {
    let json = std::fs::read_to_string(path).map_err(|e| {
        ApiError::Internal(format!("cannot read signing key {}: {e}", path.display()))
    })?;
    let key = SigningKey::from_jwk_json(&json)
        .map_err(|e| ApiError::Internal(format!("bad signing key {}: {e}", path.display())))?;
    // The edge and the JS package verify Ed25519 only (the worker and the package stay small);
    // a token signed with anything else would fail at every verifier.
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

fn write_key(path: &Path, key: &SigningKey) -> Result<(), ApiError> {
    use std::io::Write as _;
    let fail =
        |e: std::io::Error| ApiError::Internal(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let json = key
        .to_private_jwk_json()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .map_err(fail)
}

fn records(conn: &mut DbConn) -> Result<Vec<KeyRecord>, ApiError> {
    Ok(signing_keys::table
        .order(signing_keys::created_at.desc())
        .load(conn)?)
}

/// Makes `key` the active key: records it if new and retires every other active key. Safe when
/// several issuers activate the same key at once (replicas starting with one new key file).
fn activate(conn: &mut DbConn, key: &SigningKey, now: i64) -> Result<bool, ApiError> {
    let public = key
        .verifying_jwk()
        .to_json()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Outside the transaction, so that losing the insert race to another issuer (a unique
    // violation) does not abort anything: the row is there either way.
    let inserted = diesel::insert_into(signing_keys::table)
        .values((
            signing_keys::kid.eq(key.kid()),
            signing_keys::alg.eq(key.algorithm().as_str()),
            signing_keys::public_jwk.eq(public),
            signing_keys::status.eq(ACTIVE),
            signing_keys::created_at.eq(now),
        ))
        .execute(conn);
    let new = match inserted {
        Ok(_) => true,
        Err(e) if is_unique_violation(&e) => false,
        Err(e) => return Err(e.into()),
    };
    write_tx(conn, |conn| {
        diesel::update(
            signing_keys::table
                .find(key.kid())
                .filter(signing_keys::status.ne(ACTIVE)),
        )
        .set((
            signing_keys::status.eq(ACTIVE),
            signing_keys::retired_at.eq(None::<i64>),
        ))
        .execute(conn)?;
        let retired = diesel::update(
            signing_keys::table
                .filter(signing_keys::status.eq(ACTIVE))
                .filter(signing_keys::kid.ne(key.kid())),
        )
        .set((
            signing_keys::status.eq(RETIRED),
            signing_keys::retired_at.eq(now),
        ))
        .execute(conn)?;
        if new || retired > 0 {
            let detail = serde_json::json!({"kid": key.kid(), "retired": retired});
            audit::record(conn, now, "key_activated", None, &detail)?;
        }
        Ok(new)
    })
}

fn build_state(conn: &mut DbConn, config: &Config, now: i64) -> Result<KeyState, ApiError> {
    let signer = if let Some(path) = &config.signing_key_file {
        let key = read_key(path)?;
        activate(conn, &key, now)?;
        key
    } else {
        let active = records(conn)?.into_iter().find(|r| r.status == ACTIVE);
        if let Some(record) = active {
            read_key(&key_path(config, &record.kid))?
        } else {
            let key = SigningKey::generate(Algorithm::EdDsa)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            write_key(&key_path(config, key.kid()), &key)?;
            activate(conn, &key, now)?;
            tracing::warn!(
                kid = key.kid(),
                dir = %config.data_dir.display(),
                "DEV MODE: no GATEHOUSE_SIGNING_KEY_FILE; generated a signing key in the data \
                 directory. Do not run production like this."
            );
            key
        }
    };
    // A retired key stays published while a token it signed can still be valid anywhere.
    let grace = i64::from(config.access_token_ttl_secs) + i64::from(config.leeway_secs);
    let published = KeySet::new(
        records(conn)?
            .into_iter()
            .filter(|r| {
                r.status == ACTIVE
                    || (r.status == RETIRED && r.retired_at.is_some_and(|t| t + grace > now))
            })
            .filter_map(|r| VerifyingJwk::from_json(&r.public_jwk).ok()),
    );
    let options =
        VerifierOptions::new(&config.issuer, &config.audience).with_leeway_secs(config.leeway_secs);
    Ok(KeyState {
        verifier: Verifier::new(published.clone(), options),
        published,
        signer,
    })
}

/// `keys rotate`: a new key signs from now on; the old one stays published for its grace.
pub fn rotate(conn: &mut DbConn, config: &Config, now: i64) -> Result<SigningKey, ApiError> {
    if config.signing_key_file.is_some() {
        return Err(ApiError::invalid_request(
            "the signing key comes from GATEHOUSE_SIGNING_KEY_FILE: put the new key in that file \
             and restart; the previous key is retired automatically",
        ));
    }
    let key =
        SigningKey::generate(Algorithm::EdDsa).map_err(|e| ApiError::Internal(e.to_string()))?;
    write_key(&key_path(config, key.kid()), &key)?;
    activate(conn, &key, now)?;
    Ok(key)
}

/// `keys revoke KID`: an emergency. The key leaves the JWKS (at each replica's next key-ring
/// refresh) and enters the revocation list at once, so the edge's fast path drops it from every
/// location within about a second. The active key cannot be revoked: rotate first.
pub fn revoke(conn: &mut DbConn, config: &Config, kid: &str, now: i64) -> Result<(), ApiError> {
    let record = records(conn)?
        .into_iter()
        .find(|r| r.kid == kid)
        .ok_or_else(|| ApiError::invalid_request(format!("no signing key with kid {kid}")))?;
    if record.status == ACTIVE {
        return Err(ApiError::invalid_request(format!(
            "{kid} is the active signing key: rotate first (`keys rotate`, or a new \
             GATEHOUSE_SIGNING_KEY_FILE and a restart), then revoke it"
        )));
    }
    let expires_at = config
        .revocation_horizon(now)
        .max(now + KEY_REVOCATION_SECS);
    write_tx(conn, |conn| {
        diesel::update(signing_keys::table.find(kid))
            .set(signing_keys::status.eq(REVOKED))
            .execute(conn)?;
        revocations::insert(conn, revocations::Kind::Key, kid, 0, expires_at, now)?;
        let detail = serde_json::json!({"kid": kid, "was": record.status});
        audit::record(conn, now, "key_revoked", None, &detail)
    })
}

pub fn list(conn: &mut DbConn) -> Result<Vec<KeyRecord>, ApiError> {
    records(conn)
}

/// The key ring, at ignite.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Signing keys", |rocket| async {
        let (Some(config), Some(db), Some(clock)) = (
            rocket.state::<Config>(),
            rocket.state::<Db>(),
            rocket.state::<Arc<Clock>>(),
        ) else {
            tracing::error!("keys stage needs config, database and clock");
            return Err(rocket);
        };
        let (config, db, now) = (config.clone(), db.clone(), clock.now());
        match db.run(move |conn| KeyRing::load(conn, &config, now)).await {
            Ok(ring) => {
                let state = ring.current();
                tracing::info!(
                    signing_kid = state.signer.kid(),
                    published = ?state.published.kids().collect::<Vec<_>>(),
                    "signing keys loaded"
                );
                Ok(rocket.manage(Arc::new(ring)))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load signing keys");
                Err(rocket)
            }
        }
    })
}
