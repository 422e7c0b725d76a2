//! Admin endpoints and introspection.

use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, audit_details, refusal, str_of};
use crate::held::{HeldRevocation, start_watched, until_waiting};

/// `token` introspected with the admin's access token.
async fn introspect(app: &TestApp, admin: &str, token: &str) -> (Status, serde_json::Value) {
    let body = format!("token={token}");
    app.send("POST", "/v1/introspect", Some(&body), Some(admin))
        .await
}

/// `token` introspected as a refresh token (`token_type_hint=refresh_token`).
async fn introspect_refresh(
    app: &TestApp,
    admin: &str,
    token: &str,
) -> (Status, serde_json::Value) {
    let body = format!("token={token}&token_type_hint=refresh_token");
    app.send("POST", "/v1/introspect", Some(&body), Some(admin))
        .await
}

async fn admin_scope_is_required(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.register("alice").await;
    let token = app.login("alice").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/v1/admin/users/{alice}/revoke"),
        format!("/v1/admin/users/{alice}/disable"),
        format!("/v1/admin/users/{alice}/unlock"),
        "/v1/admin/sessions/x/revoke".to_owned(),
    ] {
        let (status, json, headers) = app.send_full("POST", &path, None, Some(&token)).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::Forbidden, "insufficient_scope")
        );
        let www = crate::common::header(&headers, "www-authenticate").unwrap();
        assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
    }
    let (status, _) = app
        .send("POST", "/v1/introspect", Some("token=x"), Some(&token))
        .await;
    assert_eq!(status, Status::Forbidden);
}

async fn admins_revoke_disable_and_introspect(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let s = app.login("alice").await;
    let access = str_of(&s, "access_token").to_owned();

    let (status, json) = introspect(&app, &admin, &access).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        (
            json["active"].as_bool(),
            str_of(&json, "sub"),
            str_of(&json, "token_type")
        ),
        (Some(true), alice.as_str(), "Bearer")
    );
    // A refresh token is active only to a caller that asks about refresh tokens: an origin
    // checking `active` on the bearer tokens it is sent never takes one for an access token.
    let refresh = str_of(&s, "refresh_token");
    let (_, json) = introspect(&app, &admin, refresh).await;
    assert_eq!(json, serde_json::json!({"active": false}));
    let (_, json) = introspect_refresh(&app, &admin, refresh).await;
    assert_eq!(
        (json["active"].as_bool(), str_of(&json, "token_type")),
        (Some(true), "refresh_token")
    );
    // The hint names where to look first, not the only place (RFC 7662 §2.1).
    let (_, json) = introspect_refresh(&app, &admin, &access).await;
    assert_eq!(json["active"].as_bool(), Some(true), "{json}");
    let (_, json) = introspect(&app, &admin, "nothing").await;
    assert_eq!(json, serde_json::json!({"active": false}));

    let sid = app.me(&access).await.1["sid"].as_str().unwrap().to_owned();
    let (status, _) = app
        .send(
            "POST",
            &format!("/v1/admin/sessions/{sid}/revoke"),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        refusal(app.me(&access).await),
        (Status::Unauthorized, "revoked".into())
    );
    let (status, json) = app
        .send("POST", "/v1/admin/sessions/nope/revoke", None, Some(&admin))
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::NotFound, "not_found")
    );

    // Disabling revokes everything and blocks logins, with the usual generic answer.
    let s = app.login("alice").await;
    let (status, _) = app
        .send(
            "POST",
            &format!("/v1/admin/users/{alice}/disable"),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(status, Status::Ok);
    let (status, json) = app.me(str_of(&s, "access_token")).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked")
    );
    assert_eq!(
        app.refresh(str_of(&s, "refresh_token")).await.0,
        Status::BadRequest
    );
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    assert_eq!(
        (status, str_of(&json, "error_description")),
        (Status::BadRequest, "invalid username or password")
    );
    let (status, _) = app
        .send(
            "POST",
            &format!("/v1/admin/users/{alice}/enable"),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(status, Status::Ok);
    app.clock().advance(1);
    app.login("alice").await;
    let (status, _) = app
        .send("POST", "/v1/admin/users/nobody/revoke", None, Some(&admin))
        .await;
    assert_eq!(status, Status::NotFound);
}

