//! Keys at the edge: rotation, and a flood of garbage that cannot hammer the issuer.

use std::time::Duration;

use gatehouse_shared::{Algorithm, RevocationList, SigningKey};
use gatehouse_tests::{eventually, get_json, get_text, http, json_of, unix_now};

use crate::system::{Options, PASSWORD, System, access, assert_recorded, push};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_new_tokens_and_keeps_old_ones_valid() {
    let mut sys = System::start(Options {
        edge_vars: &[("JWKS_REFETCH_COOLDOWN_SECS", "1")],
        ..Options::default()
    })
    .await;
    let old = sys.user("alice").await;
    assert_eq!(sys.get("/api/whoami", Some(access(&old))).await.0, 200);

    // Production rotation: a new key file, then a restart; the old key is retired but published.
    let _retired = sys.issuer.rotate_key_file().await;
    let new = sys.issuer.login("alice", PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, json) = sys.get("/api/whoami", Some(access(&new))).await;
    assert_eq!(
        status, 200,
        "the unknown kid made the edge refetch the JWKS: {json}"
    );
    assert_eq!(
        sys.get("/api/whoami", Some(access(&old))).await.0,
        200,
        "old tokens stay valid"
    );
    let kids = sys.edge.health().await["kids"].as_array().unwrap().len();
    assert_eq!(kids, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_floods_get_401s_and_at_most_one_refetch_per_cooldown() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    assert_eq!(sys.get("/api/whoami", Some(access(&tokens))).await.0, 200);
    let before = sys.issuer.metric("gatehouse_jwks_served_total").await;
    let client = http();
    let mut statuses = Vec::new();
    for i in 0..60 {
        let garbage_kid = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let mut claims = sys.claims();
        claims.jti = format!("garbage-{i}");
        let token = gatehouse_shared::sign_access_token(&garbage_kid, &claims).unwrap();
        let junk = ["", "a.b.c", "....", "%%%", "eyJ.eyJ.eyJ"][i % 5];
        for t in [token.as_str(), junk] {
            let response = client
                .get(format!("{}/api/x", sys.edge.url))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            statuses.push(json_of(response).await.0);
        }
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // Anyone can push a signed list: one under an unknown kid waits for the same cooldown (the
    // 2 s cooldown of lists the edge fetches itself would let a pusher cause a fetch every 2 s).
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        let stranger = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let list = RevocationList::builder(&sys.issuer.url, 1_000_000, unix_now())
            .build()
            .sign_snapshot(&stranger)
            .unwrap();
        assert_eq!(push(&sys.edge.url, list).await.1["code"], "unknown_kid");
    }
    let after = sys.issuer.metric("gatehouse_jwks_served_total").await;
    assert!(
        after - before <= 1.0,
        "JWKS fetched {} times during the flood",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_is_refused_once_its_grace_is_over() {
    let mut sys = System::start(Options {
        issuer_env: &[
            ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", "2"),
            ("GATEHOUSE_LEEWAY_SECS", "0"),
        ],
        edge_vars: &[("JWKS_REFETCH_COOLDOWN_SECS", "1"), ("LEEWAY_SECS", "0")],
        ..Options::default()
    })
    .await;
    sys.user("alice").await;
    // A long-lived token of the key about to be retired, accepted (and so cached) by the edge.
    let cached = sys.mint(&sys.claims());
    assert_eq!(sys.get("/api/x", Some(&cached)).await.0, 200);
    let retired = sys.issuer.rotate_key_file().await;
    // Past the retired key's grace (token lifetime + leeway, 2 s), the issuer stops publishing
    // it at its next maintenance tick (every second here; later under full-suite load, so this
    // polls instead of sleeping a fixed time), and the edge's cron refreshes its keys.
    let (jwks_url, kid) = (
        format!("{}/.well-known/jwks.json", sys.issuer.url),
        retired.kid().to_owned(),
    );
    eventually(
        "the retired key to leave the JWKS",
        Duration::from_secs(20),
        || {
            let (url, kid) = (jwks_url.clone(), kid.clone());
            async move { (!get_text(&url).await.contains(&kid)).then_some(()) }
        },
    )
    .await;
    sys.edge.run_cron().await;
    // The edge's cache of verified tokens went with the old key set.
    let (status, json) = sys.get("/api/x", Some(&cached)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("unknown_kid")),
        "a cached token of a removed key"
    );
    // A token the retired key signs now, fresh claims and all, is refused everywhere. (The
    // real session's ids are read from its token, which may have expired by then: 2 s.)
    let login = sys.issuer.login("alice", PASSWORD).await;
    let issued = gatehouse_shared::UntrustedToken::parse(access(&login), 8192)
        .unwrap()
        .payload_unverified()
        .unwrap();
    let issued: serde_json::Value = serde_json::from_slice(&issued).unwrap();
    let mut claims = sys.claims();
    claims.sub = issued["sub"].as_str().unwrap().to_owned();
    claims.sid = issued["sid"].as_str().unwrap().to_owned();
    let forged = gatehouse_shared::sign_access_token(&retired, &claims).unwrap();
    let (status, json) = sys.get("/api/x", Some(&forged)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("unknown_kid")),
        "edge"
    );
    let (status, json) = get_json(&format!("{}/v1/me", sys.issuer.url), Some(&forged)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("unknown_kid")),
        "issuer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_stops_verifying_once_the_key_ttl_passes_without_any_cron() {
    let mut sys = System::start(Options {
        issuer_env: &[
            ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", "2"),
            ("GATEHOUSE_LEEWAY_SECS", "0"),
        ],
        edge_vars: &[
            ("JWKS_REFETCH_COOLDOWN_SECS", "1"),
            ("LEEWAY_SECS", "0"),
            ("KEYS_TTL_SECS", "2"),
            // No fast path and no push: a delta or a snapshot signed by the new key would make
            // the edge refetch the key set for its own sake, and the TTL would go untested.
            ("DELTA_POLL_MS", "0"),
        ],
        push: false,
    })
    .await;
    let cached = sys.mint(&sys.claims());
    assert_eq!(sys.get("/api/x", Some(&cached)).await.0, 200);
    let retired = sys.issuer.rotate_key_file().await;
    let (issuer, retired) = (&sys.issuer, retired.kid());
    eventually(
        "the issuer to stop publishing the retired key",
        Duration::from_secs(10),
        || async move {
            let jwks = get_text(&format!("{}/.well-known/jwks.json", issuer.url)).await;
            (!jwks.contains(retired)).then_some(())
        },
    )
    .await;
    let removed_at = std::time::Instant::now();
    // No cron and no unknown kid: only the key set's TTL makes this isolate look again.
    let sys = &sys;
    let cached = cached.as_str();
    eventually(
        "the edge to drop the removed key",
        Duration::from_secs(10),
        || async move {
            let (status, json) = sys.get("/api/x", Some(cached)).await;
            (status == 401 && json["code"] == "unknown_kid").then_some(())
        },
    )
    .await;
    let took = removed_at.elapsed();
    eprintln!("removed key refused at the edge {took:?} after it left the JWKS (TTL 2 s)");
}

/// The KV copy of the key set carries its fetch time. An isolate that loads it (a restart
/// here; on Cloudflare, any new isolate) counts `KEYS_TTL_SECS` from that fetch: before, the
/// load started the TTL again, and as isolates come and go a copy could stay in use for ever.
/// The key removed here is a retired one whose grace ended, so no new signer (of the deltas,
/// say) makes the edge look again: only the TTL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_loaded_from_kv_keeps_its_age() {
    const TTL_SECS: u64 = 10;
    let mut sys = System::start(Options {
        issuer_env: &[
            ("GATEHOUSE_ACCESS_TOKEN_TTL_SECS", "3"),
            ("GATEHOUSE_LEEWAY_SECS", "0"),
        ],
        edge_vars: &[
            ("JWKS_REFETCH_COOLDOWN_SECS", "1"),
            ("LEEWAY_SECS", "0"),
            ("KEYS_TTL_SECS", "10"),
            // No fast path: the new isolate's revocation list can only come from KV or the
            // issuer, and KV's was signed by the key that is retired below.
            ("DELTA_POLL_MS", "0"),
        ],
        ..Options::default()
    })
    .await;
    // KV's revocation list, signed by the key retired below.
    sys.edge.run_cron().await;
    // Retired, still published for its grace: the new key's token makes the edge fetch a set
    // that holds both (not stored in KV: only the cron writes it).
    let retired = sys.issuer.rotate_key_file().await;
    let token = gatehouse_shared::sign_access_token(&retired, &sys.claims()).unwrap();
    let fresh = sys.mint(&sys.claims());
    let (edge, fresh) = (&sys, fresh.as_str());
    eventually(
        "the edge to take the new key (after its refetch cooldown)",
        Duration::from_secs(20),
        || async move { (edge.get("/api/x", Some(fresh)).await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(sys.get("/api/x", Some(&token)).await.0, 200);
    let fetched_by = std::time::Instant::now();
    let (issuer, kid) = (&sys.issuer, retired.kid());
    eventually(
        "the issuer to stop publishing the retired key",
        Duration::from_secs(10),
        || async move {
            let jwks = get_text(&format!("{}/.well-known/jwks.json", issuer.url)).await;
            (!jwks.contains(kid)).then_some(())
        },
    )
    .await;
    // The copy in KV is past its TTL when a new isolate loads it.
    let past_ttl = Duration::from_secs(TTL_SECS + 1);
    tokio::time::sleep(past_ttl.saturating_sub(fetched_by.elapsed())).await;
    sys.edge.restart().await;
    let restarted = std::time::Instant::now();
    let (edge, token) = (&sys, token.as_str());
    eventually(
        "the new isolate to drop the removed key",
        Duration::from_secs(TTL_SECS / 2),
        || async move {
            let (status, json) = edge.get("/api/x", Some(token)).await;
            (status == 401 && json["code"] == "unknown_kid").then_some(())
        },
    )
    .await;
    eprintln!(
        "removed key refused {:?} after the restart",
        restarted.elapsed()
    );
    // KV's list and key set are still the first cron's, both of the removed key: a new isolate
    // verifies that list with that set, and serves.
    sys.edge.restart().await;
    let (status, json) = sys.get("/api/x", Some(fresh)).await;
    assert_eq!(status, 200, "{json}");
    // The next pull stores the issuer's list, the same seq re-signed by the new key, in KV
    // (a list signed by another key counts as changed): a new isolate then needs no issuer.
    sys.edge.run_cron().await;
    let health = sys.edge.health().await;
    assert!(health["kv_write_error"].is_null(), "{health}");
    sys.issuer.stop();
    sys.edge.restart().await;
    let (status, json) = sys.get("/api/x", Some(fresh)).await;
    assert_eq!(status, 200, "KV's list, with the issuer down: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_key_revocation_reaches_the_edge_through_the_fast_path() {
    let mut sys = System::start(Options::default()).await;
    sys.user("alice").await;
    // The key is retired but still published (its grace runs for the token lifetime).
    let old = sys.issuer.rotate_key_file().await;
    let stolen = gatehouse_shared::sign_access_token(&old, &sys.claims()).unwrap();
    assert_eq!(sys.get("/api/x", Some(&stolen)).await.0, 200);

    // The active key cannot be revoked: the operator must rotate first.
    let active = sys.issuer.key.kid().to_owned();
    let out = sys.issuer.cli(&["keys", "revoke", &active], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotate first"),
        "{out:?}"
    );

    // Revoked right after the rotation, as in an emergency: the deltas are signed by a key the
    // edge has not fetched yet, and must not wait for the client refetch cooldown (30 s).
    let out = sys.issuer.cli(&["keys", "revoke", old.kid()], "");
    assert_recorded(&out);
    let revoked_at = std::time::Instant::now();
    let (sys, stolen) = (&sys, stolen.as_str());
    eventually(
        "the edge to drop the revoked key",
        Duration::from_secs(5),
        || async move {
            let (status, json) = sys.get("/api/x", Some(stolen)).await;
            (status == 401 && json["code"] == "unknown_kid").then_some(())
        },
    )
    .await;
    eprintln!(
        "revoked key refused at the edge after {:?}",
        revoked_at.elapsed()
    );
    // Tokens of the active key are untouched, and the issuer stops publishing the revoked one.
    let fresh = sys.mint(&sys.claims());
    assert_eq!(sys.get("/api/x", Some(&fresh)).await.0, 200);
    let (issuer, kid) = (&sys.issuer, old.kid());
    eventually(
        "the JWKS to drop the revoked key",
        Duration::from_secs(10),
        || async move {
            let jwks = get_text(&format!("{}/.well-known/jwks.json", issuer.url)).await;
            (!jwks.contains(kid)).then_some(())
        },
    )
    .await;
}

/// The edge follows no redirect on its own fetches from the issuer: a key set that came over a
/// hop `ISSUER_URL` does not name (plain http included) would be trusted for every token, as
/// `@gatehouse/verify` refuses too. Before, the edge followed it and took the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuers_key_set_is_not_taken_through_a_redirect() {
    let issuer = gatehouse_tests::Issuer::start(&[]).await;
    let redirecting = gatehouse_tests::redirector(&issuer.url).await;
    let (_origin, edge) = edge_of(&redirecting, &issuer.url).await;
    issuer.register("alice", PASSWORD).await;
    let tokens = issuer.login("alice", PASSWORD).await;
    let (status, json) = protected_request(&edge, access(&tokens)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("keys_unavailable")),
        "{json}"
    );
}

/// An issuer URL answering a key set that declares 100 MB (as a misrouted or hostile host
/// could) is refused on its declared length, before any of it is read: read whole, it would exhaust
/// the isolate's memory. The edge answers as for any key set it cannot fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_body_declaring_more_than_its_limit_is_not_read() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let huge = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = [0u8; 4096];
            let _ = socket.read(&mut head).await;
            // The length declared, a few bytes sent, and the rest never.
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n{\"keys\":[";
            let _ = socket.write_all(answer.as_bytes()).await;
            held.push(socket);
        }
    });
    let (_origin, edge) = edge_of(&huge, &huge).await;
    let (status, json) = protected_request(&edge, "a.b.c").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("keys_unavailable")),
        "{json}"
    );
    // The key set's limit, the shared core's 1 MiB (a list's is 8 MiB).
    let refused = "answers a body over 1048576 bytes";
    eventually(
        "the edge's log naming the declared length",
        Duration::from_secs(10),
        || async { edge.log().contains(refused).then_some(()) },
    )
    .await;
}

