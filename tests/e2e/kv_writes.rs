//! KV's copy of the revocation list kept consistent under what the SIMULATION (several
//! workerd instances, each with its own KV that refuses a second write of a key within a
//! second, as Cloudflare's does, and reaches the other locations after a fixed delay) makes
//! happen: interleaved and slow writes, a head beside another snapshot, a replayed list, the
//! heartbeat. (KV refusing or failing operations: `kv_refusals`.) Each test says what it
//! plants by hand.

use std::time::Duration;

use gatehouse_tests::locations::Locations;
use gatehouse_tests::{Issuer, eventually, free_port};

use crate::kv_refusals::{lone_edge_vars, signed_list};
use crate::locations::world;
use crate::system::{PASSWORD, access, push};

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
