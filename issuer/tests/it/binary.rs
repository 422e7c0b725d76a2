//! The real binary: `serve` with no configuration starts on SQLite in the working directory and
//! runs the whole register → login → me → refresh → logout flow; the CLI is in `cli`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gatehouse_tests::free_port;
use serde_json::Value;

use crate::common::PASSWORD;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_gatehouse-issuer");

pub(crate) fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    // No configuration at all: only what a shell always has.
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

pub(crate) fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = command(dir);
    cmd.args(args);
    output_of(cmd, stdin)
}

/// What `cmd` printed, and how it ended, with `stdin` on its standard input.
pub(crate) fn output_of(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `GATEHOUSE_PROFILE=production` with the development defaults: the issuer does not start,
/// and says which settings to change.
#[test]
fn production_refuses_development_defaults_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .arg("serve")
        .env("GATEHOUSE_PROFILE", "production")
        .env("GATEHOUSE_OPEN_REGISTRATION", "true")
        .env("GATEHOUSE_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for setting in [
        "GATEHOUSE_KEY_ENCRYPTION_KEY",
        "GATEHOUSE_ISSUER",
        "GATEHOUSE_OPEN_REGISTRATION",
        "GATEHOUSE_DATABASE_URL",
    ] {
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
    assert!(
        !dir.path().join(".gatehouse/key-encryption-key").exists(),
        "production generates no secret"
    );
}

/// A command refuses what `serve` refuses: `keys rotate` in production with no database URL
/// would otherwise make and migrate `./gatehouse.db` and report a new active key there.
#[test]
fn commands_refuse_what_serve_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["keys", "rotate"])
        .env("GATEHOUSE_PROFILE", "production")
        .env("GATEHOUSE_ISSUER", "https://auth.example.com")
        .env("GATEHOUSE_KEY_ENCRYPTION_KEY", "k".repeat(43))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("GATEHOUSE_DATABASE_URL"), "{stderr}");
    let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(made.is_empty(), "the command wrote {made:?}");
}

/// `serve` in `dir` on a free port (8000 may be taken on a shared machine) with `env`, its log in
/// `dir/serve.log`, once it is ready; and its port.
pub(crate) async fn serve(dir: &Path, env: &[(&str, &str)]) -> (Server, u16) {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    serve_logging_to(dir, env, log.into()).await
}

