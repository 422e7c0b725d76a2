//! What the issuer refuses to run with: settings no profile can use, and development
//! conveniences the production profile refuses, each named by its setting.

use gatehouse_shared::VerifierOptions;

use super::{ADMIN_SCOPE, Config, Profile};
use crate::password::HashPolicy;

/// How old an edge's base list may be at the edge's defaults: reloaded once 300 s old, plus
/// KV's propagation delay (about 60 s) and the edge's 10 s KV refresh.
const MIN_DELTA_WINDOW_SECS: u32 = 370;

/// An hour: a wait longer than any client's, and within what PostgreSQL's `statement_timeout`
/// and SQLite's `busy_timeout` take (a 32-bit signed count of ms).
const MAX_DB_TIMEOUT_MS: u32 = 3_600_000;

/// The most rows one cleanup statement deletes: well under SQLite's default limit of bound
/// variables, and a short enough lock on PostgreSQL.
const MAX_CLEANUP_BATCH: u32 = 10_000;

/// How long before it signs a scheduled key must be published: the edge's and the package's
/// default key-set TTL (`KEYS_TTL_SECS`, `ttlSeconds`).
pub const MIN_PUBLISH_AHEAD_SECS: u32 = 300;

/// A minute: the longest the bearer check's view of revocations and users may lag another
/// replica's changes (a revoked token or a disabled user is honoured here that long).
const MAX_AUTH_CACHE_MS: u64 = 60_000;

/// A minute: the longest a rotated refresh token may be replayed for the same successor
/// without ending its session (reuse detection is off for that long).
pub const MAX_REFRESH_GRACE_SECS: u32 = 60;
/// Access tokens are short-lived bearer credentials (RFC 9068, the OAuth 2.0 security BCP):
/// every revocation entry and a retired key's place in the JWKS last as long as one.
const MAX_ACCESS_TOKEN_TTL_SECS: u32 = 86_400;

/// Five minutes: longer than any balancer needs to notice an unready replica, and a stop that
/// takes longer runs into the platform's own stop timeout (then SIGKILL, nothing drained).
const MAX_DRAIN_SECS: u32 = 300;

/// The edge's one sync route (`edge/src/lib.rs`): a push anywhere else lands on the origin,
/// whose 200 to a public path would count as delivered.
const EDGE_SYNC_PATH: &str = "/_gatehouse/sync";

/// Whether `path` is under `dir`, however either is written: relative or absolute, with `./`,
/// or through a symlink (when both exist).
fn is_within(path: &std::path::Path, dir: &std::path::Path) -> bool {
    let lexical = |p: &std::path::Path| std::path::absolute(p).ok();
    let resolved = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let under = |p: Option<std::path::PathBuf>, d: Option<std::path::PathBuf>| {
        p.zip(d).is_some_and(|(p, d)| p.starts_with(d))
    };
    path.starts_with(dir)
        || under(lexical(path), lexical(dir))
        || under(resolved(path), resolved(dir))
}

impl Config {
    /// `user_scopes` that every user could ask for: `admin`, or a name that is not a scope.
    fn user_scopes_problem(&self) -> Option<String> {
        let mut scopes = self.user_scopes.split_whitespace();
        if scopes.clone().any(|s| s == ADMIN_SCOPE) {
            return Some(format!(
                "GATEHOUSE_USER_SCOPES lists `{ADMIN_SCOPE}`: every user could ask for it, and \
                 the edge's `ROUTE_SCOPES` trust the token's scope; `{ADMIN_SCOPE}` is granted \
                 only to admin users, without being listed"
            ));
        }
        // Scopes are named in `WWW-Authenticate` as they are, and forwarded as a header value,
        // which the verifiers check the `scope` claim can be.
        let scope = scopes.find(|s| !gatehouse_shared::challenge::is_scope_token(s))?;
        Some(format!(
            "GATEHOUSE_USER_SCOPES lists {scope:?}, which is not a scope token (visible ASCII \
             but `\"` and `\\`, RFC 6750): no `ROUTE_SCOPES` rule can name it, and outside \
             ASCII every token carrying it is refused as `malformed`"
        ))
    }

    /// The identity every token carries, and how long protections may lag.
    fn bounds_problems(&self, problems: &mut Vec<String>) {
        if self.issuer.trim().is_empty() || self.audience.trim().is_empty() {
            problems.push(
                "GATEHOUSE_ISSUER and GATEHOUSE_AUDIENCE must not be empty: tokens would carry an \
                 empty `iss` or `aud`, which no edge can expect (a blank EXPECTED_ISSUER or \
                 EXPECTED_AUDIENCE is refused)"
                    .to_owned(),
            );
        }
        if !self.issuer.trim().is_empty() && !is_issuer_url(&self.issuer) {
            problems.push(format!(
                "GATEHOUSE_ISSUER is {:?}: an issuer is an http(s) URL without a query or a \
                 fragment (RFC 8414 §2), the `iss` of every token and the base of its metadata",
                self.issuer
            ));
        }
        if self.auth_cache_ms > MAX_AUTH_CACHE_MS {
            problems.push(format!(
                "GATEHOUSE_AUTH_CACHE_MS is {}: this replica would honour another's revocation \
                 or a disabled user that much later (at most {MAX_AUTH_CACHE_MS}; {} by \
                 default)",
                self.auth_cache_ms,
                Config::default().auth_cache_ms
            ));
        }
        if self.drain_secs > MAX_DRAIN_SECS {
            problems.push(format!(
                "GATEHOUSE_DRAIN_SECS is {}: a stop would wait that long before it begins, past \
                 any platform's stop timeout (at most {MAX_DRAIN_SECS}; {} by default)",
                self.drain_secs,
                Config::default().drain_secs
            ));
        }
        if self.access_token_ttl_secs > MAX_ACCESS_TOKEN_TTL_SECS.min(self.session_ttl_secs) {
            problems.push(format!(
                "GATEHOUSE_ACCESS_TOKEN_TTL_SECS is {}: no token outlives its session ({} s), \
                 yet every revocation entry and a retired key would be kept that long, and the \
                 revocation list the edges take would grow with it (at most a day and at most \
                 GATEHOUSE_SESSION_TTL_SECS; {} by default)",
                self.access_token_ttl_secs,
                self.session_ttl_secs,
                Config::default().access_token_ttl_secs
            ));
        }
        if self.refresh_grace_secs > MAX_REFRESH_GRACE_SECS {
            problems.push(format!(
                "GATEHOUSE_REFRESH_GRACE_SECS is {}: a stolen refresh token could be replayed \
                 that long after its rotation without ending the session (at most \
                 {MAX_REFRESH_GRACE_SECS}; {} by default)",
                self.refresh_grace_secs,
                Config::default().refresh_grace_secs
            ));
        }
    }

