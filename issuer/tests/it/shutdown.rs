//! Stopping the real binary: SIGTERM drains first (readiness 503 while requests are still
//! served, each closing its connection), then the process exits 0; a second SIGTERM or SIGINT
//! stops it without waiting out the drain. The last revocations' push is waited for.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::binary::{Server, serve, user_tokens};

fn signal(server: &Server, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

/// The exit status, once the process has exited; panics after `within`.
async fn exit_within(server: &mut Server, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < within,
            "the issuer still runs after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Readiness once it answers 503, polled for up to 20 s.
async fn draining_readiness(port: u16) -> serde_json::Value {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let response = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            return response.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never turned 503 after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = serve(dir.path(), &[("GATEHOUSE_DRAIN_SECS", "10")]).await;
    signal(&server, "TERM");
    let ready = draining_readiness(port).await;
    assert_eq!(ready["status"], "draining", "{ready}");
    assert_eq!(ready["error"], "temporarily_unavailable", "{ready}");
    // Still serving, and telling each client to reconnect (through the balancer).
    let jwks = reqwest::get(format!("http://127.0.0.1:{port}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert_eq!(jwks.headers()["connection"], "close");
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "stopped before the drain ended"
    );
    let status = exit_within(&mut server, Duration::from_mins(1)).await;
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("SIGTERM: draining"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_or_sigint_stops_without_the_drain() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let long_drain = [("GATEHOUSE_DRAIN_SECS", "300")];
    let (mut twice, twice_port) = serve(dirs[0].path(), &long_drain).await;
    let (mut interrupted, interrupted_port) = serve(dirs[1].path(), &long_drain).await;
    signal(&twice, "TERM");
    signal(&interrupted, "TERM");
    draining_readiness(twice_port).await;
    draining_readiness(interrupted_port).await;
    signal(&twice, "TERM");
    signal(&interrupted, "INT");
    for server in [&mut twice, &mut interrupted] {
        let status = exit_within(server, Duration::from_mins(1)).await;
        assert!(status.success(), "{status:?}");
    }
}

/// `serve` in `dir`, pushing to `sync_url`, once a user there has logged out: a revocation
/// for the last push at the stop to carry.
async fn serve_and_log_out(dir: &std::path::Path, sync_url: &str) -> Server {
    let (server, port) = serve(dir, &[("GATEHOUSE_EDGE_SYNC_URLS", sync_url)]).await;
    let base = format!("http://127.0.0.1:{port}");
    let tokens = user_tokens(dir, &base, "alice").await;
    let logout = reqwest::Client::new()
        .post(format!("{base}/v1/logout"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    server
}

/// A revocation made just before a stop still reaches the edges: once the server has stopped,
/// the replica waits (at most 6 s) for the push of the last revocations' snapshot. Before, the
/// push was cancelled with the runtime, and an edge without the delta feed learnt of the
/// revocation only at its cron.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_just_before_a_stop_is_pushed() {
    let edge = crate::sync::receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_and_log_out(dir.path(), &edge.url).await;
    signal(&server, "INT");
    let status = exit_within(&mut server, Duration::from_mins(1)).await;
    assert!(status.success(), "{status:?}");
    let bodies = edge.bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        1,
        "the logout's snapshot reached the edge before the exit"
    );
    // The list it carried has the logout's revocation: its seq (bytes 5..13 of the payload,
    // little-endian) is past the empty list's 0.
    let payload = bodies[0].split('.').nth(1).unwrap();
    let list = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    assert_eq!(&list[..4], b"GHRL");
    assert!(u64::from_le_bytes(list[5..13].try_into().unwrap()) >= 1);
}

/// The wait for the last pushes is bounded (`FLUSH_LIMIT`, 6 s): with an edge that takes the
/// connection and never answers, the replica still exits, after that wait, and says how many
/// edges it left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_gives_up_on_an_edge_that_never_answers() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/_gatehouse/sync", silent.local_addr().unwrap());
    // Holds every connection open, reading and answering nothing.
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_and_log_out(dir.path(), &url).await;
    let stopping = Instant::now();
    signal(&server, "INT");
    // Unbounded, the wait would last until the push gave up: five 5 s timeouts and the waits
    // between them, over 25 s.
    let status = exit_within(&mut server, Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let waited = stopping.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "exited after {waited:?}, without waiting for the push"
    );
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("stopping before the last revocations' snapshot reached every edge")
            && log.contains("edges=1"),
        "{log}"
    );
}
