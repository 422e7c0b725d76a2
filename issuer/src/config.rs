//! Typed configuration: defaults < optional `gatehouse.toml` < `GATEHOUSE_*` environment.

use std::path::PathBuf;

use gatehouse_shared::VerifierOptions;
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
    /// Worker sync endpoints that receive each new revocation snapshot.
    #[serde(deserialize_with = "list_or_csv")]
    pub edge_sync_urls: Vec<String>,
    pub password: PasswordConfig,
    pub lockout: LockoutConfig,
    /// Token-endpoint requests per minute per client IP (burst of the same size).
    pub token_rate_per_minute: u32,
    pub cleanup_interval_secs: u32,
    pub cleanup_batch: u32,
    /// How stale the bearer check's in-memory view of revocations and users may get, in ms:
    /// the bound on another replica's revocation reaching this one (this replica's own apply at
    /// once). 0 asks the database on every request.
    pub auth_cache_ms: u64,
    /// How far back the signed delta feed (`GET /v1/revocations/delta`, the edge's fast path)
    /// reaches. It must exceed how long the edge's base list can lag: KV's propagation delay
    /// (about 60 s) plus the edge's KV refresh interval.
    pub delta_window_secs: u32,
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
    /// Failed logins within `window_secs` that lock the account.
    pub threshold: u32,
    pub window_secs: u32,
    /// First lock duration; doubles with each further lock, up to `max_backoff_secs`.
    pub base_backoff_secs: u32,
    pub max_backoff_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Development,
            database_url: "sqlite://gatehouse.db".into(),
            db_pool_size: 8,
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
            edge_sync_urls: Vec::new(),
            password: PasswordConfig {
                m_cost: 19_456,
                t_cost: 2,
                p_cost: 1,
                workers: 0,
            },
            lockout: LockoutConfig {
                threshold: 5,
                window_secs: 900,
                base_backoff_secs: 60,
                max_backoff_secs: 3600,
            },
            token_rate_per_minute: 120,
            cleanup_interval_secs: 60,
            cleanup_batch: 1000,
            auth_cache_ms: 250,
            delta_window_secs: 900,
        }
    }
}

impl Config {
    /// Settings no profile can run with, each named.
    pub fn invalid_settings(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lockout.threshold == 0 {
            problems.push(
                "GATEHOUSE_LOCKOUT__THRESHOLD is 0: every login would be refused as locked out \
                 (at least 1)"
                    .to_owned(),
            );
        }
        if self.lockout.window_secs == 0 || self.lockout.base_backoff_secs == 0 {
            problems.push(
                "GATEHOUSE_LOCKOUT__WINDOW_SECS and GATEHOUSE_LOCKOUT__BASE_BACKOFF_SECS must be \
                 at least 1: with 0, failures are forgotten at once or a lock ends as it starts, \
                 and guessing is unlimited"
                    .to_owned(),
            );
        }
        if self.lockout.max_backoff_secs < self.lockout.base_backoff_secs {
            problems.push(format!(
                "GATEHOUSE_LOCKOUT__MAX_BACKOFF_SECS ({}) is below \
                 GATEHOUSE_LOCKOUT__BASE_BACKOFF_SECS ({}): the first lock would already exceed \
                 the longest",
                self.lockout.max_backoff_secs, self.lockout.base_backoff_secs
            ));
        }
        if self.access_token_ttl_secs == 0 || self.session_ttl_secs == 0 {
            problems.push(
                "GATEHOUSE_ACCESS_TOKEN_TTL_SECS and GATEHOUSE_SESSION_TTL_SECS must be at least \
                 1: with 0, every token would be issued already expired"
                    .to_owned(),
            );
        }
        if self.delta_window_secs < MIN_DELTA_WINDOW_SECS {
            problems.push(format!(
                "GATEHOUSE_DELTA_WINDOW_SECS is {}: the feed must reach back past an edge's \
                 base list, which may be {MIN_DELTA_WINDOW_SECS} s old (reloaded at 300 s, KV's \
                 delay of about 60 s, its 10 s refresh); a shorter one would stop the fast path \
                 there (at least {MIN_DELTA_WINDOW_SECS})",
                self.delta_window_secs
            ));
        }
        if self
            .user_scopes
            .split_whitespace()
            .any(|s| s == ADMIN_SCOPE)
        {
            problems.push(format!(
                "GATEHOUSE_USER_SCOPES lists `{ADMIN_SCOPE}`: every user could ask for it, and \
                 the edge's `ROUTE_SCOPES` trust the token's scope; `{ADMIN_SCOPE}` is granted \
                 only to admin users, without being listed"
            ));
        }
        let rotation_secs = u64::from(self.key_rotation_days) * 86_400;
        let ahead = self.key_publish_ahead_secs;
        if rotation_secs > 0
            && (ahead < MIN_PUBLISH_AHEAD_SECS || u64::from(ahead) >= rotation_secs)
        {
            problems.push(format!(
                "GATEHOUSE_KEY_PUBLISH_AHEAD_SECS is {ahead}: a scheduled key must be published \
                 at least {MIN_PUBLISH_AHEAD_SECS} s before it signs (the edge and \
                 @gatehouse/verify hold a key set that long), and less than the rotation period \
                 ({rotation_secs} s), or each promotion would schedule the next at once"
            ));
        }
        if self.leeway_secs > VerifierOptions::MAX_LEEWAY_SECS {
            problems.push(format!(
                "GATEHOUSE_LEEWAY_SECS is {}: revocation entries outlive their token's exp by \
                 {} s, so a longer leeway would take revoked tokens back (at most {})",
                self.leeway_secs,
                VerifierOptions::MAX_LEEWAY_SECS,
                VerifierOptions::MAX_LEEWAY_SECS
            ));
        }
        problems
    }

