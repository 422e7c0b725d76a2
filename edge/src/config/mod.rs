//! The worker's configuration, read once per isolate from `[vars]`. Every problem found is kept
//! and reported by `/_gatehouse/health`, so a misconfigured worker says what is wrong.

mod settings;

use gatehouse_shared::challenge::is_realm_text;
use gatehouse_shared::{KeySet, VerifierOptions};
use worker::Env;

use crate::path;
pub use settings::offline_problems;
#[cfg(not(target_arch = "wasm32"))]
pub use settings::unknown_var_problems;
use settings::{checked_url, cors_origins, public_paths, route_scopes};

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
    /// `SERVER_TIMING = "on"`: forwarded responses carry the verification time. Off by default:
    /// it tells clients how long the gate took, and adding a header to a fetched response means
    /// rebuilding it, which costs every forwarded request.
    pub server_timing: bool,
    /// `CORS_PREFLIGHT = "forward"`: a CORS preflight goes to the origin without a token (and
    /// without body or credentials). Off by default, as in oauth2-proxy and Envoy: an origin
    /// handler that ignores the method would run for anyone's `OPTIONS`.
    pub forward_preflights: bool,
    /// `CORS_ORIGINS`: the origins (`https://app.example`) whose pages may read the gate's own
    /// refusals; lower-cased, as browsers send `Origin`.
    pub cors_origins: Vec<String>,
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
    /// `HEALTH_TOKEN` (a secret): the bearer token that shows the health route's details.
    pub health_token: Option<Secret>,
    /// `ORIGIN_SECRET` (a secret): sent to the origin with every request as
    /// `X-Gatehouse-Origin-Secret`, so that the origin can refuse requests that did not come
    /// through this worker (its hostname stays reachable through Cloudflare by anyone).
    pub origin_secret: Option<Secret>,
    pub problems: Vec<String>,
}

/// The `[vars]` as the worker reads them, with every problem found on the way.
struct Vars<'e> {
    env: &'e Env,
    problems: Vec<String>,
}

