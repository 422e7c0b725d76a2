//! Passwords checked under the lockout wherever they are checked, logins that race an account
//! change, and the admin powers that need the admin scope.

use std::time::Duration;

use gatehouse_issuer::db::DbConn;
use gatehouse_issuer::error::ApiError;
use gatehouse_issuer::password::HashPolicy;
use gatehouse_issuer::store::{audit, users, write_tx};
use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, header, str_of};

fn kinds(app: &TestApp, uid: &str) -> Vec<String> {
    let uid = uid.to_owned();
    app.store()
        .run_sync(move |c| audit::recent_kinds(c, &uid, 20))
        .unwrap()
}

async fn a_password_change_checks_the_password_under_the_lockout(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let change = |current: &str| {
        format!(r#"{{"current_password":"{current}","new_password":"a-new-passphrase-9"}}"#)
    };
    // A weak new password with the right current one is no failed attempt.
    let weak = format!(r#"{{"current_password":"{PASSWORD}","new_password":"password123"}}"#);
    for _ in 0..3 {
        let (status, json) = app
            .send("POST", "/v1/password", Some(&weak), Some(&access))
            .await;
        // `code` names the field to fix: the new password.
        assert_eq!(
            (status, str_of(&json, "error"), str_of(&json, "code")),
            (Status::BadRequest, "invalid_password", "password_policy")
        );
    }
    // A stolen access token is no way around the lockout: the threshold (3) of guesses, then
    // even the right password is refused for a while.
    for _ in 0..3 {
        let (status, json) = app
            .send(
                "POST",
                "/v1/password",
                Some(&change("guess-1234")),
                Some(&access),
            )
            .await;
        assert_eq!(
            (status, str_of(&json, "error"), str_of(&json, "code")),
            (Status::BadRequest, "invalid_password", "wrong_password")
        );
    }
    let (status, json, headers) = app
        .send_full(
            "POST",
            "/v1/password",
            Some(&change(PASSWORD)),
            Some(&access),
        )
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant"),
        "{json}"
    );
    assert!(header(&headers, "retry-after").is_some());
    let seen = kinds(&app, &uid);
    assert_eq!(
        seen.iter()
            .filter(|k| *k == "password_change_failed")
            .count(),
        3,
        "{seen:?}"
    );
    assert!(seen.iter().any(|k| k == "account_locked"), "{seen:?}");

    // After the lock, the right password changes it and gives the budget back.
    app.clock().advance(61);
    let (status, json) = app
        .send(
            "POST",
            "/v1/password",
            Some(&change(PASSWORD)),
            Some(&access),
        )
        .await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// Alice's login with the right password while another transaction holds her account row,
/// having set its hash to `hash` (uncommitted); that transaction commits 800 ms later.
/// Sends `request` while another transaction holds a change of the user's hash, and lets the
/// change commit 800 ms later.
fn while_a_hash_change_is_held<'a>(
    app: &'a TestApp,
    uid: String,
    hash: String,
    request: impl Future<Output = (Status, serde_json::Value)> + 'a,
) -> impl Future<Output = (Status, serde_json::Value)> + 'a {
    let change = move |c: &mut DbConn| users::set_password_hash(c, &uid, &hash);
    while_a_change_is_held(app, change, request)
}

/// `request`, sent while `change` to the account is written and held uncommitted for 800 ms.
async fn while_a_change_is_held(
    app: &TestApp,
    change: impl FnOnce(&mut DbConn) -> Result<(), ApiError> + Send + 'static,
    request: impl Future<Output = (Status, serde_json::Value)>,
) -> (Status, serde_json::Value) {
    let (started, wait_started) = std::sync::mpsc::channel::<()>();
    let (let_go, wait_let_go) = std::sync::mpsc::channel::<()>();
    let db = app.store().clone();
    let changer = std::thread::spawn(move || {
        db.run_sync(move |c| {
            write_tx(c, |c| {
                change(c)?;
                started.send(()).unwrap();
                wait_let_go.recv().unwrap();
                Ok(())
            })
        })
        .unwrap();
    });
    wait_started.recv().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        let_go.send(()).unwrap();
    });
    let answer = request.await;
    releaser.join().unwrap();
    changer.join().unwrap();
    answer
}

async fn login_while_a_hash_change_is_held(
    app: &TestApp,
    uid: String,
    hash: String,
) -> (Status, serde_json::Value) {
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    let login = app.send("POST", "/v1/token", Some(&body), None);
    while_a_hash_change_is_held(app, uid, hash, login).await
}

