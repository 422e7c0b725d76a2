//! The per-request gate: identity headers, stripping, public paths, 401/403 with the right codes.

use gatehouse_shared::SNAPSHOT_TYPE;
use gatehouse_tests::{get_json, http, json_of};

use crate::system::{Options, PASSWORD, System, access};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_reaches_the_origin_and_spoofs_do_not() {
    const ORIGIN_SECRET: &str = "an-origin-secret-of-32-characters";
    let sys = System::start(Options {
        edge_vars: &[("ORIGIN_SECRET", ORIGIN_SECRET)],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let response = http()
        .post(format!("{}/api/echo?x=1&y=two", sys.edge.url))
        .bearer_auth(access(&tokens))
        .header("X-Gatehouse-Sub", "admin-impostor")
        .header("X-Gatehouse-Origin-Secret", "forged")
        .header("x-gatehouse-extra", "1")
        .header("X-Gatehouse-Client-Id", "forged")
        .header("X-Forwarded-Host", "evil.example")
        .header("Forwarded", "host=evil.example")
        .header("X_Forwarded_Host", "evil.example")
        .header("X-Forwarded-Prefix", "/evil")
        .header("X-Original-URL", "/api/admin/users")
        .header("X-Rewrite-URL", "/api/admin/users")
        .header("X-Forwarded-Scheme", "http")
        .header("X-Forwarded-Ssl", "off")
        .header("X-Host", "evil.example")
        // A mount point some WSGI middleware cuts off the path, and the scheme it and Tornado
        // read.
        .header("X_Script_Name", "/api/x")
        .header("X-Scheme", "http")
        .header("X-Url-Scheme", "http")
        // A `POST` the `read` rules let through, run as a `DELETE` by method-override origins,
        // with a `Destination` the gate never checked (it does for `COPY` and `MOVE` only).
        .header("X-HTTP-Method-Override", "DELETE")
        .header("X_HTTP_Method", "MOVE")
        .header("X-Method-Override", "DELETE")
        .header("Destination", "/api/admin/users")
        // The `_` spellings of what Cloudflare sets, which CGI-style stacks read as the same.
        .header("CF_Connecting_IP", "6.6.6.6")
        .header("True_Client_IP", "6.6.6.6")
        // Set by Cloudflare only on Enterprise zones that turn it on: else the client's own.
        .header("True-Client-IP", "6.6.6.6")
        .header("X_Real_IP", "6.6.6.6")
        .header("X_Forwarded_For", "6.6.6.6")
        .header("X_Forwarded_Proto", "http")
        .body("hello origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("server-timing").is_none(),
        "Server-Timing is opt-in"
    );
    let seen = sys.origin.requests().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let req = &seen[0];
    assert_eq!(
        (
            req["method"].as_str(),
            req["path"].as_str(),
            req["query"].as_str()
        ),
        (Some("POST"), Some("/api/echo"), Some("?x=1&y=two"))
    );
    assert_eq!(req["body"], "hello origin");
    let (_, me) = get_json(&format!("{}/v1/me", sys.issuer.url), Some(access(&tokens))).await;
    let headers = &req["headers"];
    assert_eq!(headers["x-gatehouse-sub"], me["sub"]);
    assert_eq!(headers["x-gatehouse-sid"], me["sid"]);
    assert_eq!(headers["x-gatehouse-scope"], "read write");
    assert!(
        headers["x-gatehouse-jti"]
            .as_str()
            .is_some_and(|j| !j.is_empty())
    );
    assert!(
        headers.get("x-gatehouse-extra").is_none(),
        "client identity headers are stripped"
    );
    // The edge's secret, which the origin checks to refuse requests that bypassed the edge;
    // public requests carry it too.
    assert_eq!(headers["x-gatehouse-origin-secret"], ORIGIN_SECRET);
    // The host the client asked for, set by the edge (the origin's `Host` is its own).
    let edge_host = sys.edge.url.trim_start_matches("http://");
    assert_eq!(headers["x-forwarded-host"], edge_host, "{headers}");
    for host_claim in [
        "forwarded",
        "x_forwarded_host",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "x_script_name",
        "x-scheme",
        "x-url-scheme",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "x-host",
        "x-http-method-override",
        "x_http_method",
        "x-method-override",
        "destination",
        "cf_connecting_ip",
        "true_client_ip",
        "true-client-ip",
        "x_real_ip",
        "x_forwarded_for",
        "x_forwarded_proto",
    ] {
        assert!(headers.get(host_claim).is_none(), "{host_claim}: {headers}");
    }
    assert!(
        headers["authorization"]
            .as_str()
            .is_some_and(|a| a.ends_with(access(&tokens))),
        "the token reaches the origin, as documented"
    );
    // Fetched with `cache: "no-store"`, which the runtime marks on the request: a user's
    // response never enters Cloudflare's cache, keyed by URL alone.
    assert_eq!(
        (
            headers["cache-control"].as_str(),
            headers["pragma"].as_str()
        ),
        (Some("no-cache"), Some("no-cache")),
        "{headers}"
    );
    // The token's client (RFC 9068 `client_id`) is handed on; a token naming none, as above,
    // hands on none, whatever the request carried.
    assert!(headers.get("x-gatehouse-client-id").is_none(), "{headers}");
    let named = sys
        .issuer
        .login_as_client("alice", PASSWORD, "web app")
        .await;
    let response = http()
        .get(format!("{}/api/echo", sys.edge.url))
        .bearer_auth(access(&named))
        .header("X-Gatehouse-Client-Id", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = sys.origin.requests().await;
    assert_eq!(seen[0]["headers"]["x-gatehouse-client-id"], "web app");

    // Public paths pass without a token, and still lose spoofed identity headers.
    let response = http()
        .get(format!("{}/", sys.edge.url))
        .header("X-Gatehouse-Sub", "x")
        // CGI-style stacks (WSGI, Rack) read `_` as `-`: this spelling is ours too.
        .header("X_Gatehouse_Scope", "admin")
        // A control: the runtime passes `_` names on, so the edge is what drops the one above.
        .header("X_Client_Note", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = sys.origin.requests().await;
    assert_eq!(seen[0]["path"], "/");
    assert!(seen[0]["headers"].get("x-gatehouse-sub").is_none());
    assert_eq!(
        seen[0]["headers"]["x-gatehouse-origin-secret"],
        ORIGIN_SECRET
    );
    assert!(
        seen[0]["headers"].get("cache-control").is_none(),
        "a public path keeps the zone's caching: {}",
        seen[0]["headers"]
    );
    assert!(
        seen[0]["headers"].get("x_gatehouse_scope").is_none(),
        "{}",
        seen[0]["headers"]
    );
    assert_eq!(
        seen[0]["headers"]["x_client_note"], "kept",
        "{}",
        seen[0]["headers"]
    );
    let (status, _) = sys.get("/public/logo.svg", None).await;
    assert_eq!(status, 200);
    sys.origin.requests().await;

    // Methods no fetch may send never reach the origin: an origin that answers TRACE would
    // echo the origin secret back to the client. (workerd itself answers TRACK, and methods
    // it does not know the spelling of, with 501.)
    let response = http()
        .request(reqwest::Method::TRACE, format!("{}/", sys.edge.url))
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    let allow = response.headers().get("allow").cloned();
    let (status, json) = json_of(response).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{json}"
    );
    assert!(
        allow.is_some_and(|a| a.to_str().is_ok_and(|a| a.contains("GET"))),
        "RFC 9110 asks a 405 for Allow"
    );
    assert!(sys.origin.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_right_code() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    sys.origin.requests().await;

    let response = http()
        .get(format!("{}/api/x", sys.edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The worker's own answers are JSON that no cache keeps.
    for (name, value) in [
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    let www = response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(www, "Bearer realm=\"gatehouse\"");
    assert_eq!(json_of(response).await.1["code"], "missing_token");

    let good = access(&tokens).to_owned();
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'Q' } else { 'A' });
    let mut expired = sys.claims();
    expired.exp = expired.iat - 120;
    let mut wrong_aud = sys.claims();
    wrong_aud.aud = gatehouse_shared::Audience::single("someone-else");
    let mut wrong_iss = sys.claims();
    wrong_iss.iss = "https://evil.test".into();
    let snapshot_typed = sys.issuer.key.sign_raw_jws(
        &serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": sys.issuer.key.kid()})
            .to_string(),
        &serde_json::to_vec(&sys.claims()).unwrap(),
    );
    let cases = [
        (tampered, "bad_signature"),
        (sys.mint(&expired), "expired"),
        (sys.mint(&wrong_aud), "wrong_audience"),
        (sys.mint(&wrong_iss), "wrong_issuer"),
        (snapshot_typed, "wrong_type"),
        (
            tokens["refresh_token"].as_str().unwrap().to_owned(),
            "malformed",
        ),
        ("x".repeat(10_000), "too_large"),
        ("eyJhbGciOiJub25lIn0.e30.".to_owned(), "wrong_type"),
    ];
    for (token, code) in &cases {
        let url = format!("{}/api/x", sys.edge.url);
        let (status, json, www) = gatehouse_tests::get_challenged(&url, token).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (401, Some(*code)),
            "{json}"
        );
        assert_eq!(json["error"], "invalid_token");
        assert!(www.unwrap().contains("error=\"invalid_token\""));
    }

    // Valid but without the route's scope: 403.
    let mut write_only = sys.claims();
    write_only.scope = "write".into();
    let (status, json) = sys.get("/api/x", Some(&sys.mint(&write_only))).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, json) = sys.get("/api/admin/users", Some(&good)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(
        sys.origin.requests().await.is_empty(),
        "nothing refused reached the origin"
    );

    // A token the edge accepts, minted with the issuer's key, does reach it.
    let (status, _) = sys.get("/api/x", Some(&sys.mint(&sys.claims()))).await;
    assert_eq!(status, 200);
}

/// A CORS preflight to `/api/whoami` with what a client could slip into one.
pub(crate) fn preflight(edge: &str) -> reqwest::RequestBuilder {
    http()
        .request(reqwest::Method::OPTIONS, format!("{edge}/api/whoami"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .header("X-Gatehouse-Sub", "impostor")
        .header("Authorization", "Bearer not-checked")
        .header("Cookie", "session=abc")
        .body("delete everything")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_route_answers_the_verdict_without_the_origin() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let check = format!("{}/_gatehouse/check", sys.edge.url);
    // As a forward-auth proxy asks (the system's `ROUTE_SCOPES` need the request's path).
    let ask = |method: reqwest::Method, token: Option<&str>| {
        let request = http()
            .request(method, &check)
            .header("X-Forwarded-Uri", "/api/x")
            .header("X-Forwarded-Method", "GET");
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { json_of(request.send().await.unwrap()).await }
    };
    // Twice: the second answer comes through the isolate's cache of verified tokens.
    for _ in 0..2 {
        let (status, json) = ask(reqwest::Method::GET, Some(access(&tokens))).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["scope"], "read write");
        assert!(json["sub"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(json["exp"].as_i64().is_some());
    }
    let (status, _) = ask(reqwest::Method::HEAD, Some(access(&tokens))).await;
    assert_eq!(status, 200, "HEAD as GET");
    let (status, json) = ask(reqwest::Method::GET, None).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("missing_token"))
    );
    assert!(
        sys.origin.requests().await.is_empty(),
        "nothing was forwarded"
    );
    // A cached token is still refused once revoked.
    assert_eq!(sys.issuer.logout(access(&tokens)).await, 200);
    gatehouse_tests::eventually(
        "the check route to refuse the logged-out token",
        std::time::Duration::from_secs(20),
        || async {
            let (status, json) = ask(reqwest::Method::GET, Some(access(&tokens))).await;
            (status == 401 && json["code"] == "revoked").then_some(())
        },
    )
    .await;
}

/// With `SERVER_TIMING = "on"` the origin's response is rebuilt to carry the entry: status,
/// headers and body must come through as the origin sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timing_is_opt_in_and_keeps_the_origin_response() {
    let sys = System::start(Options {
        edge_vars: &[("SERVER_TIMING", "on")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let response = http()
        .post(format!("{}/api/echo", sys.edge.url))
        .bearer_auth(access(&tokens))
        .body("timed")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"].to_str().unwrap();
    // Milliseconds with one decimal (`{:.1}`).
    let dur = timing.strip_prefix("gatehouse;desc=\"verify\";dur=");
    assert!(
        dur.is_some_and(|d| d.parse::<f64>().is_ok_and(|ms| ms >= 0.0)
            && d.split_once('.')
                .is_some_and(|(_, tenths)| tenths.len() == 1)),
        "{timing}"
    );
    let (_, answer) = json_of(response).await;
    assert_eq!(
        (answer["method"].as_str(), answer["path"].as_str()),
        (Some("POST"), Some("/api/echo"))
    );
    assert_eq!(sys.origin.requests().await[0]["body"], "timed");

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_follow
        .get(format!("{}/api/redirect", sys.edge.url))
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://elsewhere.example/landing"
    );
    assert!(response.headers().contains_key("server-timing"));
    assert_eq!(response.text().await.unwrap(), "moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_behaves_like_a_proxy_for_redirects_preflights_and_head() {
    let sys = System::start(Options {
        edge_vars: &[("CORS_PREFLIGHT", "forward")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let token = access(&tokens);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The origin's redirect reaches the client as it was sent: the edge never follows it, so
    // the identity headers never travel to the other host.
    let response = no_follow
        .get(format!("{}/api/redirect", sys.edge.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://elsewhere.example/landing"
    );
    assert_eq!(
        sys.origin.requests().await.len(),
        1,
        "fetched once, not followed"
    );

    // With `CORS_PREFLIGHT = "forward"` (this edge's setting) the origin answers a preflight,
    // and gets no identity. Whatever else a client puts in one (a body, credentials, cookies)
    // is dropped, so a "preflight" cannot carry a request past the gate.
    let forwarding = &sys.edge;
    let response = preflight(&forwarding.url).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let seen = sys.origin.requests().await;
    assert_eq!(seen[0]["method"], "OPTIONS");
    for name in ["x-gatehouse-sub", "authorization", "cookie"] {
        assert!(seen[0]["headers"].get(name).is_none(), "{name}: {seen:?}");
    }
    assert_eq!(seen[0]["body"], "", "{seen:?}");
    // Even then, an OPTIONS that is not a preflight is an ordinary request: it needs a token.
    // A browser's preflight always names its Origin.
    for preflight_headers in [&[][..], &[("Access-Control-Request-Method", "DELETE")][..]] {
        let mut request = http().request(
            reqwest::Method::OPTIONS,
            format!("{}/api/whoami", forwarding.url),
        );
        for (name, value) in preflight_headers {
            request = request.header(*name, *value);
        }
        assert_eq!(request.send().await.unwrap().status(), 401);
    }

    // HEAD is verified like GET and forwarded as HEAD.
    let head = |bearer: Option<&str>| {
        let mut request = http().head(format!("{}/api/whoami", sys.edge.url));
        if let Some(t) = bearer {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(head(None).await, 401);
    assert_eq!(head(Some(token)).await, 200);
    let seen = sys.origin.requests().await;
    assert_eq!(
        seen.iter()
            .map(|r| r["method"].as_str())
            .collect::<Vec<_>>(),
        [Some("HEAD")]
    );
}

/// A panic in the worker aborts its wasm module, which must be reset before the next request
/// (the `worker` crate's abort hook and wasm-bindgen's reset function, which
/// scripts/build-edge.sh builds in; edge/shim.mjs does not do it). The crash route panics while
/// holding the isolate's state, so without the reset every later request would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_recovers_from_a_wasm_trap() {
    let sys = System::start(Options {
        edge_vars: &[("TEST_CRASH_ROUTE", "on")],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let (status, _) = sys.get("/api/x", Some(access(&tokens))).await;
    assert_eq!(status, 200);

    let crashed = http()
        .post(format!("{}/_gatehouse/crash", sys.edge.url))
        .send()
        .await
        .expect("the runtime answers for a crashed worker");
    assert_eq!(crashed.status(), 500);

    for _ in 0..3 {
        let (status, json) = sys.get("/api/x", Some(access(&tokens))).await;
        assert_eq!(status, 200, "after the trap: {json}");
    }
    assert_eq!(sys.edge.health().await["status"], "ok");
}
