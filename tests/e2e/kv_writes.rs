//! KV's copy of the revocation list kept consistent under what the SIMULATION (several
//! workerd instances, each with its own KV that refuses a second write of a key within a
//! second, as Cloudflare's does, and reaches the other locations after a fixed delay) makes
//! happen: interleaved writes, refused writes and retries, an unreadable or empty KV, a
//! replayed old list. Each test says what it plants by hand.

use std::time::Duration;

use gatehouse_tests::locations::Locations;
use gatehouse_tests::{Issuer, KvOp, Workerd, built_worker, eventually, free_port, get_json};

use crate::locations::world;
use crate::system::{AUDIENCE, PASSWORD, access, push};

/// A little over KV's limit of one write a second per key, which the simulation enforces.
const KV_WRITE_INTERVAL: Duration = Duration::from_millis(1100);

/// Two accepts in different isolates whose KV puts interleave (B's snapshot, A's older one,
/// A's head, B's head) leave KV's head naming the newer list beside the older one. The next
/// cron pull puts the newer list back, so a location that reads KV (fast path off) refuses the
/// revoked token. Before, the pull compared only the head, found it current and wrote nothing:
/// such a location kept accepting the token until the next change or heartbeat (an hour).
/// The interleaving is SIMULATED by writing the older snapshot into KV after the newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_left_beside_an_older_snapshot_is_repaired_by_the_next_pull() {
    let w = world(2, Duration::from_secs(1), &[("DELTA_POLL_MS", "0")]).await;
    let locations = &w.locations;
    let token = access(&w.issuer.login("alice", PASSWORD).await).to_owned();
    let older_head = pulled_head(locations).await;
    let issuer_url = &w.issuer.url;
    let older = gatehouse_tests::get_text(&format!("{issuer_url}/v1/revocations")).await;
    let older_seq = older_head["seq"].as_u64().unwrap();
    // The revocation: the issuer pushes the newer list to location 0, which stores it.
    assert_eq!(w.issuer.logout(&token).await, 200);
    eventually(
        "the newer head in KV",
        Duration::from_secs(10),
        || async move {
            (locations.kv_heads().await[0]["seq"].as_u64() > Some(older_seq)).then_some(())
        },
    )
    .await;
    locations.put_kv(0, "revocations", older, &older_head).await;
    // The broken state itself at location 1: the newer head beside the older snapshot (its
    // first list already had that seq, so the snapshot alone would say nothing).
    eventually(
        "the newer head beside the older snapshot at location 1",
        Duration::from_secs(10),
        || async move {
            let head = locations.kv_heads().await.swap_remove(1);
            let snapshot = locations.kv_snapshots().await.swap_remove(1);
            (head["seq"].as_u64() > Some(older_seq) && snapshot["seq"].as_u64() == Some(older_seq))
                .then_some(())
        },
    )
    .await;
    locations.run_cron(0).await;
    refused_as_revoked(locations, 1, &token, Duration::from_secs(15)).await;
}

/// Snapshots are public, and anyone may push one again and again. A replay of the list an
/// isolate last found in KV, or of an older copy of its seq (the issuer re-signs it every few
/// seconds), is answered as KV's heads would answer it (409, the seq held) without reading
/// them: before, each replay cost two KV reads (metered: 100,000 a day on the Free plan, for
/// the whole account) and a turn in the isolate's KV queue, which a real push then waited
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_snapshot_costs_no_kv_read() {
    let w = world(1, Duration::from_secs(1), &[("DELTA_POLL_MS", "0")]).await;
    let locations = &w.locations;
    pulled_head(locations).await;
    let snapshot = gatehouse_tests::get_text(&format!("{}/v1/revocations", w.issuer.url)).await;
    let (status, first) = push(&locations.urls[0], snapshot.clone()).await;
    let seq = match status {
        200 => first["seq"].as_u64(),
        _ => first["held_seq"].as_u64(),
    };
    assert!(seq.is_some(), "{status} {first}");
    let reads = || async {
        let head = locations.kv_reads("revocations-head").await[0];
        head + locations.kv_reads("revocations").await[0]
    };
    let held_at = locations.kv_heads().await[0]["issued_at"].as_i64().unwrap();
    let older = signed_list(&w.issuer, &w.issuer.url, seq.unwrap(), held_at - 1);
    let before = reads().await;
    for replay in [&snapshot, &older].repeat(3) {
        let (status, json) = push(&locations.urls[0], replay.clone()).await;
        assert_eq!(
            (status, json["code"].as_str(), json["held_seq"].as_u64()),
            (409, Some("stale_snapshot"), seq),
            "{json}"
        );
    }
    assert_eq!(reads().await, before, "the replays read KV");
    // A new list still goes the whole way, to KV.
    let token = access(&w.issuer.login("alice", PASSWORD).await).to_owned();
    assert_eq!(w.issuer.logout(&token).await, 200);
    refused_as_revoked(locations, 0, &token, Duration::from_secs(15)).await;
    eventually(
        "the new list in KV",
        Duration::from_secs(10),
        || async move { (locations.kv_heads().await[0]["seq"].as_u64() > seq).then_some(()) },
    )
    .await;
}