/// The password is checked before the login's transaction; a password change that commits in
/// between must win.
async fn a_login_that_races_a_password_change_starts_no_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let changed = "$argon2id$v=19$m=64,t=1,p=1$changed$changed".to_owned();
    let (status, json) = login_while_a_hash_change_is_held(&app, uid, changed).await;
    assert_eq!(
        status,
        Status::BadRequest,
        "a login with the replaced password got {json}"
    );
    assert_eq!(str_of(&json, "error"), "invalid_grant");
    // The password was right when checked: the refused login holds none of the client's tries
    // (before, its reservation counted until the lockout window ended, so the client was
    // locked out one wrong password early).
    let wrong = "grant_type=password&username=alice&password=not-the-password";
    for attempt in 1..=app.config.lockout.threshold {
        let (status, json) = app.send("POST", "/v1/token", Some(wrong), None).await;
        assert_eq!(
            (status, json.get("code")),
            (Status::BadRequest, None),
            "wrong password {attempt}: {json}"
        );
    }
}

/// "Log out everywhere" (or an admin's revocation of the user) that commits while a login checks
/// the password ends every session before it; the login's session starts after it, and its
/// tokens are issued at the cut-off's end, answered once that second has come. Before, the
/// login started a session whose first access token the cut-off refused but whose refresh token
/// went on bringing valid ones; then it was answered 503 for the cut-off's second.
async fn a_login_that_races_a_revocation_of_every_session_gets_tokens_past_its_cut_off(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let earlier = app.login("alice").await;
    let (started, wait_started) = std::sync::mpsc::channel::<()>();
    let revoker =
        gatehouse_issuer::revoker::Revoker::for_command(app.store().clone(), app.config.clone());
    // Begun just after the login: its cut-off covers tokens issued at the login's time.
    let now = app.clock().now() + 1;
    let user = uid.clone();
    let revocation = std::thread::spawn(move || {
        revoker.run_sync(now, |r| {
            r.user(&user, "logout_all")?;
            started.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(800));
            Ok(())
        })
    });
    wait_started.recv().unwrap();
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    revocation.join().unwrap().unwrap();
    assert_eq!(status, Status::Ok, "{json}");
    let access = str_of(&json, "access_token");
    let claims = app
        .verifier()
        .await
        .verify(access, app.clock().now())
        .unwrap();
    assert_eq!(claims.iat, now + 1, "issued at the cut-off's end");
    assert_eq!(app.me(access).await.0, Status::Ok);
    assert_eq!(
        app.me(str_of(&earlier, "access_token")).await.0,
        Status::Unauthorized
    );
    assert_eq!(crate::revocation::live_sessions(&app, &uid), 1);
}

/// A parallel login's rehash (after an argon2 parameter change) gives the same password a new
/// hash: a login that checked the old one is not refused for it.
async fn a_login_that_races_another_logins_rehash_succeeds(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let rehashed = HashPolicy::fast_for_tests().hash(PASSWORD).unwrap();
    let (status, json) = login_while_a_hash_change_is_held(&app, uid.clone(), rehashed).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert!(kinds(&app, &uid).iter().any(|k| k == "login_ok"));
}

/// The same race on a password change: a parallel login's rehash of the current password is
/// no change of it, and the change goes through.
async fn a_password_change_that_races_a_logins_rehash_succeeds(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let rehashed = HashPolicy::fast_for_tests().hash(PASSWORD).unwrap();
    let new_password = "violet-harbor-9241";
    let body = format!("current_password={PASSWORD}&new_password={new_password}");
    let change = app.send("POST", "/v1/password", Some(&body), Some(&access));
    let (status, json) = while_a_hash_change_is_held(&app, uid.clone(), rehashed, change).await;
    assert_eq!(status, Status::Ok, "{json}");
    let login = format!("grant_type=password&username=alice&password={new_password}");
    assert_eq!(
        app.send("POST", "/v1/token", Some(&login), None).await.0,
        Status::Ok
    );

    // A real change in between (another password) still wins over this one.
    let (_, session) = app.send("POST", "/v1/token", Some(&login), None).await;
    let access = str_of(&session, "access_token").to_owned();
    let other = HashPolicy::fast_for_tests()
        .hash("other-password-5150")
        .unwrap();
    let body = format!("current_password={new_password}&new_password=lost-update-8675");
    let change = app.send("POST", "/v1/password", Some(&body), Some(&access));
    let (status, json) = while_a_hash_change_is_held(&app, uid, other, change).await;
    assert_eq!(status, Status::BadRequest, "{json}");
    let lost = "grant_type=password&username=alice&password=lost-update-8675";
    assert_eq!(
        app.send("POST", "/v1/token", Some(lost), None).await.0,
        Status::BadRequest
    );
}

