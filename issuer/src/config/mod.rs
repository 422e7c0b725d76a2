//! Typed configuration: defaults < optional `gatehouse.toml` < `GATEHOUSE_*` environment.

mod checks;
mod unknown;

pub use checks::{MAX_REFRESH_GRACE_SECS, MIN_PUBLISH_AHEAD_SECS};
pub use unknown::unknown_setting_refusals;

use std::path::PathBuf;

use gatehouse_shared::Ed25519Name;
use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

/// `development` (the default: zero configuration works, and says so) or `production` (the
/// issuer refuses to start with a development convenience, naming the setting to change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

/// Every setting of the issuer. Field names are the config keys (`GATEHOUSE_<UPPER_NAME>`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    /// `GATEHOUSE_PROFILE`.
    pub profile: Profile,
    /// `postgres://…` or `sqlite://path`.
    pub database_url: String,
    pub db_pool_size: u32,
    /// How long a wait on the database may last, in ms: for a connection (a free one or a new
    /// one, together), and for each statement (PostgreSQL's `statement_timeout`, SQLite's
    /// `busy_timeout`). A call that runs out is answered 503, its transaction rolled back.
    /// PostgreSQL migrations are not bounded: a replica waits for another's.
    pub db_timeout_ms: u32,
    /// `iss` of every token, and the base of the URLs in the metadata document.
    pub issuer: String,
    /// `aud` of every access token.
    pub audience: String,
    pub access_token_ttl_secs: u32,
    /// Absolute session lifetime; refresh rotation never extends it.
    pub session_ttl_secs: u32,
    /// How long a rotated refresh token may be retried for the same successor.
    pub refresh_grace_secs: u32,
    /// Clock leeway of the issuer's own checks; at most `VerifierOptions::MAX_LEEWAY_SECS`.
    pub leeway_secs: u32,
    /// Self-service `POST /v1/users`. Closed by default; the dev run command opens it.
    pub open_registration: bool,
    /// Production refuses open registration unless this says it is meant: anyone on the
    /// internet could then make an account with `user_scopes`, which the edge lets through.
    pub open_registration_in_production: bool,
    /// Scopes every user may request; admins may also request `admin`.
    pub user_scopes: String,
    /// Where a development run keeps what it generates (the key-encryption key).
    pub data_dir: PathBuf,
    /// Seals the private signing keys stored in the database: 32 random bytes, base64. Every
    /// replica sets the same one. Without it a development run generates one in `data_dir`.
    pub key_encryption_key: Option<Secret>,
    /// Earlier key-encryption keys, comma-separated: they open signing keys sealed before the
    /// secret was rotated, and never seal one (`keys reseal` moves every key to the current one).
    pub key_encryption_key_fallbacks: Option<Secret>,
    /// An existing private JWK to import at start: stored sealed and made active the first time
    /// its kid is seen, never again (replicas and restarts with the same file change nothing).
    pub signing_key_file: Option<PathBuf>,
    /// Scheduled rotation: a new key every this many days (0: only `keys rotate`).
    pub key_rotation_days: u32,
    /// How long the next key is published before it signs, so that every verifier has fetched
    /// it first (the edge holds a key set for `KEYS_TTL_SECS`, 300 by default).
    pub key_publish_ahead_secs: u32,
    /// The `alg` the issuer's Ed25519 keys sign under and are published with: `EdDSA` (RFC 8037,
    /// the default) or `Ed25519` (RFC 9864's fully specified name).
    pub jws_alg: Ed25519Name,
    /// Worker sync endpoints that receive each new revocation snapshot.
    #[serde(deserialize_with = "list_or_csv")]
    pub edge_sync_urls: Vec<String>,
    pub password: PasswordConfig,
    pub lockout: LockoutConfig,
    /// Token-endpoint requests per minute per client IP (burst of the same size).
    pub token_rate_per_minute: u32,
    /// Failed password checks per minute per client IP (burst of the same size); 0 turns it off.
    pub failed_logins_per_minute: u32,
    pub cleanup_interval_secs: u32,
    pub cleanup_batch: u32,
    /// Audit rows older than this many days are deleted by the cleanup; 0 keeps every row.
    pub audit_retention_days: u32,
    /// How stale the bearer check's in-memory view of revocations and users may get, in ms:
    /// the bound on another replica's revocation reaching this one (this replica's own apply at
    /// once). 0 asks the database on every request.
    pub auth_cache_ms: u64,
    /// How far back the signed delta feed (`GET /v1/revocations/delta`, the edge's fast path)
    /// reaches. It must exceed how long the edge's base list can lag: KV's propagation delay
    /// (about 60 s) plus the edge's KV refresh interval.
    pub delta_window_secs: u32,
    /// On SIGTERM, how long readiness answers 503 while requests are still served, so that a
    /// balancer stops sending new ones before the replica stops (`drain`).
    pub drain_secs: u32,
}

