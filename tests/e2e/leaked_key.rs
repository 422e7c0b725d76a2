//! A signing key that leaked signs a revocation list with a `seq` far above the issuer's (here
//! an empty one, taking every revocation back). Edges held such a list until
//! redeployed; now the issuer's lists replace it once they name the key (`keys revoke`), in
//! every isolate and in KV (`replaces` in the shared crate).

use std::time::Duration;

use gatehouse_shared::RevocationList;
use gatehouse_tests::{
    Edge, Issuer, Workerd, built_worker, eventually, free_port, get_text, unix_now,
};

use crate::locations::world;
use crate::system::{AUDIENCE, Options, PASSWORD, System, access, assert_recorded, get, push};

const FORGED_SEQ: u64 = 1 << 52;

/// The forged list: empty, `FORGED_SEQ`, signed now by `key`.
fn forged(issuer_url: &str, key: &gatehouse_shared::SigningKey) -> String {
    RevocationList::builder(issuer_url, FORGED_SEQ, unix_now())
        .build()
        .sign_snapshot(key)
        .unwrap()
}

/// A key that leaked signs a list with a seq far above the issuer's (here an
/// empty one, taking every revocation back). Edges held such a list until redeployed; now the
/// issuer's lists replace it once they name the key (`keys revoke`): with the feed off, the list
/// the command pushes; with the feed on and nothing pushed, the delta feed on its own. KV takes
/// the issuer's list over the forged one (from the push, or the cron), so a new isolate reads
/// that. One local workerd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_signed_by_a_leaked_key_gives_way_once_the_key_is_revoked() {
    for fast_path in [false, true] {
        let mut sys = System::start(Options {
            push: !fast_path,
            edge_vars: &[("DELTA_POLL_MS", if fast_path { "500" } else { "0" })],
            ..Options::default()
        })
        .await;
        // The leaked key is retired but still published; the token below is the new key's.
        let leaked = sys.issuer.rotate_key_file().await;
        let tokens = sys.user("alice").await;
        let logged_out = access(&tokens).to_owned();
        assert_eq!(sys.issuer.logout(&logged_out).await, 200);
        let logged_out = logged_out.as_str();
        if !fast_path {
            // The procedure waits two minutes between rotating and revoking: the edge's cron
            // (once a minute) fetches the new key meanwhile. Pushes it signs before then are
            // refused (`unknown_kid`, the key refetch cooldown of a pushed list).
            sys.edge.run_cron().await;
        }
        let seen = &sys;
        eventually(
            &format!("the logout to reach the edge (feed on: {fast_path})"),
            Duration::from_secs(10),
            || async move { refused(seen, logged_out).await.then_some(()) },
        )
        .await;

        // A list naming the key that signed it (what a replica that has not re-read its key
        // ring signs) is refused: taken, any older list naming the key would replace it.
        let self_revoking = RevocationList::builder(&sys.issuer.url, FORGED_SEQ, unix_now())
            .key(leaked.kid(), unix_now() + 86_400)
            .build()
            .sign_snapshot(&leaked)
            .unwrap();
        let (_, json) = push(&sys.edge.url, self_revoking).await;
        assert_eq!(json["code"], "unknown_kid", "{json}");
        let (status, json) = push(&sys.edge.url, forged(&sys.issuer.url, &leaked)).await;
        assert_eq!(status, 200, "{json}");
        // `null` while an isolate holds no list (a delta naming the key drops the forged one).
        let seq = |health: serde_json::Value| health["revocations"]["seq"].as_u64();
        assert_eq!(seq(sys.edge.health().await), Some(FORGED_SEQ));
        // The forged list took the logout back (with the feed on, its next delta restores it).
        if !fast_path {
            assert!(!refused(&sys, logged_out).await);
        }

        let out = sys.issuer.cli(&["keys", "revoke", leaked.kid()], "");
        assert!(out.status.success(), "{out:?}");
        let pushed = String::from_utf8_lossy(&out.stdout).contains("pushed to");
        assert_eq!(pushed, !fast_path, "{out:?}");
        let seen = &sys;
        eventually(
            "the issuer's list to replace the forged one",
            Duration::from_secs(30),
            || async move {
                let replaced = seq(seen.edge.health().await).is_some_and(|s| s < FORGED_SEQ);
                (replaced && refused(seen, logged_out).await).then_some(())
            },
        )
        .await;

        // KV holds the issuer's list over the forged one it disowns: pushed by the command, or,
        // with nothing pushed, stored by the cron.
        if fast_path {
            sys.edge.run_cron().await;
        }
        sys.issuer.stop();
        sys.edge.restart().await;
        assert!(refused(&sys, logged_out).await, "fast path {fast_path}");
        assert!(seq(sys.edge.health().await).is_some_and(|s| s < FORGED_SEQ));
    }
}

