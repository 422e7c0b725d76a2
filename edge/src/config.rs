//! The worker's configuration, read once per isolate from `[vars]`. Every problem found is kept
//! and reported by `/_gatehouse/health`, so a misconfigured worker says what is wrong.

use gatehouse_shared::{KeySet, VerifierOptions};
use worker::Env;

use crate::path;

/// What happens to protected requests when the revocation list is missing or too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// Refuse with 503 (the default: a revoked token must never pass).
    FailClosed,
    /// Verify tokens without the list (availability over revocation freshness).
    FailOpen,
}

#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent on/off settings, each read on its own
pub struct Config {
    pub origin_url: String,
    pub issuer_url: String,
    pub verifier: VerifierOptions,
    /// Pinned keys (`JWKS` var); `None` means fetch them from the issuer.
    pub pinned_keys: Option<KeySet>,
    /// Exact paths, or prefixes when they end in `*`.
    pub public_paths: Vec<String>,
    /// `(prefix, scope)`, longest prefix first. `None` when a rule could not be read: the
    /// worker then refuses protected requests (fail closed) rather than guard that rule's paths
    /// with a shorter one.
    pub route_scopes: Option<Vec<(String, String)>>,
    pub token_cookie: Option<String>,
    pub realm: String,
    pub kv_refresh_ms: f64,
    /// KV's copy is rewritten when unchanged only after this long (KV writes are metered).
    pub kv_heartbeat_secs: i64,
    /// The signed delta feed (the fast path); polled every `delta_poll_ms`, 0 turns it off.
    pub delta_url: String,
    pub delta_poll_ms: f64,
    /// How long a fetched key set is held before it is refreshed.
    pub keys_ttl_ms: f64,
    /// Ed25519 in the wasm (`ED25519_VERIFY = "wasm"`) instead of the runtime's WebCrypto.
    pub ed25519_in_wasm: bool,
    /// `SERVER_TIMING = "on"`: forwarded responses carry the verification time. Off by default:
    /// it tells clients how long the gate took, and adding a header to a fetched response means
    /// rebuilding it, which costs every forwarded request.
    pub server_timing: bool,
    /// `CORS_PREFLIGHT = "forward"`: a CORS preflight goes to the origin without a token (and
    /// without body or credentials). Off by default, as in oauth2-proxy and Envoy: an origin
    /// handler that ignores the method would run for anyone's `OPTIONS`.
    pub forward_preflights: bool,
    /// `TEST_CRASH_ROUTE = "on"`: `POST /_gatehouse/crash` panics, so tests can show that the
    /// wasm module is reset after a trap (the `worker` crate's abort hook and wasm-bindgen's
    /// reset function, not the entry module). Never set in production
    /// (`tests/e2e/deploy_config.rs` checks).
    pub crash_route: bool,
    /// Verified tokens remembered per isolate (0: verify every request's signature).
    pub verified_cache_size: usize,
    pub max_list_age_secs: i64,
    pub stale_policy: StalePolicy,
    pub jwks_refetch_cooldown_ms: f64,
    pub problems: Vec<String>,
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// A rule's path in the canonical form requests are matched in (`crate::path`), its trailing
/// `*` kept: `/api/%61dmin/*` is `/api/admin/*`, `//x` is `/x`. `None` for a path no request
/// can have (an escaped slash, a `;`, a dot segment, no leading `/`).
fn canonical_rule_path(raw: &str) -> Option<String> {
    let (path, star) = match raw.strip_suffix('*') {
        Some(path) => (path, "*"),
        None => (raw, ""),
    };
    if !path.starts_with('/') {
        return None;
    }
    path::canonical(path).ok().map(|p| p + star)
}

/// `ROUTE_SCOPES`: `/prefix*=scope` rules, longest prefix first. `Err` names every rule that
/// cannot be honoured: dropping one would let its paths fall to a shorter, weaker rule.
fn route_scopes(raw: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut broken = Vec::new();
    for rule in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let parsed = rule.split_once('=').and_then(|(prefix, scope)| {
            let scope = scope.trim();
            let prefix = canonical_rule_path(prefix.trim())?;
            (!scope.is_empty()).then(|| (prefix.trim_end_matches('*').to_owned(), scope.to_owned()))
        });
        match parsed {
            Some(rule) => rules.push(rule),
            None => broken.push(format!(
                "ROUTE_SCOPES rule {rule:?} is not /prefix=scope with a path a request can have; \
                 protected requests are refused until it is fixed"
            )),
        }
    }
    if !broken.is_empty() {
        return Err(broken);
    }
    rules.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    Ok(rules)
}