/// Introspection that cannot read the token's user answers an error, not `active: false`: an
/// origin must be able to tell "revoked" from "the issuer cannot say".
async fn introspection_that_cannot_look_the_user_up_is_an_error(backend: Backend) {
    use diesel::RunQueryDsl as _;
    // The admin's standing stays cached; alice's is looked up at the introspection.
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 60_000).await;
    app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let admin = app.admin_token().await;
    let (status, _) = introspect(&app, &admin, "x").await;
    assert_eq!(status, Status::Ok);
    app.store()
        .run_sync(|c| {
            diesel::sql_query("ALTER TABLE users RENAME TO users_gone").execute(c)?;
            Ok::<_, gatehouse_issuer::error::ApiError>(())
        })
        .unwrap();
    let (status, json) = introspect(&app, &admin, &access).await;
    assert!(
        status.code >= 500,
        "a lookup that failed was answered {status}: {json}"
    );
}

/// What an admin does to another user's account is audited with who did it.
async fn admin_actions_name_the_admin_in_the_audit(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let s = app.login("alice").await;
    let body = format!("token={}", str_of(&s, "access_token"));
    let (status, _) = app
        .send("POST", "/v1/revoke", Some(&body), Some(&admin))
        .await;
    assert_eq!(status, Status::Ok);
    // With a refresh token too (RFC 7009): before, only an access token's revocation named
    // the bearer.
    let body = format!("token={}", str_of(&s, "refresh_token"));
    let (status, _) = app
        .send("POST", "/v1/revoke", Some(&body), Some(&admin))
        .await;
    assert_eq!(status, Status::Ok);
    let events = audit_of(&app, &alice);
    let (_, detail) = events
        .iter()
        .find(|(k, d)| k == "session_revoked" && d.contains("revoked_with_refresh_token"))
        .unwrap_or_else(|| panic!("no refresh-token revocation in {events:?}"));
    let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
    assert_eq!(detail["by"], "admin-id", "{detail}");
    let sid = str_of(&app.login("alice").await, "access_token").to_owned();
    let sid = gatehouse_shared::UntrustedToken::parse(&sid, 8192)
        .unwrap()
        .claims_unverified::<serde_json::Value>()
        .unwrap()
        .custom["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let paths = [
        format!("/v1/admin/sessions/{sid}/revoke"),
        format!("/v1/admin/users/{alice}/revoke"),
        format!("/v1/admin/users/{alice}/disable"),
        format!("/v1/admin/users/{alice}/enable"),
        format!("/v1/admin/users/{alice}/unlock"),
    ];
    post_each_ok(&app, &admin, &paths).await;
    let events = audit_of(&app, &alice);
    for kind in [
        "token_revoked",
        "session_revoked",
        "user_revoked",
        "user_disabled",
        "user_enabled",
        "user_unlocked",
    ] {
        let (_, detail) = events
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"));
        let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
        assert_eq!(detail["by"], "admin-id", "{kind}: {detail}");
    }
}

/// A token sent empty is a token not sent (RFC 6749 §3.1), for introspection as for
/// revocation: 400, not `{"active": false}` about nothing.
async fn introspecting_an_empty_token_is_invalid_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    for path in ["/v1/introspect", "/v1/revoke"] {
        for body in ["token=", r#"{"token":""}"#, "token_type_hint=access_token"] {
            let (status, json) = app.send("POST", path, Some(body), Some(&admin)).await;
            assert_eq!(
                (status, str_of(&json, "error")),
                (Status::BadRequest, "invalid_request"),
                "{path} {body}: {json}"
            );
        }
    }
}

