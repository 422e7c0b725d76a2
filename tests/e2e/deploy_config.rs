//! The production deploy config, `[env.production]` of wrangler.toml: nothing of local
//! development leaks into it (loopback addresses, the demo's public paths), it has what the
//! platform needs (routes, the KV namespace, the cron), and wrangler accepts it offline
//! (`deploy --dry-run`). A real deploy, real KV and real routes are beyond an offline test.

use std::path::PathBuf;
use std::process::Command;

use gatehouse_tests::repo_root;
use toml::{Table, Value};

/// Addresses that only mean something on the machine that runs the worker locally.
const LOOPBACK: [&str; 4] = ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"];
const KV_BINDING: &str = "GATEHOUSE_KV";
const EVERY_MINUTE: &str = "* * * * *";
/// Vars the edge fetches from or forwards to: plain http would let the path swap the keys.
const HTTPS_VARS: [&str; 3] = ["ORIGIN_URL", "ISSUER_URL", "DELTA_URL"];

/// The demo page's assets and its issuer proxy: public under `make dev`, never in production.
fn is_demo_path(entry: &str) -> bool {
    entry.starts_with("/pkg/") || entry.starts_with("/issuer/") || entry == "/demo.js"
}

/// Calls `visit` with the dotted path and the text of every string under `value`.
fn each_string(path: &str, value: &Value, visit: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(text) => visit(path, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                each_string(&format!("{path}[{i}]"), item, visit);
            }
        }
        Value::Table(table) => {
            for (key, item) in table {
                each_string(&format!("{path}.{key}"), item, visit);
            }
        }
        _ => {}
    }
}

/// A var's value as the worker reads it: a string, or an unquoted number or boolean as text.
fn var_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        // A float as JavaScript writes it (`7200.0` is `7200`), which Rust's `f64` does too.
        Value::Float(number) => Some(number.to_string()),
        Value::Integer(_) | Value::Boolean(_) => Some(value.to_string()),
        _ => None,
    }
}

/// What the repository's `[env.production]` holds until an operator replaces it.
const PLACEHOLDERS: [&str; 2] = ["example.com", "REPLACE-WITH-"];

/// Every value of `[env.production]` still holding a placeholder: deployable in form, and the
/// repository's own config holds several, but not a deploy anyone meant.
fn placeholders_left(config: &Table) -> Vec<String> {
    let mut left = Vec::new();
    if let Some(production) = config.get("env").and_then(|env| env.get("production")) {
        each_string("env.production", production, &mut |path, text| {
            if PLACEHOLDERS.iter().any(|p| text.contains(p)) {
                left.push(format!("{path} = {text:?} is a placeholder"));
            }
        });
    }
    left
}

fn top_var_set(config: &Table, name: &str) -> bool {
    config.get("vars").and_then(|vars| vars.get(name)).is_some()
}