/// `PUBLIC_PATHS`: exact paths or `*` prefixes, in canonical form. An entry no request can match
/// is reported and left out: it could only have asked for less than a token.
fn public_paths(raw: &str, problems: &mut Vec<String>) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|entry| {
            let canonical = canonical_rule_path(entry);
            if canonical.is_none() {
                problems.push(format!(
                    "PUBLIC_PATHS entry {entry:?} is not a path a request can have; ignored"
                ));
            }
            canonical
        })
        .collect()
}

/// A two-valued setting: `false` for the first (the default), `true` for the second.
fn switch(env: &Env, name: &str, (off, on): (&str, &str), problems: &mut Vec<String>) -> bool {
    match var(env, name) {
        None => false,
        Some(v) if v == off => false,
        Some(v) if v == on => true,
        Some(other) => {
            problems.push(format!(
                "{name}={other:?} is neither {off} nor {on}; using {off}"
            ));
            false
        }
    }
}

fn number(env: &Env, name: &str, default: u32, problems: &mut Vec<String>) -> u32 {
    match var(env, name) {
        None => default,
        Some(raw) => raw.trim().parse().unwrap_or_else(|_| {
            problems.push(format!(
                "{name}={raw:?} is not a whole number; using {default}"
            ));
            default
        }),
    }
}

/// The most `DELTA_POLL_MS` may be: a poll's fetch may take 4 intervals, which must stay under
/// the 10 s after which a poll still marked under way is taken as abandoned (two hung fetches
/// would otherwise overlap), and a slower feed is no fast path.
const MAX_DELTA_POLL_MS: u32 = 2_000;

