//! The sync endpoint's refusals, a misconfigured worker that says what is wrong, scope rules
//! that fail closed, and the health details.

use std::time::Duration;

use gatehouse_shared::RevocationList;
use gatehouse_tests::{Edge, eventually, free_port, http, unix_now};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::system::{Options, System, access, get, push};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_endpoint_refuses_forgeries_and_old_snapshots() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let held = sys.edge.health().await["revocations"]["seq"]
        .as_u64()
        .unwrap();
    let key = &sys.issuer.key;

    let (status, json) = push(&sys.edge.url, "not a jws".into()).await;
    assert_eq!((status, json["code"].as_str()), (400, Some("malformed")));
    // A push that does not declare its length is refused before its body is read: a chunked
    // body of any size would otherwise be buffered, and copied into the wasm, first.
    let mut stream = tokio::net::TcpStream::connect(sys.edge.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let chunked = "POST /_gatehouse/sync HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\
                   Connection: close\r\n\r\n9\r\nnot a jws\r\n0\r\n\r\n";
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(answer.contains("\"length_required\""), "{answer}");
    let (status, json) = push(&sys.edge.url, access(&tokens).to_owned()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("wrong_type")),
        "an access token is not a snapshot"
    );
    // Pushes read at once are bounded (each is read whole into wasm, and anyone may push): two
    // of the largest, their bodies still arriving, leave no room for a third, until their
    // senders go away.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(sys.edge.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let head =
            "POST /_gatehouse/sync HTTP/1.1\r\nHost: edge\r\nContent-Length: 8388608\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'a'; 1024]).await.unwrap();
        slow.push(stream);
    }
    let edge_url = sys.edge.url.as_str();
    eventually(
        "the two slow pushes to be read",
        Duration::from_secs(10),
        || async move {
            let (status, json) = push(edge_url, "not a jws".into()).await;
            ((status, json["code"].as_str()) == (503, Some("push_busy"))).then_some(())
        },
    )
    .await;
    drop(slow);
    eventually(
        "the slow pushes' room to be given back",
        Duration::from_secs(10),
        || async move {
            let (status, json) = push(edge_url, "not a jws".into()).await;
            ((status, json["code"].as_str()) == (400, Some("malformed"))).then_some(())
        },
    )
    .await;
    let forger =
        gatehouse_shared::SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let forged = RevocationList::builder(&sys.issuer.url, held + 100, unix_now()).build();
    let (status, json) = push(&sys.edge.url, forged.sign_snapshot(&forger).unwrap()).await;
    assert_eq!((status, json["code"].as_str()), (400, Some("unknown_kid")));
    let older = RevocationList::builder(&sys.issuer.url, held, unix_now() - 100).build();
    let (status, json) = push(&sys.edge.url, older.sign_snapshot(key).unwrap()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (409, Some("stale_snapshot"))
    );
    let foreign = RevocationList::builder("https://other.test", held + 1, unix_now()).build();
    let (status, json) = push(&sys.edge.url, foreign.sign_snapshot(key).unwrap()).await;
    assert_eq!((status, json["code"].as_str()), (400, Some("wrong_issuer")));

    // A genuine newer snapshot is taken, and takes effect.
    let claims = sys.claims();
    let newer = RevocationList::builder(&sys.issuer.url, held + 1, unix_now())
        .token(&claims.jti, claims.exp + 60)
        .build();
    let (status, json) = push(&sys.edge.url, newer.sign_snapshot(key).unwrap()).await;
    assert_eq!(
        (status, json["seq"].as_u64()),
        (200, Some(held + 1)),
        "{json}"
    );
    let (status, json) = sys.get("/api/x", Some(&sys.mint(&claims))).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("revoked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_worker_says_what_is_wrong() {
    let edge = Edge::start_with_toml_values(
        free_port(),
        &[
            ("ROUTE_SCOPES", "api=read,/api/x/*=two words"),
            ("STALE_POLICY", "sometimes"),
            ("ORIGIN_URL", "https://user@origin.example/app#"),
            ("ISSUER_URL", "issuer.example"),
            ("DELTA_URL", "ftp://issuer.example/delta"),
            ("KV_REFRESH_SECS", "0"),
            ("REALM", "say \"hi\""),
            ("MAX_LIST_AGE_SECS", "1800"),
            ("MAX_TOKEN_BYTES", "512"),
        ],
        // Unquoted in wrangler.toml, these reach the worker as numbers, booleans and arrays.
        &[
            ("DELTA_POLL_MS", "5000"),
            ("LEEWAY_SECS", "600"),
            ("KEYS_TTL_SECS", "86400"),
            ("VERIFIED_CACHE_SIZE", "100000"),
            ("SERVER_TIMING", "true"),
            ("PUBLIC_PATHS", r#"["/"]"#),
        ],
    )
    .await;
    let health = edge.health().await;
    let problems = health["problems"].to_string();
    for expected in [
        // User info is refused, and not repeated in the report.
        r#"ORIGIN_URL=\"https://…@origin.example/app#\" needs a host, without user info"#,
        "EXPECTED_ISSUER is not set",
        r#"ROUTE_SCOPES rule \"api=read\""#,
        r#"ROUTE_SCOPES rule \"/api/x/*=two words\""#,
        "STALE_POLICY",
        r#"ISSUER_URL=\"issuer.example\" is not an http:// or https:// URL"#,
        r#"DELTA_URL=\"ftp://issuer.example/delta\" is not"#,
        "REALM=",
        "DELTA_POLL_MS=5000 is over 2000",
        "LEEWAY_SECS=600 is over 60",
        "KEYS_TTL_SECS=86400 is over 3600",
        "VERIFIED_CACHE_SIZE=100000 is over 10000",
        "KV_REFRESH_SECS=0 is under 1",
        r#"SERVER_TIMING=\"true\" is neither off nor on"#,
        "PUBLIC_PATHS is not text, a number or a boolean",
        "MAX_LIST_AGE_SECS=1800 is not above KV_HEARTBEAT_SECS + 135 s + KV_REFRESH_SECS (3736)",
        // Checked before a deploy too (`offline_problems`), by the same rule.
        "MAX_TOKEN_BYTES=512 is under 1024",
    ] {
        assert!(problems.contains(expected), "{expected} in {problems}");
    }
    let (status, json) = get(&edge, "/api/x", None).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("misconfigured"))
    );
    // The least `DELTA_POLL_MS` (above 0), a number in its own worker as the one above holds
    // its most.
    let edge = Edge::start_with_toml_values(
        free_port(),
        &[("ORIGIN_URL", "https://origin.example")],
        &[("DELTA_POLL_MS", "50")],
    )
    .await;
    let problems = edge.health().await["problems"].to_string();
    assert!(
        problems.contains("DELTA_POLL_MS is under 100"),
        "{problems}"
    );
}

