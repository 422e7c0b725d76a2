//! Faults and races with real processes: the database going away under load, two issuer
//! processes racing on one PostgreSQL, clock skew between issuer and edge, and an origin that
//! cannot be reached.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_tests::proxy::Proxy;
use gatehouse_tests::{
    Edge, Issuer, PgSchema, eventually, free_port, get_text, http, json_of, post_form, repo_root,
};
use sha2::Digest as _;

use crate::system::{Options, PASSWORD, System, access};

async fn refresh(base: &str, token: &str) -> (u16, serde_json::Value) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    post_form(&format!("{base}/v1/token"), &form).await
}

async fn me(base: &str, token: &str) -> reqwest::Response {
    http()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Readiness answers within `db_timeout_ms` when the database's network drops packets (SIMULATED:
/// the proxy holds every connection open and carries nothing): not ready, at once and again.
/// Before, the probe's round trip had no deadline of its own: on a real network it waited
/// until TCP gave up (about 15 minutes), and every probe after it waited behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_answers_in_time_when_the_databases_network_drops_packets() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let issuer = Issuer::start_on(
        PgSchema::new(),
        Some(proxy.port),
        &[("GATEHOUSE_DB_TIMEOUT_MS", "1000")],
    )
    .await;
    let ready = format!("{}/health/ready", issuer.url);
    let probe = || async {
        let asked = std::time::Instant::now();
        let answer = http()
            .get(&ready)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map(|r| r.status().as_u16());
        (answer, asked.elapsed())
    };
    assert_eq!(probe().await.0.ok(), Some(200));
    proxy.freeze();
    for _ in 0..2 {
        let (answer, took) = probe().await;
        assert_eq!(answer.ok(), Some(503), "after {took:?}");
        // The deadline, with room for a loaded machine; a hang is 30 s here, 15 minutes on a
        // real network.
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_gives_503s_and_recovers_by_itself() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let issuer = Issuer::start_on(
        PgSchema::new(),
        Some(proxy.port),
        &[("GATEHOUSE_DB_POOL_SIZE", "4")],
    )
    .await;
    issuer.register("alice", PASSWORD).await;
    let tokens = issuer.login("alice", PASSWORD).await;
    let token = access(&tokens).to_owned();
    assert_eq!(me(&issuer.url, &token).await.status(), 200);

    proxy.cut();
    // The bearer check may answer from memory for `auth_cache_ms` (250) after its last read;
    // past that it needs the database like everything else.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let base = issuer.url.clone();
    let load: Vec<_> = (0..12)
        .map(|i| {
            let (base, token) = (base.clone(), token.clone());
            tokio::spawn(async move {
                let response = if i % 3 == 0 {
                    let form = [
                        ("grant_type", "password"),
                        ("username", "alice"),
                        ("password", PASSWORD),
                    ];
                    http()
                        .post(format!("{base}/v1/token"))
                        .form(&form)
                        .send()
                        .await
                        .unwrap()
                } else {
                    me(&base, &token).await
                };
                let retry = response.headers().get("retry-after").is_some();
                let (status, json) = json_of(response).await;
                (
                    status,
                    json["error"].as_str().unwrap_or_default().to_owned(),
                    retry,
                )
            })
        })
        .collect();
    for task in load {
        let (status, error, retry) = task.await.unwrap();
        assert_eq!(
            (status, error.as_str(), retry),
            (503, "temporarily_unavailable", true)
        );
    }
    // The database's 503s are counted by reason: no new connection could be opened (bearer
    // checks that shared one failed refresh of the auth cache are not calls of their own).
    let no_connection = issuer
        .metric(r#"gatehouse_db_unavailable_total{reason="no_connection"}"#)
        .await;
    assert!(no_connection >= 1.0, "{no_connection}");
    let ready = http()
        .get(format!("{}/health/ready", issuer.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readiness fails while the database is away"
    );
    // As every other 503 of the issuer: its `error` and `Retry-After`, with the details.
    assert!(ready.headers().contains_key("retry-after"));
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        (ready["error"].as_str(), ready["database"].as_bool()),
        (Some("temporarily_unavailable"), Some(false)),
        "{ready}"
    );
    assert_eq!(
        http()
            .get(format!("{}/health/live", issuer.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A logout during the outage is refused, not pretended.
    assert_eq!(issuer.logout(&token).await, 503);

    proxy.restore();
    let restored = std::time::Instant::now();
    eventually(
        "the issuer to recover by itself",
        Duration::from_secs(10),
        || async { (me(&issuer.url, &token).await.status() == 200).then_some(()) },
    )
    .await;
    eprintln!(
        "issuer recovered {:?} after the database came back",
        restored.elapsed()
    );
    assert_eq!(issuer.logout(&token).await, 200);
    let (status, json) = json_of(me(&issuer.url, &token).await).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("revoked")));

    // Logouts racing a cut: every one that got its 200 stays revoked after the database returns.
    // The cut comes later in each round until some logout was answered 200 before it, so the
    // check below has something to check.
    let mut checked = 0;
    for cut_after_ms in [5, 20, 80] {
        let mut sessions = Vec::new();
        for _ in 0..10 {
            sessions.push(access(&issuer.login("alice", PASSWORD).await).to_owned());
        }
        let racing: Vec<_> = sessions
            .iter()
            .map(|t| {
                let (base, t) = (issuer.url.clone(), t.clone());
                tokio::spawn(async move {
                    let r = http()
                        .post(format!("{base}/v1/logout"))
                        .bearer_auth(&t)
                        .send()
                        .await;
                    (t, r.map_or(0, |r| r.status().as_u16()))
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(cut_after_ms)).await;
        proxy.cut();
        let mut answered = Vec::new();
        for task in racing {
            answered.push(task.await.unwrap());
        }
        proxy.restore();
        eventually(
            "recovery after the cut",
            Duration::from_secs(10),
            || async {
                (http()
                    .get(format!("{}/health/ready", issuer.url))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    == 200)
                    .then_some(())
            },
        )
        .await;
        for (t, status) in &answered {
            assert!(matches!(status, 200 | 503), "logout answered {status}");
            if *status == 200 {
                checked += 1;
                let (status, json) = json_of(me(&issuer.url, t).await).await;
                assert_eq!(
                    (status, json["code"].as_str()),
                    (401, Some("revoked")),
                    "a 200 logout was lost"
                );
            }
        }
        eprintln!("cut after {cut_after_ms} ms: {checked} logouts answered 200 so far");
        if checked > 0 {
            break;
        }
    }
    assert!(checked > 0, "no logout was answered 200 before a cut");
}

fn hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_issuer_processes_race_on_one_database() {
    // A grace window that 50 refreshes on a loaded 2-core machine fit in (whole seconds). No
    // per-client budget of failed logins: every request here comes from one address, and the
    // parallel wrong passwords below test that client's lockout on the account.
    let a = Issuer::start(&[
        ("GATEHOUSE_REFRESH_GRACE_SECS", "5"),
        ("GATEHOUSE_FAILED_LOGINS_PER_MINUTE", "0"),
    ])
    .await;
    let b = a.replica().await;
    a.register("alice", PASSWORD).await;
    let r0 = a.login("alice", PASSWORD).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // 50 concurrent refreshes of one token over both processes: one rotation, one successor.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            let r0 = r0.clone();
            tokio::spawn(async move { refresh(&base, &r0).await })
        })
        .collect();
    let mut successors = Vec::new();
    for task in tasks {
        let (status, json) = task.await.unwrap();
        assert_eq!(status, 200, "{json}");
        successors.push(json["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.sort();
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "one successor for every concurrent retry"
    );
    let sql = format!(
        "SELECT count(*) FROM refresh_tokens WHERE parent_hash = '{}'",
        hash(&r0)
    );
    assert_eq!(a.schema.count(&sql), 1, "exactly one successor row");

    // Reuse after the grace window, on the other process: the family dies on both.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    assert_eq!(refresh(&b.url, &r0).await.0, 400);
    assert_eq!(refresh(&a.url, &successors[0]).await.0, 400);
    assert_eq!(
        a.schema
            .count("SELECT count(*) FROM sessions WHERE revoked_at IS NULL"),
        0
    );

    // Parallel wrong passwords over both processes: exactly the threshold (5) are checked.
    a.register("bob", PASSWORD).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.url.clone()
            } else {
                b.url.clone()
            };
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "password"),
                    ("username", "bob"),
                    ("password", "wrong-password"),
                ];
                post_form(&format!("{base}/v1/token"), &form).await
            })
        })
        .collect();
    let mut checked = 0;
    for task in tasks {
        let (status, json) = task.await.unwrap();
        assert_eq!(status, 400);
        if json["error_description"] == "invalid username or password" {
            checked += 1;
        }
    }
    assert_eq!(checked, 5);

    // A refresh racing a logout of the same session: no successor survives.
    let s = a.login("alice", PASSWORD).await;
    let (refresh_task, logout_task) = tokio::join!(
        refresh(&b.url, s["refresh_token"].as_str().unwrap()),
        http()
            .post(format!("{}/v1/logout", a.url))
            .bearer_auth(access(&s))
            .send()
    );
    assert_eq!(logout_task.unwrap().status(), 200);
    // Either order is legal, and each has one right answer: the refresh won (a successor the
    // logout then killed) or lost (`invalid_grant`). Anything else, a 500 included, fails.
    match refresh_task.0 {
        200 => {
            let successor = refresh_task.1;
            assert_eq!(
                refresh(&a.url, successor["refresh_token"].as_str().unwrap())
                    .await
                    .0,
                400
            );
            assert_eq!(me(&b.url, access(&successor)).await.status(), 401);
        }
        400 => assert_eq!(
            refresh_task.1["error"], "invalid_grant",
            "{}",
            refresh_task.1
        ),
        other => panic!(
            "a refresh racing a logout answered {other}: {}",
            refresh_task.1
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_within_the_leeway_is_harmless() {
    let sys = System::start(Options {
        edge_vars: &[("LEEWAY_SECS", "30")],
        ..Options::default()
    })
    .await;
    let skewed = |ahead: i64| {
        let mut c = sys.claims();
        c.iat += ahead;
        c.nbf = Some(c.iat);
        c.exp += ahead;
        sys.mint(&c)
    };
    let expired_by = |secs: i64| {
        let mut c = sys.claims();
        c.iat -= 600;
        c.nbf = Some(c.iat);
        c.exp = c.iat + 600 - secs;
        sys.mint(&c)
    };
    assert_eq!(
        sys.get("/api/x", Some(&skewed(20))).await.0,
        200,
        "issuer 20 s ahead"
    );
    let (status, json) = sys.get("/api/x", Some(&skewed(90))).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("not_yet_valid")),
        "issuer 90 s ahead"
    );
    assert_eq!(
        sys.get("/api/x", Some(&expired_by(20))).await.0,
        200,
        "expired 20 s ago by the edge's clock"
    );
    let (status, json) = sys.get("/api/x", Some(&expired_by(90))).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("expired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_killed_mid_push_is_repaired_by_the_cron_pull() {
    // A sync endpoint that accepts connections and never answers: the push hangs in flight.
    let hole = gatehouse_tests::black_hole().await;
    let sink = format!("{}/_gatehouse/sync", hole.url);
    let mut sys = System::start(Options {
        push: false,
        issuer_env: &[("GATEHOUSE_EDGE_SYNC_URLS", &sink)],
        // No fast path: its next poll would bring the logout whether or not the cron works.
        edge_vars: &[("DELTA_POLL_MS", "0")],
    })
    .await;
    let tokens = sys.user("alice").await;
    let token = access(&tokens).to_owned();
    assert_eq!(sys.issuer.logout(&token).await, 200);
    let hole = &hole;
    eventually(
        "the push to reach the hung edge",
        Duration::from_secs(10),
        || async move { (hole.accepted() > 0).then_some(()) },
    )
    .await;
    sys.issuer.stop(); // killed while its push hangs
    assert_eq!(
        sys.get("/api/whoami", Some(&token)).await.0,
        200,
        "the edge has not heard"
    );
    sys.issuer.restart().await;
    sys.edge.run_cron().await;
    let (status, json) = sys.get("/api/whoami", Some(&token)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("revoked")),
        "the pull converged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_headers_are_refused_without_harm() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let huge = "A".repeat(1 << 20);
    for url in [
        format!("{}/v1/me", sys.issuer.url),
        format!("{}/api/x", sys.edge.url),
    ] {
        for (name, value) in [
            ("authorization", format!("Bearer {huge}")),
            ("x-padding", huge.clone()),
        ] {
            let status = match http().get(&url).header(name, &value).send().await {
                Ok(response) => response.status().as_u16(),
                Err(e) => panic!("{url} {name}: the server dropped the connection: {e}"),
            };
            // The HTTP layer refuses such headers before any handler runs: never a 5xx, and
            // never the worker's own 401 (it would have parsed a 1 MiB header).
            assert_eq!(status, 431, "{url} {name}");
        }
        // And the server is unharmed.
        let ok = http()
            .get(&url)
            .bearer_auth(access(&tokens))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{url}");
    }
}

/// The origin down: the gate's own 502 with its code, for a verified token (checked, then
/// from the cache) and a public path, with and without `Server-Timing`; never the runtime's
/// bare 500 for a forward whose promise rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_is_a_502_with_its_code() {
    for timing in ["off", "on"] {
        let closed = format!("http://127.0.0.1:{}", free_port());
        let sys = System::start(Options {
            edge_vars: &[("ORIGIN_URL", &closed), ("SERVER_TIMING", timing)],
            ..Options::default()
        })
        .await;
        let tokens = sys.user("alice").await;
        let token = access(&tokens);
        for (path, bearer) in [
            ("/api/x", Some(token)),
            ("/api/x", Some(token)),
            ("/public/x", None),
        ] {
            let (status, body) = sys.get(path, bearer).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (502, Some("origin_unreachable")),
                "SERVER_TIMING={timing} {path}"
            );
        }
    }
}

