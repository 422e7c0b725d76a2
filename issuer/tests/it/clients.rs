//! OAuth clients at the token endpoint: every client is public (README: no client registry), and
//! the `client_id` it names is carried by its session into every access token (RFC 9068 §2.2),
//! introspection (RFC 7662 §2.2) and the audit log, and binds the session's refreshes.

use rocket::http::{ContentType, Header, Status};
use serde_json::{Value, json};

use crate::common::{Backend, PASSWORD, TestApp, audit_details, refusal, str_of};

/// Client credentials, in the body or as `Authorization: Basic`, are accepted and not checked,
/// as an OAuth library configured for a confidential client sends them; either names the
/// client (before 2026-12-07 a Basic header was not read, and its tokens named no client).
async fn client_credentials_are_accepted_and_not_checked(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let session = app
        .login_with("alice", "&client_id=web&client_secret=anything")
        .await;
    assert_eq!(app.me(str_of(&session, "access_token")).await.0, Status::Ok);
    // `web:anything`
    let (status, json, _) = token_with_basic(&app, "Basic d2ViOmFueXRoaW5n", "").await;
    assert_eq!(status, Status::Ok, "{json}");
    let token = str_of(&json, "access_token");
    assert_eq!(app.me(token).await.0, Status::Ok);
    let claims = app.verifier().await.verify(token, app.clock().now());
    assert_eq!(
        claims.map(|c| c.client_id.clone()),
        Ok(Some("web".to_owned()))
    );
}

/// A password login of alice's with `authorization` and `extra` appended to the form.
async fn token_with_basic(
    app: &TestApp,
    authorization: &str,
    extra: &str,
) -> (Status, Value, Vec<(String, String)>) {
    let body = format!("grant_type=password&username=alice&password={PASSWORD}{extra}");
    let response = app
        .client
        .post("/v1/token")
        .header(ContentType::Form)
        .header(Header::new("Authorization", authorization.to_owned()))
        .body(body)
        .dispatch()
        .await;
    crate::common::decode(response).await
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 writes it: base64 of the form-urlencoded
/// `client_id:client_secret`, the scheme in any case, the secret empty or not. The body may
/// name the same client, not another; credentials that cannot be read are 401 `invalid_client`
/// with a `Basic` challenge (§5.2), before the grant is read; another scheme is not read.
async fn a_client_named_in_basic_credentials_is_the_sessions(backend: Backend) {
    use base64::Engine as _;
    let basic = |credentials: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("basic {encoded}")
    };
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let verifier = app.verifier().await;
    let client_of = |tokens: &Value| {
        let claims = verifier.verify(str_of(tokens, "access_token"), app.clock().now());
        claims.map(|c| c.client_id.clone()).unwrap()
    };
    for (credentials, extra) in [
        ("my+app:", ""),
        ("my%20app:s%3Acret:with:colons", ""),
        ("my%20app:", "&client_id=my%20app"),
    ] {
        let (status, tokens, _) = token_with_basic(&app, &basic(credentials), extra).await;
        assert_eq!(status, Status::Ok, "{credentials}: {tokens}");
        assert_eq!(
            client_of(&tokens),
            Some("my app".to_owned()),
            "{credentials}"
        );
    }
    let (_, tokens, _) = token_with_basic(&app, &basic("my%20app:"), "").await;
    // The session's refreshes are bound to it, named in the header as in the body.
    let refresh = |authorization: String| {
        let body = format!(
            "grant_type=refresh_token&refresh_token={}",
            str_of(&tokens, "refresh_token")
        );
        let request = app
            .client
            .post("/v1/token")
            .header(ContentType::Form)
            .header(Header::new("Authorization", authorization))
            .body(body);
        async move { crate::common::decode(request.dispatch().await).await }
    };
    let (status, json, _) = refresh(basic("other:")).await;
    assert_eq!(
        refusal((status, json)),
        (Status::BadRequest, "invalid_grant".to_owned())
    );
    let (status, next, _) = refresh(basic("my%20app:")).await;
    assert_eq!(status, Status::Ok, "{next}");
    assert_eq!(client_of(&next), Some("my app".to_owned()));

    let (status, json, _) = token_with_basic(&app, &basic("web:"), "&client_id=other").await;
    assert_eq!(
        refusal((status, json)),
        (Status::BadRequest, "invalid_request".to_owned())
    );
    for unreadable in [
        "Basic".to_owned(),
        "Basic !!!".to_owned(),
        basic("no colon"),
        basic(":secret"),
        basic("%FF:"),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, b':'])
        ),
    ] {
        let (status, json, headers) = token_with_basic(&app, &unreadable, "").await;
        assert_eq!(
            refusal((status, json)),
            (Status::Unauthorized, "invalid_client".to_owned()),
            "{unreadable}"
        );
        assert_eq!(
            crate::common::header(&headers, "www-authenticate"),
            Some("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
            "{unreadable}"
        );
    }
    // Two credentials read as one, as two bearers do: unreadable, not the first taken.
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    let request = app
        .client
        .post("/v1/token")
        .header(ContentType::Form)
        .header(Header::new("Authorization", basic("web:")))
        .header(Header::new("Authorization", basic("other:")))
        .body(body);
    let (status, json, _) = crate::common::decode(request.dispatch().await).await;
    assert_eq!(
        refusal((status, json)),
        (Status::Unauthorized, "invalid_client".to_owned())
    );
    // Unreadable credentials are refused before the grant is looked at.
    let request = app
        .client
        .post("/v1/token")
        .header(ContentType::Form)
        .header(Header::new("Authorization", "Basic !!!"))
        .body("grant_type=no_such_grant");
    let (status, json, _) = crate::common::decode(request.dispatch().await).await;
    assert_eq!(
        refusal((status, json)),
        (Status::Unauthorized, "invalid_client".to_owned())
    );
    // A client id in Basic credentials is held to the body's rule.
    let (status, json, _) = token_with_basic(&app, &basic("%20web:"), "").await;
    assert_eq!(
        refusal((status, json)),
        (Status::BadRequest, "invalid_request".to_owned())
    );
    // A bearer is not client credentials: the login goes on, naming no client.
    let (status, tokens, _) = token_with_basic(&app, "Bearer abc", "").await;
    assert_eq!(status, Status::Ok, "{tokens}");
    assert_eq!(client_of(&tokens), None);
}

