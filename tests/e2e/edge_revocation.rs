//! Revocations reaching the edge: push (with the measured delay), cron pull, refresh reuse,
//! the staleness policy with the issuer down, and a worker restart reloading from KV.

use std::time::{Duration, Instant};

use gatehouse_tests::{eventually, post_form};

use crate::system::{Options, System, access};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_reaches_the_edge_by_push() {
    // The push alone (the fast path would bring it too, and the cron is never fired here), so
    // the 401 within 5 s can only come from the push. How fast is bench row 5's figure.
    let sys = System::start(Options {
        edge_vars: &[("DELTA_POLL_MS", "0")],
        ..Options::default()
    })
    .await;
    sys.issuer.register("alice", crate::system::PASSWORD).await;
    let mut delays = Vec::new();
    for _ in 0..5 {
        let tokens = sys.issuer.login("alice", crate::system::PASSWORD).await;
        let token = access(&tokens).to_owned();
        assert_eq!(sys.get("/api/whoami", Some(&token)).await.0, 200);
        assert_eq!(sys.issuer.logout(&token).await, 200);
        let revoked_at = Instant::now();
        eventually(
            "the edge to refuse the logged-out token",
            Duration::from_secs(20),
            || {
                let sys = &sys;
                let token = token.clone();
                async move {
                    (sys.get("/api/whoami", Some(&token)).await.1["code"] == "revoked")
                        .then_some(())
                }
            },
        )
        .await;
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    eprintln!("revocation delay, issuer 200 -> edge 401 (push), 5 trials: {delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_the_cron_pull_brings_revocations() {
    // Neither push nor the fast path: only the cron pull.
    let sys = System::start(Options {
        push: false,
        edge_vars: &[("DELTA_POLL_MS", "0")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let token = access(&tokens);
    assert_eq!(sys.issuer.logout(token).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sys.get("/api/whoami", Some(token)).await.0,
        200,
        "no push: the edge has not heard yet"
    );
    sys.edge.run_cron().await;
    let (status, json) = sys.get("/api/whoami", Some(token)).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("revoked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reuse_revokes_the_whole_family_at_the_edge() {
    let sys = System::start(Options {
        issuer_env: &[("GATEHOUSE_REFRESH_GRACE_SECS", "0")],
        ..Options::default()
    })
    .await;
    let first = sys.user("alice").await;
    let refresh = |token: String| {
        let url = format!("{}/v1/token", sys.issuer.url);
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            post_form(&url, &form).await
        }
    };
    let (status, second) = refresh(first["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = refresh(first["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 400, "reuse is refused");
    for token in [access(&first), access(&second)] {
        eventually(
            "the family to be refused at the edge",
            Duration::from_secs(20),
            || async {
                (sys.get("/api/whoami", Some(token)).await.1["code"] == "revoked").then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_down_keeps_the_last_list_until_it_is_too_old() {
    let mut sys = System::start(Options {
        // No fast path: a fresh delta would restore service without the cron pull.
        edge_vars: &[("MAX_LIST_AGE_SECS", "8"), ("DELTA_POLL_MS", "0")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    // A revocation makes the issuer sign a new list (an unchanged one is served from its cache
    // for 15 s), so the edge's list is seconds old when the issuer goes.
    let other = sys.user("bob").await;
    assert_eq!(sys.issuer.logout(access(&other)).await, 200);
    sys.edge.run_cron().await;
    sys.issuer.stop();
    let token = access(&tokens).to_owned();
    assert_eq!(
        sys.get("/api/whoami", Some(&token)).await.0,
        200,
        "verifies with the last list"
    );
    let (status, json) = eventually(
        "the staleness policy to apply",
        Duration::from_secs(30),
        || async {
            let got = sys.get("/api/whoami", Some(&token)).await;
            (got.0 != 200).then_some(got)
        },
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("revocation_list_stale"))
    );
    // A request without a token is refused as such, whatever the list's age.
    let (status, json) = sys.get("/api/whoami", None).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("missing_token"))
    );
    sys.edge
        .assert_degraded_by("no fresh revocation list")
        .await;
    // Public paths do not depend on the list.
    assert_eq!(sys.get("/", None).await.0, 200);
    // The issuer comes back: the cron pull restores service.
    sys.issuer.restart().await;
    sys.edge.run_cron().await;
    assert_eq!(sys.get("/api/whoami", Some(&token)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_reloads_the_list_from_kv() {
    // No fast path: the 401 then comes from the push, whose 200 (counted by the issuer) follows
    // the edge's KV writes. A 401 alone could precede them.
    let mut sys = System::start(Options {
        edge_vars: &[("DELTA_POLL_MS", "0")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let token = access(&tokens).to_owned();
    let pushed = sys
        .issuer
        .metric("gatehouse_snapshot_pushes_ok_total")
        .await;
    assert_eq!(sys.issuer.logout(&token).await, 200);
    eventually("the push to land", Duration::from_secs(10), || async {
        (sys.get("/api/whoami", Some(&token)).await.0 == 401).then_some(())
    })
    .await;
    eventually(
        "the push to be answered",
        Duration::from_secs(10),
        || async {
            (sys.issuer
                .metric("gatehouse_snapshot_pushes_ok_total")
                .await
                > pushed)
                .then_some(())
        },
    )
    .await;
    sys.issuer.stop();
    sys.edge.restart().await;
    let (status, json) = sys.get("/api/whoami", Some(&token)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("revoked")),
        "the first request already sees the list"
    );
}

/// 40 requests for `/api/whoami` at `edge` with `token`, one every 300 ms, each answered 200:
/// how long those that took over 4 s took. A request that waited for a poll of the feeds below
/// takes seconds, far above what a loaded machine adds to a request.
async fn requests_held(edge: &str, token: &str) -> Vec<Duration> {
    let mut requests = Vec::new();
    for _ in 0..40 {
        let (url, token) = (format!("{edge}/api/whoami"), token.to_owned());
        requests.push(tokio::spawn(async move {
            let started = Instant::now();
            let status = gatehouse_tests::http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16());
            (status.ok(), started.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut held = Vec::new();
    for request in requests {
        let (status, took) = request.await.expect("the request task");
        assert_eq!(status, Some(200));
        if took > Duration::from_secs(4) {
            held.push(took);
        }
    }
    held
}

/// While the delta feed hangs (it accepts and never answers), requests are answered from the
/// held view: only a poll the isolate starts after being idle is waited for. Before, every
/// request that found the view two intervals old waited for the poll under way, up to its 2 s
/// limit, over and over, so a hung issuer slowed every request at the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_delta_feed_holds_no_request() {
    let hung = gatehouse_tests::black_hole().await.url;
    // Polls every 2 s, each abandoned after 8 s: a request that waited for one would take
    // seconds, far above what a loaded machine adds to a request.
    let sys = System::start(Options {
        edge_vars: &[("DELTA_URL", &hung), ("DELTA_POLL_MS", "2000")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let token = access(&tokens).to_owned();
    // The health checks of the start found the feed hung: the isolate knows it is failing.
    eventually(
        "the feed to be found failing",
        Duration::from_secs(20),
        || async { (sys.edge.health().await["fast_path"]["failing"] == true).then_some(()) },
    )
    .await;
    // The isolate polls the feed throughout.
    let held = requests_held(&sys.edge.url, &token).await;
    assert!(held.is_empty(), "requests held by the hung feed: {held:?}");
}

/// A slow delta feed (a far or loaded issuer: each poll takes 5 s of its 8 s limit) holds no
/// request of a busy isolate: its polls land one after another, so only an idle isolate's
/// requests wait for one. Before, the view's age counted from each poll's start, so the view
/// was already two intervals old when it landed, and the next request waited for a whole new
/// poll, over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_delta_feed_holds_no_request_of_a_busy_isolate() {
    let sys = System::start(Options {
        edge_vars: &[("DELTA_POLL_MS", "0")],
        ..Options::default()
    })
    .await;
    let slow = gatehouse_tests::slow_proxy(&sys.issuer.url, Duration::from_secs(5)).await;
    let delta = format!("{slow}/v1/revocations/delta");
    let vars = [
        ("ORIGIN_URL", sys.origin.url.as_str()),
        ("ISSUER_URL", sys.issuer.url.as_str()),
        ("EXPECTED_ISSUER", sys.issuer.url.as_str()),
        ("EXPECTED_AUDIENCE", crate::system::AUDIENCE),
        ("DELTA_URL", delta.as_str()),
        ("DELTA_POLL_MS", "2000"),
        ("KV_REFRESH_SECS", "1"),
    ];
    let edge = gatehouse_tests::Edge::start(gatehouse_tests::free_port(), &vars).await;
    let token = access(&sys.user("alice").await).to_owned();
    eventually("a delta to land", Duration::from_secs(40), || async {
        (!edge.health().await["revocations"]["delta"].is_null()).then_some(())
    })
    .await;
    // Polls land every 5 s or so throughout.
    let held = requests_held(&edge.url, &token).await;
    assert!(held.is_empty(), "requests held by the slow feed: {held:?}");
    let health = edge.health().await;
    assert_eq!(
        health["fast_path"]["failing"], false,
        "slow, not failing: {health}"
    );
}

/// A new worker whose KV has never held a list (a first deploy) installs the issuer's list on
/// the first request that needs one, instead of refusing every one with 503 until a push or the
/// first cron run. (Here that is the harness's readiness probe, the health route, which loads the
/// list as a protected request does; the test shows the list in place with no push and no cron.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deploy_takes_the_issuers_list_before_any_push_or_cron() {
    let sys = System::start(Options {
        push: false,
        ..Options::default()
    })
    .await;
    let alice = sys.user("alice").await;
    let bob = sys.user("bob").await;
    assert_eq!(sys.issuer.logout(access(&bob)).await, 200);
    // Its own KV, no push, no cron; no fast path, so the list can only be the issuer's snapshot.
    let vars = [
        ("ORIGIN_URL", sys.origin.url.as_str()),
        ("ISSUER_URL", sys.issuer.url.as_str()),
        ("EXPECTED_ISSUER", sys.issuer.url.as_str()),
        ("EXPECTED_AUDIENCE", crate::system::AUDIENCE),
        ("DELTA_POLL_MS", "0"),
        // A first fetch that missed (a loaded machine) is tried again a second later.
        ("KV_REFRESH_SECS", "1"),
    ];
    let edge = gatehouse_tests::Edge::start(gatehouse_tests::free_port(), &vars).await;
    let whoami = |token: String| {
        let url = format!("{}/api/whoami", edge.url);
        async move {
            let response = gatehouse_tests::http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("the edge answers");
            gatehouse_tests::json_of(response).await
        }
    };
    eventually(
        "the first list to be installed",
        Duration::from_secs(20),
        || {
            let token = access(&alice).to_owned();
            let whoami = &whoami;
            async move { (whoami(token).await.0 == 200).then_some(()) }
        },
    )
    .await;
    let (status, json) = whoami(access(&bob).to_owned()).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("revoked")));
    let health = edge.health().await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["kv_write_error"].is_null(), "{health}");
}

/// A restored issuer database starts its `seq` again below the delta the edge holds, so the
/// edge refuses its deltas as stale, new revocations included, until the seq passes it. The edge
/// cannot tell this from a replayed old delta, but once it has lasted 10 s the health route
/// names it, with both seqs (before, the polls counted it as success and nothing showed). The
/// issuer learns it from the edge's 409 to its push, and logs and counts it; its
/// `revocations push` command fails and says so (before, both took the 409 as delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_behind_the_held_list_is_reported() {
    let sys = System::start(Options::default()).await;
    for name in ["alice", "bob"] {
        let tokens = sys.user(name).await;
        assert_eq!(sys.issuer.logout(access(&tokens)).await, 200);
    }
    let edge = &sys.edge;
    eventually(
        "the edge to hold seq 2",
        Duration::from_secs(10),
        || async {
            let health = edge.health().await;
            (health["revocations"]["seq"].as_u64() >= Some(2)).then_some(())
        },
    )
    .await;
    // The restore: the revocations of the backup (none), the sequence back at its start.
    sys.issuer
        .schema
        .execute("DELETE FROM revocations; ALTER SEQUENCE revocations_seq_seq RESTART WITH 1;");
    let carol = sys.user("carol").await;
    assert_eq!(sys.issuer.logout(access(&carol)).await, 200);
    eventually(
        "the issuer to count a push refused by an edge ahead of its database",
        Duration::from_secs(10),
        || async {
            let behind = sys
                .issuer
                .metric("gatehouse_snapshot_pushes_behind_edge_total")
                .await;
            (behind >= 1.0).then_some(())
        },
    )
    .await;
    let push = sys.issuer.cli(&["revocations", "push"], "");
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(
        !push.status.success() && stderr.contains("holds seq 2, newer than this database's 1"),
        "{stderr}"
    );
    // The cron's pull, as well as the delta polls, finds the issuer's list behind.
    edge.run_cron().await;
    let problem = eventually(
        "the health route to report the issuer behind",
        Duration::from_secs(30),
        || async {
            let problems = edge.health().await["problems"].to_string();
            problems
                .contains("older than the one held")
                .then_some(problems)
        },
    )
    .await;
    assert!(
        problem.contains("seq 1") && problem.contains("seq 2"),
        "{problem}"
    );
}
