//! Signing keys: the active key signs; retired keys stay published until every token they
//! signed has expired. Every key lives in the database, its private part sealed under the
//! key-encryption key from configuration (seal.rs), so N replicas start with the same
//! configuration and nothing else. The rules replicas agree by are in store.rs.

mod commands;
mod import;
mod open;
mod seal;
mod store;
pub mod witness;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gatehouse_shared::{
    AccessClaims, ErrorCode, KeySet, SigningKey, SnapshotOptions, UntrustedToken, Verifier,
    VerifierOptions, VerifyError, VerifyingJwk,
};
use rocket::fairing::AdHoc;

pub use commands::{
    import_file, list, reseal, revoke, rotate, rotate_replacing_unopenable, still_signing_until,
};
pub use import::Imported;
use import::{import, read_key_file};
use open::{ensure_scheduled_key_opens, ensure_sealer_opens_ring, open_signer};
pub use seal::{SealedUnder, Sealer};
pub use store::{ACTIVE, KeyRecord, Resealed};
use store::{NEXT, RETIRED};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Db, DbConn};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// How long a key revocation stays in the list: past every token the key signed and every key
/// set an edge holds (its TTL, plus KV's copy and the cron), with a wide margin.
const KEY_REVOCATION_SECS: i64 = 24 * 3600;

/// The signing key and the verifier over every published key, swapped as one on rotation.
pub struct KeyState {
    pub signer: SigningKey,
    pub published: KeySet,
    /// `published` as the JWKS serves it, its Ed25519 keys named by `jws_alg`.
    pub jwks: String,
    pub verifier: Verifier,
    /// The same keys with the longest leeway any verifier may use: with a clock as far behind as
    /// a list it takes may be, what some edge or package may still accept.
    lenient: Verifier,
    /// When this replica began reading it from the database.
    read_at: Instant,
    /// The same, on the issuer's clock (Unix seconds): what its age for signing is judged by.
    read_at_secs: i64,
}

pub struct KeyRing {
    sealer: Sealer,
    /// The configuration it was loaded with, for every re-read.
    config: Config,
    state: RwLock<Arc<KeyState>>,
    /// The last re-read requests made this replica do; held while one runs.
    last_reread: tokio::sync::Mutex<Option<Reread>>,
}

#[derive(Clone, Copy)]
struct Reread {
    ended: Instant,
    ok: bool,
}

/// At most one re-read of the ring per this interval on behalf of requests, so garbage kids or
/// a flood of JWKS requests cannot turn every request into a database read; also how old the
/// copy behind the JWKS may be.
const REREAD_INTERVAL: Duration = Duration::from_secs(1);

/// A token of a key the ring may lack while it cannot be read: the issuer cannot tell.
const UNREADABLE: &str = "the signing keys could not be read";

impl KeyRing {
    /// When the ring in use was read (Unix seconds): for `/metrics`, against the age past which
    /// it is read again before signing ([`Self::for_signing`]).
    pub fn read_at(&self) -> i64 {
        self.current().read_at_secs
    }

    pub fn current(&self) -> Arc<KeyState> {
        self.state.read().map_or_else(
            |poisoned| Arc::clone(&poisoned.into_inner()),
            |s| Arc::clone(&s),
        )
    }

    /// Loads the ring from the database: imports `signing_key_file` if its kid is new, makes a
    /// first key on an empty ring, and runs scheduled rotation.
    pub fn load(conn: &mut DbConn, config: &Config, now: i64) -> Result<Self, ApiError> {
        Self::load_as(conn, config, now, KeyFile::Required)
    }

    /// Loads the ring as it is, changing no key: for a command that only signs with the active
    /// key. An error when there is none.
    pub fn load_read_only(conn: &mut DbConn, config: &Config, now: i64) -> Result<Self, ApiError> {
        Self::load_as(conn, config, now, KeyFile::ReadOnly)
    }

