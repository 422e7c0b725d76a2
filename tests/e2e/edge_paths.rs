//! Paths at the edge: one canonical form for matching and forwarding, and a spelling that
//! folds onto two routes needs the scope of both.

use gatehouse_tests::{http, json_of};

use crate::edge_gate::preflight;
use crate::system::{Options, System, access};

/// `GET path` with a bearer token, written on the socket as given; the raw answer.
async fn raw_get(sys: &System, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = sys.edge.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Every rule matches the canonical path and the origin gets that same path, so no spelling of
/// a path reaches the origin under a rule it would not route it by (edge/src/path.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_matched_and_forwarded_in_one_canonical_form() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let reader = access(&tokens);
    sys.origin.requests().await;

    // Spellings of /api/admin/… that case-insensitive, slash-merging or decoding routers read
    // as that path: the admin scope applies to each.
    for path in [
        "/API/admin/users",
        "/api/Admin/users",
        "//api/admin/users",
        "/api//admin/users",
        "/api/%61dmin/users",
        "/api/admin",
        "/API/ADMIN",
        // Letters outside ASCII whose case mapping is ASCII (`İ`, `ı`): Java's
        // `equalsIgnoreCase` reads these as `admin` once decoded.
        "/api/adm%C4%B0n/users",
        "/api/adm%c4%b1n",
        // Routers that decode first trim an escaped space, or cut at an escaped `?` or `#`.
        // Before, these matched only `/api/*` (read).
        "/api/admin%20",
        "/api/admin%3F",
        "/api/admin%23x",
    ] {
        let (status, json) = sys.get(path, Some(reader)).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{path}: {json}"
        );
    }
    // Spellings a router could split or truncate differently: refused before anything else.
    for path in [
        "/api/admin%2Fusers",
        "/api/admin%2fusers",
        "/api%5Cadmin/users",
        "/public/..;/api/admin/users",
        "/api;x=1/admin/users",
        "/api/%3B/admin",
        "/api/%zz",
        // An escaped control byte: a Python or .NET regex `$` matches before a final
        // newline, so `/api/admin%0A` is `/api/admin` to them. Before, it passed as `/api/*`.
        "/api/admin%0A",
        "/api/admin%0d",
        "/api/admin%09",
    ] {
        let (status, json) = sys.get(path, None).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (400, Some("invalid_path")),
            "{path}: {json}"
        );
    }
    // Sent raw (HTTP clients normalise these away): `\` is `/` to a URL parser. The local
    // runtime resolves it before the worker runs, so the admin rule applies; a runtime that
    // did not would meet `path::canonical`, which refuses a raw `\` (its unit tests).
    for path in [r"/public/..\api\admin\users", r"/api\admin\users"] {
        let answer = raw_get(&sys, path, reader).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(
            answer.contains("\"insufficient_scope\""),
            "{path}: {answer}"
        );
    }
    // A CORS preflight needs a token by default (`CORS_PREFLIGHT`): an origin handler that
    // ignores the method would otherwise run for anyone's OPTIONS.
    let (status, json) = json_of(preflight(&sys.edge.url).send().await.unwrap()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("malformed")),
        "{json}"
    );
    // A public path matches only as written: another case needs a token.
    assert_eq!(sys.get("/PUBLIC/logo.svg", None).await.0, 401);
    assert!(
        sys.origin.requests().await.is_empty(),
        "nothing refused reached the origin"
    );

    // The origin gets the path the gate matched, with the query as sent.
    let mut admin = sys.claims();
    admin.scope = "read admin".into();
    let (status, _) = sys
        .get("//api//admin/%75sers?next=%2F&x=1", Some(&sys.mint(&admin)))
        .await;
    assert_eq!(status, 200);
    let seen = sys.origin.requests().await;
    assert_eq!(
        (seen[0]["path"].as_str(), seen[0]["query"].as_str()),
        (Some("/api/admin/users"), Some("?next=%2F&x=1"))
    );
}

/// A path that folds onto a route with a weaker rule needs the scopes of both spellings: an
/// origin that folds case routes `/api/%C5%BFtatus` (ſ) as `/api/status`, one that does not as
/// some other path under `/api/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folding_spelling_needs_the_scope_of_both_routes() {
    let sys = System::start(Options {
        edge_vars: &[("ROUTE_SCOPES", "/api/*=admin,/api/status/*=read")],
        ..Options::default()
    })
    .await;
    let reader = access(&sys.user("alice").await).to_owned();
    assert_eq!(sys.get("/api/status/x", Some(&reader)).await.0, 200);
    let (status, json) = sys.get("/api/%C5%BFtatus/x", Some(&reader)).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{json}"
    );
    let mut admin = sys.claims();
    admin.scope = "admin".into();
    let (status, json) = sys.get("/api/%C5%BFtatus/x", Some(&sys.mint(&admin))).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{json}"
    );
    admin.scope = "admin read".into();
    assert_eq!(
        sys.get("/api/%C5%BFtatus/x", Some(&sys.mint(&admin)))
            .await
            .0,
        200
    );
}