    /// Everything the server and every command refuse to run with, each naming its setting.
    pub fn refusals(&self) -> Vec<String> {
        let invalid = self.invalid_settings().into_iter();
        let in_production = self.production_problems().into_iter();
        invalid
            .map(|p| format!("configuration: {p}"))
            .chain(in_production.map(|p| format!("production profile: {p}")))
            .collect()
    }

    /// What production refuses, each naming the setting that fixes it. Empty in development.
    pub fn production_problems(&self) -> Vec<String> {
        if self.profile != Profile::Production {
            return Vec::new();
        }
        let mut problems = Vec::new();
        if self.key_encryption_key.is_none() {
            problems.push(
                "GATEHOUSE_KEY_ENCRYPTION_KEY is unset: signing keys would be sealed under a \
                 development secret generated on this machine (set 32 random bytes, base64, the \
                 same on every replica)"
                    .to_owned(),
            );
        }
        if self
            .signing_key_file
            .as_ref()
            .is_some_and(|p| p.starts_with(&self.data_dir))
        {
            problems.push(
                "GATEHOUSE_SIGNING_KEY_FILE points into the data directory, where development \
                 keys live: import the production key (`keys import FILE`) instead"
                    .to_owned(),
            );
        }
        if is_loopback_or_plain_http(&self.issuer) {
            problems.push(format!(
                "GATEHOUSE_ISSUER is {:?}: tokens would carry a local or plain-http issuer; set \
                 the public https URL clients and the edge use",
                self.issuer
            ));
        }
        if self.open_registration && !self.open_registration_in_production {
            problems.push(
                "GATEHOUSE_OPEN_REGISTRATION is on: anyone could make an account that passes the \
                 edge; turn it off, or set GATEHOUSE_OPEN_REGISTRATION_IN_PRODUCTION=true if \
                 that is meant"
                    .to_owned(),
            );
        }
        if self.database_url.starts_with("sqlite:") {
            problems.push(format!(
                "GATEHOUSE_DATABASE_URL is {:?}: SQLite is the single-process development \
                 store; production runs on PostgreSQL (replicas share it)",
                self.database_url
            ));
        }
        problems
    }
}

/// An issuer URL that only this machine, or nobody over TLS, can use.
fn is_loopback_or_plain_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return true;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    host.is_empty()
        || host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
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
        .merge(Env::prefixed("GATEHOUSE_").split("__"))
}

const DEFAULT_FILE: &str = "gatehouse.toml";

/// How old an edge's base list may be at the edge's defaults: reloaded once 300 s old, plus
/// KV's propagation delay (about 60 s) and the edge's 10 s KV refresh.
const MIN_DELTA_WINDOW_SECS: u32 = 370;

/// How long before it signs a scheduled key must be published: the edge's and the package's
/// default key-set TTL (`KEYS_TTL_SECS`, `ttlSeconds`).
const MIN_PUBLISH_AHEAD_SECS: u32 = 300;