/// An edge in front of the demo origin whose `ISSUER_URL` is `issuer_url` (an issuer that
/// misbehaves), taking tokens of `expected_issuer`. No list is needed (`fail_open`: the keys
/// alone decide), every key fetch goes out (the start's health checks would otherwise have
/// claimed the cooldown), and no delta poll waits first.
async fn edge_of(
    issuer_url: &str,
    expected_issuer: &str,
) -> (gatehouse_tests::Origin, gatehouse_tests::Edge) {
    let origin = gatehouse_tests::Origin::start().await;
    let edge = gatehouse_tests::Edge::start(
        gatehouse_tests::free_port(),
        &[
            ("ORIGIN_URL", origin.url.as_str()),
            ("ISSUER_URL", issuer_url),
            ("EXPECTED_ISSUER", expected_issuer),
            ("EXPECTED_AUDIENCE", crate::system::AUDIENCE),
            ("STALE_POLICY", "fail_open"),
            ("JWKS_REFETCH_COOLDOWN_SECS", "0"),
            ("DELTA_POLL_MS", "0"),
        ],
    )
    .await;
    (origin, edge)
}

/// The edge's answer to `token` on a protected path. The edge's key fetch gives up after 5 s
/// (`upstream::KEYS_LIMIT`); this client after 12 s, well before the runtime's own limit.
async fn protected_request(edge: &gatehouse_tests::Edge, token: &str) -> (u16, serde_json::Value) {
    json_of(
        http()
            .get(format!("{}/api/x", edge.url))
            .header("Authorization", format!("Bearer {token}"))
            .timeout(Duration::from_secs(12))
            .send()
            .await
            .expect("the edge answers"),
    )
    .await
}

/// The edge's own requests to the issuer are bounded in time: with an issuer that accepts
/// connections and never answers, a request that needs its keys gets 503 `keys_unavailable`
/// instead of waiting on the issuer (before, `/_gatehouse/health` hung too, so the edge did not
/// even start here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_issuer_holds_no_request() {
    let hung = gatehouse_tests::black_hole().await.url;
    let (_origin, edge) = edge_of(&hung, &hung).await;
    let (status, json) = protected_request(&edge, "a.b.c").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("keys_unavailable")),
        "{json}"
    );
    // A list pushed while the edge has no keys gets the same answer, which the issuer retries
    // (it was a 400 `unknown_kid`, as if the list were signed by a stranger).
    let (status, json) = push(&edge.url, "a.b.c".to_owned()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("keys_unavailable")),
        "{json}"
    );
}
