//! How the URL, path-rule, list-age and switch settings are read and checked: the rules
//! `Config::from_env` applies, and that `offline_problems` applies to a `[vars]` table before a
//! deploy.

use gatehouse_shared::challenge::is_scope_token;
use gatehouse_shared::{SnapshotOptions, VerifierOptions};

use crate::path;

/// A URL setting without its trailing `/`, or empty when it cannot be used; what is wrong with
/// it goes to `problems`.
pub(super) fn checked_url(name: &str, url: &str, problems: &mut Vec<String>) -> String {
    let url = url.trim_end_matches('/');
    if url.is_empty() {
        return String::new();
    }
    match url_problem(url, name != "DELTA_URL") {
        None => url.to_owned(),
        Some(UrlProblem::Unusable(why)) => {
            problems.push(format!("{name}={:?} {why}", shown(url)));
            String::new()
        }
        Some(UrlProblem::PlainHttp) => {
            problems.push(format!(
                "{name}={url:?} is plain http:// to another machine: keys, lists and requests can be read and altered on the way"
            ));
            url.to_owned()
        }
    }
}

/// `url` as a problem report shows it, without its user info (refused): a password there would
/// reach the health details and a deploy check's CI log.
fn shown(url: &str) -> std::borrow::Cow<'_, str> {
    let authority = crate::incoming::authority(url);
    match authority.rsplit_once('@') {
        Some((_, host)) => url.replacen(authority, &format!("…@{host}"), 1).into(),
        None => url.into(),
    }
}

/// Every var the worker reads, secrets included (`Config::from_env`; a unit test holds this to
/// the names `config/mod.rs` reads), so that a config can be checked for one it does not.
#[cfg(not(target_arch = "wasm32"))]
pub const VAR_NAMES: [&str; 26] = [
    "CORS_ORIGINS",
    "CORS_PREFLIGHT",
    "DELTA_POLL_MS",
    "DELTA_URL",
    "EXPECTED_AUDIENCE",
    "EXPECTED_ISSUER",
    "HEALTH_TOKEN",
    "ISSUER_URL",
    "JWKS",
    "JWKS_REFETCH_COOLDOWN_SECS",
    "KEYS_TTL_SECS",
    "KV_HEARTBEAT_SECS",
    "KV_REFRESH_SECS",
    "LEEWAY_SECS",
    "MAX_LIST_AGE_SECS",
    "MAX_TOKEN_BYTES",
    "ORIGIN_SECRET",
    "ORIGIN_URL",
    "PUBLIC_PATHS",
    "REALM",
    "ROUTE_SCOPES",
    "SERVER_TIMING",
    "STALE_POLICY",
    "TEST_CRASH_ROUTE",
    "TOKEN_COOKIE",
    "VERIFIED_CACHE_SIZE",
];

/// The names among `names` that the worker does not read, each with the var it is closest to:
/// a misspelt optional var (`CORS_ORIGIN`, `TOKEN_COOKIES`) is otherwise ignored without a word.
#[cfg(not(target_arch = "wasm32"))]
pub fn unknown_var_problems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| !VAR_NAMES.contains(name))
        .map(|name| {
            let meant = VAR_NAMES
                .iter()
                .map(|known| (strsim::levenshtein(name, known), known))
                .filter(|(distance, _)| *distance <= 2)
                .min_by_key(|(distance, _)| *distance);
            match meant {
                Some((_, known)) => {
                    format!("{name} is not a var the worker reads (did you mean {known}?)")
                }
                None => format!("{name} is not a var the worker reads"),
            }
        })
        .collect()
}

/// The vars without which the worker answers every request 503 `misconfigured`.
pub(super) const REQUIRED: [&str; 4] = [
    "ORIGIN_URL",
    "ISSUER_URL",
    "EXPECTED_ISSUER",
    "EXPECTED_AUDIENCE",
];

/// A var's whole number, as the worker reads every number; `Err` is the problem to report, the
/// default then being used.
pub(super) fn whole_number(name: &str, raw: &str, default: u32) -> Result<u32, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("{name}={raw:?} is not a whole number; using {default}"))
}