/// The scope of the admin routes (and the edge's admin paths): granted only to admin users.
pub const ADMIN_SCOPE: &str = "admin";

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
        let refusals = config.refusals();
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
            assert_eq!(config.access_token_ttl_secs, 60);
            assert_eq!(config.edge_sync_urls, ["http://a/sync", "http://b/sync"]);
            assert_eq!(config.lockout.threshold, 3);
            assert_eq!(config.database_url, "sqlite://gatehouse.db");
            assert_eq!(config.profile, Profile::Development);
            assert!(
                !config.open_registration,
                "registration is closed by default"
            );
            Ok(())
        });
    }

    fn production() -> Config {
        Config {
            profile: Profile::Production,
            database_url: "postgres://gatehouse@db.internal/gatehouse".into(),
            issuer: "https://auth.example.com".into(),
            key_encryption_key: Some(Secret::new("k".repeat(43))),
            ..Config::default()
        }
    }

    #[test]
    fn a_lockout_threshold_of_zero_is_refused_by_name() {
        let mut config = Config::default();
        assert!(config.invalid_settings().is_empty());
        config.lockout.threshold = 0;
        let problems = config.invalid_settings();
        assert!(
            problems[0].contains("GATEHOUSE_LOCKOUT__THRESHOLD"),
            "{problems:?}"
        );
    }

    #[test]
    fn settings_that_switch_a_protection_off_are_refused_by_name() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 9] = [
            ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", |c| {
                c.access_token_ttl_secs = 0;
            }),
            ("GATEHOUSE_SESSION_TTL_SECS", |c| {
                c.session_ttl_secs = 0;
            }),
            ("GATEHOUSE_LOCKOUT__WINDOW_SECS", |c| {
                c.lockout.window_secs = 0;
            }),
            ("GATEHOUSE_LOCKOUT__BASE_BACKOFF_SECS", |c| {
                c.lockout.base_backoff_secs = 0;
            }),
            ("GATEHOUSE_LOCKOUT__MAX_BACKOFF_SECS", |c| {
                c.lockout.max_backoff_secs = c.lockout.base_backoff_secs - 1;
            }),
            ("GATEHOUSE_USER_SCOPES", |c| {
                c.user_scopes = "read admin write".into();
            }),
            ("GATEHOUSE_DELTA_WINDOW_SECS", |c| {
                c.delta_window_secs = MIN_DELTA_WINDOW_SECS - 1;
            }),
            ("GATEHOUSE_KEY_PUBLISH_AHEAD_SECS", |c| {
                c.key_publish_ahead_secs = MIN_PUBLISH_AHEAD_SECS - 1;
            }),
            ("GATEHOUSE_KEY_PUBLISH_AHEAD_SECS", |c| {
                c.key_rotation_days = 1;
                c.key_publish_ahead_secs = 86_400;
            }),
        ];
        for (name, change) in cases {
            let mut config = Config::default();
            change(&mut config);
            let problems = config.invalid_settings();
            assert!(
                problems.iter().any(|p| p.contains(name)),
                "{name}: {problems:?}"
            );
        }
        let config = Config {
            user_scopes: "read administer".into(),
            ..Config::default()
        };
        assert!(config.invalid_settings().is_empty());
    }

    #[test]
    fn a_leeway_past_the_revocation_entries_life_is_refused_by_name() {
        let mut config = Config {
            leeway_secs: VerifierOptions::MAX_LEEWAY_SECS,
            ..Config::default()
        };
        assert!(config.invalid_settings().is_empty());
        config.leeway_secs += 1;
        let problems = config.invalid_settings();
        assert!(
            problems[0].contains("GATEHOUSE_LEEWAY_SECS"),
            "{problems:?}"
        );
    }

    #[test]
    fn production_accepts_a_safe_configuration_and_development_anything() {
        assert_eq!(production().production_problems(), Vec::<String>::new());
        assert!(Config::default().production_problems().is_empty());
    }

    #[test]
    fn production_refuses_each_unsafe_setting_by_name() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 8] = [
            ("GATEHOUSE_KEY_ENCRYPTION_KEY", |c| {
                c.key_encryption_key = None;
            }),
            ("GATEHOUSE_ISSUER", |c| {
                c.issuer = "http://127.0.0.1:8000".into();
            }),
            ("GATEHOUSE_ISSUER", |c| {
                c.issuer = "https://localhost:8443/".into();
            }),
            ("GATEHOUSE_ISSUER", |c| {
                c.issuer = "https://[::1]/".into();
            }),
            ("GATEHOUSE_ISSUER", |c| {
                c.issuer = "http://auth.example.com".into();
            }),
            ("GATEHOUSE_OPEN_REGISTRATION", |c| {
                c.open_registration = true;
            }),
            ("GATEHOUSE_DATABASE_URL", |c| {
                c.database_url = "sqlite://gatehouse.db".into();
            }),
            ("GATEHOUSE_SIGNING_KEY_FILE", |c| {
                c.signing_key_file = Some(c.data_dir.join("keys/dev.jwk"));
            }),
        ];
        for (setting, unsafe_change) in cases {
            let mut config = production();
            unsafe_change(&mut config);
            let problems = config.production_problems();
            assert_eq!(problems.len(), 1, "{setting}: {problems:?}");
            assert!(problems[0].starts_with(setting), "{setting}: {problems:?}");
        }
        let mut opted_in = production();
        opted_in.open_registration = true;
        opted_in.open_registration_in_production = true;
        assert!(opted_in.production_problems().is_empty());
    }
}