/// A setting that must never reach a log: `Debug` prints a placeholder.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct PasswordConfig {
    /// argon2id memory in KiB (OWASP: 19456).
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hashing threads; 0 means one per core.
    pub workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct LockoutConfig {
    /// Failed logins from one client within `window_secs` that lock it out of the account.
    pub threshold: u32,
    /// Failed logins from all clients not known to the account (`store::lockout`) within
    /// `window_secs` that lock the account for every such client; unset, ten times
    /// `threshold` ([`Self::account_threshold`]).
    pub account_threshold: Option<u32>,
    pub window_secs: u32,
    /// First lock duration; doubles with each further lock, up to `max_backoff_secs`.
    pub base_backoff_secs: u32,
    pub max_backoff_secs: u32,
}

impl LockoutConfig {
    /// The account's threshold: as set, or ten times the client's (50 at the default 5), so a
    /// deployment that raised `threshold` before the account's existed keeps starting.
    pub fn account_threshold(&self) -> u32 {
        self.account_threshold
            .unwrap_or_else(|| self.threshold.saturating_mul(10))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Development,
            database_url: "sqlite://gatehouse.db".into(),
            db_pool_size: 8,
            db_timeout_ms: 5_000,
            issuer: "http://127.0.0.1:8000".into(),
            audience: "gatehouse".into(),
            access_token_ttl_secs: 900,
            session_ttl_secs: 7 * 24 * 3600,
            refresh_grace_secs: 5,
            leeway_secs: 30,
            open_registration: false,
            open_registration_in_production: false,
            user_scopes: "read write".into(),
            data_dir: PathBuf::from(".gatehouse"),
            key_encryption_key: None,
            key_encryption_key_fallbacks: None,
            signing_key_file: None,
            key_rotation_days: 90,
            key_publish_ahead_secs: 3600,
            jws_alg: Ed25519Name::EdDsa,
            edge_sync_urls: Vec::new(),
            password: PasswordConfig {
                m_cost: 19_456,
                t_cost: 2,
                p_cost: 1,
                workers: 0,
            },
            lockout: LockoutConfig {
                threshold: 5,
                account_threshold: None,
                window_secs: 900,
                base_backoff_secs: 60,
                max_backoff_secs: 3600,
            },
            token_rate_per_minute: 120,
            failed_logins_per_minute: 10,
            cleanup_interval_secs: 60,
            cleanup_batch: 1000,
            audit_retention_days: 0,
            auth_cache_ms: 250,
            delta_window_secs: 900,
            drain_secs: 5,
        }
    }
}

