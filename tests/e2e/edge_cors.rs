//! The gate's own answers, readable by a page on a `CORS_ORIGINS` origin and by no other: its
//! 401s, and its 400 for a path it will not read (whose preflight it answers), and its 502.

use gatehouse_tests::{free_port, http, json_of};
use reqwest::Method;

use crate::system::{Options, System, access};

/// A page on a `CORS_ORIGINS` origin can read the gate's refusals (the client tells `expired`
/// from `revoked` by them); a page on any other origin cannot, and forwarded answers are the
/// origin's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gates_refusals_are_readable_by_the_listed_origins_only() {
    let sys = System::start(Options {
        edge_vars: &[("CORS_ORIGINS", "https://App.example/,*")],
        ..Options::default()
    })
    .await;
    let mut expired = sys.claims();
    expired.exp = expired.iat - 120;
    let expired = sys.mint(&expired);
    let refusal = |origin: &'static str| {
        http()
            .get(format!("{}/api/x", sys.edge.url))
            .bearer_auth(&expired)
            .header("Origin", origin)
            .send()
    };
    let response = refusal("https://app.example").await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        (
            response.status().as_u16(),
            header("access-control-allow-origin").as_deref(),
            header("access-control-allow-credentials").as_deref(),
            header("access-control-expose-headers").as_deref(),
        ),
        (
            401,
            Some("https://app.example"),
            Some("true"),
            Some("www-authenticate, retry-after")
        )
    );
    assert_eq!(json_of(response).await.1["code"], "expired");
    let response = refusal("https://evil.example").await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        response.headers()
    );
    let forwarded = http()
        .get(format!("{}/api/x", sys.edge.url))
        .bearer_auth(access(&sys.user("alice").await))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
    assert!(
        forwarded
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Without `CORS_PREFLIGHT = "forward"` the gate answers no preflight, not even for a path
    // it refuses itself.
    let preflight = http()
        .request(Method::OPTIONS, format!("{}/api/a%2Fb", sys.edge.url))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 400);
    let health = sys.edge.health().await;
    assert!(
        health["problems"]
            .to_string()
            .contains(r#"CORS_ORIGINS entry \"*\""#),
        "{health}"
    );
    // A bearer-header page's preflight is refused without `CORS_PREFLIGHT = "forward"`.
    assert!(
        health["problems"]
            .to_string()
            .contains("needs CORS_PREFLIGHT = \\\"forward\\\""),
        "{health}"
    );
}

/// The gate's answers that no origin writes are readable by a listed page too: its 400 for a
/// path it will not read (an id with a `/` in it, escaped by the page), whose preflight it
/// answers itself, since the origin is never asked about that path; and its 502 when the origin
/// is down, checked, public or from the cache. Before, each was a network error to the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gates_other_answers_are_readable_by_a_listed_page() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let sys = System::start(Options {
        edge_vars: &[
            ("CORS_ORIGINS", "https://app.example"),
            ("CORS_PREFLIGHT", "forward"),
            ("ORIGIN_URL", &closed),
        ],
        ..Options::default()
    })
    .await;
    let tokens = sys.user("alice").await;
    let send = |method: Method, path: &str, page: &str| {
        let request = http()
            .request(method.clone(), format!("{}{path}", sys.edge.url))
            .header("Origin", page);
        if method == Method::OPTIONS {
            request
                .header("Access-Control-Request-Method", "PUT")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                )
        } else {
            request.bearer_auth(access(&tokens))
        }
        .send()
    };
    let cors = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(format!("access-control-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let escaped = "/api/files/a%2Fb";

    let response = send(Method::GET, escaped, "https://app.example")
        .await
        .unwrap();
    assert_eq!(
        (
            cors(&response, "allow-origin").as_deref(),
            cors(&response, "allow-credentials").as_deref(),
        ),
        (Some("https://app.example"), Some("true"))
    );
    let (status, json) = json_of(response).await;
    assert_eq!((status, json["code"].as_str()), (400, Some("invalid_path")));

    let preflight = send(Method::OPTIONS, escaped, "https://app.example")
        .await
        .unwrap();
    assert_eq!(
        (
            preflight.status().as_u16(),
            cors(&preflight, "allow-origin").as_deref(),
            cors(&preflight, "allow-credentials").as_deref(),
            cors(&preflight, "allow-methods").as_deref(),
            cors(&preflight, "allow-headers").as_deref(),
        ),
        (
            204,
            Some("https://app.example"),
            Some("true"),
            Some("PUT"),
            Some("authorization, content-type")
        )
    );

    // Another site's page gets the refusal unreadable, and its preflight refused.
    for method in [Method::GET, Method::OPTIONS] {
        let response = send(method.clone(), escaped, "https://evil.example")
            .await
            .unwrap();
        assert_eq!(
            (response.status().as_u16(), cors(&response, "allow-origin")),
            (400, None),
            "{method}"
        );
    }

    // The origin down: checked, then from the verified cache, and on a public path.
    for path in ["/api/x", "/api/x", "/public/x"] {
        let response = send(Method::GET, path, "https://app.example")
            .await
            .unwrap();
        assert_eq!(
            (
                cors(&response, "allow-origin").as_deref(),
                cors(&response, "expose-headers").as_deref(),
            ),
            (
                Some("https://app.example"),
                Some("www-authenticate, retry-after")
            ),
            "{path}"
        );
        let (status, json) = json_of(response).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (502, Some("origin_unreachable")),
            "{path}"
        );
        let unlisted = send(Method::GET, path, "https://evil.example")
            .await
            .unwrap();
        assert_eq!(
            (unlisted.status().as_u16(), cors(&unlisted, "allow-origin")),
            (502, None),
            "{path}"
        );
    }
}