    fn load_as(
        conn: &mut DbConn,
        config: &Config,
        now: i64,
        key_file: KeyFile,
    ) -> Result<Self, ApiError> {
        let sealer = seal::from_config(config)?;
        let state = build_state(conn, config, &sealer, now, key_file)?;
        // A replica's secret, which commands may then seal keys under; not a command's own.
        if key_file == KeyFile::Required {
            witness::record(conn, &sealer, now)?;
        }
        Ok(Self {
            sealer,
            config: config.clone(),
            state: RwLock::new(Arc::new(state)),
            last_reread: tokio::sync::Mutex::new(None),
        })
    }

    /// Verifies an access token with this replica's keys: the one rule for every route. A
    /// `kid` the ring does not know may be a rotation by the CLI or another replica since the
    /// ring was read, so it is only taken for not ours ([`VerifyError`]) by a ring read after
    /// this call began ([`Self::read_since`]). The outer error: the ring could not be read, and
    /// the issuer cannot tell; "invalid" would make a revocation write nothing and
    /// introspection call a live token inactive.
    pub async fn verify(
        self: &Arc<Self>,
        db: &Db,
        token: &str,
        now: i64,
    ) -> Result<Result<AccessClaims, VerifyError>, ApiError> {
        self.verify_by(db, token, now, now, |ring| &ring.verifier)
            .await
    }