/// Refreshes `refresh_token` naming `client_id`.
async fn refresh_as(app: &TestApp, refresh_token: &str, client_id: &str) -> (Status, Value) {
    let body =
        format!("grant_type=refresh_token&refresh_token={refresh_token}&client_id={client_id}");
    app.send("POST", "/v1/token", Some(&body), None).await
}

async fn a_named_client_is_in_every_token_of_its_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let admin = app.admin_token().await;
    let verifier = app.verifier().await;
    let client_of = |tokens: &Value| {
        let claims = verifier.verify(str_of(tokens, "access_token"), app.clock().now());
        claims.map(|c| c.client_id.clone()).unwrap()
    };
    // Printable ASCII with inner spaces is a client id (RFC 6749 Appendix A.1).
    let first = app.login_with("alice", "&client_id=my%20app").await;
    assert_eq!(client_of(&first), Some("my app".to_owned()));
    let sid = app
        .verifier()
        .await
        .verify(str_of(&first, "access_token"), app.clock().now())
        .unwrap()
        .sid
        .clone();
    assert_eq!(
        audit_details(&app, &uid, "login_ok").last(),
        Some(&json!({"sid": sid, "client_id": "my app"}))
    );

    // Introspection names it, for the access token and the refresh token alike.
    for hint in ["", "&token_type_hint=refresh_token"] {
        for kind in ["access_token", "refresh_token"] {
            if kind == "refresh_token" && hint.is_empty() {
                continue;
            }
            let body = format!("token={}{hint}", str_of(&first, kind));
            let (status, answer) = app
                .send("POST", "/v1/introspect", Some(&body), Some(&admin))
                .await;
            assert_eq!(status, Status::Ok, "{answer}");
            assert_eq!(
                (answer["active"].clone(), answer["client_id"].clone()),
                (json!(true), json!("my app")),
                "{kind}: {answer}"
            );
        }
    }

    // Another client is refused the session's refresh token, which stays unspent.
    let refused = refresh_as(&app, str_of(&first, "refresh_token"), "other").await;
    assert_eq!(
        refusal(refused.clone()),
        (Status::BadRequest, "invalid_grant".to_owned())
    );
    assert!(
        refused.1["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("another client")),
        "{}",
        refused.1
    );
    // The client itself refreshes it; a refresh that names no client is the session's.
    let (status, second) = refresh_as(&app, str_of(&first, "refresh_token"), "my%20app").await;
    assert_eq!(status, Status::Ok, "{second}");
    assert_eq!(client_of(&second), Some("my app".to_owned()));
    let (status, third) = app.refresh(str_of(&second, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{third}");
    assert_eq!(client_of(&third), Some("my app".to_owned()));

    // A login that names no client: no `client_id` anywhere, and any client may refresh.
    let unnamed = app.login("alice").await;
    assert_eq!(client_of(&unnamed), None);
    let body = format!("token={}", str_of(&unnamed, "access_token"));
    let (_, answer) = app
        .send("POST", "/v1/introspect", Some(&body), Some(&admin))
        .await;
    assert_eq!(
        (answer["active"].clone(), answer.get("client_id")),
        (json!(true), None),
        "{answer}"
    );
    let (status, refreshed) = refresh_as(&app, str_of(&unnamed, "refresh_token"), "web").await;
    assert_eq!(status, Status::Ok, "{refreshed}");
    assert_eq!(
        client_of(&refreshed),
        None,
        "the session's client, not the refresh's"
    );

    // A token past its use is reuse whichever client names it: the session ends.
    app.clock().advance(10);
    let (status, reused) = refresh_as(&app, str_of(&first, "refresh_token"), "other").await;
    assert_eq!(status, Status::BadRequest, "{reused}");
    assert!(
        str_of(&reused, "error_description").contains("already used"),
        "{reused}"
    );
    let (status, ended) = app.refresh(str_of(&third, "refresh_token")).await;
    assert_eq!(
        (status, str_of(&ended, "error")),
        (Status::BadRequest, "invalid_grant"),
        "{ended}"
    );
}

async fn a_client_id_is_printable_ascii_within_bounds(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let longest = "c".repeat(255);
    let tokens = app
        .login_with("alice", &format!("&client_id={longest}"))
        .await;
    let claims = app
        .verifier()
        .await
        .verify(str_of(&tokens, "access_token"), app.clock().now())
        .map(|c| c.client_id.clone());
    assert_eq!(claims, Ok(Some(longest.clone())));
    // Empty is absent, as for every other parameter of the token endpoint.
    let tokens = app.login_with("alice", "&client_id=").await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    for bad in [
        format!("{longest}c"),
        "%20web".to_owned(),
        "web%20".to_owned(),
        "w%0Ab".to_owned(),
        "w%7Fb".to_owned(),
        "%C3%A9".to_owned(),
    ] {
        let body =
            format!("grant_type=password&username=alice&password={PASSWORD}&client_id={bad}");
        let answer = app.send("POST", "/v1/token", Some(&body), None).await;
        assert_eq!(
            refusal(answer),
            (Status::BadRequest, "invalid_request".to_owned()),
            "{bad}"
        );
        // A refresh is held to the same rule.
        let body = format!(
            "grant_type=refresh_token&refresh_token={}&client_id={bad}",
            str_of(&tokens, "refresh_token")
        );
        let answer = app.send("POST", "/v1/token", Some(&body), None).await;
        assert_eq!(
            refusal(answer),
            (Status::BadRequest, "invalid_request".to_owned()),
            "{bad}"
        );
    }
}

crate::on_both_backends!(
    client_credentials_are_accepted_and_not_checked,
    a_client_named_in_basic_credentials_is_the_sessions,
    a_named_client_is_in_every_token_of_its_session,
    a_client_id_is_printable_ascii_within_bounds,
);