async fn a_refused_scope_gives_the_attempt_back_and_is_audited(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let wrong = "grant_type=password&username=alice&password=wrong-password";
    for _ in 0..2 {
        assert_eq!(
            app.send("POST", "/v1/token", Some(wrong), None).await.0,
            Status::BadRequest
        );
    }
    let admin = format!("grant_type=password&username=alice&password={PASSWORD}&scope=admin");
    let (status, json) = app.send("POST", "/v1/token", Some(&admin), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_scope")
    );
    assert!(kinds(&app, &uid).iter().any(|k| k == "login_scope_refused"));
    // The right password reset the count: two more wrong ones do not lock the account.
    for _ in 0..2 {
        app.send("POST", "/v1/token", Some(wrong), None).await;
    }
    app.login("alice").await;
}

async fn admin_powers_need_the_admin_scope(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.register("alice").await;
    app.admin_token().await;
    let admin_read = app.login_with("root-admin", "&scope=read").await;
    let admin_read = str_of(&admin_read, "access_token").to_owned();

    let path = format!("/v1/users/{alice}");
    assert_eq!(
        app.send("GET", &path, None, Some(&admin_read)).await.0,
        Status::NotFound,
        "an admin's token without the admin scope reads only its own user"
    );
    let admin = app.login_with("root-admin", "&scope=read%20admin").await;
    let admin = str_of(&admin, "access_token").to_owned();
    assert_eq!(
        app.send("GET", &path, None, Some(&admin)).await.0,
        Status::Ok
    );
    // An id that cannot exist is 404, whatever the database makes of it.
    for odd in ["%00", "a%00b", "%FF", &"x".repeat(65)] {
        let (status, json) = app
            .send("GET", &format!("/v1/users/{odd}"), None, Some(&admin))
            .await;
        assert_eq!(status, Status::NotFound, "{odd}: {json}");
    }
}

async fn an_empty_grant_type_is_a_missing_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, json) = app
        .send("POST", "/v1/token", Some("grant_type=&username=a"), None)
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_request")
    );
}

/// A password with an `é`, precomposed and as `e` plus a combining accent.
const COMPOSED: &str = "caf\u{e9}-plover-7";
const DECOMPOSED: &str = "cafe\u{301}-plover-7";