    /// [`Self::verify`] as the most lenient verifier would (the longest leeway allowed, on a clock
    /// 30 s behind this one): a token it accepts may still pass somewhere, so revoking it needs
    /// an entry. One not valid yet there (signed by a replica whose clock runs ahead) passes on
    /// a clock ahead now and everywhere later: it is verified again as of when it matures, the
    /// only use made of its unverified times (the signature was checked before them).
    pub async fn verify_as_any_verifier(
        self: &Arc<Self>,
        db: &Db,
        token: &str,
        now: i64,
    ) -> Result<Result<AccessClaims, VerifyError>, ApiError> {
        let behind = now.saturating_sub(i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS));
        let lenient: fn(&KeyState) -> &Verifier = |ring| &ring.lenient;
        let first = self.verify_by(db, token, now, behind, lenient).await?;
        if !matches!(&first, Err(e) if e.code() == ErrorCode::NotYetValid) {
            return Ok(first);
        }
        // Within the size limit: the first verification checked it.
        let parsed = UntrustedToken::parse(token, usize::MAX);
        let Ok(Ok(times)) = parsed.map(|t| t.claims_unverified::<Times>()) else {
            return Ok(first);
        };
        let matures = [times.not_before, times.issued_at].into_iter().flatten();
        let matures = matures.map(|t| t.timestamp()).max().unwrap_or(behind);
        // The first second the lenient verifier takes it.
        let leeway = i64::from(VerifierOptions::MAX_LEEWAY_SECS);
        let first_accepted = matures.saturating_sub(leeway);
        self.verify_by(db, token, now, first_accepted, lenient)
            .await
    }

    /// Verifies `token` as a verifier whose clock reads `verifier_now` would.
    async fn verify_by(
        self: &Arc<Self>,
        db: &Db,
        token: &str,
        now: i64,
        verifier_now: i64,
        verifier: fn(&KeyState) -> &Verifier,
    ) -> Result<Result<AccessClaims, VerifyError>, ApiError> {
        let asked = Instant::now();
        let first = verifier(&self.current()).verify(token, verifier_now);
        if !matches!(&first, Err(e) if e.code() == ErrorCode::UnknownKid) {
            return Ok(first);
        }
        // Rare: an unknown kid fails before any signature is checked.
        let ring = self.read_since(db, now, asked).await?;
        Ok(verifier(&ring).verify(token, verifier_now))
    }

    /// The ring as read from the database after `since`. Re-read if it was not, at most once
    /// per [`REREAD_INTERVAL`] after the last one ended: a caller waits out the interval rather
    /// than skip the re-read (without the lock, so the JWKS does not wait too), and callers that
    /// wait meanwhile share the one that follows. An error when a re-read that ended after
    /// `since` failed: the callers queued behind a slow failing one share its failure instead
    /// of failing one by one.
    async fn read_since(
        self: &Arc<Self>,
        db: &Db,
        now: i64,
        since: Instant,
    ) -> Result<Arc<KeyState>, ApiError> {
        self.read_unless(db, now, since, |_| false).await
    }

    /// [`Self::read_since`], but a ring that is `good_enough` (one another caller's re-read
    /// installed meanwhile, say) is taken as it is.
    async fn read_unless(
        self: &Arc<Self>,
        db: &Db,
        now: i64,
        since: Instant,
        good_enough: impl Fn(&KeyState) -> bool,
    ) -> Result<Arc<KeyState>, ApiError> {
        loop {
            let mut last = self.last_reread.lock().await;
            let held = self.current();
            if held.read_at >= since || good_enough(&held) {
                return Ok(held);
            }
            match *last {
                Some(r) if r.ended >= since && !r.ok => {
                    return Err(ApiError::unavailable(UNREADABLE));
                }
                Some(r) if r.ended.elapsed() < REREAD_INTERVAL => {
                    drop(last);
                    tokio::time::sleep_until((r.ended + REREAD_INTERVAL).into()).await;
                }
                // Looped: the ring installed then is read after `since` (installs never go
                // back in time), whatever a maintenance refresh does meanwhile.
                _ => self.reread(db, now, &mut last).await?,
            }
        }
    }

    /// The ring to sign with. A retired key stays published for its grace on the promise that
    /// every replica re-reads the ring each maintenance period ([`retired_key_grace`] allows
    /// two). A ring older than that (maintenance stalled, or the ring no longer opens: a replica
    /// left on an old key-encryption key) is re-read first, and if that fails nothing is signed
    /// (503): its key may already be gone from the other replicas' JWKS and the edge's.
    pub async fn for_signing(
        self: &Arc<Self>,
        db: &Db,
        now: i64,
    ) -> Result<Arc<KeyState>, ApiError> {
        let max_age = max_ring_age(&self.config);
        let young = |state: &KeyState| now.saturating_sub(state.read_at_secs) <= max_age;
        let held = self.current();
        if young(&held) {
            return Ok(held);
        }
        // Callers that queue behind one re-read take the ring it installed.
        self.read_unless(db, now, Instant::now(), young).await
    }

    /// The ring for the JWKS, re-read when this replica's copy is over a second old. A CLI
    /// rotation or import makes its key active at once, and replicas refresh on their own
    /// schedule, up to `cleanup_interval_secs` apart: a replica that signs with the new key
    /// sends verifiers to a JWKS that any replica must already list it in, or they hold a set
    /// without it for their refetch cooldown. A re-read under way is waited for, a second at
    /// most (it is most likely one a token of the new key caused, and the edge asking now was
    /// sent by the same key); one that ended under a second ago, or one that fails, leaves the
    /// copy in hand.
    pub async fn for_publishing(self: &Arc<Self>, db: &Db, now: i64) -> Arc<KeyState> {
        let fresh = |state: &KeyState| state.read_at.elapsed() < REREAD_INTERVAL;
        let held = self.current();
        if fresh(&held) {
            return held;
        }
        let Ok(mut last) = tokio::time::timeout(REREAD_INTERVAL, self.last_reread.lock()).await
        else {
            return self.current();
        };
        let held = self.current();
        if fresh(&held) || last.is_some_and(|r| r.ended.elapsed() < REREAD_INTERVAL) {
            return held;
        }
        // Logged by `reread`; the copy in hand serves.
        let _ = self.reread(db, now, &mut last).await;
        self.current()
    }

    /// Re-reads the ring for a request, under the `last_reread` lock, and records it there.
    async fn reread(
        self: &Arc<Self>,
        db: &Db,
        now: i64,
        last: &mut Option<Reread>,
    ) -> Result<(), ApiError> {
        let ring = Arc::clone(self);
        let result = db.run(move |c| ring.reload(c, now)).await;
        *last = Some(Reread {
            ended: Instant::now(),
            ok: result.is_ok(),
        });
        result.map_err(|e| {
            tracing::warn!(error = %e, "the key ring could not be re-read");
            ApiError::unavailable(UNREADABLE)
        })
    }

    /// Re-reads the database: picks up a rotation done by the CLI or another replica, promotes
    /// a scheduled key when its time comes, and drops retired keys whose grace has ended.
    pub fn refresh(&self, conn: &mut DbConn, now: i64) -> Result<(), ApiError> {
        let state = build_state(conn, &self.config, &self.sealer, now, KeyFile::IfReadable)?;
        witness::record(conn, &self.sealer, now)?;
        self.install(state);
        Ok(())
    }

    /// Re-reads the ring for a request: what the database holds, and nothing more. Anyone can
    /// cause one (a JWKS fetch, a token of an unknown kid), up to once a second per replica,
    /// so it writes nothing for them: scheduling, promotion, the key file and the witness
    /// record are the maintenance refresh's ([`Self::refresh`], each period).
    fn reload(&self, conn: &mut DbConn, now: i64) -> Result<(), ApiError> {
        let state = build_state(conn, &self.config, &self.sealer, now, KeyFile::ReadOnly)?;
        self.install(state);
        Ok(())
    }

    /// Never back in time: a slow maintenance read that began before a request's re-read must
    /// not replace the ring that re-read installed (it may lack a rotated-in key).
    fn install(&self, state: KeyState) {
        if let Ok(mut slot) = self.state.write()
            && state.read_at >= slot.read_at
        {
            *slot = Arc::new(state);
        }
    }
}