/// A pushed list newer than the isolate's is held at once even when KV's head already names a
/// newer one (SIMULATED: a head planted by hand, as another location's write that this
/// location's cache shows before the list itself): KV keeps its copy (409), but the isolate
/// refuses the revoked token. Before, the push installed nothing, and the isolate kept its
/// older list until KV's snapshot caught up with its head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_behind_kvs_head_is_still_held_in_memory() {
    let w = world(1, Duration::from_secs(1), &[("DELTA_POLL_MS", "0")]).await;
    let locations = &w.locations;
    let token = access(&w.issuer.login("alice", PASSWORD).await).to_owned();
    let mut head = pulled_head(locations).await;
    assert_eq!(locations.check(0, &token).await.0, 200);
    head["seq"] = (head["seq"].as_u64().unwrap() + 1_000).into();
    locations
        .put_kv(
            0,
            "revocations-head",
            head.to_string(),
            &serde_json::Value::Null,
        )
        .await;
    // The issuer pushes its list, which revokes the token, to location 0.
    assert_eq!(w.issuer.logout(&token).await, 200);
    refused_as_revoked(locations, 0, &token, Duration::from_secs(10)).await;
    assert_eq!(
        locations.kv_heads().await[0],
        head,
        "KV keeps its newer head"
    );
}

/// KV's head beside a snapshot of the same seq signed earlier (SIMULATED: the snapshot written
/// by hand, as a late write of another isolate would leave it). A push of the head's list
/// stores it again. Before, the two compared as the same list within the heartbeat, nothing was
/// written, and every isolate that read the head as newer than its base reloaded the snapshot,
/// and found the older one, at each `KV_REFRESH_SECS`. At location 1, whose isolate has only
/// read the list: one that stored it (location 0's, by its cron) answers a push of that very
/// list from memory (`a_replayed_snapshot_costs_no_kv_read`), and leaves the repair to its
/// next pull (`a_head_left_beside_an_older_snapshot_is_repaired_by_the_next_pull`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_the_heads_seq_signed_earlier_is_stored_again() {
    let w = world(2, Duration::from_secs(1), &[("DELTA_POLL_MS", "0")]).await;
    let locations = &w.locations;
    let head = pulled_head(locations).await;
    let replicated = &head;
    eventually(
        "the list in location 1's KV",
        Duration::from_secs(10),
        || async move { (locations.kv_snapshots().await[1] == *replicated).then_some(()) },
    )
    .await;
    // Location 1's isolate loads its list and keys now (reading KV), not within the second
    // after the planted write below, where the push's own put must land.
    w.accepted_token().await;
    let (seq, issued_at) = (
        head["seq"].as_u64().unwrap(),
        head["issued_at"].as_i64().unwrap(),
    );
    let signed = |at: i64| signed_list(&w.issuer, &w.issuer.url, seq, at);
    let mut earlier = head.clone();
    earlier["issued_at"] = (issued_at - 3).into();
    let (planted, pushed) = (signed(issued_at - 3), signed(issued_at));
    locations.put_kv(1, "revocations", planted, &earlier).await;
    // Within a second of that write, KV refuses another to the key (its per-key limit,
    // simulated): the push is answered 503 and changes nothing, as the issuer retries; a
    // second later it lands.
    let (status, json) = push(&locations.urls[1], pushed.clone()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("kv_write_failed")),
        "{json}"
    );
    assert_eq!(locations.kv_snapshots().await[1], earlier);
    tokio::time::sleep(KV_WRITE_INTERVAL).await;
    let (status, json) = push(&locations.urls[1], pushed).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        locations.kv_snapshots().await[1],
        head,
        "the head's list is the snapshot again"
    );
}

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

