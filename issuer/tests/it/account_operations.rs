//! A user deleting their own account, and an admin reading a user's audit events or setting a new
//! password for a user who cannot sign in: the account operations a user and a help desk need
//! besides the shell's.

use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, audit_details, refusal, str_of};
use crate::lockout::WRONG;

async fn delete_own(app: &TestApp, access: &str, password: Option<&str>) -> (Status, String) {
    let body = password.map_or_else(
        || "{}".to_owned(),
        |p| serde_json::json!({ "password": p }).to_string(),
    );
    let answer = app
        .send("POST", "/v1/me/delete", Some(&body), Some(access))
        .await;
    refusal_or_ok(answer, "deleted")
}

/// A refusal's status and code, or 200 with an empty code once the answer's `done` member is
/// `true`.
fn refusal_or_ok((status, json): (Status, serde_json::Value), done: &str) -> (Status, String) {
    match status {
        Status::Ok => {
            assert_eq!(json[done], true, "{json}");
            (status, String::new())
        }
        _ => refusal((status, json)),
    }
}

/// The password is asked for, under the lockout a password change has: a stolen access token
/// alone cannot delete an account. Then the account goes with every session and token, its name
/// free again; an admin's account is deleted by another admin only.
async fn a_user_deletes_their_own_account(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let uid = app.register("alice").await;
    let other = app.login("alice").await;
    let session = app.login("alice").await;
    let access = str_of(&session, "access_token");

    let bad_request = |code: &str| (Status::BadRequest, code.to_owned());
    assert_eq!(
        delete_own(&app, access, None).await,
        bad_request("invalid_request")
    );
    for _ in 0..3 {
        assert_eq!(
            delete_own(&app, access, Some("a-wrong-guess")).await,
            bad_request("wrong_password")
        );
    }
    assert_eq!(
        delete_own(&app, access, Some(PASSWORD)).await,
        bad_request("locked_out"),
        "the threshold of guesses locks even the right password out"
    );
    assert_eq!(
        audit_details(&app, &uid, "account_deletion_failed").len(),
        3
    );
    assert_eq!(app.me(access).await.0, Status::Ok, "nothing was deleted");

    app.clock().advance(61);
    assert_eq!(
        delete_own(&app, access, Some(PASSWORD)).await,
        (Status::Ok, String::new())
    );
    app.assert_signed_out(&session).await;
    app.assert_signed_out(&other).await;
    app.assert_login_refused("alice", PASSWORD).await;
    assert_eq!(
        audit_details(&app, &uid, "user_deleted"),
        [serde_json::json!({"via": "self"})]
    );
    app.clock().advance(1);
    assert_ne!(app.register("alice").await, uid, "the name is free again");

    let admin = app.admin_token().await;
    assert_eq!(
        delete_own(&app, &admin, Some(PASSWORD)).await,
        (Status::Forbidden, "not_permitted".to_owned())
    );
    assert_eq!(app.me(&admin).await.0, Status::Ok);
}

/// A help desk sets a new password: held to the registration policy, every session and token of
/// the account ended, the new password good once a guesser's lock is lifted, the admin named
/// in the audit. Not for an
/// admin's own account (`/v1/password` asks for the current one) or another admin's, nor by a
/// non-admin.
async fn admins_reset_a_password(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let admin = app.admin_token().await;
    let uid = app.register("alice").await;
    let session = app.login("alice").await;
    let path = format!("/v1/admin/users/{uid}/password");
    let reset = |path: String, token: String, password: &str| {
        let body = serde_json::json!({ "new_password": password }).to_string();
        let app = &app;
        async move {
            let answer = app.send("POST", &path, Some(&body), Some(&token)).await;
            refusal_or_ok(answer, "password_reset")
        }
    };

    let alice = str_of(&session, "access_token").to_owned();
    assert_eq!(
        reset(path.clone(), alice, "a new passphrase").await,
        (Status::Forbidden, "insufficient_scope".into())
    );
    assert_eq!(
        reset(path.clone(), admin.clone(), "password").await,
        (Status::BadRequest, "password_policy".into())
    );
    let own = "/v1/admin/users/admin-id/password".to_owned();
    assert_eq!(
        reset(own, admin.clone(), "a new passphrase").await,
        (Status::Forbidden, "not_permitted".into())
    );
    // Another admin's account is an operator's to reset, at a shell.
    let hash = gatehouse_issuer::password::HashPolicy::fast_for_tests()
        .hash(PASSWORD)
        .unwrap();
    app.store()
        .run_sync(|c| gatehouse_issuer::store::users::create(c, "admin-2", "ops", &hash, true, 0))
        .unwrap();
    let other_admin = "/v1/admin/users/admin-2/password".to_owned();
    assert_eq!(
        reset(other_admin, admin.clone(), "a new passphrase").await,
        (Status::Forbidden, "not_permitted".into())
    );
    let body = format!("grant_type=password&username=ops&password={PASSWORD}");
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    assert_eq!(
        status,
        Status::Ok,
        "the other admin's password is unchanged: {json}"
    );
    let nobody = "/v1/admin/users/no-such-user/password".to_owned();
    assert_eq!(
        reset(nobody, admin.clone(), "a new passphrase").await,
        (Status::NotFound, "not_found".into())
    );
    assert_eq!(app.me(str_of(&session, "access_token")).await.0, Status::Ok);

    // A guesser's lock outlives the reset: an unlock is its own act.
    for _ in 0..3 {
        app.send("POST", "/v1/token", Some(WRONG), None).await;
    }
    assert_eq!(
        reset(path, admin.clone(), "a new passphrase").await,
        (Status::Ok, String::new())
    );
    app.assert_signed_out(&session).await;
    app.clock().advance(1);
    let body = "grant_type=password&username=alice&password=a+new+passphrase";
    assert_eq!(
        refusal(app.send("POST", "/v1/token", Some(body), None).await),
        (Status::BadRequest, "locked_out".into())
    );
    let unlock = format!("/v1/admin/users/{uid}/unlock");
    assert_eq!(
        app.send("POST", &unlock, None, Some(&admin)).await.0,
        Status::Ok
    );
    app.assert_login_refused("alice", PASSWORD).await;
    let (status, json) = app.send("POST", "/v1/token", Some(body), None).await;
    assert_eq!(status, Status::Ok, "the new password: {json}");
    assert_eq!(
        audit_details(&app, &uid, "password_reset"),
        [serde_json::json!({"by": "admin-id"})]
    );
}