/// How a read of the ring treats `signing_key_file` and writes. A replica's start requires the
/// file (a missing one is a startup error) and its refreshes import it if readable: it was
/// imported at start, and a file removed or made unreadable since must not stop this replica
/// from seeing rotations elsewhere. A command that only signs with the active key (`revocations
/// push`) changes no key: a shell's other key file or rotation settings must not change the ring;
/// nor does a request's re-read ([`KeyRing::reload`]). (Reading still does what every command's
/// does: in development, a missing data-directory secret is generated, and a key recorded
/// before keys lived in the database is sealed into its row.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyFile {
    Required,
    IfReadable,
    ReadOnly,
}

fn build_state(
    conn: &mut DbConn,
    config: &Config,
    sealer: &Sealer,
    now: i64,
    key_file: KeyFile,
) -> Result<KeyState, ApiError> {
    // Before the first read: a rotation committed after it may be missing from this state.
    let read_at = Instant::now();
    ensure_sealer_opens_ring(conn, sealer)?;
    if key_file == KeyFile::ReadOnly {
        let rows = store::records(conn)?;
        let record = store::signing(&rows).ok_or_else(|| {
            ApiError::Internal("no active signing key: start a replica first".into())
        })?;
        let signer = open_signer(conn, config, sealer, record)?;
        let grace = retired_key_grace(conn, config, now)?;
        return Ok(state_of(config, &rows, signer, grace, now, read_at));
    }
    if let Some(path) = &config.signing_key_file {
        match read_key_file(path).and_then(|key| import(conn, sealer, &key, now)) {
            Ok(_) => {}
            // Refused at start; a file replaced since must not freeze this replica's ring (it
            // would miss rotations elsewhere, and scheduled ones).
            Err(e) if key_file == KeyFile::IfReadable => {
                tracing::error!(error = %e, "GATEHOUSE_SIGNING_KEY_FILE not imported; the ring is refreshed without it");
            }
            Err(e) => return Err(e),
        }
    }
    store::schedule(
        conn,
        sealer,
        i64::from(config.key_rotation_days) * 86_400,
        // Checked only while rotation is on; off, it still bounds how long a key scheduled
        // elsewhere is left to be promoted, which no rotating replica does sooner than this.
        i64::from(
            config
                .key_publish_ahead_secs
                .max(crate::config::MIN_PUBLISH_AHEAD_SECS),
        ),
        max_ring_age(config),
        now,
    )?;
    let mut rows = store::records(conn)?;
    if store::signing(&rows).is_none() {
        // Replicas igniting on an empty ring race here; the first to activate wins.
        if let Some(key) = store::first_key(conn, sealer, now)? {
            tracing::info!(
                kid = key.kid(),
                "generated the first signing key (sealed in the database)"
            );
        }
        rows = store::records(conn)?;
    }
    if store::settle(conn, &rows, now)? {
        rows = store::records(conn)?;
    }
    let record =
        store::signing(&rows).ok_or_else(|| ApiError::Internal("no active signing key".into()))?;
    let signer = open_signer(conn, config, sealer, record)?;
    if key_file == KeyFile::Required {
        ensure_scheduled_key_opens(conn, config, sealer, &rows)?;
    }
    let grace = retired_key_grace(conn, config, now)?;
    Ok(state_of(config, &rows, signer, grace, now, read_at))
}