fn delta_poll_ms(env: &Env, problems: &mut Vec<String>) -> u32 {
    let ms = number(env, "DELTA_POLL_MS", 500, problems);
    if ms > MAX_DELTA_POLL_MS {
        problems.push(format!(
            "DELTA_POLL_MS={ms} is over {MAX_DELTA_POLL_MS}; using {MAX_DELTA_POLL_MS}"
        ));
        return MAX_DELTA_POLL_MS;
    }
    ms
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            var(env, name).unwrap_or_else(|| {
                problems.push(format!("{name} is not set"));
                String::new()
            })
        };
        let origin_url = required("ORIGIN_URL").trim_end_matches('/').to_owned();
        let issuer_url = required("ISSUER_URL").trim_end_matches('/').to_owned();
        let issuer = required("EXPECTED_ISSUER");
        let audience = required("EXPECTED_AUDIENCE");
        let leeway = number(env, "LEEWAY_SECS", 30, &mut problems);
        let max_token = number(env, "MAX_TOKEN_BYTES", 8192, &mut problems);
        let verifier = VerifierOptions {
            leeway_secs: leeway,
            max_token_bytes: usize::try_from(max_token).unwrap_or(8192),
            ..VerifierOptions::new(issuer, audience)
        };

        let pinned_keys = var(env, "JWKS").and_then(|json| match KeySet::from_json(&json) {
            Ok(set) if !set.is_empty() => Some(set),
            Ok(_) => {
                problems.push("JWKS is set but holds no usable key".into());
                None
            }
            Err(e) => {
                problems.push(format!("JWKS is not a JWK set: {e}"));
                None
            }
        });
        let public_paths =
            public_paths(&var(env, "PUBLIC_PATHS").unwrap_or_default(), &mut problems);
        let route_scopes = route_scopes(&var(env, "ROUTE_SCOPES").unwrap_or_default())
            .map_err(|broken| problems.extend(broken))
            .ok();
        let stale_policy = match var(env, "STALE_POLICY").as_deref() {
            None | Some("fail_closed") => StalePolicy::FailClosed,
            Some("fail_open") => StalePolicy::FailOpen,
            Some(other) => {
                problems.push(format!(
                    "STALE_POLICY={other:?} is neither fail_closed nor fail_open; failing closed"
                ));
                StalePolicy::FailClosed
            }
        };
        let ed25519_in_wasm = switch(env, "ED25519_VERIFY", ("webcrypto", "wasm"), &mut problems);
        let server_timing = switch(env, "SERVER_TIMING", ("off", "on"), &mut problems);
        let forward_preflights = switch(env, "CORS_PREFLIGHT", ("token", "forward"), &mut problems);
        let crash_route = switch(env, "TEST_CRASH_ROUTE", ("off", "on"), &mut problems);
        let delta_url = var(env, "DELTA_URL").unwrap_or_else(|| {
            if issuer_url.is_empty() {
                String::new()
            } else {
                format!("{issuer_url}/v1/revocations/delta")
            }
        });
        Self {
            origin_url,
            issuer_url,
            verifier,
            pinned_keys,
            public_paths,
            route_scopes,
            token_cookie: var(env, "TOKEN_COOKIE"),
            ed25519_in_wasm,
            server_timing,
            forward_preflights,
            crash_route,
            realm: var(env, "REALM").unwrap_or_else(|| "gatehouse".into()),
            kv_refresh_ms: f64::from(number(env, "KV_REFRESH_SECS", 10, &mut problems)) * 1000.0,
            kv_heartbeat_secs: i64::from(number(env, "KV_HEARTBEAT_SECS", 3600, &mut problems)),
            delta_url,
            delta_poll_ms: f64::from(delta_poll_ms(env, &mut problems)),
            keys_ttl_ms: f64::from(number(env, "KEYS_TTL_SECS", 300, &mut problems)) * 1000.0,
            verified_cache_size: usize::try_from(number(
                env,
                "VERIFIED_CACHE_SIZE",
                1000,
                &mut problems,
            ))
            .unwrap_or(1000),
            max_list_age_secs: i64::from(number(env, "MAX_LIST_AGE_SECS", 5400, &mut problems)),
            stale_policy,
            jwks_refetch_cooldown_ms: f64::from(number(
                env,
                "JWKS_REFETCH_COOLDOWN_SECS",
                30,
                &mut problems,
            )) * 1000.0,
            problems,
        }
    }

    /// Whether a canonical path needs no token (`crate::path` says how rules match).
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| path::is_public(p, path))
    }

    /// The scope a canonical path requires, if any (longest matching prefix).
    pub fn required_scope(&self, path: &str) -> Option<&str> {
        self.route_scopes
            .iter()
            .flatten()
            .find(|(prefix, _)| path::within_scope_prefix(prefix, path))
            .map(|(_, scope)| scope.as_str())
    }

    pub fn fast_path_enabled(&self) -> bool {
        self.delta_poll_ms > 0.0 && !self.delta_url.is_empty()
    }

    /// Whether the worker can do its job at all.
    pub fn is_usable(&self) -> bool {
        self.route_scopes.is_some()
            && !self.origin_url.is_empty()
            && !self.verifier.issuer.is_empty()
            && !self.verifier.audience.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{public_paths, route_scopes};

    #[test]
    fn rules_are_read_in_the_canonical_form_requests_are_matched_in() {
        let rules = route_scopes("/api/*=read, //api/%61dmin/*=admin ,/API/x=x").unwrap();
        assert_eq!(
            rules,
            [
                ("/api/admin/".to_owned(), "admin".to_owned()),
                ("/API/x".to_owned(), "x".to_owned()),
                ("/api/".to_owned(), "read".to_owned()),
            ]
        );
        let mut problems = Vec::new();
        let public = public_paths("/,/pkg/*,/%7Euser/a%2d.js,/a/../b", &mut problems);
        assert_eq!(public, ["/", "/pkg/*", "/~user/a-.js"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_scope_rule_that_cannot_be_honoured_fails_the_whole_set() {
        for raw in [
            "/api/admin%2F*=admin,/api/*=read",
            "/api/admin;x/*=admin,/api/*=read",
            "api/admin/*=admin,/api/*=read",
            "/api/admin/*=,/api/*=read",
            "/api/admin/*,/api/*=read",
            "/api/%zz/*=admin",
        ] {
            let broken = route_scopes(raw).unwrap_err();
            assert_eq!(broken.len(), 1, "{raw}: {broken:?}");
        }
        assert_eq!(route_scopes("").unwrap(), []);
    }
}
