//! Testkit: an issuer on a fresh database of either backend, plus request helpers.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use gatehouse_issuer::clock::Clock;
use gatehouse_issuer::config::Config;
use gatehouse_issuer::db::Db;
use gatehouse_shared::{KeySet, RevocationList, SnapshotOptions, Verifier, VerifierOptions};
use rocket::figment::providers::Serialized;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use serde_json::Value;

pub const PASSWORD: &str = "plover-quartz-7";
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each listed `async fn(Backend)` as two tests, one per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
    };
}

/// A database of its own: a PostgreSQL schema, or an SQLite file in a temp dir. Dropped after.
pub struct TestDb {
    pub url: String,
    schema: Option<String>,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", dir.path().join("issuer.db").display()),
                schema: None,
                dir,
            },
            Backend::Postgres => {
                let schema = format!(
                    "t_{}",
                    gatehouse_issuer::ids::new_id()
                        .unwrap()
                        .to_lowercase()
                        .replace('-', "_")
                );
                let mut admin = PgConnection::establish(PG_ADMIN_URL)
                    .expect("PostgreSQL must run on 127.0.0.1:5432 (make test starts it)");
                admin
                    .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
                    .unwrap();
                Self {
                    url: format!("{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"),
                    schema: Some(schema),
                    dir,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema
            && let Ok(mut admin) = PgConnection::establish(PG_ADMIN_URL)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"));
        }
    }
}

/// Test defaults: fast argon2, small lockout numbers, no rate limit to speak of.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config {
        database_url: db.url.clone(),
        data_dir: db.dir.path().join("data"),
        issuer: "https://issuer.test".into(),
        audience: "https://api.test".into(),
        token_rate_per_minute: 100_000,
        open_registration: true,
        db_pool_size: 4,
        // Twice the default: the replica races wait on SQLite's write lock, which a loaded
        // 2-core machine may hold longer; the deadline's own tests set theirs.
        db_timeout_ms: 10_000,
        ..Config::default()
    };
    config.password.m_cost = 64;
    config.password.t_cost = 1;
    config.password.workers = 2;
    config.lockout.threshold = 3;
    config
}