/// Everything wrong with a wrangler config's `[env.production]`; empty when it is deployable.
fn production_problems(config: &Table) -> Vec<String> {
    let Some(production) = config
        .get("env")
        .and_then(|env| env.get("production"))
        .and_then(Value::as_table)
    else {
        return vec!["there is no [env.production]".to_owned()];
    };
    let mut problems = Vec::new();
    let mut loopback = |path: &str, text: &str| {
        let lower = text.to_ascii_lowercase();
        for host in LOOPBACK.iter().filter(|host| lower.contains(**host)) {
            problems.push(format!(
                "{path} = {text:?} names the loopback address {host}"
            ));
        }
    };
    for (key, value) in production {
        each_string(&format!("env.production.{key}"), value, &mut loopback);
    }

    let vars = production.get("vars").and_then(Value::as_table);
    let var = |name: &str| vars.and_then(|v| v.get(name)).and_then(var_text);
    for entry in var("PUBLIC_PATHS").unwrap_or_default().split(',') {
        if is_demo_path(entry.trim()) {
            problems.push(format!(
                "env.production.vars.PUBLIC_PATHS lets the demo path {:?} through",
                entry.trim()
            ));
        }
    }
    if var("TEST_CRASH_ROUTE").is_some_and(|v| v != "off") {
        problems
            .push("env.production.vars.TEST_CRASH_ROUTE lets anyone crash the worker".to_owned());
    }
    // Settings the worker takes (tests use them) that a production edge should not run with.
    let seconds = |name: &str, default: f64| {
        var(name).map_or(Some(default), |v| v.trim().parse::<f64>().ok())
    };
    let (cooldown, keys_ttl) = (
        seconds("JWKS_REFETCH_COOLDOWN_SECS", 30.0),
        seconds("KEYS_TTL_SECS", 300.0),
    );
    if cooldown == Some(0.0) {
        problems.push(
            "env.production.vars.JWKS_REFETCH_COOLDOWN_SECS is 0: every token with a made-up kid \
             makes the edge fetch the issuer's keys (0 is for tests)"
                .to_owned(),
        );
    }
    if let (Some(cooldown), Some(ttl)) = (cooldown, keys_ttl)
        && cooldown > ttl.min(3600.0)
    {
        problems.push(format!(
            "env.production.vars.JWKS_REFETCH_COOLDOWN_SECS={cooldown} is above KEYS_TTL_SECS \
             ({ttl}, at most 3600): the key set's refresh waits for the cooldown, so a key the \
             issuer dropped verifies that long"
        ));
    }
    if let Some(heartbeat) = seconds("KV_HEARTBEAT_SECS", 3600.0)
        && heartbeat < 600.0
    {
        // The cron runs each minute: an unchanged list is written again (two keys) at its first
        // run past the heartbeat.
        let per_day = 2.0 * 86_400.0 / (heartbeat / 60.0).ceil().max(1.0) / 60.0;
        problems.push(format!(
            "env.production.vars.KV_HEARTBEAT_SECS={heartbeat} is under 600: the unchanged list \
             is written to KV again about {per_day:.0} times a day (the Free plan allows 1,000 \
             writes a day)"
        ));
    }
    // A var is committed with the config; the secret goes in with `wrangler secret put`.
    for secret in ["HEALTH_TOKEN", "ORIGIN_SECRET"] {
        if var(secret).is_some() || top_var_set(config, secret) {
            problems.push(format!(
                "{secret} is a var: it is a secret (wrangler secret put)"
            ));
        }
    }
    for name in HTTPS_VARS {
        if let Some(url) = var(name).filter(|url| !url.starts_with("https://")) {
            problems.push(format!("env.production.vars.{name} = {url:?} is not https"));
        }
    }
    // The worker's own checks of its URLs and path rules, which would otherwise show only after
    // the deploy, as 503 `misconfigured` on every request.
    for problem in gatehouse_edge::offline_problems(|name| var(name)) {
        problems.push(format!("env.production.vars: {problem}"));
    }
    // A misspelt var is ignored by the worker without a word.
    let top_vars = config.get("vars").and_then(Value::as_table);
    for (table, names) in [("env.production.vars", vars), ("vars", top_vars)] {
        let names = names.into_iter().flat_map(Table::keys).map(String::as_str);
        for problem in gatehouse_edge::unknown_var_problems(names) {
            problems.push(format!("{table}: {problem}"));
        }
    }
    // An environment does not inherit [vars]: one missing here is unset in production.
    for name in top_vars.into_iter().flat_map(Table::keys) {
        if var(name.as_str()).is_none() {
            problems.push(format!(
                "[vars] sets {name} but [env.production.vars] does not (vars are not inherited)"
            ));
        }
    }

    let routes = production
        .get("routes")
        .and_then(Value::as_array)
        .is_some_and(|routes| !routes.is_empty());
    if !routes && !production.contains_key("route") {
        problems.push("env.production has no routes in front of the origin".to_owned());
    }
    let kv = production
        .get("kv_namespaces")
        .and_then(Value::as_array)
        .is_some_and(|namespaces| {
            namespaces.iter().any(|ns| {
                ns.get("binding").and_then(Value::as_str) == Some(KV_BINDING)
                    && ns
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| !id.trim().is_empty())
            })
        });
    if !kv {
        problems.push(format!(
            "env.production has no kv_namespaces entry with binding {KV_BINDING} and an id"
        ));
    }
    let cron = production
        .get("triggers")
        .and_then(|triggers| triggers.get("crons"))
        .and_then(Value::as_array)
        .is_some_and(|crons| crons.iter().any(|c| c.as_str() == Some(EVERY_MINUTE)));
    if !cron {
        problems.push(format!(
            "env.production.triggers has no {EVERY_MINUTE:?} cron (the pull)"
        ));
    }
    if production.get("workers_dev").and_then(Value::as_bool) != Some(false) {
        problems.push(
            "env.production does not set workers_dev = false (the Cache API does nothing there)"
                .to_owned(),
        );
    }
    if production.get("preview_urls").and_then(Value::as_bool) != Some(false) {
        problems.push(
            "env.production does not set preview_urls = false (a version's preview address \
             would serve the worker outside its routes)"
                .to_owned(),
        );
    }
    problems
}