/// Rules are read in the form requests are matched in, so a rule spelled with an escape or a
/// doubled slash guards its paths; a scope rule that cannot be honoured stops the worker rather
/// than leave its paths to a shorter, weaker rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rules_are_canonical_and_a_broken_one_fails_closed() {
    let sys = System::start(Options {
        edge_vars: &[
            ("ROUTE_SCOPES", "//api/%61dmin/*=admin,/api/*=read"),
            ("PUBLIC_PATHS", "/%70ublic/*"),
        ],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    for path in ["/api/admin/users", "/api/admin.json"] {
        let (status, json) = sys.get(path, Some(access(&tokens))).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{path}: {json}"
        );
    }
    assert_eq!(sys.get("/public/logo.svg", None).await.0, 200);
    assert_eq!(sys.edge.health().await["problems"], serde_json::json!([]));

    let origin = &sys.origin.url;
    let broken = Edge::start(
        free_port(),
        &[
            ("ORIGIN_URL", origin.as_str()),
            ("EXPECTED_ISSUER", "https://issuer.example"),
            ("EXPECTED_AUDIENCE", "api"),
            ("ISSUER_URL", "https://issuer.example"),
            ("ROUTE_SCOPES", "/api/admin%2F*=admin,/api/*=read"),
        ],
    )
    .await;
    let problems = broken.health().await["problems"].to_string();
    assert!(problems.contains("admin%2F"), "{problems}");
    let (status, json) = get(&broken, "/api/admin/x", Some(access(&tokens))).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("misconfigured")),
        "{json}"
    );

    // A rule that a public path overrules (the public check comes first) cannot be honoured
    // either: before, `/api/admin/x` reached the origin with no token at all.
    let overruled = Edge::start(
        free_port(),
        &[
            ("ORIGIN_URL", origin.as_str()),
            ("EXPECTED_ISSUER", "https://issuer.example"),
            ("EXPECTED_AUDIENCE", "api"),
            ("ISSUER_URL", "https://issuer.example"),
            ("ROUTE_SCOPES", "/api/admin/*=admin"),
            ("PUBLIC_PATHS", "/api/*"),
        ],
    )
    .await;
    let problems = overruled.health().await["problems"].to_string();
    assert!(problems.contains("PUBLIC_PATHS entry /api/*"), "{problems}");
    let (status, json) = get(&overruled, "/api/admin/x", None).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("misconfigured")),
        "{json}"
    );
}