pub struct TestApp {
    pub client: Client,
    pub config: Config,
    pub db: TestDb,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new(backend);
        let mut config = test_config(&db);
        tweak(&mut config);
        Self::boot(db, config).await
    }

    async fn boot(db: TestDb, config: Config) -> Self {
        let client = client_for(&config).await;
        Self { client, config, db }
    }

    /// `n` issuers igniting at once on a fresh, empty database (replicas of a first deploy);
    /// `inspect` runs on each once it has ignited. Each ignites on its own thread and runtime,
    /// released together: on one runtime their (blocking) migrations would run one after
    /// another, and nothing would race.
    pub fn start_many<T: Send + 'static>(
        backend: Backend,
        n: usize,
        inspect: fn(&Client) -> T,
    ) -> Vec<T> {
        let db = TestDb::new(backend);
        let mut config = test_config(&db);
        config.key_encryption_key = Some(gatehouse_issuer::config::Secret::new(
            gatehouse_issuer::keys::Sealer::generate_secret().unwrap(),
        ));
        let start = Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (config, start) = (config.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Runtime::new().unwrap();
                    start.wait();
                    let client = runtime.block_on(client_for(&config));
                    inspect(&client)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// A second issuer on the same database: separate pool, memory and clock, like another
    /// process behind the same load balancer.
    pub async fn replica(&self) -> Client {
        client_for(&self.config).await
    }

    /// A replica with some settings of its own (another data directory, say).
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Config)) -> Client {
        let mut config = self.config.clone();
        tweak(&mut config);
        client_for(&config).await
    }

    /// A fresh issuer process on the same database and data directory.
    pub async fn restart(self, tweak: impl FnOnce(&mut Config)) -> Self {
        let Self {
            client,
            mut config,
            db,
        } = self;
        drop(client);
        tweak(&mut config);
        Self::boot(db, config).await
    }

    pub fn clock(&self) -> &Arc<Clock> {
        self.client.rocket().state::<Arc<Clock>>().unwrap()
    }

    pub fn store(&self) -> &Db {
        self.client.rocket().state::<Db>().unwrap()
    }

    /// A verifier of this issuer's tokens, on the key set its JWKS serves now (`keys()` for
    /// the lists).
    pub async fn verifier(&self) -> Verifier {
        let (_, jwks) = self.send("GET", "/.well-known/jwks.json", None, None).await;
        Verifier::new(
            KeySet::from_json(&jwks.to_string()).unwrap(),
            VerifierOptions::new("https://issuer.test", "https://api.test"),
        )
    }

    /// The signed snapshot `GET /v1/revocations` serves, verified with `keys` at `now`.
    pub async fn snapshot(&self, keys: &KeySet, now: i64) -> RevocationList {
        let (status, body) = self.send("GET", "/v1/revocations", None, None).await;
        assert_eq!(status, Status::Ok, "{body}");
        let options = SnapshotOptions::new("https://issuer.test");
        RevocationList::verify_snapshot(body.as_str().unwrap(), keys, &options, now).unwrap()
    }

    /// Awaits `request` while another connection holds the revocations' write lock, which is
    /// released only once the request has finished or 30 s have passed: a request that waits
    /// for the lock fails the test by name, with no bound on how fast the machine is.
    pub async fn without_waiting_for_a_held_revocation<T>(
        &self,
        request: impl Future<Output = T>,
    ) -> T {
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let revoker = gatehouse_issuer::revoker::Revoker::for_command(
            self.store().clone(),
            self.config.clone(),
        );
        let now = self.clock().now();
        let revocation = std::thread::spawn(move || {
            revoker.run_sync(now, |_| {
                locked.send(()).unwrap();
                let _ = released.recv_timeout(Duration::from_mins(1));
                Ok(())
            })
        });
        is_locked.recv().unwrap();
        let output = tokio::time::timeout(Duration::from_secs(30), request).await;
        release.send(()).unwrap();
        revocation.join().unwrap().unwrap();
        output.expect("the request waited for the held revocation")
    }

    /// One counter of `/metrics` (its name with its labels, as the exposition writes it); fails
    /// loudly when it is not there.
    pub async fn metric(&self, series: &str) -> u64 {
        let (_, metrics) = self.send("GET", "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default();
        let line = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics: {text}"))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (Status, Value) {
        let (status, value, _) = self.send_full(method, path, body, bearer).await;
        (status, value)
    }

    /// Sends a request; a body starting with `{` goes as JSON, anything else as a form.
    pub async fn send_full(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (Status, Value, Vec<(String, String)>) {
        let mut request = match method {
            "GET" => self.client.get(path),
            _ => self.client.post(path),
        };
        if let Some(body) = body {
            let ct = if body.starts_with('{') {
                ContentType::JSON
            } else {
                ContentType::Form
            };
            request = request.header(ct).body(body);
        }
        if let Some(token) = bearer {
            request = request.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        decode(request.dispatch().await).await
    }

    pub async fn register(&self, username: &str) -> String {
        let body = format!(r#"{{"username":"{username}","password":"{PASSWORD}"}}"#);
        let (status, json) = self.send("POST", "/v1/users", Some(&body), None).await;
        assert_eq!(status, Status::Created, "{json}");
        json["id"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, username: &str) -> Value {
        self.login_with(username, "").await
    }

    pub async fn login_with(&self, username: &str, extra: &str) -> Value {
        let body = format!("grant_type=password&username={username}&password={PASSWORD}{extra}");
        let (status, json) = self.send("POST", "/v1/token", Some(&body), None).await;
        assert_eq!(status, Status::Ok, "{json}");
        json
    }

    /// A token request (`body`, a form) answered 503 `temporarily_unavailable` with
    /// `Retry-After`: that header's seconds.
    pub async fn token_unavailable(&self, body: &str) -> u64 {
        let (status, json, headers) = self.send_full("POST", "/v1/token", Some(body), None).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::ServiceUnavailable, "temporarily_unavailable"),
            "{json}"
        );
        let retry_after = header(&headers, "retry-after").unwrap_or_else(|| panic!("{headers:?}"));
        retry_after.parse().unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> (Status, Value) {
        refresh_on(&self.client, refresh_token).await
    }

    /// Runs the issuer binary with `args` on this app's database, `stdin` on its standard input
    /// (a password): whether it succeeded, and its standard output and error.
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        self.cli_with(&[], args, stdin)
    }

    /// [`Self::cli`] with more settings in its environment.
    pub fn cli_with(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
        stdin: &str,
    ) -> (bool, String, String) {
        let out = self.cli_output(env, args, stdin);
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// [`Self::cli_with`], the whole output: for a test of the exit status.
    pub fn cli_output(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
        stdin: &str,
    ) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = crate::binary::command(dir.path());
        cmd.env("GATEHOUSE_DATABASE_URL", &self.db.url)
            .envs(env.iter().copied())
            .args(args);
        crate::binary::output_of(cmd, stdin)
    }

    /// Asserts that `session` (a token response) is out: its access token is revoked and its
    /// refresh token refused.
    pub async fn assert_signed_out(&self, session: &Value) {
        assert_eq!(
            refusal(self.me(str_of(session, "access_token")).await),
            (Status::Unauthorized, "revoked".into())
        );
        assert_eq!(
            refusal(self.refresh(str_of(session, "refresh_token")).await),
            (Status::BadRequest, "invalid_grant".into())
        );
    }

    /// Asserts that `username` cannot log in with `password`, answered as a wrong password is.
    pub async fn assert_login_refused(&self, username: &str, password: &str) {
        let body = format!("grant_type=password&username={username}&password={password}");
        let (status, json) = self.send("POST", "/v1/token", Some(&body), None).await;
        assert_eq!(
            (status, str_of(&json, "error_description")),
            (Status::BadRequest, "invalid username or password")
        );
    }

    pub async fn me(&self, access_token: &str) -> (Status, Value) {
        self.send("GET", "/v1/me", None, Some(access_token)).await
    }

    /// Creates an admin through the store (as `users create --admin` does) and logs in with
    /// the admin scope.
    pub async fn admin_token(&self) -> String {
        let hash = gatehouse_issuer::password::HashPolicy::fast_for_tests()
            .hash(PASSWORD)
            .unwrap();
        self.store()
            .run_sync(|c| {
                gatehouse_issuer::store::users::create(c, "admin-id", "root-admin", &hash, true, 0)
            })
            .unwrap();
        let json = self.login_with("root-admin", "&scope=read%20admin").await;
        json["access_token"].as_str().unwrap().to_owned()
    }
}

async fn client_for(config: &Config) -> Client {
    let figment = gatehouse_issuer::config::defaults()
        .merge(Serialized::defaults(config))
        .merge(Serialized::default("log_level", "off"));
    Client::tracked(gatehouse_issuer::rocket_with(figment))
        .await
        .expect("the issuer ignites")
}

/// `GET /v1/me` on another issuer (a replica); the status only.
pub async fn me_on(client: &Client, access_token: &str) -> Status {
    client
        .get("/v1/me")
        .header(Header::new(
            "Authorization",
            format!("Bearer {access_token}"),
        ))
        .dispatch()
        .await
        .status()
}

/// A password login of `username` on another issuer (a replica); its tokens.
pub async fn login_on(client: &Client, username: &str) -> Value {
    let response = client
        .post("/v1/token")
        .header(ContentType::Form)
        .body(format!(
            "grant_type=password&username={username}&password={PASSWORD}"
        ))
        .dispatch()
        .await;
    let (status, json, _) = decode(response).await;
    assert_eq!(status, Status::Ok, "{json}");
    json
}

pub async fn refresh_on(client: &Client, refresh_token: &str) -> (Status, Value) {
    let response = client
        .post("/v1/token")
        .header(ContentType::Form)
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}"
        ))
        .dispatch()
        .await;
    let (status, json, _) = decode(response).await;
    (status, json)
}

