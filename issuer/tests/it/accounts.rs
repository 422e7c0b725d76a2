//! Registration, password login, `/v1/me`, metadata and health.

use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, audit_details, header, refusal, str_of};
use crate::lockout::WRONG;

async fn registration_rules(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = app.register("Alice.Example").await;
    assert!(!id.is_empty());
    let dup = format!(r#"{{"username":"  alice.EXAMPLE ","password":"{PASSWORD}"}}"#);
    let (status, json) = app.send("POST", "/v1/users", Some(&dup), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::Conflict, "username_taken")
    );
    for (body, code) in [
        (
            r#"{"username":"bob","password":"short"}"#,
            "invalid_password",
        ),
        (
            r#"{"username":"bob","password":"password123"}"#,
            "invalid_password",
        ),
        (
            r#"{"username":"bob","password":"bob-the-builder-bob"}"#,
            "invalid_username_ok",
        ),
        (
            r#"{"username":"b","password":"plover-quartz-7"}"#,
            "invalid_username",
        ),
        (
            r#"{"username":"bob smith","password":"plover-quartz-7"}"#,
            "invalid_username",
        ),
    ] {
        let (status, json) = app.send("POST", "/v1/users", Some(body), None).await;
        if code == "invalid_username_ok" {
            assert_eq!(status, Status::Created, "{json}");
            continue;
        }
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, code),
            "{body}"
        );
        assert!(!str_of(&json, "error_description").is_empty());
    }
    let long = format!(
        r#"{{"username":"carol","password":"{}"}}"#,
        "x".repeat(1025)
    );
    let (status, json) = app.send("POST", "/v1/users", Some(&long), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_password")
    );
    // Form bodies work as well as JSON.
    let (status, _) = app
        .send(
            "POST",
            "/v1/users",
            Some("username=dave&password=plover-quartz-7"),
            None,
        )
        .await;
    assert_eq!(status, Status::Created);

    let closed = TestApp::start_with(backend, |c| c.open_registration = false).await;
    let body = format!(r#"{{"username":"erin","password":"{PASSWORD}"}}"#);
    let (status, json) = closed.send("POST", "/v1/users", Some(&body), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::Forbidden, "registration_closed")
    );
}

async fn login_issues_verifiable_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    let id = app.register("alice").await;
    let body = format!("grant_type=password&username=ALICE&password={PASSWORD}");
    let (status, json, headers) = app.send_full("POST", "/v1/token", Some(&body), None).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(str_of(&json, "token_type"), "Bearer");
    assert_eq!(json["expires_in"], 900);
    assert_eq!(str_of(&json, "scope"), "read write");
    assert!(str_of(&json, "refresh_token").len() >= 43);

    // The access token verifies with the published JWKS and the shared verifier.
    let verifier = app.verifier().await;
    let now = app.clock().now();
    let claims = verifier.verify(str_of(&json, "access_token"), now).unwrap();
    assert_eq!(claims.sub, id);
    assert_eq!(claims.exp - claims.iat, 900);

    let (status, me) = app.me(str_of(&json, "access_token")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(me["sub"], id.as_str());
    assert_eq!(me["username"], "alice");
    assert_eq!(me["sid"], claims.sid.as_str());
    assert_eq!(me["scope"], "read write");

    // JSON bodies work too, and a narrower scope may be asked for.
    let body = format!(
        r#"{{"grant_type":"password","username":"alice","password":"{PASSWORD}","scope":"read"}}"#
    );
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    assert_eq!((status, str_of(&json, "scope")), (Status::Ok, "read"));
}