/// [`serve`], its log (standard error) going to `log`.
async fn serve_logging_to(dir: &Path, env: &[(&str, &str)], log: Stdio) -> (Server, u16) {
    let port = free_port();
    let child = command(dir)
        .arg("serve")
        .env("GATEHOUSE_PORT", port.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server(child);
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            && r.status().is_success()
        {
            return (server, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the issuer did not become ready");
}

/// A user `name` made by the CLI in `serve`'s directory, and a password login's tokens.
pub(crate) async fn user_tokens(dir: &Path, base: &str, name: &str) -> Value {
    let out = run(dir, &["users", "create", name], &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let form = [
        ("grant_type", "password"),
        ("username", name),
        ("password", PASSWORD),
    ];
    let (status, tokens) = call(
        reqwest::Client::new()
            .post(format!("{base}/v1/token"))
            .form(&form),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// The refresh grant judges a token at the time its body arrived, not its headers. A thief with
/// a stolen refresh token who opens a request before the owner's rotation and sends the rest of
/// its body after the grace window is reuse, which ends the session; before, the request's time
/// was read by a guard once Rocket had the body's start, fell before the rotation, and the thief
/// got the successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_body_comes_late_is_judged_when_it_arrives() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &[("GATEHOUSE_REFRESH_GRACE_SECS", "1")]).await;
    let base = format!("http://127.0.0.1:{port}");
    let tokens = user_tokens(dir.path(), &base, "alice").await;
    let stolen = tokens["refresh_token"].as_str().unwrap();
    // The body's first KiB (JSON may start with whitespace) comes with the headers, the rest
    // after the grace window.
    let lead = " ".repeat(1024);
    let tail =
        serde_json::json!({"grant_type": "refresh_token", "refresh_token": stolen}).to_string();
    let mut thief = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        lead.len() + tail.len()
    );
    thief.write_all(head.as_bytes()).await.unwrap();
    thief.write_all(lead.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", stolen)];
    let http = reqwest::Client::new();
    let (status, owners) = call(http.post(format!("{base}/v1/token")).form(&form)).await;
    assert_eq!(status, 200, "{owners}");
    // Past the 1 s grace window by the clock, whenever the headers came.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    thief.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = String::new();
    thief.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("invalid_grant"),
        "{answer}"
    );
    // Reuse ends the session: the owner's successor is refused too.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", owners["refresh_token"].as_str().unwrap()),
    ];
    let (status, json) = call(http.post(format!("{base}/v1/token")).form(&form)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// A revocation is stamped when its body arrived. Stamped with its headers' time (a body sent
/// over many minutes), the entry was older than those committed before it, and the delta feed,
/// which starts past the newest entry older than its window, left them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_whose_body_comes_late_is_stamped_when_it_arrives() {
    use diesel::prelude::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    #[derive(QueryableByName)]
    struct Stamp {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        created_at: i64,
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let tokens = user_tokens(dir.path(), &base, "alice").await;
    let lead = " ".repeat(1024);
    let tail = serde_json::json!({"token": tokens["refresh_token"]}).to_string();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        lead.len() + tail.len()
    );
    let sent_at = gatehouse_tests::unix_now();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(lead.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let db = dir.path().join("gatehouse.db");
    let mut conn = SqliteConnection::establish(&db.display().to_string()).unwrap();
    let stamps: Vec<Stamp> = diesel::sql_query("SELECT created_at FROM revocations")
        .load(&mut conn)
        .unwrap();
    let stamps: Vec<i64> = stamps.iter().map(|s| s.created_at).collect();
    let arrived = sent_at + 2;
    assert!(
        stamps.len() == 1 && stamps[0] >= arrived,
        "{stamps:?}, body in at {arrived} or later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_configuration_runs_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    // Rocket's runtime settings size the runtime `serve` builds (before, they were ignored).
    let (_server, port) = serve(dir.path(), &[("GATEHOUSE_WORKERS", "3")]).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    // Plain text: a log written to a file carries no terminal colours.
    assert!(!log.contains('\x1b'), "{log}");
    assert!(log.contains("workers=3"), "{log}");
    assert!(
        dir.path().join("gatehouse.db").is_file(),
        "SQLite in the working directory"
    );
    // The signing key is sealed in the database under a key-encryption key the dev run
    // generated in its data directory (never the private key itself on disk).
    assert!(dir.path().join(".gatehouse/key-encryption-key").is_file());
    assert!(!dir.path().join(".gatehouse/keys").exists());

    // Registration is closed unless configured open; the CLI makes users either way.
    let body = serde_json::json!({"username": "alice", "password": PASSWORD});
    let (status, json) = call(http.post(format!("{base}/v1/users")).json(&body)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("registration_closed"))
    );
    let tokens = user_tokens(dir.path(), &base, "alice").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (status, me) = call(http.get(format!("{base}/v1/me")).bearer_auth(&access)).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("alice")));
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ];
    let (status, refreshed) = call(http.post(format!("{base}/v1/token")).form(&form)).await;
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(http.post(format!("{base}/v1/logout")).bearer_auth(&access)).await;
    assert_eq!(status, 200);
    let (status, me) = call(http.get(format!("{base}/v1/me")).bearer_auth(&access)).await;
    assert_eq!((status, me["code"].as_str()), (401, Some("revoked")));
}

/// A log that cannot be written (standard error on a full disk, or a pipe whose reader is gone)
/// loses its lines, not the server. Before, the logging library reported the failed write with
/// `eprintln!`, which panicked: `serve` died at its first log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_outlives_a_log_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (_server, port) = serve_logging_to(dir.path(), &[], full.into()).await;
    let base = format!("http://127.0.0.1:{port}");
    // A login writes its audit event to the log too.
    let tokens = user_tokens(dir.path(), &base, "alice").await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, me) = call(
        reqwest::Client::new()
            .get(format!("{base}/v1/me"))
            .bearer_auth(access),
    )
    .await;
    assert_eq!((status, me["username"].as_str()), (200, Some("alice")));
}

/// Whatever log level an operator asks for, no token reaches the log: Rocket writes each
/// request and response whole at debug, `Authorization` header and all, which
/// `GATEHOUSE_LOG=debug` (or `trace`) turned on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_verbose_log_holds_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = serve(dir.path(), &[("GATEHOUSE_LOG", "trace")]).await;
    let base = format!("http://127.0.0.1:{port}");
    let tokens = user_tokens(dir.path(), &base, "alice").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let (status, _) = call(http.get(format!("{base}/v1/me")).bearer_auth(access)).await;
    assert_eq!(status, 200);
    drop(server);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    // Rocket's own lines are there (its request lines, at info): only its dumps are not.
    assert!(log.contains("/v1/me"), "{log}");
    for secret in [access, refresh, PASSWORD] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

/// The issuer speaks HTTP/1.1, to the TLS proxy before it (deploy.md). HTTP/2 without TLS (h2c,
/// by prior knowledge), which Rocket serves by default, is off: it allowed unlimited streams a
/// connection and 16 MiB of headers a request, where HTTP/1 answers 431 past Rocket's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_is_not_spoken() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &[]).await;
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The connection preface, then an empty SETTINGS frame, as an h2c client opens.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    })
    .await
    .unwrap();
    // An HTTP/2 server's first frame is its SETTINGS (type 4, the fourth byte).
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}