pub async fn decode(response: LocalResponse<'_>) -> (Status, Value, Vec<(String, String)>) {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|h| (h.name().as_str().to_ascii_lowercase(), h.value().to_owned()))
        .collect();
    let text = response.into_string().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json, headers)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A refusal's status and stable code: `code` for the API's errors, `error` for OAuth's.
pub fn refusal((status, json): (Status, Value)) -> (Status, String) {
    let code = json["code"].as_str().or_else(|| json["error"].as_str());
    (
        status,
        code.unwrap_or_else(|| panic!("no code in {json}"))
            .to_owned(),
    )
}

pub fn str_of<'a>(json: &'a Value, key: &str) -> &'a str {
    json[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {json}"))
}

/// The audit details of `uid`'s events of `kind`, oldest first.
pub fn audit_details(app: &TestApp, uid: &str, kind: &str) -> Vec<Value> {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::audit_events;
    let (uid, kind) = (uid.to_owned(), kind.to_owned());
    app.store()
        .run_sync(move |c| {
            let details: Vec<String> = audit_events::table
                .filter(audit_events::kind.eq(kind))
                .filter(audit_events::user_id.eq(uid))
                .order(audit_events::id)
                .select(audit_events::detail)
                .load(c)?;
            Ok(details)
        })
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A new signing key of `alg`, written as a private JWK to `name` in `dir`: the file
/// `GATEHOUSE_SIGNING_KEY_FILE` and `keys import` read.
pub fn write_key_file(
    dir: &std::path::Path,
    name: &str,
    alg: gatehouse_shared::Algorithm,
) -> (std::path::PathBuf, gatehouse_shared::SigningKey) {
    let key = gatehouse_shared::SigningKey::generate(alg).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, key.to_private_jwk_json().unwrap()).unwrap();
    (path, key)
}