/// A leaked key still pinned in `JWKS` (deploy.md gives a day to remove it) verifies what it
/// signs, unless the isolate's list revokes it (`keys::verifier` leaves such keys out). A new
/// isolate, holding no list yet, loads KV's before it judges a push: the forged list replayed
/// after `keys revoke` is refused, and KV keeps the issuer's. Before, the new isolate took it
/// and stored it over the issuer's list in KV, for every new isolate to load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_isolate_refuses_a_leaked_keys_list_that_kvs_list_disowns() {
    let mut sys = System::start(Options::default()).await;
    let leaked = sys.issuer.rotate_key_file().await;
    let jwks = get_text(&format!("{}/.well-known/jwks.json", sys.issuer.url)).await;
    assert!(jwks.contains(leaked.kid()), "{jwks}");
    let out = sys.issuer.cli(&["keys", "revoke", leaked.kid()], "");
    assert_recorded(&out);
    let vars = [
        ("ORIGIN_URL", sys.origin.url.as_str()),
        ("ISSUER_URL", sys.issuer.url.as_str()),
        ("EXPECTED_ISSUER", sys.issuer.url.as_str()),
        ("EXPECTED_AUDIENCE", AUDIENCE),
        ("JWKS", jwks.as_str()),
        ("DELTA_POLL_MS", "0"),
    ];
    let mut edge = Edge::start(free_port(), &vars).await;
    let list = get_text(&format!("{}/v1/revocations", sys.issuer.url)).await;
    let (status, json) = push(&edge.url, list).await;
    assert_eq!(status, 200, "the issuer's list, naming the key: {json}");
    edge.restart_cold().await;
    let (status, json) = push(&edge.url, forged(&sys.issuer.url, &leaked)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("unknown_kid")),
        "{json}"
    );
    // KV still holds the issuer's list: a new isolate loads it for its first request.
    edge.restart().await;
    let tokens = sys.user("alice").await;
    assert_eq!(get(&edge, "/api/x", Some(access(&tokens))).await.0, 200);
    let seq = edge.health().await["revocations"]["seq"].as_u64();
    assert!(seq.is_some_and(|s| s < FORGED_SEQ), "{seq:?}");
}

