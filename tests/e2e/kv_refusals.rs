//! KV failing under the revocation list's writes and reads, SIMULATED on one location's KV
//! that refuses a chosen operation on chosen keys (as Cloudflare's does past its write limit,
//! or in an outage): refused writes and their retries, an unreadable or empty KV, a replayed
//! old list with nothing to compare it with. Each test says what it plants by hand.

use std::time::Duration;

use gatehouse_tests::{Issuer, KvOp, Workerd, built_worker, eventually, free_port, get_json};

use crate::system::{AUDIENCE, PASSWORD, access, push};

/// A retry of a push whose KV write failed, after the isolate took a newer list whose write
/// failed too (SIMULATED as above: the first two puts refused): KV still holds neither, so the
/// retry is stored and answered 200. Before, the newer list in memory made it a 409, which the
/// issuer takes as delivered, and KV kept nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_older_than_the_isolates_list_still_reaches_kv() {
    let (issuer_port, issuer_url, edge) =
        lone_edge_refusing(KvOp::Put, &[("revocations", 2)]).await;
    let issuer = Issuer::start(&[("GATEHOUSE_PORT", issuer_port.as_str())]).await;
    let now = gatehouse_tests::unix_now();
    let signed = |issued_at: i64| signed_list(&issuer, &issuer_url, 5, issued_at);
    let (older, newer) = (signed(now - 10), signed(now - 5));
    for jws in [older.clone(), newer] {
        assert_not_stored(&edge, jws).await;
    }
    let (status, json) = push(&edge.url, older).await;
    assert_eq!(status, 200, "the retry is stored: {json}");
    let health = gatehouse_tests::edge_health(&edge.url).await;
    assert!(health["kv_write_error"].is_null(), "{health}");
    assert_eq!(health["revocations"]["seq"], 5, "{health}");
}

/// A list with a lower seq than the isolate holds is refused (409), even while KV's heads look
/// older: on Cloudflare a location reads them through its own cache, so another location's
/// newer list may be behind them, and storing this one would roll KV back everywhere. SIMULATED
/// here by the isolate's own newer list whose KV write was refused. Before, it was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_below_the_isolates_seq_is_never_stored() {
    let (issuer_port, issuer_url, edge) =
        lone_edge_refusing(KvOp::Put, &[("revocations", 1)]).await;
    let issuer = Issuer::start(&[("GATEHOUSE_PORT", issuer_port.as_str())]).await;
    let now = gatehouse_tests::unix_now();
    let signed = |seq: u64| signed_list(&issuer, &issuer_url, seq, now - 5);
    assert_not_stored(&edge, signed(6)).await;
    let (status, json) = push(&edge.url, signed(5)).await;
    assert_eq!(
        (status, json["code"].as_str(), json["held_seq"].as_u64()),
        (409, Some("stale_snapshot"), Some(6)),
        "{json}"
    );
    let (status, json) = push(&edge.url, signed(6)).await;
    assert_eq!(status, 200, "the held list itself is stored: {json}");
}

/// KV's head cannot be read (SIMULATED, as above: every read of it fails) when a push arrives:
/// the edge cannot tell whether storing the list would roll a newer one back, so it writes
/// nothing and answers 503, but it holds the verified list and refuses its entries at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_kv_head_keeps_the_pushed_list_in_memory() {
    let (issuer_port, _, edge) =
        lone_edge_refusing(KvOp::Get, &[("revocations-head", u32::MAX)]).await;
    let (_issuer, token, snapshot) = a_logged_out_token(&issuer_port).await;
    assert_not_stored(&edge, snapshot).await;
    assert_verdict(&edge, &token, 401, "revoked").await;
    let health = gatehouse_tests::edge_health(&edge.url).await;
    assert!(
        health["kv_write_error"]
            .as_str()
            .is_some_and(|e| e.contains("reading revocations-head")),
        "{health}"
    );
}

/// KV's head cannot be read (SIMULATED) and the isolate holds no list: a snapshot signed more
/// than a minute ago is not installed, since nothing can tell it from an old one replayed
/// (snapshots are public) to roll revocations back; the issuer's current one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kv_an_isolate_with_no_list_takes_only_a_fresh_one() {
    let (issuer_port, issuer_url, edge) =
        lone_edge_refusing(KvOp::Get, &[("revocations-head", u32::MAX)]).await;
    let (issuer, token, snapshot) = a_logged_out_token(&issuer_port).await;
    assert_too_old(&edge, replayed_list(&issuer, &issuer_url)).await;
    assert_verdict(&edge, &token, 503, "revocation_list_missing").await;
    let health = gatehouse_tests::edge_health(&edge.url).await;
    assert!(
        health["kv_write_error"]
            .as_str()
            .is_some_and(|e| e.contains("reading revocations-head")),
        "the unreadable KV is reported: {health}"
    );
    let (status, _) = push(&edge.url, snapshot).await;
    assert_eq!(status, 503, "held, not stored");
    assert_verdict(&edge, &token, 401, "revoked").await;
}