/// `DELTA_POLL_MS` raised to 100 when it is above 0 but below: nearly every request would
/// otherwise wait for a poll of the issuer (a value meant as seconds, say). The problem to
/// report comes with it.
pub(super) fn delta_poll_floor(ms: u32) -> (u32, Option<&'static str>) {
    if (1..100).contains(&ms) {
        let problem = "DELTA_POLL_MS is under 100 (milliseconds; 0 turns the feed off); using 100";
        return (100, Some(problem));
    }
    (ms, None)
}

/// The problem a required var that is unset (or blank) reports.
pub(super) fn not_set(name: &str) -> String {
    format!("{name} is not set")
}

/// The two-valued settings, each with its words (off, the default, then on), as `Config`
/// reads them (a unit test holds the two together; the worker's calls name them itself, 130 B
/// smaller). wrangler passes an unquoted TOML `true` on as the text `true`: neither word.
pub(super) const SWITCHES: [(&str, (&str, &str)); 3] = [
    ("CORS_PREFLIGHT", ("token", "forward")),
    ("SERVER_TIMING", ("off", "on")),
    ("TEST_CRASH_ROUTE", ("off", "on")),
];

/// The problem a switch set to neither of its words reports; it is read as off.
pub(super) fn not_a_switch(name: &str, value: &str, (off, on): (&str, &str)) -> String {
    format!("{name}={value:?} is neither {off} nor {on}; using {off}")
}

/// The issuer's access tokens are about 500 bytes, more with long scopes: a limit under this
/// refuses them all as `too_large`.
const LEAST_USEFUL_TOKEN_BYTES: i64 = 1024;