impl Vars<'_> {
    /// A var as text; `None` when unset or blank. wrangler passes a TOML number or boolean on
    /// as a JSON value, which `Env::var` does not read: they are taken as their text here, so
    /// `LEEWAY_SECS = 5` means what it says. A table or an array is reported and ignored.
    fn text(&mut self, name: &str) -> Option<String> {
        let value = worker::js_sys::Reflect::get(self.env.as_ref(), &name.into()).ok()?;
        let text = if let Some(text) = value.as_string() {
            text
        } else if let Some(number) = value.as_f64() {
            number.to_string()
        } else if let Some(flag) = value.as_bool() {
            flag.to_string()
        } else {
            if !value.is_undefined() && !value.is_null() {
                self.problems.push(format!(
                    "{name} is not text, a number or a boolean; ignored"
                ));
            }
            return None;
        };
        (!text.trim().is_empty()).then_some(text)
    }

    fn required(&mut self, name: &str) -> String {
        debug_assert!(
            settings::REQUIRED.contains(&name),
            "{name} is not in REQUIRED"
        );
        self.text(name).unwrap_or_else(|| {
            self.problems.push(settings::not_set(name));
            String::new()
        })
    }

    /// A two-valued setting (`settings::SWITCHES`): `false` for the first word (the default),
    /// `true` for the second.
    fn switch(&mut self, name: &str, (off, on): (&str, &str)) -> bool {
        match self.text(name) {
            None => false,
            Some(v) if v == off => false,
            Some(v) if v == on => true,
            Some(other) => {
                self.problems
                    .push(settings::not_a_switch(name, &other, (off, on)));
                false
            }
        }
    }

    /// `MAX_TOKEN_BYTES`, reported when it would refuse the issuer's tokens.
    fn max_token_bytes(&mut self) -> usize {
        let max_token = self.number("MAX_TOKEN_BYTES", settings::DEFAULT_MAX_TOKEN_BYTES);
        self.problems
            .extend(settings::token_limit_problem(i64::from(max_token)));
        usize::try_from(max_token).unwrap_or(VerifierOptions::DEFAULT_MAX_TOKEN_BYTES)
    }

    fn number(&mut self, name: &str, default: u32) -> u32 {
        let Some(raw) = self.text(name) else {
            return default;
        };
        settings::whole_number(name, &raw, default).unwrap_or_else(|problem| {
            self.problems.push(problem);
            default
        })
    }

    /// [`Self::number`] of seconds, in milliseconds.
    fn secs_as_ms(&mut self, name: &str, default: u32) -> f64 {
        f64::from(self.number(name, default)) * 1000.0
    }

    /// A number with an upper bound: above it, the bound is used and the excess reported.
    fn number_at_most(&mut self, name: &str, default: u32, max: u32, why: &str) -> u32 {
        let value = self.number(name, default);
        if value > max {
            self.problems
                .push(format!("{name}={value} is over {max} ({why}); using {max}"));
            return max;
        }
        value
    }

    /// A number with a lower bound: below it, the bound is used and the shortfall reported.
    fn number_at_least(&mut self, name: &str, default: u32, min: u32, why: &str) -> u32 {
        let value = self.number(name, default);
        if value < min {
            self.problems.push(format!(
                "{name}={value} is under {min} ({why}); using {min}"
            ));
            return min;
        }
        value
    }

    /// `DELTA_POLL_MS`: 0 (the feed off), or from `settings::delta_poll_floor` to
    /// `MAX_DELTA_POLL_MS`.
    fn delta_poll_ms(&mut self) -> u32 {
        let why = "a poll may take 4 intervals and must end within 10 s";
        let ms = self.number_at_most("DELTA_POLL_MS", 500, MAX_DELTA_POLL_MS, why);
        let (ms, problem) = settings::delta_poll_floor(ms);
        self.problems.extend(problem.map(str::to_owned));
        ms
    }

    /// `KEYS_TTL_SECS`, in milliseconds: at most an hour, as a key the issuer stops publishing
    /// verifies that long.
    fn keys_ttl_ms(&mut self) -> f64 {
        let why = "a key the issuer stops publishing verifies that long";
        let secs = self.number_at_most("KEYS_TTL_SECS", KeySet::FETCHED_TTL_SECS, 3600, why);
        f64::from(secs) * 1000.0
    }

    /// `VERIFIED_CACHE_SIZE`: at most 10,000 tokens, each entry holding a token's claims in the
    /// isolate's memory (128 MB), which the cache frees only when full.
    fn verified_cache_size(&mut self) -> usize {
        let why = "each entry holds a token's claims in the isolate's 128 MB";
        let size = self.number_at_most("VERIFIED_CACHE_SIZE", 1000, 10_000, why);
        usize::try_from(size).unwrap_or(1000)
    }

    /// A required `http(s)://` URL without its trailing `/`; anything else is reported and left
    /// empty.
    fn url(&mut self, name: &str) -> String {
        let url = self.required(name);
        self.checked_url(name, &url)
    }

    fn checked_url(&mut self, name: &str, url: &str) -> String {
        checked_url(name, url, &mut self.problems)
    }

    /// `JWKS`: pinned keys. Keys it cannot use are reported; the usable ones still verify.
    fn pinned_keys(&mut self) -> Option<KeySet> {
        let set = match KeySet::from_json(&self.text("JWKS")?) {
            Ok(set) => set,
            Err(e) => {
                self.problems.push(format!("JWKS is not a JWK set: {e}"));
                return None;
            }
        };
        for skipped in set.skipped() {
            self.problems.push(format!(
                "JWKS key {} (kid {}) is skipped: {}",
                skipped.index,
                skipped.kid.as_deref().unwrap_or("none"),
                skipped.reason
            ));
        }
        if set.is_empty() {
            self.problems
                .push("JWKS is set but holds no usable key".into());
            return None;
        }
        Some(set)
    }

    fn stale_policy(&mut self) -> StalePolicy {
        match self.text("STALE_POLICY").as_deref() {
            None | Some("fail_closed") => StalePolicy::FailClosed,
            Some("fail_open") => StalePolicy::FailOpen,
            Some(other) => {
                self.problems.push(format!(
                    "STALE_POLICY={other:?} is neither fail_closed nor fail_open; failing closed"
                ));
                StalePolicy::FailClosed
            }
        }
    }

    /// A token short enough to guess would show the details to anyone; such a one is reported
    /// and not used, so they stay hidden. Trimmed, as the bearer token it is compared with is
    /// (a pasted secret often ends in a newline).
    fn health_token(&mut self) -> Option<Secret> {
        self.secret("HEALTH_TOKEN", "health details stay hidden")
    }

    /// `name`, a secret of at least `MIN_SECRET_CHARS`; a shorter one is reported (with what
    /// that leaves, `without`) and not used.
    fn secret(&mut self, name: &str, without: &str) -> Option<Secret> {
        let token = self.text(name)?;
        let token = token.trim();
        // A header value: anything else would not be sent, or not compare equal.
        if !token.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            self.problems.push(format!(
                "{name} holds characters other than visible ASCII and spaces; {without}"
            ));
            return None;
        }
        if token.chars().count() < MIN_SECRET_CHARS {
            self.problems.push(format!(
                "{name} is shorter than {MIN_SECRET_CHARS} characters; {without}"
            ));
            return None;
        }
        Some(Secret(token.to_owned()))
    }

    /// `REALM`, written unescaped into every challenge.
    fn realm(&mut self) -> String {
        match self.text("REALM") {
            Some(realm) if is_realm_text(&realm) => realm,
            None => "gatehouse".into(),
            Some(realm) => {
                self.problems.push(format!(
                    "REALM={realm:?} has a quote, a backslash or a control byte; using gatehouse"
                ));
                "gatehouse".into()
            }
        }
    }
}