/// A new isolate whose reads of KV's list fail (SIMULATED) while KV's head names the issuer's
/// list, which names a leaked key: it takes the issuer's list instead, and refuses a list the
/// key signs; with the issuer unreachable too its first load brings nothing (on Cloudflare a
/// load slower than the 2 s a push waits does the same), and the pushed list is answered 503
/// `revocation_list_missing`. KV keeps the issuer's list. Before, the isolate verified the
/// forged list with the key still pinned, took it, and stored it over the issuer's list in KV.
/// One local workerd, started four times on one KV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_isolate_that_has_not_loaded_kvs_list_takes_no_pushed_list() {
    let mut issuer = Issuer::start(&[]).await;
    let leaked = issuer.rotate_key_file().await;
    let jwks = get_text(&format!("{}/.well-known/jwks.json", issuer.url)).await;
    assert!(jwks.contains(leaked.kid()), "{jwks}");
    let out = issuer.cli(&["keys", "revoke", leaked.kid()], "");
    assert_recorded(&out);
    let issuer_url = issuer.url.clone();
    let vars = [
        ("ORIGIN_URL", "http://127.0.0.1:9"),
        ("ISSUER_URL", issuer_url.as_str()),
        ("EXPECTED_ISSUER", issuer_url.as_str()),
        ("EXPECTED_AUDIENCE", AUDIENCE),
        ("JWKS", jwks.as_str()),
        ("DELTA_POLL_MS", "0"),
    ];
    let (kv, worker) = (tempfile::tempdir().unwrap(), built_worker());
    let on_kv = |refused: &'static [(&'static str, u32)]| {
        Workerd::start_on_kv_in(&worker, &vars, kv.path(), refused)
    };
    let first = on_kv(&[]).await;
    let list = get_text(&format!("{}/v1/revocations", issuer.url)).await;
    let (status, json) = push(&first.url, list).await;
    assert_eq!(status, 200, "the issuer's list, naming the key: {json}");
    first.stop().await;

    // The forged list pushed to a new isolate on that KV, its reads refused as given: the answer
    // (status and code).
    let forged_pushed = async |refused: &'static [(&'static str, u32)]| {
        let isolate = on_kv(refused).await;
        let (status, json) = push(&isolate.url, forged(&issuer_url, &leaked)).await;
        isolate.stop().await;
        (status, json["code"].as_str().map(str::to_owned))
    };
    let refused_reads = &[("revocations", u32::MAX)];
    let unknown_kid = (400, Some("unknown_kid".to_owned()));
    assert_eq!(
        forged_pushed(refused_reads).await,
        unknown_kid,
        "the issuer's list"
    );
    issuer.stop();
    assert_eq!(
        forged_pushed(refused_reads).await,
        (503, Some("revocation_list_missing".to_owned())),
        "no list at all"
    );
    // KV still holds the issuer's list: an isolate that loads it refuses the forged one. (Had
    // KV taken the forged list, this isolate would hold it, and answer 200 or 409.)
    assert_eq!(forged_pushed(&[]).await, unknown_kid, "KV's list");
}

/// Whether the edge refuses `token` as revoked.
async fn refused(sys: &System, token: &str) -> bool {
    sys.get("/api/x", Some(token)).await.1["code"] == "revoked"
}

/// SIMULATED (two workerd instances as locations, KV reaching the other after 2 s), feed off:
/// the forged list reaches location 1 through KV; after `keys revoke`, the cron at location 0
/// stores the issuer's list over it, and location 1, which neither a push nor a cron reaches,
/// reads that list once the key has left its key set (the issuer stops publishing a revoked
/// key; `KEYS_TTL_SECS` 2 here) although its `seq` is lower. Before, location 1 kept the forged
/// list: KV's head was older than it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_holding_a_forged_list_reads_kvs_once_its_signer_leaves_the_key_set() {
    let vars = [("DELTA_POLL_MS", "0"), ("KEYS_TTL_SECS", "2")];
    let mut w = world(2, Duration::from_secs(2), &vars).await;
    let leaked = w.issuer.rotate_key_file().await;
    let locations = &w.locations;
    let token = access(&w.issuer.login("alice", PASSWORD).await).to_owned();
    let answer = |location: usize| {
        let token = token.clone();
        async move { locations.check(location, &token).await }
    };
    eventually(
        "location 1 to accept a token of the new key",
        Duration::from_secs(20),
        || async { (answer(1).await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(w.issuer.logout(&token).await, 200);
    eventually(
        "the logout to reach location 1 through KV",
        Duration::from_secs(20),
        || async { (answer(1).await.1 == "revoked").then_some(()) },
    )
    .await;

    let (status, json) = push(&locations.urls[0], forged(&w.issuer.url, &leaked)).await;
    assert_eq!(status, 200, "{json}");
    eventually(
        "the forged list to take the logout back at location 1",
        Duration::from_secs(20),
        || async { (answer(1).await.0 == 200).then_some(()) },
    )
    .await;

    let out = w.issuer.cli(&["keys", "revoke", leaked.kid()], "");
    assert_recorded(&out);
    eventually(
        "the issuer's list to replace the forged one at location 0",
        Duration::from_secs(20),
        || async {
            locations.run_cron(0).await;
            (answer(0).await.1 == "revoked").then_some(())
        },
    )
    .await;
    eventually(
        "location 1 to read KV's list once the leaked key leaves its key set",
        Duration::from_secs(30),
        || async { (answer(1).await.1 == "revoked").then_some(()) },
    )
    .await;
}