/// What the worker would report about its required vars, URL, path-rule and list-age settings
/// (`var` reads one), for a check made before a deploy: the rules `Config::from_env` applies,
/// without an `Env`.
pub fn offline_problems(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    // Blank is unset, as the worker reads it.
    let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    for name in REQUIRED {
        if var(name).is_none() {
            problems.push(not_set(name));
        }
    }
    for name in ["ORIGIN_URL", "ISSUER_URL", "DELTA_URL"] {
        if let Some(url) = var(name) {
            checked_url(name, &url, &mut problems);
        }
    }
    let public = public_paths(&var("PUBLIC_PATHS").unwrap_or_default(), &mut problems);
    if let Err(broken) = route_scopes(&var("ROUTE_SCOPES").unwrap_or_default(), &public) {
        problems.extend(broken);
    }
    // A number the worker cannot read is reported there, with its default used; so here.
    let mut number = |name: &str, default: u32| {
        let read = var(name).map_or(Ok(default), |raw| whole_number(name, &raw, default));
        i64::from(read.unwrap_or_else(|problem| {
            problems.push(problem);
            default
        }))
    };
    let max_token = number("MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES);
    let poll_ms = number("DELTA_POLL_MS", 500);
    let max_age = number("MAX_LIST_AGE_SECS", DEFAULT_MAX_LIST_AGE_SECS);
    let heartbeat = number("KV_HEARTBEAT_SECS", DEFAULT_KV_HEARTBEAT_SECS);
    let refresh =
        number("KV_REFRESH_SECS", DEFAULT_KV_REFRESH_SECS).max(MIN_KV_REFRESH_SECS.into());
    problems.extend(list_age_problem(max_age, heartbeat, refresh));
    let (_, poll_problem) = delta_poll_floor(u32::try_from(poll_ms).unwrap_or(u32::MAX));
    problems.extend(poll_problem.map(str::to_owned));
    problems.extend(token_limit_problem(max_token));
    for (name, words) in SWITCHES {
        if let Some(value) = var(name)
            && value != words.0
            && value != words.1
        {
            problems.push(not_a_switch(name, &value, words));
        }
    }
    let origins = cors_origins(&var("CORS_ORIGINS").unwrap_or_default(), &mut problems);
    let token_cookie = var("TOKEN_COOKIE");
    problems.extend(token_cookie.as_deref().and_then(token_cookie_problem));
    problems.extend(cors_problem(
        !origins.is_empty(),
        var("CORS_PREFLIGHT").as_deref() == Some("forward"),
        token_cookie.is_some(),
    ));
    problems
}

/// `CORS_ORIGINS` that no page can use: with no `TOKEN_COOKIE`, a page on another origin sends
/// its token in `Authorization`, so the browser sends a preflight first, which carries no
/// token, and the gate refuses it unless `CORS_PREFLIGHT` forwards it: the page sees only a
/// network error. (With a cookie token, a simple cross-origin `GET` needs no preflight.)
pub(super) fn cors_problem(
    origins_listed: bool,
    forward_preflights: bool,
    token_cookie: bool,
) -> Option<String> {
    (origins_listed && !forward_preflights && !token_cookie).then(|| {
        "CORS_ORIGINS without TOKEN_COOKIE needs CORS_PREFLIGHT = \"forward\": a page's preflight \
         is refused"
            .to_owned()
    })
}

/// A `TOKEN_COOKIE` that no cookie can match: a pair's name ends at its first `=` and the pair
/// at `;`, and names are compared with the space around them trimmed (`credential::copies`), so
/// every cookie login would fail closed (401) with nothing said. Other names outside RFC 6265's
/// token (`app:token`, `session[token]`) still reach the worker and match, so they are not
/// reported.
pub(super) fn token_cookie_problem(name: &str) -> Option<String> {
    (name.contains(['=', ';']) || name.trim() != name).then(|| {
        format!("TOKEN_COOKIE {name:?} can match no cookie (an `=`, a `;`, or a space around it)")
    })
}

/// `MAX_TOKEN_BYTES` unset: the verifier's own default.
#[allow(clippy::cast_possible_truncation)] // 8 KiB
pub(super) const DEFAULT_MAX_TOKEN_BYTES: u32 = VerifierOptions::DEFAULT_MAX_TOKEN_BYTES as u32;

/// A `MAX_TOKEN_BYTES` under what the issuer's tokens take: every one would be refused as
/// `too_large` (reported by the worker and by the deploy check alike).
pub(super) fn token_limit_problem(max_token: i64) -> Option<String> {
    (max_token < LEAST_USEFUL_TOKEN_BYTES).then(|| {
        format!(
            "MAX_TOKEN_BYTES={max_token} is under {LEAST_USEFUL_TOKEN_BYTES}: the issuer's \
             tokens would be refused as too_large"
        )
    })
}

/// The list-age settings' defaults, and the least `KV_REFRESH_SECS` taken.
pub(super) const DEFAULT_MAX_LIST_AGE_SECS: u32 = SnapshotOptions::DEFAULT_MAX_AGE_SECS;
pub(super) const DEFAULT_KV_HEARTBEAT_SECS: u32 = 3600;
pub(super) const DEFAULT_KV_REFRESH_SECS: u32 = SnapshotOptions::REFRESH_SECS;
pub(super) const MIN_KV_REFRESH_SECS: u32 = 1;

/// A `MAX_LIST_AGE_SECS` a quiet list outgrows between heartbeats. Unchanged, a list reaches KV
/// again only at the heartbeat: KV's copy is then up to that old, plus the cron's minute and
/// the issuer's 15 s cache, then KV's usual 60 s to reach a location (Cloudflare sets no bound:
/// this check catches the settings that fail even then) and an isolate's next read of the head.
/// With the delta feed off or failing, that copy is what an isolate has.
pub(super) fn list_age_problem(max_age: i64, heartbeat: i64, kv_refresh: i64) -> Option<String> {
    let quiet_copy_age = heartbeat + 135 + kv_refresh;
    (max_age <= quiet_copy_age).then(|| {
        format!(
            "MAX_LIST_AGE_SECS={max_age} is not above KV_HEARTBEAT_SECS + 135 s + KV_REFRESH_SECS \
             ({quiet_copy_age}): without the delta feed, a quiet list read from KV goes stale"
        )
    })
}

enum UrlProblem {
    /// Not used: the reason.
    Unusable(&'static str),
    /// Used, and reported.
    PlainHttp,
}

/// What is wrong with a URL setting. User info would be sent to a host the reader of the
/// setting may not see; on a base URL the worker appends paths to (`appends_paths`), a query or
/// fragment would swallow the path (every request would reach `/`).
fn url_problem(url: &str, appends_paths: bool) -> Option<UrlProblem> {
    let (plain, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => return Some(UrlProblem::Unusable("is not an http:// or https:// URL")),
    };
    let host = crate::incoming::authority(url).to_ascii_lowercase();
    if host.is_empty() || host.contains('@') || rest.contains(char::is_whitespace) {
        return Some(UrlProblem::Unusable(
            "needs a host, without user info or spaces",
        ));
    }
    if appends_paths && (rest.contains('?') || rest.contains('#')) {
        return Some(UrlProblem::Unusable(
            "is a base URL: scheme, host and path only (a query or fragment would swallow the path)",
        ));
    }
    (plain && !on_this_machine(&host)).then_some(UrlProblem::PlainHttp)
}

/// Whether a (lower-cased) `host[:port]` is this machine (`localhost`, `127.0.0.1`, `[::1]`,
/// any port), where plain HTTP crosses no network.
fn on_this_machine(host: &str) -> bool {
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|local| host == *local || host.strip_prefix(local).is_some_and(|p| p.starts_with(':')))
}

/// A rule's path in the canonical form requests are matched in (`crate::path`), its trailing
/// `*` kept: `/api/%61dmin/*` is `/api/admin/*`, `//x` is `/x`. `None` for a path no request
/// can have (an escaped slash, a `;`, a dot segment, no leading `/`), and for what reads as a
/// glob or a template (`/api/*/admin`, `/api/{org}/admin`): rules are prefixes, so it would
/// match only a literal `*` or `{org}` (an escape, `%2A` or `%7B`, is the literal it names; at
/// the end `%2A` is refused, as it would read as the prefix mark).
fn canonical_rule_path(raw: &str) -> Option<String> {
    let (path, star) = match raw.strip_suffix('*') {
        Some(path) => (path, "*"),
        None => (raw, ""),
    };
    if !path.starts_with('/') || path.bytes().any(|b| matches!(b, b'*' | b'{' | b'}')) {
        return None;
    }
    let path = path::canonical(path).ok()?;
    (!path.ends_with('*')).then(|| path + star)
}

/// `ROUTE_SCOPES`: `/prefix*=scope` rules, longest prefix first. `Err` names every rule that
/// cannot be honoured: dropping one would let its paths fall to a shorter, weaker rule, and one
/// whose paths a `public` entry lets through guards nothing.
pub(super) fn route_scopes(
    raw: &str,
    public: &[String],
) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut broken = Vec::new();
    for rule in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let parsed = rule.split_once('=').and_then(|(prefix, scope)| {
            let scope = scope.trim();
            let prefix = canonical_rule_path(prefix.trim())?;
            let prefix = path::folded_for_scopes(prefix.trim_end_matches('*')).into_owned();
            // A scope may hold `=`, but here one is a second rule run into this one (a `;` or
            // a space for the `,`), which would vanish and leave its paths to any token.
            (is_scope_token(scope) && !scope.contains('=')).then(|| (prefix, scope.to_owned()))
        });
        // Two scopes for one prefix (ASCII case aside, and a trailing `/`: `/x/` covers `/x`, as
        // rules match): only one would apply to it.
        let twice = |(prefix, scope): &(String, String)| {
            let bare = prefix.trim_end_matches('/');
            rules
                .iter()
                .any(|(p, s)| s != scope && p.trim_end_matches('/').eq_ignore_ascii_case(bare))
        };
        match parsed {
            Some(parsed) if twice(&parsed) => {
                broken.push(format!(
                    "ROUTE_SCOPES rule {rule:?} gives a prefix a second scope"
                ));
            }
            Some(parsed) => rules.push(parsed),
            None => broken.push(format!(
                "ROUTE_SCOPES rule {rule:?} is not /prefix=scope with a path a request can have \
                 and one scope (rules are separated by commas)"
            )),
        }
    }
    if !broken.is_empty() {
        return Err(broken);
    }
    let overruled = scope_rules_made_public(public, &rules);
    if !overruled.is_empty() {
        return Err(overruled);
    }
    rules.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    Ok(rules)
}