/// A secret setting: compared in constant time, never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to send on.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `sent` is this secret; its time depends on the lengths only (subtle's
    /// constant-time comparison).
    pub fn matches(&self, sent: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(sent.as_bytes()).into()
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `openssl rand -hex 16` gives 32; 16 characters of a random hex string are 64 bits.
const MIN_SECRET_CHARS: usize = 16;

/// The most `DELTA_POLL_MS` may be: a poll's fetch may take 4 intervals, which must stay under
/// the 10 s after which a poll still marked under way is taken as abandoned (two hung fetches
/// would otherwise overlap), and a slower feed is no fast path.
const MAX_DELTA_POLL_MS: u32 = 2_000;

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let mut vars = Vars {
            env,
            problems: Vec::new(),
        };
        let origin_url = vars.url("ORIGIN_URL");
        let issuer_url = vars.url("ISSUER_URL");
        let issuer = vars.required("EXPECTED_ISSUER");
        let audience = vars.required("EXPECTED_AUDIENCE");
        let leeway = vars.number_at_most(
            "LEEWAY_SECS",
            VerifierOptions::DEFAULT_LEEWAY_SECS,
            VerifierOptions::MAX_LEEWAY_SECS,
            "revocation entries cover no longer leeway",
        );
        let verifier = VerifierOptions {
            leeway_secs: leeway,
            max_token_bytes: vars.max_token_bytes(),
            ..VerifierOptions::new(issuer, audience)
        };

        let pinned_keys = vars.pinned_keys();
        let public_paths_raw = vars.text("PUBLIC_PATHS").unwrap_or_default();
        let public_paths = public_paths(&public_paths_raw, &mut vars.problems);
        let route_scopes = route_scopes(
            &vars.text("ROUTE_SCOPES").unwrap_or_default(),
            &public_paths,
        )
        .map_err(|broken| vars.problems.extend(broken))
        .ok();
        let stale_policy = vars.stale_policy();
        let realm = vars.realm();
        let origin_secret = vars.secret(
            "ORIGIN_SECRET",
            "it is not sent, and an origin that checks it refuses every request",
        );
        let kv_refresh_secs = vars.number_at_least(
            "KV_REFRESH_SECS",
            settings::DEFAULT_KV_REFRESH_SECS,
            settings::MIN_KV_REFRESH_SECS,
            "0 would read KV, or the issuer while KV is empty, on every request",
        );
        let kv_heartbeat_secs =
            i64::from(vars.number("KV_HEARTBEAT_SECS", settings::DEFAULT_KV_HEARTBEAT_SECS));
        let max_list_age_secs =
            i64::from(vars.number("MAX_LIST_AGE_SECS", settings::DEFAULT_MAX_LIST_AGE_SECS));
        vars.problems.extend(settings::list_age_problem(
            max_list_age_secs,
            kv_heartbeat_secs,
            kv_refresh_secs.into(),
        ));
        let token_cookie = vars.text("TOKEN_COOKIE");
        vars.problems.extend(
            token_cookie
                .as_deref()
                .and_then(settings::token_cookie_problem),
        );
        let forward_preflights = vars.switch("CORS_PREFLIGHT", ("token", "forward"));
        let cors_origins = cors_origins(
            &vars.text("CORS_ORIGINS").unwrap_or_default(),
            &mut vars.problems,
        );
        vars.problems.extend(settings::cors_problem(
            !cors_origins.is_empty(),
            forward_preflights,
            token_cookie.is_some(),
        ));
        let delta_url = match vars.text("DELTA_URL") {
            Some(url) => vars.checked_url("DELTA_URL", &url),
            None if issuer_url.is_empty() => String::new(),
            None => format!("{issuer_url}/v1/revocations/delta"),
        };
        Self {
            origin_url,
            issuer_url,
            verifier,
            pinned_keys,
            public_paths,
            route_scopes,
            token_cookie,
            server_timing: vars.switch("SERVER_TIMING", ("off", "on")),
            forward_preflights,
            cors_origins,
            crash_route: vars.switch("TEST_CRASH_ROUTE", ("off", "on")),
            realm,
            kv_refresh_ms: f64::from(kv_refresh_secs) * 1000.0,
            kv_heartbeat_secs,
            delta_url,
            delta_poll_ms: f64::from(vars.delta_poll_ms()),
            keys_ttl_ms: vars.keys_ttl_ms(),
            verified_cache_size: vars.verified_cache_size(),
            max_list_age_secs,
            stale_policy,
            jwks_refetch_cooldown_ms: vars
                .secs_as_ms("JWKS_REFETCH_COOLDOWN_SECS", KeySet::REFETCH_COOLDOWN_SECS),
            health_token: vars.health_token(),
            origin_secret,
            problems: vars.problems,
        }
    }

    /// Whether a canonical path needs no token (`crate::path` says how rules match). For a
    /// method that acts on everything under its path (`below`), only a prefix entry makes it
    /// public: what lies under an exact entry such as `/` is not.
    pub fn is_public(&self, path: &str, below: bool) -> bool {
        self.public_paths
            .iter()
            .any(|p| (!below || p.ends_with('*')) && path::is_public(p, path))
    }

    /// The first scope a canonical path needs that `held` does not say is held: the scope of
    /// its rule (the longest matching prefix), as the path is written and, when folding its
    /// case changes it, as folded. Both, since an origin that folds case routes by the one and
    /// an origin that does not by the other: `/api/%C5%BFtatus` is `/api/status` only to the
    /// first. With `below` (a method acting on everything under the path), the scopes of the
    /// rules that lie below it too (`path::lies_below`).
    pub fn missing_scope(
        &self,
        path: &str,
        below: bool,
        held: impl Fn(&str) -> bool,
    ) -> Option<&str> {
        let rules = self.route_scopes.as_deref().unwrap_or_default();
        let folded = path::folded_for_scopes(path);
        let spellings: &[&str] = match &folded {
            std::borrow::Cow::Owned(folded) => &[path, folded],
            std::borrow::Cow::Borrowed(_) => &[path],
        };
        for &spelling in spellings {
            let rule = rules
                .iter()
                .find(|(prefix, _)| path::within_scope_prefix(prefix, spelling));
            let rules_below = rules
                .iter()
                .filter(|(prefix, _)| below && path::lies_below(prefix, spelling));
            for (_, scope) in rule.into_iter().chain(rules_below) {
                if !held(scope) {
                    return Some(scope);
                }
            }
        }
        None
    }

    /// Whether any `ROUTE_SCOPES` rule is set.
    pub fn has_route_scopes(&self) -> bool {
        self.route_scopes
            .as_ref()
            .is_some_and(|rules| !rules.is_empty())
    }

    pub fn fast_path_enabled(&self) -> bool {
        self.delta_poll_ms > 0.0 && !self.delta_url.is_empty()
    }

    /// Whether the worker can do its job at all: without a usable `ISSUER_URL` no key set or
    /// list is fetched, and keys read from KV would never be refreshed.
    pub fn is_usable(&self) -> bool {
        self.route_scopes.is_some()
            && !self.origin_url.is_empty()
            && !self.issuer_url.is_empty()
            && !self.verifier.issuer.is_empty()
            && !self.verifier.audience.is_empty()
    }
}