async fn login_failures_look_alike(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let hashes = || app.metric("gatehouse_password_hash_seconds_count");
    let before = hashes().await;
    let wrong = app
        .send(
            "POST",
            "/v1/token",
            Some("grant_type=password&username=alice&password=wrong-password"),
            None,
        )
        .await;
    let unknown = app
        .send(
            "POST",
            "/v1/token",
            Some("grant_type=password&username=nobody&password=wrong-password"),
            None,
        )
        .await;
    assert_eq!(
        wrong, unknown,
        "unknown users and wrong passwords answer the same"
    );
    // The same argon2 work too: the unknown name was checked against the dummy hash.
    assert_eq!(hashes().await, before + 2);
    assert_eq!(
        (wrong.0, str_of(&wrong.1, "error")),
        (Status::BadRequest, "invalid_grant")
    );

    for (body, code) in [
        ("username=alice&password=x", "invalid_request"),
        ("grant_type=client_credentials", "unsupported_grant_type"),
        ("grant_type=password&password=x", "invalid_request"),
        ("grant_type=refresh_token", "invalid_request"),
    ] {
        let (status, json) = app.send("POST", "/v1/token", Some(body), None).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, code),
            "{body}"
        );
    }
    let body = format!("grant_type=password&username=alice&password={PASSWORD}&scope=admin");
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_scope")
    );
}

async fn bearer_errors(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let token = app.login("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, json, headers) = app.send_full("GET", "/v1/me", None, None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::Unauthorized, "invalid_token")
    );
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"Bearer realm="gatehouse""#)
    );

    for (bad, code) in [("garbage", "malformed"), ("a.b.c", "malformed")] {
        let (status, json, headers) = app.send_full("GET", "/v1/me", None, Some(bad)).await;
        assert_eq!(status, Status::Unauthorized);
        assert_eq!(str_of(&json, "code"), code);
        let www = header(&headers, "www-authenticate").unwrap();
        assert!(
            www.starts_with(r#"Bearer realm="gatehouse", error="invalid_token""#),
            "{www}"
        );
    }
    // Expired: move the issuer's clock past exp + leeway.
    app.clock().advance(900 + 31);
    let (status, json) = app.me(&token).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "expired")
    );
}

/// An issuer with a path publishes its metadata where RFC 8414 §3.1 has clients look (the path
/// after the well-known name) and, as before, at the well-known name alone; no other path.
async fn an_issuer_with_a_path_is_discovered_under_it(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.issuer = "https://issuer.test/auth".into()).await;
    for path in [
        "/.well-known/oauth-authorization-server/auth",
        "/.well-known/oauth-authorization-server/auth/",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, meta) = app.send("GET", path, None, None).await;
        assert_eq!(status, Status::Ok, "{path}");
        assert_eq!(meta["issuer"], "https://issuer.test/auth", "{path}");
        assert_eq!(meta["token_endpoint"], "https://issuer.test/auth/v1/token");
    }
    for path in [
        "/.well-known/oauth-authorization-server/other",
        "/.well-known/oauth-authorization-server/auth/more",
        "/.well-known/oauth-authorization-server/au",
    ] {
        assert_eq!(
            app.send("GET", path, None, None).await.0,
            Status::NotFound,
            "{path}"
        );
    }
}

async fn discovery_and_health(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, meta) = app
        .send("GET", "/.well-known/oauth-authorization-server", None, None)
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(meta["issuer"], "https://issuer.test");
    assert_eq!(meta["token_endpoint"], "https://issuer.test/v1/token");
    assert_eq!(
        meta["jwks_uri"],
        "https://issuer.test/.well-known/jwks.json"
    );
    // Revocation asks for no client authentication (a bearer token is no registered method;
    // it was listed before, though no longer needed).
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    // Only an issuer with a path has metadata under it (RFC 8414 §3.1).
    let (status, _) = app
        .send(
            "GET",
            "/.well-known/oauth-authorization-server/auth",
            None,
            None,
        )
        .await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(
        app.send("GET", "/health/live", None, None).await.0,
        Status::Ok
    );
    let (status, ready) = app.send("GET", "/health/ready", None, None).await;
    assert_eq!(
        (status, ready["database"].as_bool()),
        (Status::Ok, Some(true))
    );

    app.register("alice").await;
    app.login("alice").await;
    let (status, metrics) = app.send("GET", "/metrics", None, None).await;
    assert_eq!(status, Status::Ok);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("gatehouse_logins_ok_total 1"), "{text}");
    assert!(
        text.contains("gatehouse_password_hash_seconds_count"),
        "{text}"
    );
}