/// An admin cannot disable their own account (nothing could then undo it but SQL), and the
/// refusal leaves the account as it was.
async fn an_admin_cannot_disable_their_own_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let (status, json) = app
        .send(
            "POST",
            "/v1/admin/users/admin-id/disable",
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::Forbidden, "not_permitted"),
        "{json}"
    );
    assert_eq!(app.me(&admin).await.0, Status::Ok);
}

/// Each admin POST answers 200.
async fn post_each_ok(app: &TestApp, admin: &str, paths: &[String]) {
    for path in paths {
        let (status, json) = app.send("POST", path, None, Some(admin)).await;
        assert_eq!(status, Status::Ok, "{path}: {json}");
    }
}

/// The audit rows naming `uid`, newest first: (kind, detail).
fn audit_of(app: &TestApp, uid: &str) -> Vec<(String, String)> {
    let uid = uid.to_owned();
    app.store()
        .run_sync(move |c| gatehouse_issuer::store::audit::recent(c, &uid, 20))
        .unwrap()
        .into_iter()
        .map(|event| (event.kind, event.detail))
        .collect()
}

/// Disabling a disabled user, or enabling an enabled one, answers 200 and writes nothing: no
/// second cut-off, audit row or push.
async fn disabling_twice_writes_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let paths = [
        format!("/v1/admin/users/{alice}/enable"),
        format!("/v1/admin/users/{alice}/disable"),
        format!("/v1/admin/users/{alice}/disable"),
    ];
    post_each_ok(&app, &admin, &paths).await;
    let events = audit_of(&app, &alice);
    let count = |kind: &str| events.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(
        (count("user_enabled"), count("user_disabled")),
        (0, 1),
        "{events:?}"
    );
}

/// RFC 7662 §2.2: a token past its `exp` is not active, though the issuer's own leeway still
/// takes it as a bearer token.
async fn a_token_past_its_exp_is_not_active(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    app.clock().advance(900 + 10);
    assert_eq!(app.me(&access).await.0, Status::Ok, "within the leeway");
    let admin = app.admin_token().await;
    let (status, json) = introspect(&app, &admin, &access).await;
    assert_eq!(
        (status, json),
        (Status::Ok, serde_json::json!({"active": false}))
    );
}

/// A refresh token of a user disabled outside the API (by hand in the database, with its
/// sessions left alone) is not active: introspection applies the refresh grant's conditions,
/// which refuse it. Revoking it still ends its session, which stays ended once the user is
/// enabled again.
async fn a_disabled_users_refresh_token_is_not_active(backend: Backend) {
    use gatehouse_issuer::store::users::set_disabled;
    let app = TestApp::start(backend).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let refresh = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let uid = alice.clone();
    app.store()
        .run_sync(move |c| set_disabled(c, &uid, true))
        .unwrap();
    let (status, json) = introspect_refresh(&app, &admin, &refresh).await;
    assert_eq!(
        (status, json),
        (Status::Ok, serde_json::json!({"active": false}))
    );
    let body = format!("token={refresh}");
    let (status, json) = app.send("POST", "/v1/revoke", Some(&body), None).await;
    assert_eq!(status, Status::Ok, "{json}");
    app.store()
        .run_sync(move |c| set_disabled(c, &alice, false))
        .unwrap();
    assert_eq!(
        refusal(app.refresh(&refresh).await),
        (Status::BadRequest, "invalid_grant".into()),
        "the revocation ended the session"
    );
}

