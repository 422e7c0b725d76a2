//! The configuration checks, setting by setting.

use super::*;
use crate::config::Secret;
use std::path::Path;

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

/// Unset, the account's threshold is ten times the client's, so a deployment that raised
/// `threshold` before the account's existed still starts.
#[test]
fn the_account_threshold_follows_the_client_threshold_unless_set() {
    let mut config = Config::default();
    assert_eq!(config.lockout.account_threshold(), 50);
    config.lockout.threshold = 60;
    assert_eq!(config.lockout.account_threshold(), 600);
    assert!(config.invalid_settings().is_empty());
    config.lockout.account_threshold = Some(60);
    assert_eq!(config.lockout.account_threshold(), 60);
    assert!(config.invalid_settings().is_empty());
}

#[test]
#[allow(clippy::too_many_lines)] // one case per setting
fn settings_that_switch_a_protection_off_are_refused_by_name() {
    type Change = fn(&mut Config);
    let cases: [(&str, Change); 31] = [
        ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", |c| {
            c.access_token_ttl_secs = 0;
        }),
        ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", |c| {
            c.session_ttl_secs = 3600;
            c.access_token_ttl_secs = 3601;
        }),
        ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", |c| {
            c.session_ttl_secs = 2 * MAX_ACCESS_TOKEN_TTL_SECS;
            c.access_token_ttl_secs = MAX_ACCESS_TOKEN_TTL_SECS + 1;
        }),
        ("GATEHOUSE_SESSION_TTL_SECS", |c| {
            c.session_ttl_secs = 0;
        }),
        ("GATEHOUSE_LOCKOUT__ACCOUNT_THRESHOLD", |c| {
            c.lockout.account_threshold = Some(c.lockout.threshold - 1);
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
        ("GATEHOUSE_USER_SCOPES", |c| {
            c.user_scopes = "read \u{e9}crire".into();
        }),
        ("GATEHOUSE_USER_SCOPES", |c| {
            c.user_scopes = "read \"write\"".into();
        }),
        ("GATEHOUSE_DB_TIMEOUT_MS", |c| {
            c.db_timeout_ms = 0;
        }),
        ("GATEHOUSE_DB_TIMEOUT_MS", |c| {
            c.db_timeout_ms = MAX_DB_TIMEOUT_MS + 1;
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
        // `users create` hashes with these too, before any server starts.
        ("GATEHOUSE_PASSWORD__M_COST", |c| {
            c.password.m_cost = (1 << 20) + 1;
        }),
        ("GATEHOUSE_PASSWORD__M_COST, __T_COST, __P_COST", |c| {
            c.password.t_cost = 0;
        }),
        ("GATEHOUSE_EDGE_SYNC_URLS", |c| {
            c.edge_sync_urls = vec![
                "https://edge.example/_gatehouse/sync".into(),
                "edge.example/_gatehouse/sync".into(),
            ];
        }),
        ("GATEHOUSE_EDGE_SYNC_URLS", |c| {
            c.edge_sync_urls = vec!["ftp://edge.example/sync".into()];
        }),
        ("GATEHOUSE_EDGE_SYNC_URLS", |c| {
            c.edge_sync_urls = vec!["https://:hunter2@edge.example/_gatehouse/sync".into()];
        }),
        ("GATEHOUSE_EDGE_SYNC_URLS", |c| {
            c.edge_sync_urls = vec!["ftp://u:hunter2@edge.example/sync".into()];
        }),
        // The origin's path: a public one answers 200, counted as delivered.
        ("GATEHOUSE_EDGE_SYNC_URLS", |c| {
            c.edge_sync_urls = vec!["https://edge.example/".into()];
        }),
        ("GATEHOUSE_AUDIENCE", |c| {
            c.audience = " ".into();
        }),
        ("GATEHOUSE_ISSUER", |c| {
            c.issuer = String::new();
        }),
        ("GATEHOUSE_ISSUER", |c| {
            c.issuer = "https://auth.example.com/?tenant=1".into();
        }),
        ("GATEHOUSE_ISSUER", |c| {
            c.issuer = "https://auth.example.com/#x".into();
        }),
        ("GATEHOUSE_ISSUER", |c| {
            c.issuer = "auth.example.com".into();
        }),
        ("GATEHOUSE_AUTH_CACHE_MS", |c| {
            c.auth_cache_ms = MAX_AUTH_CACHE_MS + 1;
        }),
        ("GATEHOUSE_REFRESH_GRACE_SECS", |c| {
            c.refresh_grace_secs = MAX_REFRESH_GRACE_SECS + 1;
        }),
        ("GATEHOUSE_DRAIN_SECS", |c| {
            c.drain_secs = MAX_DRAIN_SECS + 1;
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
        assert!(
            problems.iter().all(|p| !p.contains("hunter2")),
            "a password is repeated: {problems:?}"
        );
    }
    let config = Config {
        user_scopes: "read administer orders:write".into(),
        edge_sync_urls: vec![
            "https://edge.example/_gatehouse/sync".into(),
            "http://127.0.0.1:8787/_gatehouse/sync".into(),
        ],
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
fn a_cleanup_batch_sqlite_cannot_bind_is_refused_by_name() {
    let mut config = Config {
        cleanup_batch: MAX_CLEANUP_BATCH,
        ..Config::default()
    };
    assert!(config.invalid_settings().is_empty());
    config.cleanup_batch = 40_000;
    let problems = config.invalid_settings();
    assert!(
        problems[0].contains("GATEHOUSE_CLEANUP_BATCH"),
        "{problems:?}"
    );
}

/// 0 turns several settings off; for these two it was read as 1 without a word, a cleanup (and
/// key-ring refresh) every second.
#[test]
fn a_cleanup_interval_or_batch_of_zero_is_refused_by_name() {
    for (name, interval, batch) in [
        ("GATEHOUSE_CLEANUP_INTERVAL_SECS", 0, 1000),
        ("GATEHOUSE_CLEANUP_BATCH", 60, 0),
    ] {
        let config = Config {
            cleanup_interval_secs: interval,
            cleanup_batch: batch,
            ..Config::default()
        };
        let problems = config.invalid_settings();
        assert!(
            problems.len() == 1 && problems[0].contains(name),
            "{problems:?}"
        );
    }
}

#[test]
fn production_accepts_a_safe_configuration_and_development_anything() {
    assert_eq!(production().production_problems(), Vec::<String>::new());
    assert!(Config::default().production_problems().is_empty());
}

#[test]
fn production_refuses_each_unsafe_setting_by_name() {
    type Change = fn(&mut Config);
    let cases: [(&str, Change); 10] = [
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
        // The same place, written otherwise.
        ("GATEHOUSE_SIGNING_KEY_FILE", |c| {
            c.signing_key_file = Some(Path::new(".").join(&c.data_dir).join("k.jwk"));
        }),
        ("GATEHOUSE_SIGNING_KEY_FILE", |c| {
            let cwd = std::env::current_dir().unwrap_or_default();
            c.signing_key_file = Some(cwd.join(&c.data_dir).join("k.jwk"));
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