/// Changing a password keeps the session that asked and revokes every other one, with their
/// access tokens; the old password stops working.
async fn password_change_revokes_the_other_sessions(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let (here, there) = (app.login("alice").await, app.login("alice").await);
    let access = str_of(&here, "access_token").to_owned();
    let new_password = "quiet-lantern-harbor-9";
    let wrong =
        format!(r#"{{"current_password":"nope-nope-nope","new_password":"{new_password}"}}"#);
    let (status, json) = app
        .send("POST", "/v1/password", Some(&wrong), Some(&access))
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_password")
    );
    let weak = format!(r#"{{"current_password":"{PASSWORD}","new_password":"password"}}"#);
    let (status, _) = app
        .send("POST", "/v1/password", Some(&weak), Some(&access))
        .await;
    assert_eq!(status, Status::BadRequest);

    let body = format!(r#"{{"current_password":"{PASSWORD}","new_password":"{new_password}"}}"#);
    let (status, json) = app
        .send("POST", "/v1/password", Some(&body), Some(&access))
        .await;
    assert_eq!(
        (status, json["sessions_revoked"].as_u64()),
        (Status::Ok, Some(1)),
        "{json}"
    );
    assert_eq!(
        app.me(&access).await.0,
        Status::Ok,
        "the asking session stays"
    );
    app.assert_signed_out(&there).await;
    let old = format!("grant_type=password&username=alice&password={PASSWORD}");
    assert_eq!(
        refusal(app.send("POST", "/v1/token", Some(&old), None).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    let new = format!("grant_type=password&username=alice&password={new_password}");
    assert_eq!(
        app.send("POST", "/v1/token", Some(&new), None).await.0,
        Status::Ok
    );
}

/// A session past its expiry is no longer signed in: a password change does not count it among
/// the sessions it revoked, and the audit names it apart (before, it counted every session not
/// cleaned up yet).
async fn a_password_change_counts_only_live_sessions(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.session_ttl_secs = 900;
        c.access_token_ttl_secs = 300;
    })
    .await;
    let uid = app.register("alice").await;
    app.login("alice").await;
    app.clock().advance(901);
    let (here, there) = (app.login("alice").await, app.login("alice").await);
    let body = format!(r#"{{"current_password":"{PASSWORD}","new_password":"quiet-lantern-9"}}"#);
    let (status, json) = app
        .send(
            "POST",
            "/v1/password",
            Some(&body),
            Some(str_of(&here, "access_token")),
        )
        .await;
    assert_eq!(
        (status, json["sessions_revoked"].as_u64()),
        (Status::Ok, Some(1)),
        "{json}"
    );
    app.assert_signed_out(&there).await;
    let audited = audit_details(&app, &uid, "sessions_revoked");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(
        audited[0]["sids"].as_array().map(Vec::len),
        Some(1),
        "{audited:?}"
    );
    assert_eq!(
        audited[0]["expired_sids"].as_array().map(Vec::len),
        Some(1),
        "the expired session is ended and named apart: {audited:?}"
    );
}

/// `POST /v1/users` answers with a `Location` that resolves, for the user and for admins only.
async fn the_location_of_a_new_user_resolves(backend: Backend) {
    let app = TestApp::start(backend).await;
    let body = format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#);
    let (status, _, headers) = app.send_full("POST", "/v1/users", Some(&body), None).await;
    assert_eq!(status, Status::Created);
    let location = header(&headers, "location").unwrap().to_owned();
    let alice = str_of(&app.login("alice").await, "access_token").to_owned();
    let (status, json) = app.send("GET", &location, None, Some(&alice)).await;
    assert_eq!((status, str_of(&json, "username")), (Status::Ok, "alice"));
    app.register("bob").await;
    let bob = str_of(&app.login("bob").await, "access_token").to_owned();
    assert_eq!(
        app.send("GET", &location, None, Some(&bob)).await.0,
        Status::NotFound
    );
    let admin = app.admin_token().await;
    assert_eq!(
        app.send("GET", &location, None, Some(&admin)).await.0,
        Status::Ok
    );
    assert_eq!(
        app.send("GET", &location, None, None).await.0,
        Status::Unauthorized
    );
}

/// `/metrics` counts requests by route template, method and status class, with latencies;
/// a client's path never becomes a label.
async fn requests_are_counted_by_route_and_status(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    assert_eq!(
        app.send("GET", "/v1/me", None, None).await.0,
        Status::Unauthorized
    );
    assert_eq!(
        app.send("GET", "/no/such/path-7f3a", None, None).await.0,
        Status::NotFound
    );
    let response = app.client.get("/metrics").dispatch().await;
    let text = response.into_string().await.unwrap();
    for line in [
        r#"gatehouse_http_requests_total{route="/v1/users",method="POST",status="2xx"} 1"#,
        r#"gatehouse_http_requests_total{route="/v1/me",method="GET",status="4xx"} 1"#,
        r#"gatehouse_http_requests_total{route="unmatched",method="GET",status="4xx"} 1"#,
        r#"gatehouse_http_request_seconds_count{route="/v1/me",method="GET",status="4xx"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(!text.contains("path-7f3a"));
}

/// `users reset-password NAME`, for a user who cannot sign in: the new password, read from
/// standard input and held to the registration policy, replaces the old one; every session
/// and access token of the account ends (whoever held it is out), audited `via: cli`. A lock
/// from guessed passwords stays until it ends or `users unlock`: the operator decides.
async fn the_cli_resets_a_password(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let uid = app.register("alice").await;
    let session = app.login("alice").await;
    for _ in 0..3 {
        app.send("POST", "/v1/token", Some(WRONG), None).await;
    }
    let reset = |name: &str, password: &str| {
        app.cli(&["users", "reset-password", name], &format!("{password}\n"))
    };
    let (ok, _, stderr) = reset("alice", "short");
    assert!(!ok && stderr.contains("at least 8 characters"), "{stderr}");
    let (ok, _, stderr) = reset("bob", "a new passphrase");
    assert!(!ok && stderr.contains("no user named bob"), "{stderr}");
    assert_eq!(app.me(str_of(&session, "access_token")).await.0, Status::Ok);

    let (ok, stdout, stderr) = reset("Alice", "a new passphrase");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("alice\tpassword reset"), "{stdout}");
    app.assert_signed_out(&session).await;
    app.clock().advance(1);
    let body = "grant_type=password&username=alice&password=a+new+passphrase";
    let (status, json) = app.send("POST", "/v1/token", Some(body), None).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::BadRequest, "locked_out"),
        "the lock outlives the reset: {json}"
    );
    let (ok, _, stderr) = app.cli(&["users", "unlock", "alice"], "");
    assert!(ok, "{stderr}");
    app.assert_login_refused("alice", PASSWORD).await;
    let (status, json) = app.send("POST", "/v1/token", Some(body), None).await;
    assert_eq!(status, Status::Ok, "the new password: {json}");
    assert_eq!(
        audit_details(&app, &uid, "password_reset"),
        [serde_json::json!({"via": "cli"})]
    );
}

crate::on_both_backends!(
    the_cli_resets_a_password,
    requests_are_counted_by_route_and_status,
    password_change_revokes_the_other_sessions,
    a_password_change_counts_only_live_sessions,
    the_location_of_a_new_user_resolves,
    registration_rules,
    login_issues_verifiable_tokens,
    login_failures_look_alike,
    bearer_errors,
    an_issuer_with_a_path_is_discovered_under_it,
    discovery_and_health,
);