fn repo_config() -> Table {
    let path = repo_root().join("wrangler.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

fn production_mut(config: &mut Table) -> &mut Table {
    config
        .get_mut("env")
        .and_then(|env| env.get_mut("production"))
        .and_then(Value::as_table_mut)
        .expect("[env.production]")
}

fn production_vars_mut(config: &mut Table) -> &mut Table {
    production_mut(config)
        .get_mut("vars")
        .and_then(Value::as_table_mut)
        .expect("[env.production.vars]")
}

/// With `GATEHOUSE_DEPLOY_STRICT=1` (docs/deploy.md, step 5, before a real deploy) a
/// placeholder left in the config is a problem too. CI checks the repository's config, which
/// holds them by design.
#[test]
fn the_production_config_has_no_local_leftovers_and_all_it_needs() {
    let config = repo_config();
    let mut problems = production_problems(&config);
    if std::env::var("GATEHOUSE_DEPLOY_STRICT").as_deref() == Ok("1") {
        problems.extend(placeholders_left(&config));
    }
    assert!(
        problems.is_empty(),
        "wrangler.toml [env.production]:\n  {}",
        problems.join("\n  ")
    );
}

/// The template's placeholders, planted in a copy of the config: an operator who filled in the
/// repository's `wrangler.toml` (docs/deploy.md) still passes this test.
fn as_template(config: &Table) -> Table {
    let mut template = config.clone();
    let production = production_mut(&mut template);
    let mut route = Table::new();
    route.insert("pattern".into(), "app.example.com/*".into());
    route.insert("zone_name".into(), "example.com".into());
    production.insert("routes".into(), Value::Array(vec![Value::Table(route)]));
    let kv = production
        .get_mut("kv_namespaces")
        .and_then(Value::as_array_mut)
        .and_then(|namespaces| namespaces.first_mut())
        .and_then(Value::as_table_mut)
        .expect("[[env.production.kv_namespaces]]");
    kv.insert(
        "id".into(),
        "REPLACE-WITH-THE-ID-OF-wrangler-kv-namespace-create".into(),
    );
    let vars = production_vars_mut(&mut template);
    vars.insert("ORIGIN_URL".into(), "https://origin.example.com".into());
    for name in ["ISSUER_URL", "EXPECTED_ISSUER"] {
        vars.insert(name.into(), "https://auth.example.com".into());
    }
    template
}

#[test]
fn every_placeholder_is_found_and_real_values_pass() {
    let config = as_template(&repo_config());
    let left = placeholders_left(&config);
    for path in [
        "routes[0].pattern",
        "vars.ORIGIN_URL",
        "vars.ISSUER_URL",
        "vars.EXPECTED_ISSUER",
        "kv_namespaces[0].id",
    ] {
        assert!(
            left.iter()
                .any(|p| p.starts_with(&format!("env.production.{path} "))),
            "{path} not reported: {left:?}"
        );
    }
    let text = toml::to_string(&config)
        .expect("the config as TOML")
        .replace("example.com", "gatehouse.test")
        .replace(
            "REPLACE-WITH-THE-ID-OF-wrangler-kv-namespace-create",
            "0f1e2d3c",
        );
    let replaced: Table = text.parse().expect("TOML");
    assert_eq!(placeholders_left(&replaced), Vec::<String>::new());
    assert_eq!(production_problems(&replaced), Vec::<String>::new());
    // An unquoted number is a value (the worker reads it as its text), not a missing var.
    let mut unquoted = replaced;
    production_vars_mut(&mut unquoted).insert("DELTA_POLL_MS".into(), 500.into());
    assert_eq!(production_problems(&unquoted), Vec::<String>::new());
}

/// What a plant must make the check report, and the change to a copy of the config.
type Plant = (&'static str, fn(&mut Table));

#[test]
fn the_config_check_catches_what_is_planted_in_a_copy() {
    // Non-capturing closures, so one list holds them all.
    let plants: [Plant; 23] = [
        ("127.0.0.1", |c| {
            production_vars_mut(c).insert("ORIGIN_URL".into(), "http://127.0.0.1:8788".into());
        }),
        ("localhost", |c| {
            production_vars_mut(c).insert("ISSUER_URL".into(), "https://LocalHost:8000".into());
        }),
        ("0.0.0.0", |c| {
            let url = "https://0.0.0.0:8000/v1/revocations/delta";
            production_vars_mut(c).insert("DELTA_URL".into(), url.into());
        }),
        ("[::1]", |c| {
            let mut route = Table::new();
            route.insert("pattern".into(), "[::1]/*".into());
            production_mut(c).insert("routes".into(), vec![route].into());
        }),
        ("\"/pkg/*\"", |c| {
            production_vars_mut(c).insert("PUBLIC_PATHS".into(), "/, /pkg/*".into());
        }),
        ("no routes", |c| {
            production_mut(c).remove("routes");
        }),
        ("GATEHOUSE_KV", |c| {
            production_mut(c).remove("kv_namespaces");
        }),
        ("cron", |c| {
            production_mut(c).remove("triggers");
        }),
        ("TEST_CRASH_ROUTE", |c| {
            production_vars_mut(c).insert("TEST_CRASH_ROUTE".into(), "on".into());
        }),
        ("is not https", |c| {
            let url = "http://auth.example.com/v1/revocations/delta";
            production_vars_mut(c).insert("DELTA_URL".into(), url.into());
        }),
        ("not inherited", |c| {
            let top = c.get("vars").and_then(Value::as_table).expect("[vars]");
            let name = top.keys().next().expect("a top-level var").clone();
            production_vars_mut(c).remove(&name);
        }),
        ("workers_dev", |c| {
            production_mut(c).insert("workers_dev".into(), true.into());
        }),
        ("preview_urls", |c| {
            production_mut(c).remove("preview_urls");
        }),
        (
            "CORS_ORIGIN is not a var the worker reads (did you mean CORS_ORIGINS?)",
            |c| {
                production_vars_mut(c).insert("CORS_ORIGIN".into(), "https://app.test".into());
            },
        ),
        ("HEALTH_TOKEN is a var", |c| {
            let token = "0123456789abcdef0123456789abcdef";
            production_vars_mut(c).insert("HEALTH_TOKEN".into(), token.into());
        }),
        ("PUBLIC_PATHS entry /api/*", |c| {
            production_vars_mut(c).insert("PUBLIC_PATHS".into(), "/, /api/*".into());
            production_vars_mut(c).insert("ROUTE_SCOPES".into(), "/api/admin/*=admin".into());
        }),
        ("without user info", |c| {
            let url = "https://user@origin.example.com";
            production_vars_mut(c).insert("ORIGIN_URL".into(), url.into());
        }),
        // Blank, as the worker reads it: every request would be 503 `misconfigured`.
        ("EXPECTED_AUDIENCE is not set", |c| {
            production_vars_mut(c).insert("EXPECTED_AUDIENCE".into(), " ".into());
        }),
        // Unquoted, a float: the worker reads `1800.0` as 1800 (too short beside the heartbeat).
        ("MAX_LIST_AGE_SECS=1800 is not above", |c| {
            production_vars_mut(c).insert("MAX_LIST_AGE_SECS".into(), 1800.0.into());
        }),
        ("JWKS_REFETCH_COOLDOWN_SECS is 0", |c| {
            production_vars_mut(c).insert("JWKS_REFETCH_COOLDOWN_SECS".into(), "0".into());
        }),
        (
            "JWKS_REFETCH_COOLDOWN_SECS=86400 is above KEYS_TTL_SECS",
            |c| {
                production_vars_mut(c).insert("JWKS_REFETCH_COOLDOWN_SECS".into(), 86400.into());
            },
        ),
        ("KV_HEARTBEAT_SECS=60 is under 600", |c| {
            production_vars_mut(c).insert("KV_HEARTBEAT_SECS".into(), "60".into());
        }),
        ("ORIGIN_SECRET is a var", |c| {
            let secret = "0123456789abcdef0123456789abcdef";
            production_vars_mut(c).insert("ORIGIN_SECRET".into(), secret.into());
        }),
    ];
    let config = repo_config();
    assert!(
        production_problems(&config).is_empty(),
        "the unplanted copy"
    );
    for (expected, plant) in plants {
        let mut copy = config.clone();
        plant(&mut copy);
        let problems = production_problems(&copy);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "planting {expected:?} went unnoticed: {problems:?}"
        );
    }
}

/// A file removed when dropped, even when the test fails.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn wrangler_accepts_the_production_config_offline() {
    let root = repo_root();
    let wrangler = root.join("node_modules/.bin/wrangler");
    assert!(
        wrangler.is_file(),
        "wrangler is missing: run scripts/setup.sh (make test does)"
    );
    assert!(
        root.join("edge/build/index.js").is_file(),
        "edge/build/index.js is missing: run scripts/build-edge.sh (make test does)"
    );
    let mut config = repo_config();
    // The worker is built already; [build] is inherited by the environment and would rebuild it.
    config.remove("build");
    config.insert("main".into(), "edge/build/index.js".into());
    // In the repository root, so the config's relative paths resolve as in the real one.
    let copy = Removed(root.join(format!(".wrangler-dry-{}.toml", std::process::id())));
    let text = toml::to_string(&config).expect("the config as TOML");
    std::fs::write(&copy.0, text).expect("write the config copy");
    let out_dir = tempfile::tempdir().expect("tempdir");
    // The secrets go with the first deploy (docs/deploy.md, step 6), as a .env file.
    let secrets = [
        ("HEALTH_TOKEN", "0f1e2d3c4b5a69780f1e2d3c4b5a6978"),
        (
            "ORIGIN_SECRET",
            "8796a5b4c3d2e1f08796a5b4c3d2e1f08796a5b4c3d2e1f0",
        ),
    ];
    let secrets_file = out_dir.path().join("gatehouse.secrets");
    let lines = secrets.map(|(k, v)| format!("{k}={v}\n")).concat();
    std::fs::write(&secrets_file, lines).expect("write the secrets file");

    let output = Command::new(&wrangler)
        .current_dir(&root)
        .args(["deploy", "--dry-run", "--env", "production", "--config"])
        .arg(&copy.0)
        .arg("--outdir")
        .arg(out_dir.path())
        .arg("--secrets-file")
        .arg(&secrets_file)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("run wrangler");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "wrangler deploy --dry-run --env production failed:\n{printed}"
    );
    assert!(
        printed.contains(&format!("env.{KV_BINDING} (")) && printed.contains("KV Namespace"),
        "the dry run lists no {KV_BINDING} binding:\n{printed}"
    );
    for (name, value) in secrets {
        assert!(
            printed.contains(&format!("env.{name} (\"(hidden)\")")) && !printed.contains(value),
            "the dry run does not take {name} from the secrets file, hidden:\n{printed}"
        );
    }
    let vars: &Table = production_vars_mut(&mut config);
    for (name, value) in vars {
        assert!(
            printed.contains(&format!("env.{name}")),
            "the dry run lists no var {name}:\n{printed}"
        );
        // An unquoted number or boolean: its listing above is what is checked.
        let Some(value) = value.as_str() else {
            continue;
        };
        // wrangler shows a value of 40 characters or more as its first 37 and "...".
        let shown: String = if value.chars().count() < 40 {
            format!("(\"{value}\")")
        } else {
            value.chars().take(37).collect()
        };
        assert!(
            printed.contains(&shown),
            "the dry run does not show {name} = {value:?}:\n{printed}"
        );
    }
}