/// `method path` at the edge with a WebDAV `Destination` if not empty, and the bearer `token`
/// if given.
async fn webdav(
    sys: &System,
    method: &str,
    path: &str,
    destination: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http().request(method, format!("{}{path}", sys.edge.url));
    if !destination.is_empty() {
        req = req.header("destination", destination);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    json_of(req.send().await.unwrap()).await
}

/// WebDAV's `COPY` and `MOVE` name a second path in `Destination`. The scope rules apply to it
/// as to the request's path, a spelling a router could read differently or another host is
/// refused, and the origin gets it as the gate read it, on the origin's own URL. A method that
/// acts on a collection's members needs the rules below its paths as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webdav_destination_is_checked_like_the_request_path() {
    let sys = System::start(Options::default()).await;
    let reader = access(&sys.user("alice").await).to_owned();
    let edge_host = sys.edge.url.trim_start_matches("http://").to_owned();
    sys.origin.requests().await;

    for (method, path, destination, token, expected) in [
        // A reader moving a file under the admin rule.
        (
            "MOVE",
            "/api/notes/a",
            "/api/admin/a".to_owned(),
            Some(reader.as_str()),
            (403, "insufficient_scope"),
        ),
        (
            "COPY",
            "/api/notes/a",
            format!("http://{edge_host}/api/%61dmin/a"),
            Some(&reader),
            (403, "insufficient_scope"),
        ),
        // A public path is public only when its destination is.
        (
            "MOVE",
            "/public/logo.svg",
            "/api/notes/x".to_owned(),
            None,
            (401, "missing_token"),
        ),
        // Another host, or a path a router could split differently.
        (
            "MOVE",
            "/api/notes/a",
            "http://other.example/api/notes/b".to_owned(),
            Some(&reader),
            (400, "invalid_path"),
        ),
        (
            "COPY",
            "/api/notes/a",
            "/api/admin%2Fb".to_owned(),
            Some(&reader),
            (400, "invalid_path"),
        ),
        (
            "COPY",
            "/api/notes/a",
            "/api/notes/../admin/b".to_owned(),
            Some(&reader),
            (400, "invalid_path"),
        ),
        (
            "MOVE",
            "/public/a",
            "//other.example/public/b".to_owned(),
            None,
            (400, "invalid_path"),
        ),
        // A collection's copy or move takes what lies below it: the admin rule under `/api/`.
        (
            "COPY",
            "/api/",
            "/public/dump/".to_owned(),
            Some(&reader),
            (403, "insufficient_scope"),
        ),
        (
            "MOVE",
            "/API",
            "/api-old/".to_owned(),
            Some(&reader),
            (403, "insufficient_scope"),
        ),
        (
            "MOVE",
            "/api/notes/a",
            "/api/".to_owned(),
            Some(&reader),
            (403, "insufficient_scope"),
        ),
        // `/` is public as an exact path, not what lies below it.
        (
            "COPY",
            "/",
            "/public/dump/".to_owned(),
            None,
            (401, "missing_token"),
        ),
        // Nor for a `POST` an origin runs as the method its query names.
        (
            "POST",
            "/?_method=DELETE",
            String::new(),
            None,
            (401, "missing_token"),
        ),
    ] {
        let (status, json) = webdav(&sys, method, path, &destination, token).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (expected.0, Some(expected.1)),
            "{method} {path} to {destination}: {json}"
        );
    }
    // Other methods that act on what lies below their path (no `Destination`).
    // `/api.json` is `/api` to a router with format suffixes. A `POST` whose query names
    // `_method` runs as that method on Laravel, Symfony and Express's `method-override`: the
    // gate took it for a `POST` before.
    for (method, path) in [
        ("DELETE", "/api"),
        ("PROPFIND", "/api"),
        ("LOCK", "/api"),
        ("DELETE", "/api.json"),
        ("POST", "/api?_method=DELETE"),
        ("POST", "/api?x=1&%5Fmethod%5B%5D=DELETE"),
    ] {
        let (status, json) = webdav(&sys, method, path, "", Some(&reader)).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}: {json}"
        );
    }
    assert!(
        sys.origin.requests().await.is_empty(),
        "nothing refused reached the origin"
    );
    // Nothing below, or a method that acts on its path alone: the path's own rule.
    for method in ["DELETE", "PUT", "POST"] {
        let (status, _) = webdav(&sys, method, "/api/notes/a", "", Some(&reader)).await;
        assert_eq!(status, 200, "{method}");
    }
    assert_eq!(webdav(&sys, "POST", "/api", "", Some(&reader)).await.0, 200);
    // A header of that name means nothing to other methods.
    assert_eq!(
        webdav(&sys, "POST", "/api/notes/a", "//x", Some(&reader))
            .await
            .0,
        200
    );
    sys.origin.requests().await;

    // Allowed: public to public without a token, and a scope-holder's move into the admin rule.
    let (status, _) = webdav(&sys, "MOVE", "/public/a", "/public/b", None).await;
    assert_eq!(status, 200);
    let mut admin = sys.claims();
    admin.scope = "read admin".into();
    let destination = format!("http://{edge_host}/api//%61dmin/b?v=1");
    let (status, _) = webdav(
        &sys,
        "MOVE",
        "/api/notes/a",
        &destination,
        Some(&sys.mint(&admin)),
    )
    .await;
    assert_eq!(status, 200);
    let seen = sys.origin.requests().await;
    let destinations: Vec<_> = seen
        .iter()
        .map(|r| (r["method"].as_str(), r["headers"]["destination"].as_str()))
        .collect();
    let public_b = format!("{}/public/b", sys.origin.url);
    let admin_b = format!("{}/api/admin/b?v=1", sys.origin.url);
    assert_eq!(
        destinations,
        [
            (Some("MOVE"), Some(public_b.as_str())),
            (Some("MOVE"), Some(admin_b.as_str()))
        ]
    );
}