/// An `ISSUER_URL` the worker cannot use (here with a query) stops it, as the other required
/// vars do: 503 `misconfigured` on every request, public paths included, and the health names
/// it. Before, the worker served on with no key or list fetch ever possible, so keys read from
/// KV were never refreshed. The same vars with a usable URL forward the public path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_issuer_url_stops_the_worker() {
    let origin = format!("http://127.0.0.1:{}", free_port());
    for (issuer_url, stopped) in [
        ("https://issuer.example/?x=1", true),
        ("https://issuer.example", false),
    ] {
        let edge = Edge::start(
            free_port(),
            &[
                ("ORIGIN_URL", origin.as_str()),
                ("ISSUER_URL", issuer_url),
                ("EXPECTED_ISSUER", "https://issuer.example"),
                ("EXPECTED_AUDIENCE", "api"),
                ("PUBLIC_PATHS", "/"),
            ],
        )
        .await;
        let (status, json) = get(&edge, "/", None).await;
        assert_eq!(
            json["code"].as_str() == Some("misconfigured"),
            stopped,
            "{issuer_url}: {status} {json}"
        );
        let problems = edge.health().await["problems"].to_string();
        assert_eq!(problems.contains("ISSUER_URL"), stopped, "{problems}");
    }
}

/// The health route tells anyone only `status`; its details (list age, kids, problems, KV
/// errors) need `HEALTH_TOKEN`. A wrong bearer token, a user's access token among them, is
/// told so, and a token too short to be secret is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_details_need_the_health_token() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let health = format!("{}/_gatehouse/health", sys.edge.url);

    let (status, public) = gatehouse_tests::get_json(&health, None).await;
    assert_eq!(
        (status, &public),
        (200, &serde_json::json!({"status": "ok"}))
    );
    // HEAD, which uptime monitors probe with, is answered as GET is (before: 401, the gate's).
    let head = http().head(&health).send().await.unwrap();
    assert_eq!(head.status(), 200);
    for wrong in ["not-the-health-token-at-all", access(&tokens)] {
        let (status, json, challenge) = gatehouse_tests::get_challenged(&health, wrong).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (401, Some("health_token_mismatch")),
            "{json}"
        );
        assert!(challenge.is_some_and(|c| c.starts_with("Bearer ")));
        assert!(json.get("kids").is_none(), "{json}");
    }
    let details = sys.edge.health().await;
    assert_eq!(details["status"], "ok", "{details}");
    assert!(!details["kids"].as_array().unwrap().is_empty(), "{details}");
    assert!(details["revocations"]["seq"].is_u64(), "{details}");

    let short = "too-short";
    let edge = Edge::start(
        free_port(),
        &[
            ("ORIGIN_URL", sys.origin.url.as_str()),
            ("EXPECTED_ISSUER", "https://issuer.example"),
            ("EXPECTED_AUDIENCE", "api"),
            ("HEALTH_TOKEN", short),
        ],
    )
    .await;
    let url = format!("{}/_gatehouse/health", edge.url);
    let (status, json) = gatehouse_tests::get_json(&url, Some(short)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("health_token_mismatch")),
        "{json}"
    );
}

/// Whether `ORIGIN_SECRET` is sent is in the health details. Not a problem when it is not: an
/// origin reached only through the worker needs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_details_say_whether_the_origin_secret_is_sent() {
    for (secret, sent) in [
        (None, false),
        (Some("too-short"), false),
        (Some("an-origin-secret-of-32-characters"), true),
    ] {
        let mut vars = vec![("ORIGIN_URL", "https://origin.example")];
        vars.extend(secret.map(|secret| ("ORIGIN_SECRET", secret)));
        let edge = Edge::start_with_toml_values(free_port(), &vars, &[]).await;
        let health = edge.health().await;
        let problems = health["problems"].to_string();
        assert_eq!(health["origin_secret"], sent, "{secret:?}: {health}");
        assert_eq!(
            problems.contains("ORIGIN_SECRET"),
            secret == Some("too-short"),
            "only a secret that cannot be sent is a problem: {problems}"
        );
    }
}
