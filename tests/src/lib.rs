//! Testkit for the end-to-end suite: the real issuer binary on its own PostgreSQL schema, the
//! built worker under `wrangler dev` (workerd) with its own KV state, and the demo origin, each
//! on a free port and each killed with its whole process group when dropped. Anything missing
//! fails loudly with the command that provides it; nothing here skips.
#![allow(clippy::panic, clippy::expect_used, clippy::missing_panics_doc)] // failing loudly is its job

mod edge;
mod issuer;
pub mod locations;
mod procs;
pub mod proxy;
mod scripts;
mod servers;
mod workerd;
pub mod wrk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use edge::{Edge, built_worker};
pub use issuer::{Issuer, PgSchema};
pub use scripts::{node_json, python_json};
use serde_json::Value;
pub(crate) use servers::NodeServer;
pub use servers::Origin;
pub use workerd::{KvOp, Workerd};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// cargo's target directory; a relative `CARGO_TARGET_DIR` is taken from the repository root,
/// where the make targets run cargo (tests run in `tests/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), |dir| repo_root().join(dir))
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

/// A server that accepts connections and never answers: a hung peer.
pub struct BlackHole {
    /// `http://host:port`.
    pub url: String,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl BlackHole {
    /// Connections it has accepted so far: whether anything is waiting on it.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub async fn black_hole() -> BlackHole {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a black hole");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    BlackHole { url, accepted }
}

/// `http://host:port` of a server that reads each request's head and writes back what `answer`
/// makes of its path and query (`None`: the connection is dropped).
async fn serve_by_path<F, A>(what: &str, answer: F) -> String
where
    F: Fn(String) -> A + Clone + Send + 'static,
    A: Future<Output = Option<Vec<u8>>> + Send,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what}: {e}"));
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(1024);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match socket.read_buf(&mut head).await {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                }
                let path = String::from_utf8_lossy(&head)
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                if let Some(bytes) = answer(path).await {
                    let _ = socket.write_all(&bytes).await;
                }
            });
        }
    });
    url
}

/// `http://host:port` of a server that answers every request with a 302 to the same path and
/// query on `target`: an issuer URL that redirects.
pub async fn redirector(target: &str) -> String {
    let target = target.to_owned();
    serve_by_path("a redirector", move |path| {
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: {target}{path}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        async move { Some(answer.into_bytes()) }
    })
    .await
}

/// `http://host:port` of a server that answers each `GET` with what `target` answers at the same
/// path and query (status and body), `delay` after the request came: a slow upstream, such as a
/// far or loaded issuer.
pub async fn slow_proxy(target: &str, delay: Duration) -> String {
    let target = target.to_owned();
    serve_by_path("a slow proxy", move |path| {
        let url = format!("{target}{path}");
        async move {
            tokio::time::sleep(delay).await;
            let answer = http().get(url).send().await.ok()?;
            let status = answer.status().as_u16();
            let body = answer.bytes().await.unwrap_or_default();
            let mut bytes = format!(
                "HTTP/1.1 {status} Slow\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&body);
            Some(bytes)
        }
    })
    .await
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
