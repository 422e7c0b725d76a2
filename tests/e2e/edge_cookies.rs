//! A token cookie at the edge (`TOKEN_COOKIE`): one copy only, the origin given only the
//! credential checked, no cookie token for a cross-site write; with pinned keys and the
//! fail-open policy.

use gatehouse_shared::KeySet;
use gatehouse_tests::{Edge, free_port, get_text, http, json_of};

use crate::system::{Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_pinned_keys_and_fail_open() {
    let issuer_probe = System::start(Options::default()).await;
    let jwks = get_text(&format!(
        "{}/.well-known/jwks.json",
        issuer_probe.issuer.url
    ))
    .await;
    assert!(!KeySet::from_json(&jwks).unwrap().is_empty());
    // Keys pinned (with one the edge cannot use, which is reported), the issuer unreachable
    // for keys and lists, and the fail-open policy.
    let jwks = jwks.replacen(
        '[',
        r#"[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"},"#,
        1,
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut vars = issuer_probe.pinned_edge_vars(&jwks, &dead);
    vars.push(("TOKEN_COOKIE", "gh_at"));
    let edge = Edge::start(free_port(), &vars).await;
    let token = issuer_probe.mint(&issuer_probe.claims());
    let response = http()
        .get(format!("{}/api/x", edge.url))
        .header("Cookie", format!("theme=dark; gh_at={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "cookie token, pinned keys, no list but fail-open"
    );
    let health = edge.health().await;
    assert_eq!(health["kids"].as_array().unwrap().len(), 1);
    assert_eq!(health["stale_policy"], "FailOpen");
    assert!(
        health["problems"]
            .to_string()
            .contains("JWKS key 0 (kid rsa) is skipped"),
        "{health}"
    );
    let with_cookie = |cookie: String| {
        let request = http()
            .get(format!("{}/api/x", edge.url))
            .header("Cookie", cookie);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, _) = with_cookie("gh_at=".into()).await;
    assert_eq!(status, 401);
    // A token followed by a Unicode space (U+00A0 in UTF-8, as the runtime reads it) is not
    // the token, in a cookie as in a bearer header. Before, the cookie's was trimmed and taken.
    let value = format!("gh_at={token}\u{a0}").into_bytes();
    let request = http().get(format!("{}/api/x", edge.url)).header(
        "Cookie",
        reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
    );
    let (status, json) = json_of(request.send().await.unwrap()).await;
    assert_eq!((status, json["code"].as_str()), (401, Some("malformed")));
    // Of the request's credentials the origin gets only the one checked: not an
    // `Authorization` the gate did not read as a bearer token beside the cookie's token, nor
    // another token in the cookie beside a bearer token. Before, both reached the origin.
    issuer_probe.origin.requests().await;
    let unchecked = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    for request in [
        http()
            .get(format!("{}/api/x", edge.url))
            .header("Cookie", format!("gh_at={token}; theme=dark"))
            .header("Authorization", format!("Bearer\t{unchecked}")),
        http()
            .get(format!("{}/api/x", edge.url))
            .bearer_auth(&token)
            .header(
                "Cookie",
                format!("Gh_At ={unchecked}; theme=dark; gh[at={unchecked}"),
            ),
        // A copy after whitespace or a `,` inside a pair is one to lenient parsers (Python's
        // `SimpleCookie`, Tomcat's legacy one): before, it reached the origin.
        http()
            .get(format!("{}/api/x", edge.url))
            .bearer_auth(&token)
            .header(
                "Cookie",
                format!("theme=dark gh_at={unchecked}; lang=en; a=1,gh_at={unchecked}"),
            ),
        // A name escaped as old PHP, Rack and ASP.NET Core decode it: before, it reached the
        // origin.
        http()
            .get(format!("{}/api/x", edge.url))
            .bearer_auth(&token)
            .header("Cookie", format!("gh%5Fat={unchecked}; lang=en")),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    let seen = issuer_probe.origin.requests().await;
    let headers: Vec<_> = seen.iter().map(|r| &r["headers"]).collect();
    assert_eq!(headers.len(), 4, "{seen:?}");
    assert_eq!(headers[3]["cookie"], "lang=en");
    assert!(headers[0].get("authorization").is_none(), "{}", headers[0]);
    assert_eq!(headers[0]["cookie"], format!("gh_at={token}; theme=dark"));
    assert_eq!(headers[1]["authorization"], format!("Bearer {token}"));
    assert_eq!(headers[1]["cookie"], "theme=dark");
    assert_eq!(headers[2]["cookie"], "lang=en");
    // Another token in the query (RFC 6750 §2.3's `access_token`, which ASP.NET Core reads for
    // SignalR before the header) is refused beside a checked one; the checked one itself may
    // be repeated there. Before, the origin got it unchecked.
    for (query, expected) in [
        (format!("access_token={unchecked}"), 401),
        (format!("x=1&Access.Token={unchecked}"), 401),
        (format!("access_token={token}"), 200),
    ] {
        let request = http()
            .get(format!("{}/api/x?{query}", edge.url))
            .header("Cookie", format!("gh_at={token}"));
        let (status, json) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, expected, "{query}: {json}");
        if expected == 401 {
            assert_eq!(json["code"], "malformed", "{query}");
        }
    }
    // Two copies of the cookie are refused, as two `Authorization` headers are: the origin may
    // read the other one (a cookie planted from a sibling subdomain is sent first).
    for cookie in [
        format!("gh_at={token}; theme=dark; gh_at={token}"),
        format!("gh_at=; gh_at={token}"),
        format!("GH_AT={token}; gh_at ={token}"),
        // PHP reads `gh.at` as `gh_at`: a copy planted under that name was not counted.
        format!("gh.at={token}; gh_at={token}"),
        // A second copy after whitespace or a `,` (two `Cookie` lines, which the runtime joins
        // with `, `): lenient origin parsers read it as a pair of its own.
        format!("gh_at={token}; theme=dark gh_at={unchecked}"),
        format!("gh_at={token}, gh_at={unchecked}"),
    ] {
        let (status, json) = with_cookie(cookie.clone()).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (401, Some("malformed")),
            "{cookie}"
        );
    }

    // A cookie's token is not read for a write a browser sent from another site (CSRF); a
    // bearer header, which a page cannot make a browser send, still is.
    let token_cookie = format!("gh_at={token}");
    let post = |headers: &[(&str, &str)], cookie: bool| {
        let mut request = http().post(format!("{}/api/x", edge.url)).body("x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if cookie {
            request.header("Cookie", &token_cookie)
        } else {
            request.bearer_auth(&token)
        }
    };
    for (headers, cookie, expected) in [
        (vec![("Sec-Fetch-Site", "cross-site")], true, 401),
        (vec![("Sec-Fetch-Site", "same-site")], true, 401),
        (vec![("Origin", "https://evil.example")], true, 401),
        (vec![("Origin", "null")], true, 401),
        (vec![("Sec-Fetch-Site", "same-origin")], true, 200),
        (vec![("Origin", edge.url.as_str())], true, 200),
        (vec![], true, 200),
        (vec![("Sec-Fetch-Site", "cross-site")], false, 200),
    ] {
        let (status, json) = json_of(post(&headers, cookie).send().await.unwrap()).await;
        assert_eq!(status, expected, "{headers:?}, cookie {cookie}: {json}");
        if expected == 401 {
            assert_eq!(json["code"], "missing_token", "{json}");
        }
    }
    // A cross-site WebSocket upgrade is a `GET` that acts for the user: refused the same way.
    // So is a write a forward-auth proxy asks `/_gatehouse/check` about, by the method it names.
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = http()
            .get(format!("{}{path}", edge.url))
            .header("Cookie", &token_cookie)
            .header("Sec-Fetch-Site", "cross-site");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    // A forward-auth proxy drops `Upgrade` (hop-by-hop) but not `Sec-WebSocket-Key`; one that
    // names no method asks about a request that may be a write.
    let socket = [
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    for (path, headers, expected) in [
        ("/api/x", vec![], 200),
        ("/api/x", vec![("Upgrade", "websocket")], 401),
        ("/api/x", socket.to_vec(), 401),
        ("/_gatehouse/check", vec![], 401),
        (
            "/_gatehouse/check",
            [&socket[..], &[("X-Forwarded-Method", "GET")]].concat(),
            401,
        ),
        (
            "/_gatehouse/check",
            vec![("X-Forwarded-Method", "POST")],
            401,
        ),
        (
            "/_gatehouse/check",
            vec![("X-Original-Method", "DELETE")],
            401,
        ),
        (
            "/_gatehouse/check",
            vec![("X-Forwarded-Method", "GET")],
            200,
        ),
        // nginx sets `X-Original-Method` and passes the client's `X-Forwarded-Method` on: a
        // write named by either one is a write.
        (
            "/_gatehouse/check",
            vec![("X-Forwarded-Method", "GET"), ("X-Original-Method", "POST")],
            401,
        ),
        (
            "/_gatehouse/check",
            vec![("X-Forwarded-Method", "PUT"), ("X-Original-Method", "GET")],
            401,
        ),
        (
            "/_gatehouse/check",
            vec![("X-Forwarded-Method", "HEAD"), ("X-Original-Method", "GET")],
            200,
        ),
    ] {
        let response = get(path, &headers).await.unwrap();
        assert_eq!(response.status(), expected, "{path} {headers:?}");
    }

    // The same edge under the default policy: with no revocation list at all (KV empty, the
    // issuer unreachable), a protected request is refused, never let through unchecked; a
    // public path still reaches the origin, and the health says why.
    let closed_vars: Vec<_> = vars
        .iter()
        .copied()
        .filter(|(name, _)| *name != "STALE_POLICY")
        .chain([("PUBLIC_PATHS", "/public/*")])
        .collect();
    let closed = Edge::start(free_port(), &closed_vars).await;
    let (status, json) = json_of(
        http()
            .get(format!("{}/api/x", closed.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("revocation_list_missing")),
        "{json}"
    );
    let public = http()
        .get(format!("{}/public/logo.svg", closed.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    closed.assert_degraded_by("no fresh revocation list").await;
}