/// A new isolate whose first load of the list failed (its readiness probe's read of KV's head
/// refused, SIMULATED) tries again a second later, not at the 10 s interval, and its requests,
/// arriving together, all wait for that one load: none is refused `revocation_list_missing`
/// while it runs. Before, every request was refused until the interval ended, and then all but
/// the one that began the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_isolates_requests_wait_for_one_load_tried_again_within_seconds() {
    // The issuer first: the edge's readiness probe is then the only request before the burst.
    let issuer_port = free_port().to_string();
    let (_issuer, token, _) = a_logged_out_token(&issuer_port).await;
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let vars = lone_edge_vars(&issuer_url);
    let refused = [("revocations-head", 1)];
    let edge = Workerd::start_with_refused_kv(&built_worker(), &vars, KvOp::Get, &refused).await;
    let probed = std::time::Instant::now();
    // Past the second after the probe's failed load.
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(probed.elapsed())).await;
    let check = format!("{}/_gatehouse/check", edge.url);
    let asks = (0..8).map(|_| get_json(&check, Some(&token)));
    let answers: Vec<(u16, Option<String>)> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .map(|(status, json)| (status, json["code"].as_str().map(str::to_owned)))
        .collect();
    // KV empty: the load takes the issuer's list, which revokes the token.
    let revoked = (401, Some("revoked".to_owned()));
    assert!(answers.iter().all(|a| *a == revoked), "{answers:?}");
}

/// The same with KV readable but empty (a first deploy), pushed to an isolate that already
/// holds the issuer's list (it read it itself, KV having none): memory keeps its list, and the
/// old one is not stored in KV for every other isolate either (before, the push got 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kv_empty_no_isolate_takes_or_stores_an_old_list() {
    let issuer_port = free_port().to_string();
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let mut vars = lone_edge_vars(&issuer_url).to_vec();
    vars.push(("KV_REFRESH_SECS", "1"));
    let edge = Workerd::start_with_refused_kv(&built_worker(), &vars, KvOp::Get, &[]).await;
    let (issuer, token, _) = a_logged_out_token(&issuer_port).await;
    let (edge_ref, token_ref) = (&edge, token.as_str());
    eventually(
        "the isolate to read the issuer's list itself",
        Duration::from_secs(10),
        || async move {
            let url = format!("{}/_gatehouse/check", edge_ref.url);
            (get_json(&url, Some(token_ref)).await.0 == 401).then_some(())
        },
    )
    .await;
    assert_too_old(&edge, replayed_list(&issuer, &issuer_url)).await;
    assert_verdict(&edge, &token, 401, "revoked").await;
    let health = gatehouse_tests::edge_health(&edge.url).await;
    assert!(
        health["kv_write_error"].is_null(),
        "nothing failed in KV: {health}"
    );
}

/// Asserts `edge`'s verdict on `token` at `/_gatehouse/check`: its status and code.
async fn assert_verdict(edge: &Workerd, token: &str, status: u16, code: &str) {
    let (got, json) = get_json(&format!("{}/_gatehouse/check", edge.url), Some(token)).await;
    assert_eq!((got, json["code"].as_str()), (status, Some(code)), "{json}");
}

/// Pushes `list` to `edge` and asserts it was not stored in KV (503 `kv_write_failed`).
async fn assert_not_stored(edge: &Workerd, list: String) {
    let (status, json) = push(&edge.url, list).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("kv_write_failed")),
        "{json}"
    );
}

/// Pushes `list` to `edge` and asserts it was refused as too old to take with no list to
/// compare it with (400 `list_too_old`), not as a KV failure that a retry could mend.
async fn assert_too_old(edge: &Workerd, list: String) {
    let (status, json) = push(&edge.url, list).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("list_too_old")),
        "{json}"
    );
}

/// A list of the issuer's with a seq far ahead and no entries, signed two minutes ago: a saved
/// snapshot, replayed.
fn replayed_list(issuer: &Issuer, issuer_url: &str) -> String {
    signed_list(issuer, issuer_url, 1_000, gatehouse_tests::unix_now() - 120)
}

/// An empty list of `seq` signed with the issuer's key at `issued_at`.
pub(crate) fn signed_list(issuer: &Issuer, issuer_url: &str, seq: u64, issued_at: i64) -> String {
    gatehouse_shared::RevocationList::builder(issuer_url, seq, issued_at)
        .build()
        .sign_snapshot(&issuer.key)
        .unwrap()
}

/// One edge started before its issuer, for the KV scenarios: nothing forwarded, no fast path
/// (the pushes are what is tested).
pub(crate) fn lone_edge_vars(issuer_url: &str) -> [(&str, &str); 6] {
    [
        ("ORIGIN_URL", "http://127.0.0.1:9"),
        ("ISSUER_URL", issuer_url),
        ("EXPECTED_ISSUER", issuer_url),
        ("EXPECTED_AUDIENCE", AUDIENCE),
        ("DELTA_POLL_MS", "0"),
        // The readiness probe ran before the issuer was up; let the first push fetch keys.
        ("JWKS_REFETCH_COOLDOWN_SECS", "0"),
    ]
}