/// `PUBLIC_PATHS`: exact paths or `*` prefixes, in canonical form. An entry no request can match
/// is reported and left out: it could only have asked for less than a token.
pub(super) fn public_paths(raw: &str, problems: &mut Vec<String>) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|entry| {
            let canonical = canonical_rule_path(entry);
            if canonical.is_none() {
                problems.push(format!(
                    "PUBLIC_PATHS entry {entry:?} is not a path rule the edge can read; ignored"
                ));
            }
            canonical
        })
        .collect()
}

/// Scope rules that a `PUBLIC_PATHS` entry overrules (the public check comes first): a prefix
/// entry over the rule's whole prefix (`/api/*` public beside `/api/admin/*=admin`) or over a
/// parent the rule lies below for `DELETE` and WebDAV's methods (`/api.*`, as `/api.json` is
/// `/api` to routers with format suffixes), and any entry on the rule's own root in a spelling
/// the rule covers (`/api/admin/`, `/api/admin`, `/api/admin.json`, `/api/admin%20`,
/// `/api/admin/*`: the handler it names). Strictly below the root (`/api/admin/health`,
/// `/api/admin/docs/*`, and `/docs/editor` under a `/docs/edit` rule) is a carve-out the
/// operator chose, and so is an exact path under `/`. Such a rule cannot be honoured, like a
/// broken one. Compared with case folded, as scope rules match: a public `/API/*` would let
/// `/API/admin/x` through, which the rule covers, and a public `/%C5%BFecret/*` (`ſ`) lets
/// through what a case-folding origin reads as `/secret/…`.
fn scope_rules_made_public(public: &[String], rules: &[(String, String)]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|(prefix, scope)| {
            let folded = prefix.to_ascii_lowercase();
            let root = folded.trim_end_matches('/');
            let entry = public.iter().find(|p| {
                let entry = path::folded_for_scopes(p).to_ascii_lowercase();
                let start = entry.trim_end_matches('*');
                let exact = start == entry;
                let start = if exact {
                    start
                } else {
                    path::without_unfinished_fold(start)
                };
                // What follows the root: a segment of its own, or another name a prefix
                // without `/` happens to cover; not `/`, or what leaves routers reading the
                // root's own last segment (`.json`, `%20`; `.1/status` is another name).
                let below = start.strip_prefix(root).is_some_and(|rest| {
                    let root_spelling = rest == "/"
                        || path::leaves_the_name(rest.as_bytes()) && !rest.contains('/');
                    !root_spelling
                });
                let carve_out = below || (exact && root.is_empty());
                (!exact && (folded.starts_with(start) || path::lies_below(&folded, start)))
                    || (!carve_out && path::within_scope_prefix(&folded, start))
            })?;
            Some(format!(
                "ROUTE_SCOPES rule for {prefix} (scope {scope}) lies under PUBLIC_PATHS entry {entry}"
            ))
        })
        .collect()
}

/// `CORS_ORIGINS`: exact origins, `http(s)://host[:port]`. An entry that is not one (a path, a
/// `*`, no scheme) is reported and left out: it could only have shown refusals to more pages.
pub(super) fn cors_origins(raw: &str, problems: &mut Vec<String>) -> Vec<String> {
    raw.split(',')
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .filter(|origin| {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = host.is_some_and(|h| {
                !h.is_empty() && !h.bytes().any(|b| b"/*?#@ \"".contains(&b))
            });
            if !valid {
                problems.push(format!(
                    "CORS_ORIGINS entry {origin:?} is not an origin like https://app.example; ignored"
                ));
            }
            valid
        })
        .collect()
}

#[cfg(test)]
mod tests;