/// A password grant for alice, as JSON.
async fn alice_logs_in_with(app: &TestApp, password: &str) -> (Status, serde_json::Value) {
    let body = format!(r#"{{"grant_type":"password","username":"alice","password":"{password}"}}"#);
    app.send("POST", "/v1/token", Some(&body), None).await
}

/// A password is the same password in any Unicode form of its characters (NFKC): set with a
/// precomposed `é`, it is taken with `e` plus a combining accent (as some input methods type
/// it), in a form body too, and a new password is compared the same way. Before, each form was
/// another password.
async fn a_password_is_the_same_in_any_unicode_form(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (composed, decomposed) = (COMPOSED, DECOMPOSED);
    let body = format!(r#"{{"username":"alice","password":"{composed}"}}"#);
    let (status, json) = app.send("POST", "/v1/users", Some(&body), None).await;
    assert_eq!(status, Status::Created, "{json}");
    let (status, json) = alice_logs_in_with(&app, decomposed).await;
    assert_eq!(status, Status::Ok, "{json}");
    let access = str_of(&json, "access_token").to_owned();
    // `cafe%CC%81`: the combining accent percent-encoded in a form body.
    let form = "grant_type=password&username=alice&password=cafe%CC%81-plover-7";
    let (status, json) = app.send("POST", "/v1/token", Some(form), None).await;
    assert_eq!(status, Status::Ok, "{json}");

    // Changed to fullwidth letters (an East Asian input method), taken in ASCII.
    let change = format!(
        r#"{{"current_password":"{decomposed}","new_password":"\uff50lover-quartz-\uff17"}}"#
    );
    let (status, json) = app
        .send("POST", "/v1/password", Some(&change), Some(&access))
        .await;
    assert!(status.code < 300, "{status} {json}");
    let (status, json) = alice_logs_in_with(&app, "plover-quartz-7").await;
    assert_eq!(status, Status::Ok, "{json}");
    let (status, json) = alice_logs_in_with(&app, composed).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant"),
        "the old password"
    );
}

/// Passwords of the policy's longest (1024 characters, counted in NFKC), each character typed
/// as long as a body can make it: a Hangul syllable as its three jamo, 27 bytes percent-encoded.
/// Registered, logged in with (composed), and changed to another such password in a form body
/// of two of them (about 55 KB). Before, the change was refused 413 by a 16 KiB body limit.
async fn a_password_of_the_longest_escapes_can_be_changed(backend: Backend) {
    let app = TestApp::start(backend).await;
    // U+1100 U+1161 U+11A8 compose to U+AC01; U+1102 U+1161 U+11A8 to U+B099.
    let (old, new) = ("\u{AC01}".repeat(1024), "\u{B099}".repeat(1024));
    let old_form = "%E1%84%80%E1%85%A1%E1%86%A8".repeat(1024);
    let new_form = "%E1%84%82%E1%85%A1%E1%86%A8".repeat(1024);
    let body = format!("username=alice&password={old_form}");
    let (status, json) = app.send("POST", "/v1/users", Some(&body), None).await;
    assert_eq!(status, Status::Created, "{json}");
    let (status, json) = alice_logs_in_with(&app, &old).await;
    assert_eq!(status, Status::Ok, "{json}");
    let access = str_of(&json, "access_token").to_owned();
    let change = format!("current_password={old_form}&new_password={new_form}");
    assert!(change.len() > 54 * 1024, "{}", change.len());
    let (status, json) = app
        .send("POST", "/v1/password", Some(&change), Some(&access))
        .await;
    assert!(status.code < 300, "{status} {json}");
    let (status, json) = alice_logs_in_with(&app, &new).await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// A hash made before passwords were normalised is of the password as typed: a login in that
/// form still succeeds, and stores the NFKC hash (audited), after which every form is taken.
async fn a_login_rehashes_a_password_hashed_as_typed(backend: Backend) {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let (composed, decomposed) = (COMPOSED, DECOMPOSED);
    // As the previous version hashed it: the typed bytes, under this app's parameters (so no
    // parameter upgrade rehashes it for another reason).
    let policy = HashPolicy::from_config(&app.config.password);
    let params = argon2::Params::new(policy.m_cost, policy.t_cost, policy.p_cost, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let legacy = argon
        .hash_password(decomposed.as_bytes(), &salt)
        .unwrap()
        .to_string();
    assert!(!policy.requires_upgrade(&legacy));
    let (id, hash) = (uid.clone(), legacy.clone());
    app.store()
        .run_sync(move |c| users::set_password_hash(c, &id, &hash))
        .unwrap();
    let (status, json) = alice_logs_in_with(&app, composed).await;
    assert_eq!(status, Status::BadRequest, "not yet: {json}");
    let (status, json) = alice_logs_in_with(&app, decomposed).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert!(kinds(&app, &uid).contains(&"password_rehashed".to_owned()));
    let (status, json) = alice_logs_in_with(&app, composed).await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// An account disabled while a password change checks the current password: the change is
/// refused as the caller's token is, `revoked` (401), not as a password changed meanwhile (a
/// client would ask its user for the password again, for an account that is gone).
async fn a_password_change_that_races_a_disable_is_revoked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let body =
        format!(r#"{{"current_password":"{PASSWORD}","new_password":"a-new-passphrase-9"}}"#);
    let change = app.send("POST", "/v1/password", Some(&body), Some(&access));
    let disable = move |c: &mut DbConn| users::set_disabled(c, &uid, true).map(|_| ());
    let (status, json) = while_a_change_is_held(&app, disable, change).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked"),
        "{json}"
    );
}

/// A user deleted between a login's read of it and its lockout reservation (whose first
/// attempt from a client inserts rows naming the user) is no such user: the login is refused
/// as for an unknown name. Before, the reservation's foreign-key violation was a 500.
async fn a_user_deleted_before_its_reservation_is_no_such_user(backend: Backend) {
    use gatehouse_issuer::credentials::find_and_reserve;
    use gatehouse_issuer::store::users::User;
    let app = TestApp::start(backend).await;
    let (cfg, now) = (app.config.lockout, app.clock().now());
    let gone = User {
        id: "deleted-meanwhile".into(),
        username: "alice".into(),
        password_hash: String::new(),
        is_admin: false,
        disabled: false,
        created_at: 0,
    };
    let ip = Some("10.0.9.9".parse().unwrap());
    let found = find_and_reserve(app.store(), (now, cfg), ip, move |_| Ok(Some(gone))).await;
    assert!(
        matches!(found, Ok(None)),
        "{:?}",
        found.map(|f| f.is_some())
    );
}

crate::on_both_backends!(
    a_password_of_the_longest_escapes_can_be_changed,
    a_user_deleted_before_its_reservation_is_no_such_user,
    a_password_change_that_races_a_disable_is_revoked,
    a_login_rehashes_a_password_hashed_as_typed,
    a_password_is_the_same_in_any_unicode_form,
    a_password_change_checks_the_password_under_the_lockout,
    a_login_that_races_a_password_change_starts_no_session,
    a_login_that_races_a_revocation_of_every_session_gets_tokens_past_its_cut_off,
    a_login_that_races_another_logins_rehash_succeeds,
    a_password_change_that_races_a_logins_rehash_succeeds,
    a_refused_scope_gives_the_attempt_back_and_is_audited,
    admin_powers_need_the_admin_scope,
    an_empty_grant_type_is_a_missing_one,
);