/// A lone edge on a KV that refuses `op` on the given keys that many times; the port its issuer
/// must take, that issuer's URL, and the edge.
async fn lone_edge_refusing(op: KvOp, refused: &[(&str, u32)]) -> (String, String, Workerd) {
    let issuer_port = free_port().to_string();
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let vars = lone_edge_vars(&issuer_url);
    let edge = Workerd::start_with_refused_kv(&built_worker(), &vars, op, refused).await;
    (issuer_port, issuer_url, edge)
}

/// The issuer on `issuer_port` (started after its edge, which needs its address first; no sync
/// URL, so pushes are made by hand), alice's access token logged out, and the issuer's
/// snapshot that revokes it.
async fn a_logged_out_token(issuer_port: &str) -> (Issuer, String, String) {
    let issuer = Issuer::start(&[("GATEHOUSE_PORT", issuer_port)]).await;
    issuer.register("alice", PASSWORD).await;
    let token = access(&issuer.login("alice", PASSWORD).await).to_owned();
    assert_eq!(issuer.logout(&token).await, 200);
    let snapshot = gatehouse_tests::get_text(&format!("{}/v1/revocations", issuer.url)).await;
    (issuer, token, snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_kv_write_is_not_answered_as_delivered() {
    // A production environment without its KV binding: the worker can verify and hold the
    // list, but not store it for the other isolates, so the push must not look delivered.
    let issuer_port = free_port().to_string();
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let edge = Workerd::start_without_kv(&built_worker(), &lone_edge_vars(&issuer_url)).await;
    let sync = format!("{}/_gatehouse/sync", edge.url);
    let issuer = Issuer::start(&[
        ("GATEHOUSE_PORT", issuer_port.as_str()),
        ("GATEHOUSE_EDGE_SYNC_URLS", sync.as_str()),
    ])
    .await;
    let snapshot = gatehouse_tests::get_text(&format!("{issuer_url}/v1/revocations")).await;
    assert_not_stored(&edge, snapshot).await;
    let health = gatehouse_tests::edge_health(&edge.url).await;
    assert!(
        health["kv_write_error"]
            .as_str()
            .is_some_and(|e| e.contains("KV")),
        "{health}"
    );
    // The issuer's own push meets the same answer and retries instead of counting it done,
    // and gives up after its five attempts: one failed push, five failed attempts (a push a
    // newer list replaced mid-retries counts its attempts only).
    issuer.register("alice", PASSWORD).await;
    let token = access(&issuer.login("alice", PASSWORD).await).to_owned();
    assert_eq!(issuer.logout(&token).await, 200);
    let issuer = &issuer;
    eventually(
        "the issuer to give up on the refused push",
        Duration::from_secs(20),
        || async move {
            (issuer
                .metric("gatehouse_snapshot_pushes_failed_total")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let failed = issuer
        .metric("gatehouse_snapshot_pushes_failed_total")
        .await;
    let attempts = issuer
        .metric("gatehouse_snapshot_push_attempts_failed_total")
        .await;
    assert!(
        attempts >= 5.0 * failed,
        "{failed} failed pushes from {attempts} failed attempts"
    );
    let delivered = issuer.metric("gatehouse_snapshot_pushes_ok_total").await;
    assert!(
        delivered < 0.5,
        "a refused push counted as delivered: {delivered}"
    );
}

/// KV refuses the first two writes of the list (SIMULATED: `bench/edge/serve.mjs` wraps a real
/// local namespace). The edge keeps the verified list in memory and refuses its entries at once,
/// answers each push 503 `kv_write_failed` while the write fails, reports it on the health
/// route, and a retry of the same list is stored, answered 200, and clears the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kv_write_keeps_the_list_and_a_retry_stores_it() {
    let (issuer_port, _, edge) = lone_edge_refusing(KvOp::Put, &[("revocations", 2)]).await;
    let (_issuer, token, snapshot) = a_logged_out_token(&issuer_port).await;
    let push = || push(&edge.url, snapshot.clone());
    let health = || async { gatehouse_tests::edge_health(&edge.url).await };
    for attempt in 1..=2 {
        let (status, json) = push().await;
        assert_eq!(
            (status, json["code"].as_str()),
            (503, Some("kv_write_failed")),
            "attempt {attempt}: {json}"
        );
        let health = health().await;
        assert!(
            health["kv_write_error"]
                .as_str()
                .is_some_and(|e| e.contains("simulated KV failure")),
            "{health}"
        );
        // Held in memory all the same: the logged-out token is refused at this isolate.
        assert_verdict(&edge, &token, 401, "revoked").await;
    }
    let (status, json) = push().await;
    assert_eq!(status, 200, "the retry is stored: {json}");
    let health = health().await;
    assert!(health["kv_write_error"].is_null(), "{health}");
}