/// An admin disabled while its own admin request waits for the write lock does not act once the
/// lock is free: the request guard read its standing before. Before, the request ran, so two
/// admins disabling each other at once could leave none enabled.
async fn an_admin_disabled_meanwhile_does_not_act(backend: Backend) {
    use gatehouse_issuer::store::users;
    let name = format!("admin-race-{}", std::process::id());
    let app = start_watched(backend, &name).await;
    app.admin_token().await;
    let hash = gatehouse_issuer::password::HashPolicy::fast_for_tests()
        .hash(PASSWORD)
        .unwrap();
    app.store()
        .run_sync(|c| users::create(c, "second-id", "second-admin", &hash, true, 0))
        .unwrap();
    let second = app.login_with("second-admin", "&scope=read%20admin").await;
    let second = str_of(&second, "access_token").to_owned();
    // The first admin disables the second; the second's request to disable the first waits.
    let now = app.clock().now();
    let disabling = HeldRevocation::start(&app, now, |r| {
        users::set_disabled(r.conn(), "second-id", true)?;
        r.user("second-id", "disabled")
    });
    let path = "/v1/admin/users/admin-id/disable";
    let (answer, ()) = tokio::join!(app.send("POST", path, None, Some(&second)), async {
        let never = "the second admin's request never waited for the write lock";
        until_waiting(backend, &name, "advisory", never).await;
        disabling.commit();
    });
    assert_eq!(refusal(answer), (Status::Unauthorized, "revoked".into()));
    let first = app
        .store()
        .run_sync(|c| users::by_id(c, "admin-id"))
        .unwrap();
    assert!(
        first.is_some_and(|u| !u.disabled),
        "the first admin stays enabled"
    );
}

/// `users disable|enable NAME` at a shell, as the admin endpoints do: the way back for the last
/// admin, disabled with no admin left to enable it. A disable ends every session and revokes
/// every access token, audited `via: cli`; doing it twice writes once; an unknown name fails.
async fn the_cli_disables_and_enables_a_user(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let admin = app.admin_token().await;
    let session = app.login_with("root-admin", "&scope=read%20admin").await;
    let cli = |verb: &str, name: &str| app.cli(&["users", verb, name], "");
    let (ok, stdout, stderr) = cli("disable", "root-admin");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("root-admin\tdisabled"), "{stdout}");
    assert_eq!(
        refusal(app.me(&admin).await),
        (Status::Unauthorized, "revoked".into())
    );
    app.assert_signed_out(&session).await;
    app.assert_login_refused("root-admin", PASSWORD).await;
    let (ok, stdout, stderr) = cli("disable", "root-admin");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "root-admin\talready disabled; nothing changed\n");
    assert_eq!(
        audit_details(&app, "admin-id", "user_disabled"),
        [serde_json::json!({"via": "cli"})]
    );
    assert_eq!(
        audit_details(&app, "admin-id", "user_revoked"),
        [serde_json::json!({"reason": "disabled"})]
    );

    let (ok, stdout, stderr) = cli("enable", "Root-Admin");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "root-admin\tenabled\n");
    app.clock().advance(1);
    let admin = app.login_with("root-admin", "&scope=read%20admin").await;
    let path = format!("/v1/admin/users/{}/enable", app.register("alice").await);
    post_each_ok(&app, str_of(&admin, "access_token"), &[path]).await;
    assert_eq!(
        audit_details(&app, "admin-id", "user_enabled"),
        [serde_json::json!({"via": "cli"})]
    );

    let (ok, _, stderr) = cli("enable", "bob");
    assert!(!ok && stderr.contains("no user named bob"), "{stderr}");
}

