//! The real issuer binary on a PostgreSQL schema of its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatehouse_shared::{Algorithm, SigningKey};
use serde_json::Value;

use crate::procs::Proc;
use crate::{free_port, http, json_of, target_dir};

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
        let log = self.dir.path().join("issuer.log");
        let mut proc = Proc::spawn(cmd, &log);
        let ready = format!("{}/health/ready", self.url);
        let client = http();
        let started = Instant::now();
        loop {
            let answer = client.get(&ready).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            // A process that exited (a port still taken, a refused setting) will not get ready.
            if proc.exited() || started.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("the issuer did not get ready; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.proc = Some(proc);
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
        if let Some(proc) = self.proc.take() {
            proc.stop().await;
        }
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

    /// `POST /v1/logout` with `token`; the status, 0 when no answer came (the benchmark counts
    /// that as a failed trial rather than crash; a test comparing it with 200 still fails).
    pub async fn logout(&self, token: &str) -> u16 {
        let url = format!("{}/v1/logout", self.url);
        let sent = http().post(url).bearer_auth(token).send().await;
        sent.map_or(0, |response| response.status().as_u16())
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
        self.try_login(username, password)
            .await
            .unwrap_or_else(|e| panic!("login: {e}"))
    }

    /// [`Self::login`] for the OAuth client `client_id` (RFC 6749 §3.2.1).
    pub async fn login_as_client(&self, username: &str, password: &str, client_id: &str) -> Value {
        self.try_login_with(username, password, &[("client_id", client_id)])
            .await
            .unwrap_or_else(|e| panic!("login: {e}"))
    }

    /// [`Self::login`], with a failure (no answer, another status) returned: the benchmark
    /// records it as a failed trial.
    pub async fn try_login(&self, username: &str, password: &str) -> Result<Value, String> {
        self.try_login_with(username, password, &[]).await
    }

    async fn try_login_with(
        &self,
        username: &str,
        password: &str,
        more: &[(&str, &str)],
    ) -> Result<Value, String> {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        form.extend_from_slice(more);
        let sent = http()
            .post(format!("{}/v1/token", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match json_of(sent).await {
            (200, json) => Ok(json),
            (status, json) => Err(format!("{status} {json}")),
        }
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