/// No claims but jwt-compact's times: when a token matures.
#[derive(serde::Deserialize)]
struct Times {}

/// How long a retired key stays published: while a token it signed can still be valid anywhere.
/// Other replicas sign with it until they re-read the ring (at most two maintenance periods,
/// [`KeyRing::for_signing`]); their
/// last tokens live the longest lifetime any replica announced (`store::lifetimes`: in a rolling
/// deploy, or after `access_token_ttl_secs` was lowered, that is not this replica's own), plus
/// the issuer's leeway. (Not the most any verifier may take, as revocation entries do: a key
/// gone early refuses an expired token a little sooner, where an entry gone early would let a
/// revoked one through.)
fn retired_key_grace(conn: &mut DbConn, config: &Config, now: i64) -> Result<i64, ApiError> {
    let own_ttl = i64::from(config.access_token_ttl_secs);
    let longest = crate::store::lifetimes::longest(conn, now, own_ttl)?;
    Ok(longest + i64::from(config.leeway_secs) + max_ring_age(config))
}

/// How old a ring may be and still sign: two maintenance periods, each of which re-reads it.
/// A retired key's grace counts on the same bound.
pub(crate) fn max_ring_age(config: &Config) -> i64 {
    2 * i64::from(config.cleanup_interval_secs.max(1))
}

/// The ring's state from its rows: `signer` signs, and the keys a verifier may meet are published.
fn state_of(
    config: &Config,
    rows: &[KeyRecord],
    signer: SigningKey,
    grace: i64,
    now: i64,
    read_at: Instant,
) -> KeyState {
    // Retired keys stay for their grace; the next key is published before it signs, so every
    // verifier holds it first.
    let keys_within = |grace: i64| {
        KeySet::new(
            rows.iter()
                .filter(|r| {
                    r.status == ACTIVE
                        || r.status == NEXT
                        || (r.status == RETIRED && r.retired_at.is_some_and(|t| t + grace > now))
                })
                .filter_map(|r| VerifyingJwk::from_json(&r.public_jwk).ok()),
        )
    };
    let published = keys_within(grace);
    // What revocation checks against keeps a retired key while any verifier may still take its
    // last tokens: the longest leeway on a clock behind, not this issuer's leeway (an edge keeps
    // a key set it fetched for minutes after the key left the JWKS). Without it, a revocation in
    // that window found the key unknown and answered 200 with nothing written.
    let for_any_verifier = grace.saturating_sub(i64::from(config.leeway_secs))
        + i64::from(VerifierOptions::MAX_LEEWAY_SECS)
        + i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS);
    let lenient_keys = keys_within(grace.max(for_any_verifier));
    let options = VerifierOptions {
        leeway_secs: config.leeway_secs,
        ..VerifierOptions::new(&config.issuer, &config.audience)
    };
    let lenient = VerifierOptions {
        leeway_secs: VerifierOptions::MAX_LEEWAY_SECS,
        ..options.clone()
    };
    KeyState {
        verifier: Verifier::new(published.clone(), options),
        lenient: Verifier::new(lenient_keys, lenient),
        jwks: published.to_json_naming(config.jws_alg),
        published,
        signer: signer.naming_ed25519(config.jws_alg),
        read_at,
        read_at_secs: now,
    }
}

/// The key ring, at ignite.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Signing keys", |rocket| async {
        let (Some(config), Some(db), Some(clock), Some(metrics)) = (
            rocket.state::<Config>(),
            rocket.state::<Db>(),
            rocket.state::<Arc<Clock>>(),
            rocket.state::<Arc<Metrics>>(),
        ) else {
            tracing::error!("keys stage needs config, database, clock and metrics");
            return Err(rocket);
        };
        metrics.capacity.key_ring_max_age.set(max_ring_age(config));
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