/// An admin deletes another user's account: its tokens and refresh token are refused at once,
/// the login fails, the name can be registered again under a new id, and the deletion is
/// audited with who did it. A second delete is 404; an admin cannot delete their own account.
/// `users delete NAME` does the same at a shell.
async fn admins_and_the_cli_delete_users(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let session = app.login("alice").await;
    let path = format!("/v1/admin/users/{alice}/delete");
    let (status, json) = app.send("POST", &path, None, Some(&admin)).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(json, serde_json::json!({"sub": alice, "deleted": true}));
    app.assert_signed_out(&session).await;
    app.assert_login_refused("alice", PASSWORD).await;
    assert_eq!(
        audit_details(&app, &alice, "user_deleted"),
        [serde_json::json!({"by": "admin-id"})]
    );
    let (status, _) = app.send("POST", &path, None, Some(&admin)).await;
    assert_eq!(status, Status::NotFound);
    let own = "/v1/admin/users/admin-id/delete";
    let (status, json) = app.send("POST", own, None, Some(&admin)).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::Forbidden, "not_permitted")
    );

    app.clock().advance(1);
    let again = app.register("alice").await;
    assert_ne!(again, alice, "a new account under the free name");
    let session = app.login("alice").await;
    let cli = |name: &str| app.cli(&["users", "delete", name], "");
    // The push that follows is tried, and its failure (nothing listens on port 9) leaves the
    // deletion done, said by its own exit status (3, not 0 or 1).
    let unreachable = [(
        "GATEHOUSE_EDGE_SYNC_URLS",
        "http://127.0.0.1:9/_gatehouse/sync",
    )];
    let out = app.cli_output(&unreachable, &["users", "delete", "alice"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the revocation is recorded"), "{stderr}");
    assert_eq!(
        refusal(app.me(str_of(&session, "access_token")).await),
        (Status::Unauthorized, "revoked".into())
    );
    assert_eq!(
        audit_details(&app, &again, "user_deleted"),
        [serde_json::json!({"via": "cli"})]
    );
    let (ok, _, stderr) = cli("alice");
    assert!(!ok && stderr.contains("no user named alice"), "{stderr}");
}

/// PostgreSQL: a delete takes the account's refresh tokens before its sessions, the order a
/// rotation takes them in, so a rotation under way (its token taken, its session next) and a
/// delete do not deadlock. Before, the delete locked the sessions, then its cascade waited
/// for the token the rotation held, which waited for the session: PostgreSQL aborted one side,
/// and its client got a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_delete_and_a_rotation_under_way_do_not_deadlock() {
    use diesel::connection::SimpleConnection as _;
    use diesel::{Connection as _, PgConnection, RunQueryDsl as _};
    let name = format!("delete-race-{}", std::process::id());
    let app = start_watched(Backend::Postgres, &name).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let session = app.login("alice").await;
    let hash = gatehouse_issuer::ids::hash_secret(str_of(&session, "refresh_token"));
    let mut rotation = PgConnection::establish(&app.db.url).unwrap();
    rotation
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '10s'")
        .unwrap();
    // The rotation's first step: its token, taken.
    let take = format!("UPDATE refresh_tokens SET rotated_at = 1 WHERE token_hash = '{hash}'");
    diesel::sql_query(take).execute(&mut rotation).unwrap();
    let path = format!("/v1/admin/users/{alice}/delete");
    let (answer, shared) = tokio::join!(app.send("POST", &path, None, Some(&admin)), async {
        let never = "the delete never waited for the token the rotation holds";
        until_waiting(Backend::Postgres, &name, "transactionid", never).await;
        // Its next step: its session, shared. Then it ends (rolled back here).
        tokio::task::spawn_blocking(move || {
            let share = format!("SELECT id FROM sessions WHERE user_id = '{alice}' FOR SHARE");
            let shared = diesel::sql_query(share).execute(&mut rotation);
            rotation.batch_execute("ROLLBACK").unwrap();
            shared.map_err(|e| e.to_string())
        })
        .await
        .unwrap()
    });
    assert_eq!(shared, Ok(1), "the rotation takes its session");
    assert_eq!(answer.0, Status::Ok, "{}", answer.1);
    assert_eq!(
        app.refresh(str_of(&session, "refresh_token")).await.0,
        Status::BadRequest
    );
}

crate::on_both_backends!(
    admins_and_the_cli_delete_users,
    the_cli_disables_and_enables_a_user,
    an_admin_disabled_meanwhile_does_not_act,
    a_disabled_users_refresh_token_is_not_active,
    disabling_twice_writes_once,
    an_admin_cannot_disable_their_own_account,
    introspecting_an_empty_token_is_invalid_request,
    admin_actions_name_the_admin_in_the_audit,
    introspection_that_cannot_look_the_user_up_is_an_error,
    admin_scope_is_required,
    admins_revoke_disable_and_introspect,
    a_token_past_its_exp_is_not_active,
);