    /// Each `edge_sync_urls` entry must be an edge's sync route, without credentials: the edge
    /// reads none from the URL, and the issuer logs its push URLs. Messages show the URL with
    /// any credentials masked.
    fn edge_sync_url_problems(&self, problems: &mut Vec<String>) {
        for url in &self.edge_sync_urls {
            let shown = crate::db::redact(url);
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            match parsed {
                None => problems.push(format!(
                    "GATEHOUSE_EDGE_SYNC_URLS entry {shown:?} is not an http:// or https:// URL \
                     with a host: every revocation push to it would fail"
                )),
                Some(u) if !u.username().is_empty() || u.password().is_some() => {
                    problems.push(format!(
                        "GATEHOUSE_EDGE_SYNC_URLS entry {shown:?} carries credentials, which the \
                         edge does not read and the issuer would log: remove them"
                    ));
                }
                Some(u) if u.path() != EDGE_SYNC_PATH => problems.push(format!(
                    "GATEHOUSE_EDGE_SYNC_URLS entry {shown:?} is not the edge's {EDGE_SYNC_PATH}: \
                     pushes would go to the origin, where a 200 counts as delivered"
                )),
                Some(_) => {}
            }
        }
    }

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
        if self.lockout.account_threshold() < self.lockout.threshold {
            problems.push(format!(
                "GATEHOUSE_LOCKOUT__ACCOUNT_THRESHOLD ({}) is below GATEHOUSE_LOCKOUT__THRESHOLD \
                 ({}): the account would lock before any one client, and anyone could lock out \
                 its owner",
                self.lockout.account_threshold(),
                self.lockout.threshold
            ));
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
        if !(1..=MAX_DB_TIMEOUT_MS).contains(&self.db_timeout_ms) {
            problems.push(format!(
                "GATEHOUSE_DB_TIMEOUT_MS is {}: with 0 every call to the database would time out \
                 at once, and a request waiting longer than an hour is not served (1 to \
                 {MAX_DB_TIMEOUT_MS}; {} by default)",
                self.db_timeout_ms,
                Config::default().db_timeout_ms
            ));
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
        self.bounds_problems(&mut problems);
        problems.extend(self.user_scopes_problem());
        if let Some(problem) = HashPolicy::from_config(&self.password).problem() {
            problems.push(problem);
        }
        self.edge_sync_url_problems(&mut problems);
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
        problems.extend(self.cleanup_problems());
        if self.leeway_secs > VerifierOptions::MAX_LEEWAY_SECS {
            problems.push(format!(
                "GATEHOUSE_LEEWAY_SECS is {}: revocation entries cover a leeway of at most {} s, \
                 so a longer one would take revoked tokens back",
                self.leeway_secs,
                VerifierOptions::MAX_LEEWAY_SECS
            ));
        }
        problems
    }

    /// The cleanup's period and batch: at least 1 (0 is "off" for several settings; here it
    /// was read as 1, every second), and a batch SQLite can bind.
    fn cleanup_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value, why) in [
            (
                "GATEHOUSE_CLEANUP_INTERVAL_SECS",
                self.cleanup_interval_secs,
                "cleanup and the key ring's refresh cannot be turned off",
            ),
            (
                "GATEHOUSE_CLEANUP_BATCH",
                self.cleanup_batch,
                "cleanup cannot be turned off",
            ),
        ] {
            if value == 0 {
                problems.push(format!("{name} is 0: at least 1; {why}"));
            }
        }
        if self.cleanup_batch > MAX_CLEANUP_BATCH {
            problems.push(format!(
                "GATEHOUSE_CLEANUP_BATCH is {}: at most {MAX_CLEANUP_BATCH}; SQLite binds a \
                 batch's ids one per variable (32,766 at most by default), and a larger batch \
                 would fail every cleanup",
                self.cleanup_batch
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
            .is_some_and(|p| is_within(p, &self.data_dir))
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

/// An absolute `http` or `https` URL with a host and neither query nor fragment.
fn is_issuer_url(url: &str) -> bool {
    rocket::http::uri::Absolute::parse(url).is_ok_and(|uri| {
        matches!(uri.scheme(), "http" | "https")
            && uri.authority().is_some_and(|a| !a.host().is_empty())
            && uri.query().is_none()
    })
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

#[cfg(test)]
mod tests;