/// Two pushes to one isolate, the older list's KV put slow (SIMULATED: held back 3 s, as a
/// write of MBs can be): the newer list ends in KV. Before, each accept read KV's heads and
/// wrote on its own; the older list's late puts landed over the newer one's, both answered
/// 200, and new isolates loaded the older list until the next pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_lists_slow_kv_write_does_not_land_over_a_newer_one() {
    let issuer_port = free_port().to_string();
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let locations = Locations::start(1, &lone_edge_vars(&issuer_url), Duration::from_mins(1)).await;
    let issuer = Issuer::start(&[("GATEHOUSE_PORT", issuer_port.as_str())]).await;
    let now = gatehouse_tests::unix_now();
    let signed = |seq: u64| signed_list(&issuer, &issuer_url, seq, now - 5);
    locations
        .slow_puts("revocations", 1, Duration::from_secs(3))
        .await;
    let edge = locations.urls[0].clone();
    let older = tokio::spawn({
        let (edge, list) = (edge.clone(), signed(5));
        async move { push(&edge, list).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Retried as the issuer retries: KV takes one write a second per key.
    let mut tries = 0;
    loop {
        let (status, json) = push(&edge, signed(6)).await;
        if status == 200 {
            break;
        }
        tries += 1;
        assert!(tries < 10 && status == 503, "{status} {json}");
        tokio::time::sleep(KV_WRITE_INTERVAL).await;
    }
    let (status, json) = older.await.unwrap();
    assert_eq!(status, 200, "{json}");
    assert_eq!(locations.kv_heads().await[0]["seq"], 6, "KV's head");
    assert_eq!(locations.kv_snapshots().await[0]["seq"], 6, "KV's list");
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

/// Fires location 0's cron and waits for the list it stores in KV; KV's head there.
async fn pulled_head(locations: &Locations) -> serde_json::Value {
    locations.run_cron(0).await;
    eventually("a list in KV", Duration::from_secs(10), || async move {
        let head = locations.kv_heads().await.swap_remove(0);
        head.get("seq").is_some().then_some(head)
    })
    .await
}

/// Waits, up to `within`, for `location` to refuse `token` as revoked.
async fn refused_as_revoked(locations: &Locations, location: usize, token: &str, within: Duration) {
    eventually(
        &format!("location {location} to refuse the revoked token"),
        within,
        || async move { (locations.check(location, token).await.1 == "revoked").then_some(()) },
    )
    .await;
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
fn signed_list(issuer: &Issuer, issuer_url: &str, seq: u64, issued_at: i64) -> String {
    gatehouse_shared::RevocationList::builder(issuer_url, seq, issued_at)
        .build()
        .sign_snapshot(&issuer.key)
        .unwrap()
}

/// One edge started before its issuer, for the KV scenarios: nothing forwarded, no fast path
/// (the pushes are what is tested).
fn lone_edge_vars(issuer_url: &str) -> [(&str, &str); 6] {
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

/// An unchanged list (the same seq, re-signed later) is taken but written to KV only once KV's
/// copy is `KV_HEARTBEAT_SECS` older: the heartbeat that keeps a quiet day's copy fresh for new
/// isolates, without a KV write per pull. The lists are signed here with the issuer's key.
/// The count rests on the simulation's read-your-own-write at the writing location, which
/// Cloudflare does not promise (docs/revocation-propagation.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_list_is_rewritten_to_kv_only_at_the_heartbeat() {
    let w = world(
        1,
        Duration::from_secs(1),
        &[("KV_HEARTBEAT_SECS", "10"), ("DELTA_POLL_MS", "0")],
    )
    .await;
    w.locations.run_cron(0).await;
    let locations = &w.locations;
    // The pulled list and its head are in KV (each put is counted as the worker makes it).
    eventually(
        "the pulled list in KV",
        Duration::from_secs(5),
        || async move { (locations.kv_writes().await[0] >= 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = w.locations.urls[0].clone();
    let health = gatehouse_tests::edge_health(&url).await;
    let seq = health["revocations"]["seq"].as_u64().expect("a list") + 1;
    let now = gatehouse_tests::unix_now();
    let sync = w.locations.sync_url(0);
    let mut expected = locations.kv_writes().await[0];
    // (issued `ago` seconds before now, written to KV?)
    for (ago, written) in [(30, true), (25, false), (21, false), (15, true)] {
        // As the issuer paces its pushes: KV takes one write a second per key (simulated).
        tokio::time::sleep(KV_WRITE_INTERVAL).await;
        let response = gatehouse_tests::http()
            .post(&sync)
            .body(signed_list(&w.issuer, &w.issuer.url, seq, now - ago))
            .send()
            .await
            .unwrap();
        let (status, json) = gatehouse_tests::json_of(response).await;
        assert_eq!(status, 200, "issued {ago} s ago: {json}");
        if written {
            // The snapshot and its head.
            expected += 2;
            let writes = eventually("the list in KV", Duration::from_secs(5), || async move {
                let writes = locations.kv_writes().await[0];
                (writes >= expected).then_some(writes)
            })
            .await;
            assert_eq!(writes, expected, "issued {ago} s ago");
        } else {
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(
                locations.kv_writes().await[0],
                expected,
                "issued {ago} s ago, within the heartbeat of KV's copy: no write"
            );
        }
    }
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
