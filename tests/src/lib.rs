//! Testkit for the end-to-end suite: the real issuer binary on its own PostgreSQL schema, the
//! built worker under `wrangler dev` (workerd) with its own KV state, and the demo origin, each
//! on a free port and each killed with its whole process group when dropped. Anything missing
//! fails loudly with the command that provides it; nothing here skips.
#![allow(clippy::panic, clippy::expect_used, clippy::missing_panics_doc)] // failing loudly is its job

pub mod locations;
mod node;
mod procs;
pub use procs::kill_all as kill_children;
pub mod proxy;
mod workerd;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatehouse_shared::{Algorithm, SigningKey};
pub use node::node_json;
use procs::Proc;
use serde_json::Value;
pub use workerd::{KvOp, Workerd};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// A port free now, for a server this process is about to start.
///
/// Taken in turn from below the kernel's ephemeral range (32768–60999 by default), never from
/// it: a port the kernel hands out for `:0` is released here before the server binds it, and in
/// that gap the parallel tests' own `:0` listeners (Miniflare's workerd) and outgoing connections
/// took it (CI saw `EADDRINUSE`). The counter keeps two callers in this process apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 12_000;
    const SPAN: u32 = 20_000;
    // Start where another test binary running alongside is unlikely to be.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(FIRST + offset).expect("the range fits u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// `http://host:port` of a server that accepts connections and never answers: a hung peer.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a black hole");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        // Below the servers' keep-alive, so a pooled connection is never reused as it closes.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("http client")
}

/// Status and JSON (or the text as a JSON string) of a response.
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `GET url` (with a bearer token, if any): status and JSON.
pub async fn get_json(url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = http().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    json_of(request.send().await.expect("GET")).await
}

/// `GET url` with a bearer token: status, JSON and the `WWW-Authenticate` challenge, if any.
pub async fn get_challenged(url: &str, bearer: &str) -> (u16, Value, Option<String>) {
    let response = http()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("GET");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("a text challenge").to_owned());
    let (status, json) = json_of(response).await;
    (status, json, challenge)
}

/// The `HEALTH_TOKEN` of every edge the testkit starts, so tests can read the health details.
pub const HEALTH_TOKEN: &str = "testkit-health-token-5f1c2a9e";

/// The health route's details at the edge `url`, asked with [`HEALTH_TOKEN`].
pub async fn edge_health(url: &str) -> Value {
    let (status, health) = get_json(&format!("{url}/_gatehouse/health"), Some(HEALTH_TOKEN)).await;
    assert!(
        health.get("problems").is_some(),
        "no details ({status}): {health}"
    );
    health
}

/// `vars` with the testkit's [`HEALTH_TOKEN`], unless they set their own.
pub fn with_health_token<'a>(vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(k, _)| *k == "HEALTH_TOKEN") {
        vars.push(("HEALTH_TOKEN", HEALTH_TOKEN));
    }
    vars
}

/// `GET url` as text (JWKS documents and snapshots are compared or parsed as they are).
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// `POST url` with a form body: status and JSON.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    json_of(http().post(url).form(form).send().await.expect("POST")).await
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PostgreSQL schema of its own, dropped afterwards.
pub struct PgSchema {
    pub name: String,
    owned: bool,
}

const PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs `sql` with psql as `postgres` (unaligned, tuples only) and returns what it printed.
fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-q",
            "-tA",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .output()
        .expect("psql runs (PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql}: {} (is PostgreSQL up on 127.0.0.1:5432? make test starts it)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PgSchema {
    pub fn new() -> Self {
        let name = format!("e2e_{}_{}", std::process::id(), free_port());
        let _ = psql(&format!("CREATE SCHEMA {name}"));
        Self { name, owned: true }
    }

    /// The same schema, without dropping it at the end (for a second process on it).
    #[must_use]
    pub fn share(&self) -> Self {
        Self {
            name: self.name.clone(),
            owned: false,
        }
    }

    pub fn url(&self) -> String {
        format!("{PG}?options=-csearch_path%3D{}", self.name)
    }

    /// Runs `sql` over this schema's tables (a scenario's direct change to the database).
    pub fn execute(&self, sql: &str) {
        psql(&format!("SET search_path TO {}; {sql}", self.name));
    }

    /// The number a `SELECT count(*) …` over this schema's tables returns.
    pub fn count(&self, sql: &str) -> i64 {
        let out = psql(&format!("SET search_path TO {}; {sql}", self.name));
        out.lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("{sql} printed no count: {out}"))
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if self.owned {
            let _ = psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A key-encryption key for one test system: 32 random bytes, base64url.
fn gatehouse_issuer_secret() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// The real issuer binary on PostgreSQL, signing with a key this test holds too.
pub struct Issuer {
    proc: Option<Proc>,
    pub url: String,
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
    pub schema: PgSchema,
    env: Vec<(String, String)>,
}

impl Issuer {
    /// `env`: extra `GATEHOUSE_*` settings, e.g. the edge sync URL or token lifetimes.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_on(PgSchema::new(), None, env).await
    }

    /// On a given schema, optionally through another address (a [`proxy::Proxy`] port).
    pub async fn start_on(schema: PgSchema, via_port: Option<u16>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate(Algorithm::EdDsa).expect("key");
        let key_file = dir.path().join("signing.jwk");
        std::fs::write(&key_file, key.to_private_jwk_json().expect("jwk")).expect("write key");
        // A scenario may fix the port (peers configured before the issuer starts need its URL).
        let port = env
            .iter()
            .find(|(k, _)| *k == "GATEHOUSE_PORT")
            .map_or_else(free_port, |(_, v)| {
                v.parse().expect("GATEHOUSE_PORT is a port")
            });
        let url = format!("http://127.0.0.1:{port}");
        let database_url = match via_port {
            Some(port) => schema
                .url()
                .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}")),
            None => schema.url(),
        };
        let mut all: Vec<(String, String)> = vec![
            ("GATEHOUSE_DATABASE_URL".into(), database_url),
            ("GATEHOUSE_PORT".into(), port.to_string()),
            ("GATEHOUSE_ISSUER".into(), url.clone()),
            ("GATEHOUSE_AUDIENCE".into(), "gatehouse-e2e".into()),
            (
                "GATEHOUSE_SIGNING_KEY_FILE".into(),
                key_file.display().to_string(),
            ),
            (
                "GATEHOUSE_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            // What production sets on every replica: the secret the key ring is sealed with.
            (
                "GATEHOUSE_KEY_ENCRYPTION_KEY".into(),
                gatehouse_issuer_secret(),
            ),
            // The tests register their users through the API.
            ("GATEHOUSE_OPEN_REGISTRATION".into(), "true".into()),
            ("GATEHOUSE_PASSWORD__M_COST".into(), "256".into()),
            ("GATEHOUSE_PASSWORD__T_COST".into(), "1".into()),
            ("GATEHOUSE_CLEANUP_INTERVAL_SECS".into(), "1".into()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut issuer = Self {
            proc: None,
            url,
            key,
            dir,
            schema,
            env: all,
        };
        issuer.spawn().await;
        issuer
    }

    async fn spawn(&mut self) {
        // The benchmark suite points this at a release build.
        let bin = std::env::var_os("GATEHOUSE_ISSUER_BIN").map_or_else(
            || target_dir().join("debug/gatehouse-issuer"),
            PathBuf::from,
        );
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build -p gatehouse-issuer` (make test does)",
            bin.display()
        );
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .current_dir(self.dir.path())
            .envs(self.env.iter().cloned());
        self.proc = Some(Proc::spawn(cmd, &self.dir.path().join("issuer.log")));
        let ready = format!("{}/health/ready", self.url);
        let client = http();
        eventually("the issuer to be ready", Duration::from_secs(20), || {
            let req = client.get(&ready).send();
            async move {
                req.await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// The issuer's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// The issuer process's resident memory now and at its peak, in MB.
    pub fn rss_mb(&self) -> (f64, f64) {
        let status = self
            .proc
            .as_ref()
            .and_then(Proc::pid)
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// A second issuer process on the same database, as another replica behind a load balancer
    /// would be: the same configuration, its own port and data directory, and no key file (the
    /// key ring comes from the database, sealed under the shared secret).
    pub async fn replica(&self) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "GATEHOUSE_SIGNING_KEY_FILE");
        for (k, v) in &mut env {
            match k.as_str() {
                "GATEHOUSE_PORT" => *v = port.to_string(),
                "GATEHOUSE_DATA_DIR" => *v = dir.path().join("data").display().to_string(),
                _ => {}
            }
        }
        let key = SigningKey::from_jwk_json(&self.key.to_private_jwk_json().expect("jwk"))
            .expect("same key");
        let mut replica = Self {
            proc: None,
            url,
            key,
            dir,
            schema: self.schema.share(),
            env,
        };
        replica.spawn().await;
        replica
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Production key rotation: a new key in the key file, then a restart. Returns the key
    /// that was replaced (now retired, still published for its grace).
    pub async fn rotate_key_file(&mut self) -> SigningKey {
        let next = SigningKey::generate(Algorithm::EdDsa).expect("key");
        let jwk = next.to_private_jwk_json().expect("jwk");
        std::fs::write(self.dir.path().join("signing.jwk"), jwk).expect("write key");
        let retired = std::mem::replace(&mut self.key, next);
        self.restart().await;
        retired
    }

    /// `POST /v1/logout` with `token`; the status.
    pub async fn logout(&self, token: &str) -> u16 {
        let url = format!("{}/v1/logout", self.url);
        http()
            .post(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("logout")
            .status()
            .as_u16()
    }

    /// Starts the issuer CLI with this issuer's configuration, its standard streams piped.
    pub fn cli_child(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(target_dir().join("debug/gatehouse-issuer"))
            .args(args)
            .current_dir(self.dir.path())
            .envs(self.env.iter().cloned())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the issuer CLI")
    }

    /// Runs the issuer CLI with `input` on standard input (`users create` reads the password).
    pub fn cli(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write as _;
        let mut child = self.cli_child(args);
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for the CLI")
    }

    pub async fn register(&self, username: &str, password: &str) {
        let body = serde_json::json!({"username": username, "password": password});
        let (status, json) = json_of(
            http()
                .post(format!("{}/v1/users", self.url))
                .json(&body)
                .send()
                .await
                .expect("register"),
        )
        .await;
        assert_eq!(status, 201, "{json}");
    }

    pub async fn login(&self, username: &str, password: &str) -> Value {
        let form = [
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        let (status, json) = json_of(
            http()
                .post(format!("{}/v1/token", self.url))
                .form(&form)
                .send()
                .await
                .expect("login"),
        )
        .await;
        assert_eq!(status, 200, "{json}");
        json
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = http()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        // A renamed or missing metric fails loudly: reading it as 0 would let a test pass.
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("the issuer's /metrics has no {name}:\n{text}"))
    }
}

/// A Node.js server of the repository on a free port, with its log in a directory of its own,
/// killed when dropped.
pub(crate) struct NodeServer {
    proc: Proc,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl NodeServer {
    /// The process group of the server and everything it started (workerd, for Miniflare).
    pub(crate) fn process_group(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Runs `node <script> <args(port)>` from the repository root and waits until `probe` (a
    /// path) answers at all.
    pub(crate) async fn start(
        script: &str,
        args: impl FnOnce(u16) -> Vec<String>,
        probe: &str,
        wait: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(repo_root().join(script))
            .args(args(port))
            .current_dir(repo_root());
        let log = dir.path().join("node.log");
        let proc = Proc::spawn(cmd, &log);
        let url = format!("http://127.0.0.1:{port}");
        let probe = format!("{url}{probe}");
        let client = http();
        let start = Instant::now();
        // Ready means a success status, not just any answer (a 500 is not ready).
        while !client
            .get(&probe)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if start.elapsed() > wait {
                let printed = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{script} did not serve within {wait:?}; its log:\n{printed}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            proc,
            url,
            _dir: dir,
        }
    }
}

/// The demo origin (`dev/origin.mjs`), which records what reaches it.
pub struct Origin {
    _server: NodeServer,
    pub url: String,
}

impl Origin {
    pub async fn start() -> Self {
        let server = NodeServer::start(
            "dev/origin.mjs",
            |port| vec![port.to_string()],
            "/__origin/requests",
            Duration::from_secs(10),
        )
        .await;
        Self {
            url: server.url.clone(),
            _server: server,
        }
    }

    /// What reached the origin since the last call.
    pub async fn requests(&self) -> Vec<Value> {
        let (status, json) = json_of(
            http()
                .get(format!("{}/__origin/requests", self.url))
                .send()
                .await
                .expect("origin"),
        )
        .await;
        // Loudly: an empty list from a broken recording route would pass "nothing reached it".
        assert_eq!(status, 200, "the origin's record: {json}");
        json.as_array()
            .cloned()
            .unwrap_or_else(|| panic!("the origin's record is not a list: {json}"))
    }
}

/// The built worker under `wrangler dev`, with KV state of its own.
pub struct Edge {
    proc: Option<Proc>,
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
}

pub fn built_worker() -> PathBuf {
    let main = repo_root().join("edge/build/index.js");
    assert!(
        main.is_file(),
        "{} is missing: run scripts/build-edge.sh (make test does)",
        main.display()
    );
    main
}

impl Edge {
    /// `vars` are the worker's `[vars]`; `port` from [`free_port`], chosen before the issuer
    /// starts so it can push here.
    pub async fn start(port: u16, vars: &[(&str, &str)]) -> Self {
        Self::start_script(port, &built_worker(), vars, &[]).await
    }

    /// [`Self::start`] with more `[vars]` written as TOML values (`5`, `true`, `["x"]`), which
    /// wrangler passes to the worker as JSON values rather than strings.
    pub async fn start_with_toml_values(
        port: u16,
        vars: &[(&str, &str)],
        toml_values: &[(&str, &str)],
    ) -> Self {
        Self::start_script(port, &built_worker(), vars, toml_values).await
    }

    /// Any worker module under the same `wrangler dev` setup (the soak's baseline uses a
    /// trivial JavaScript worker).
    pub async fn start_script(
        port: u16,
        main: &Path,
        vars: &[(&str, &str)],
        toml_values: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = format!(
            "name = \"gatehouse-edge-e2e\"\nmain = \"{}\"\ncompatibility_date = \"2026-04-01\"\nsend_metrics = false\n\n[vars]\n",
            main.display()
        );
        for (k, v) in with_health_token(vars) {
            let _ = writeln!(
                config,
                "{k} = {}",
                serde_json::to_string(v).expect("toml string")
            );
        }
        for (k, v) in toml_values {
            let _ = writeln!(config, "{k} = {v}");
        }
        config.push_str("\n[[kv_namespaces]]\nbinding = \"GATEHOUSE_KV\"\nid = \"e2e\"\n\n[triggers]\ncrons = [\"* * * * *\"]\n");
        std::fs::write(dir.path().join("wrangler.toml"), config).expect("write wrangler.toml");
        let mut edge = Self {
            proc: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
        };
        edge.spawn().await;
        edge
    }

    async fn spawn(&mut self) {
        let wrangler = repo_root().join("node_modules/.bin/wrangler");
        assert!(
            wrangler.is_file(),
            "wrangler is missing: run scripts/setup.sh (make test does)"
        );
        let mut cmd = tokio::process::Command::new(wrangler);
        cmd.current_dir(self.dir.path())
            .args([
                "dev",
                "--config",
                "wrangler.toml",
                "--ip",
                "127.0.0.1",
                "--port",
            ])
            .arg(self.port.to_string())
            .args([
                "--persist-to",
                "state",
                "--test-scheduled",
                "--log-level",
                "warn",
            ])
            // Parallel instances would fight over the default inspector port.
            .arg("--inspector-port")
            .arg(free_port().to_string())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1");
        self.proc = Some(Proc::spawn(cmd, &self.dir.path().join("wrangler.log")));
        let health = format!("{}/_gatehouse/health", self.url);
        let client = http();
        let start = Instant::now();
        while client.get(&health).send().await.is_err() {
            if start.elapsed() > Duration::from_mins(1) {
                let log = std::fs::read_to_string(self.dir.path().join("wrangler.log"))
                    .unwrap_or_default();
                panic!("wrangler dev did not serve within a minute; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops workerd and starts it again on the same port and KV state.
    pub async fn restart(&mut self) {
        self.proc = None;
        self.spawn().await;
    }

    pub async fn health(&self) -> Value {
        edge_health(&self.url).await
    }

    /// Fires the cron trigger (the pull path). Like Cloudflare's cron, a run that fails is
    /// followed by another: up to three here, each failure printed, then the test fails with
    /// what the last one answered.
    pub async fn run_cron(&self) {
        let url = format!("{}/__scheduled?cron=*+*+*+*+*", self.url);
        let mut last = String::new();
        for attempt in 1..=3 {
            match http().get(&url).send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    let status = response.status();
                    last = format!("{status}: {}", response.text().await.unwrap_or_default());
                }
                Err(e) => last = e.to_string(),
            }
            eprintln!("cron run {attempt} at {} failed: {last}", self.url);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the cron trigger failed three times; last: {last}");
    }

    /// RSS in MB of wrangler and its workerd processes (one process group).
    pub fn rss_mb(&self) -> f64 {
        let Some(pgid) = self.proc.as_ref().and_then(Proc::pid) else {
            return 0.0;
        };
        let mut kb = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised command: state, ppid, pgrp, …
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2));
            if pgrp.and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
                let status =
                    std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                kb += status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
        kb / 1024.0
    }
}