/// A help desk reads what happened to an account, newest first: its failed logins, its sign-ins,
/// who acted on it; a deleted account's events too. Admins only; `users events NAME` at a shell.
async fn admins_read_a_users_events(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let uid = app.register("alice").await;
    app.send("POST", "/v1/token", Some(WRONG), None).await;
    let session = app.login("alice").await;
    let events = |query: &str| {
        let path = format!("/v1/admin/users/{uid}/events{query}");
        let app = &app;
        let admin = admin.clone();
        async move { app.send("GET", &path, None, Some(&admin)).await }
    };

    let alice = str_of(&session, "access_token");
    let path = format!("/v1/admin/users/{uid}/events");
    assert_eq!(
        app.send("GET", &path, None, None).await.0,
        Status::Unauthorized
    );
    assert_eq!(
        refusal(app.send("GET", &path, None, Some(alice)).await),
        (Status::Forbidden, "insufficient_scope".into())
    );
    let (status, json) = events("").await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(json["sub"], uid.as_str());
    let kinds: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["login_ok", "login_failed", "user_created"],
        "newest first"
    );
    assert!(json["events"][0]["detail"]["sid"].is_string(), "{json}");
    assert!(json["events"][0]["at"].is_i64(), "{json}");
    let (_, json) = events("?limit=1").await;
    assert_eq!(json["events"].as_array().map(Vec::len), Some(1), "{json}");
    let (status, json) = events("?limit=500").await;
    assert_eq!(
        (status, json["events"].as_array().map(Vec::len)),
        (Status::Ok, Some(3))
    );
    for bad in [
        "?limit=0",
        "?limit=501",
        "?limit=many",
        "?limit=",
        "?limit=1&limit=2",
    ] {
        assert_eq!(
            refusal(events(bad).await),
            (Status::BadRequest, "invalid_request".into()),
            "{bad}"
        );
    }

    // The same at a shell, by name.
    let (ok, stdout, stderr) = app.cli(&["users", "events", "alice", "--limit", "2"], "");
    assert!(ok, "{stderr}");
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        (lines[0][1], lines[1][1]),
        ("login_ok", "login_failed"),
        "{stdout}"
    );
    assert!(lines[0][2].starts_with(r#"{"sid":"#), "{stdout}");
    let (ok, _, stderr) = app.cli(&["users", "events", "alice", "--limit", "501"], "");
    assert!(!ok && stderr.contains("501"), "{stderr}");
    let (ok, _, stderr) = app.cli(&["users", "events", "bob"], "");
    assert!(!ok && stderr.contains("no user named bob"), "{stderr}");

    let delete = format!("/v1/admin/users/{uid}/delete");
    assert_eq!(
        app.send("POST", &delete, None, Some(&admin)).await.0,
        Status::Ok
    );
    let (status, json) = events("?limit=1").await;
    assert_eq!(
        status,
        Status::Ok,
        "a deleted account's events stay: {json}"
    );
    assert_eq!(json["events"][0]["kind"], "user_deleted");
    assert_eq!(
        json["events"][0]["detail"],
        serde_json::json!({"by": "admin-id"})
    );
    let (status, json) = app
        .send(
            "GET",
            "/v1/admin/users/never-used/events",
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(
        (status, json["events"].as_array().map(Vec::len)),
        (Status::Ok, Some(0))
    );
}

crate::on_both_backends!(
    a_user_deletes_their_own_account,
    admins_reset_a_password,
    admins_read_a_users_events
);