/// Accepts `["a","b"]` from TOML and `a,b` from the environment.
fn list_or_csv<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(deserializer)? {
        ListOrCsv::List(v) => v,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The figment Rocket and the issuer read: Rocket's own settings (`port`, `address`, …) come
/// from the same `GATEHOUSE_*` variables, so `GATEHOUSE_PORT=9000` just works.
///
/// A file named by `GATEHOUSE_CONFIG` must exist (a mount that failed must not start the issuer
/// on defaults, in the development profile); `gatehouse.toml` is read from the working
/// directory only, if it is there (figment's `Toml::file` would also search its parents).
pub fn figment() -> Figment {
    let file = match Env::var("GATEHOUSE_CONFIG") {
        Some(named) => Toml::file_exact(named),
        None if std::path::Path::new(DEFAULT_FILE).is_file() => Toml::file_exact(DEFAULT_FILE),
        None => Toml::string(""),
    };
    defaults()
        .merge(file)
        .merge(Env::prefixed(PREFIX).split("__"))
}

/// The environment variables' prefix.
const PREFIX: &str = "GATEHOUSE_";

const DEFAULT_FILE: &str = "gatehouse.toml";

/// The scope of the admin routes (and the edge's admin paths): granted only to admin users.
pub const ADMIN_SCOPE: &str = "admin";

impl Config {
    /// A session's scopes that `user_scopes` still grants: one withdrawn since the login leaves
    /// its sessions at their next refresh, not when they end. `admin` stays with a session
    /// that holds it, since only an admin's login is granted it and an account's admin
    /// standing never changes.
    pub fn still_granted(&self, session_scope: &str) -> String {
        let policy: Vec<&str> = self.user_scopes.split_whitespace().collect();
        let kept: Vec<&str> = session_scope
            .split_whitespace()
            .filter(|s| policy.contains(s) || *s == ADMIN_SCOPE)
            .collect();
        kept.join(" ")
    }
}

/// Built-in defaults only (no file, no environment): the base of [`figment`] and of tests.
pub fn defaults() -> Figment {
    // Everything in the default profile, so the environment overrides it all.
    Figment::new()
        .merge(Serialized::defaults(rocket::Config::default()))
        .merge(Serialized::defaults(Config::default()))
        .merge(Serialized::default("port", 8000))
        .merge(Serialized::default("address", "127.0.0.1"))
        // Behind a proxy set `ip_header`; by default no client-supplied header picks the IP.
        .merge(Serialized::default("ip_header", false))
        .merge(Serialized::default("cli_colors", false))
        // `serve` handles SIGTERM itself, draining first (`drain`); Rocket still stops on
        // Ctrl-C (`shutdown.ctrlc`).
        .merge(Serialized::default(
            "shutdown.signals",
            Vec::<String>::new(),
        ))
}

/// Extracts and manages [`Config`]; in production, refuses to ignite on an unsafe setting and
/// names each one.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Configuration", |rocket| async {
        let config: Config = match rocket.figment().extract() {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("configuration: {e}");
                return Err(rocket);
            }
        };
        if config.profile == Profile::Development {
            tracing::warn!(
                "DEVELOPMENT profile: development conveniences are allowed; set \
                 GATEHOUSE_PROFILE=production to refuse them"
            );
        }
        let mut refusals = config.refusals();
        refusals.extend(unknown_setting_refusals(rocket.figment()));
        if refusals.is_empty() {
            return Ok(rocket.manage(config));
        }
        for problem in &refusals {
            tracing::error!("{problem}");
        }
        Err(rocket)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail returns its own error type
    fn a_named_config_file_must_exist_and_parents_are_not_searched() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEHOUSE_CONFIG", "/nonexistent/gatehouse.toml");
            let err = figment().extract::<Config>().unwrap_err().to_string();
            assert!(err.contains("/nonexistent/gatehouse.toml"), "{err}");
            jail.clear_env();
            // A gatehouse.toml in a parent of the working directory is not read.
            jail.create_file(DEFAULT_FILE, "access_token_ttl_secs = 61")?;
            let below = jail.directory().join("below");
            std::fs::create_dir(&below).map_err(|e| e.to_string())?;
            jail.change_dir(&below)?;
            let config: Config = figment().extract()?;
            assert_eq!(
                config.access_token_ttl_secs,
                Config::default().access_token_ttl_secs
            );
            jail.change_dir(jail.directory())?;
            let config: Config = figment().extract()?;
            assert_eq!(config.access_token_ttl_secs, 61);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail returns its own error type
    fn environment_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEHOUSE_PORT", "9123");
            jail.set_env("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", "60");
            jail.set_env("GATEHOUSE_EDGE_SYNC_URLS", "http://a/sync, http://b/sync");
            jail.set_env("GATEHOUSE_LOCKOUT__THRESHOLD", "3");
            let figment = figment();
            let config: Config = figment.extract()?;
            let rocket_config: rocket::Config = figment.extract()?;
            assert_eq!(rocket_config.port, 9123);
            // SIGTERM is `serve`'s to drain on; Rocket keeps Ctrl-C.
            assert!(rocket_config.shutdown.signals.is_empty());
            assert!(rocket_config.shutdown.ctrlc);
            assert_eq!(config.access_token_ttl_secs, 60);
            assert_eq!(config.edge_sync_urls, ["http://a/sync", "http://b/sync"]);
            assert_eq!(config.lockout.threshold, 3);
            assert_eq!(config.jws_alg, Ed25519Name::EdDsa);
            assert_eq!(config.database_url, "sqlite://gatehouse.db");
            assert_eq!(config.profile, Profile::Development);
            assert!(
                !config.open_registration,
                "registration is closed by default"
            );
            Ok(())
        });
    }

    /// RFC 9864's name as written; anything else (the wrong case too) stops the start, naming
    /// the setting, rather than signing under a name no verifier was told of.
    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail returns its own error type
    fn jws_alg_takes_the_two_names_exactly() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEHOUSE_JWS_ALG", "Ed25519");
            assert_eq!(figment().extract::<Config>()?.jws_alg, Ed25519Name::Ed25519);
            jail.set_env("GATEHOUSE_JWS_ALG", "EdDSA");
            assert_eq!(figment().extract::<Config>()?.jws_alg, Ed25519Name::EdDsa);
            jail.set_env("GATEHOUSE_JWS_ALG", "ed25519");
            let err = figment().extract::<Config>().unwrap_err().to_string();
            assert!(
                err.contains("JWS_ALG") && err.contains("`ed25519`"),
                "{err}"
            );
            Ok(())
        });
    }
}