/// `/_gatehouse/check` judges the request a forward-auth proxy names: the route scopes of its
/// path (`X-Forwarded-Uri`, `X-Original-URI`, each one sent), with the method it names, and it
/// will not judge without a path while `ROUTE_SCOPES` is set. Before, no scope applied there: a
/// `read` token passed a check for `/api/admin/…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_auth_check_applies_the_route_scopes_of_the_named_request() {
    let sys = System::start(Options::default()).await;
    let tokens = sys.user("alice").await;
    let reader = access(&tokens);
    let check = |headers: &[(&str, &str)]| {
        let mut request = http()
            .get(format!("{}/_gatehouse/check", sys.edge.url))
            .bearer_auth(reader);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let scope = (403, Some("insufficient_scope"));
    let path = (400, Some("invalid_path"));
    for (headers, expected) in [
        (
            &[("X-Forwarded-Uri", "/api/x"), ("X-Forwarded-Method", "GET")][..],
            (200, None),
        ),
        (
            &[
                ("X-Forwarded-Uri", "/api/admin/users"),
                ("X-Forwarded-Method", "GET"),
            ],
            scope,
        ),
        (
            &[
                ("X-Original-URI", "/API/%61dmin?x=1"),
                ("X-Original-Method", "GET"),
            ],
            scope,
        ),
        // The header a proxy does not set, sent by the client: each one is judged.
        (
            &[
                ("X-Forwarded-Uri", "/api/x"),
                ("X-Original-URI", "/api/admin/x"),
                ("X-Forwarded-Method", "GET"),
            ],
            scope,
        ),
        // Acting on everything below `/api/`: named, by a query override, or no method named.
        (
            &[
                ("X-Forwarded-Uri", "/api/"),
                ("X-Forwarded-Method", "DELETE"),
            ],
            scope,
        ),
        (
            &[
                ("X-Forwarded-Uri", "/api/?_method=DELETE"),
                ("X-Forwarded-Method", "POST"),
            ],
            scope,
        ),
        (&[("X-Forwarded-Uri", "/api/")], scope),
        (
            &[("X-Forwarded-Uri", "/api/"), ("X-Forwarded-Method", "GET")],
            (200, None),
        ),
        // Nothing it can judge: refused before the token.
        (&[], path),
        (&[("X-Forwarded-Uri", "/api/admin%2Fusers")], path),
        (&[("X-Forwarded-Uri", "https://edge.example/api/x")], path),
        (
            &[
                ("X-Forwarded-Uri", "/api/x"),
                ("X-Forwarded-Method", "MOVE"),
                ("Destination", "/api/admin/x"),
            ],
            path,
        ),
    ] {
        let (status, json) = json_of(check(headers).await.unwrap()).await;
        assert_eq!(
            (status, json["code"].as_str()),
            expected,
            "{headers:?}: {json}"
        );
    }
    // The 200 names the user in the gate's identity headers, for the proxy to copy onto the
    // request it sends on (Traefik's `authResponseHeaders`, Caddy's `copy_headers`).
    let answer = check(&[("X-Forwarded-Uri", "/api/x"), ("X-Forwarded-Method", "GET")])
        .await
        .unwrap();
    let sub = answer.headers()["x-gatehouse-sub"]
        .to_str()
        .unwrap()
        .to_owned();
    let (_, json) = json_of(answer).await;
    assert_eq!(json["sub"], sub.as_str());
}