/// The built worker with the issuer's keys pinned and no issuer to reach, in a runtime whose
/// WebCrypto `verify` rejects its first call (`tests/sim/faulty-webcrypto.mjs`).
async fn faulty_webcrypto_edge(sys: &System) -> Edge {
    let jwks = get_text(&format!("{}/.well-known/jwks.json", sys.issuer.url)).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let vars = sys.pinned_edge_vars(&jwks, &dead);
    let wrapper = repo_root().join("tests/sim/faulty-webcrypto.mjs");
    Edge::start_script(free_port(), &wrapper, &vars, &[]).await
}

/// The runtime's WebCrypto failing (simulated: `tests/sim/faulty-webcrypto.mjs` wraps the
/// built worker in a runtime whose `crypto.subtle.verify` rejects once) is a 503 a client retries,
/// not `bad_signature`, on which a client signs its user out. A token refused by its form,
/// before any signature check, is still a 401 with its code. Before, the failure was
/// `bad_signature`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webcrypto_failure_is_a_503_not_a_bad_signature() {
    let sys = System::start(Options::default()).await;
    let edge = faulty_webcrypto_edge(&sys).await;
    let token = sys.mint(&sys.claims());
    // The one failure, then the runtime works: the same token passes (nothing of the fault
    // was kept), and one refused by its form never reaches WebCrypto.
    for (bearer, expected) in [
        (token.as_str(), (503, "verification_unavailable")),
        ("a.b.c", (401, "malformed")),
        (token.as_str(), (200, "")),
    ] {
        let (status, json) = crate::system::get(&edge, "/api/x", Some(bearer)).await;
        assert_eq!(
            (status, json["code"].as_str().unwrap_or_default()),
            expected,
            "{json}"
        );
    }
    assert_eq!(
        sys.origin.requests().await.len(),
        1,
        "only the verified request"
    );
}

/// Signed lists go to WebCrypto too (the worker links no Ed25519 of its own): a pushed list that
/// meets the fault is 503 `verification_unavailable`, which the issuer retries, not a 400 that
/// calls the list bad; the retry is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webcrypto_failure_on_a_pushed_list_is_a_503_and_the_retry_is_taken() {
    let sys = System::start(Options::default()).await;
    let edge = faulty_webcrypto_edge(&sys).await;
    let snapshot = get_text(&format!("{}/v1/revocations", sys.issuer.url)).await;
    for expected in [(503, "verification_unavailable"), (200, "")] {
        let (status, json) = crate::system::push(&edge.url, snapshot.clone()).await;
        assert_eq!(
            (status, json["code"].as_str().unwrap_or_default()),
            expected,
            "{json}"
        );
    }
}
