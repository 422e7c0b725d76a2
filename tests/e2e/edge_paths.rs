//! Paths at the edge: one canonical form for matching and forwarding, and a spelling that
//! folds onto two routes needs the scope of both.

use gatehouse_tests::json_of;

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
