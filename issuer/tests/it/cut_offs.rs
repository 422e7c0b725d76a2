//! Tokens issued near a cut-off of their user's tokens: in the cut-off's own second a new token
//! would be refused at once, so the token endpoint issues it at the cut-off's end and answers
//! once that second has come. Before, it answered 503, an error to clients that do not retry
//! (Authlib, oauth4webapi).

use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, audit_details, str_of};
use crate::revocation::live_sessions;

/// The end (`issued_before`) of the cut-off of `uid`'s tokens a "log out everywhere" wrote.
fn cut_off_end(app: &TestApp, uid: &str) -> i64 {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::revocations;
    let kind = gatehouse_shared::RevocationKind::User.code();
    let uid = uid.to_owned();
    app.store()
        .run_sync(move |c| {
            Ok(revocations::table
                .filter(revocations::kind.eq(kind))
                .filter(revocations::subject.eq(&uid))
                .select(revocations::issued_before)
                .first::<i64>(c)?)
        })
        .unwrap()
}

/// A cut-off of `uid`'s tokens issued before `end`, as a replica whose clock is ahead writes it.
fn plant_cut_off(app: &TestApp, uid: &str, end: i64) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::revocations;
    let kind = gatehouse_shared::RevocationKind::User.code();
    let (uid, now) = (uid.to_owned(), app.clock().now());
    app.store()
        .run_sync(move |c| {
            diesel::insert_into(revocations::table)
                .values((
                    revocations::kind.eq(kind),
                    revocations::subject.eq(uid),
                    revocations::issued_before.eq(end),
                    revocations::expires_at.eq(end + 3600),
                    revocations::created_at.eq(now),
                ))
                .execute(c)
                .map_err(Into::into)
        })
        .unwrap();
}

fn login_body() -> String {
    format!("grant_type=password&username=alice&password={PASSWORD}")
}

fn refresh_body(refresh_token: &str) -> String {
    format!("grant_type=refresh_token&refresh_token={refresh_token}")
}

/// Moves the app's clock to `second` (back, here), as a request that came in then sees it.
fn set_clock(app: &TestApp, second: i64) {
    app.clock().advance(second - app.clock().now());
}

async fn logged_out_everywhere(app: &TestApp, uid: &str) -> i64 {
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let (status, json) = app
        .send("POST", "/v1/logout/all", None, Some(&access))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    cut_off_end(app, uid)
}

/// A login, its refresh and the refresh's retry within the grace window, each asked for two
/// seconds before the cut-off's end (its own second and a second of replicas' clock skew):
/// each token is issued at the end, answered no sooner, lives no longer than one issued when
/// asked for, and is accepted.
async fn tokens_asked_for_under_a_cut_off_are_issued_at_its_end(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let end = logged_out_everywhere(&app, &uid).await;
    let verifier = app.verifier().await;
    let issued_at_the_end = |json: &serde_json::Value| {
        let now = app.clock().now();
        assert!(
            now >= end,
            "answered at {now}, before its token's second {end}"
        );
        let access = str_of(json, "access_token").to_owned();
        let claims = verifier.verify(&access, now).unwrap();
        assert_eq!(claims.iat, end, "{json}");
        assert_eq!(claims.nbf, Some(end));
        // Its lifetime counts from the request, as revocation entries and key grace assume.
        let ttl = i64::from(app.config.access_token_ttl_secs);
        assert!(
            claims.exp < end + ttl,
            "exp {} counts from the end {end}",
            claims.exp
        );
        assert_eq!(json["expires_in"], claims.exp - end, "{json}");
        access
    };

    set_clock(&app, end - 2);
    let login = app.login("alice").await;
    let access = issued_at_the_end(&login);
    assert_eq!(app.me(&access).await.0, Status::Ok);
    // Its audit row, stamped when asked, names when its tokens were issued.
    let logins = audit_details(&app, &uid, "login_ok");
    assert_eq!(
        logins.last().unwrap()["tokens_issued_at"],
        end,
        "{logins:?}"
    );
    assert!(logins[0].get("tokens_issued_at").is_none(), "{logins:?}");

    set_clock(&app, end - 2);
    let (status, refreshed) = app.refresh(str_of(&login, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{refreshed}");
    assert_eq!(app.me(&issued_at_the_end(&refreshed)).await.0, Status::Ok);

    set_clock(&app, end - 2);
    let (status, retried) = app.refresh(str_of(&login, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{retried}");
    assert_eq!(
        str_of(&retried, "refresh_token"),
        str_of(&refreshed, "refresh_token"),
        "the retry within the grace window gets the same successor"
    );
    assert_eq!(app.me(&issued_at_the_end(&retried)).await.0, Status::Ok);
}

/// Further from the cut-off's end than the wait allows (a clock far behind the replica that
/// wrote it), the login is answered 503 with the seconds to its end, and starts no session.
async fn a_cut_off_further_ahead_than_the_wait_is_answered_503(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let end = logged_out_everywhere(&app, &uid).await;
    set_clock(&app, end - 5);
    let retry_after = app.token_unavailable(&login_body()).await;
    assert!((4..=5).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(live_sessions(&app, &uid), 0);
}

/// Access tokens of a second (an allowed setting): one issued a second later, at the cut-off's
/// end, would expire as it is issued (its lifetime counts from the request), so the login is
/// told to come back instead of waiting for nothing.
async fn a_token_that_would_end_by_the_cut_offs_end_is_not_waited_for(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.access_token_ttl_secs = 1).await;
    let uid = app.register("alice").await;
    let end = logged_out_everywhere(&app, &uid).await;
    set_clock(&app, end - 1);
    app.token_unavailable(&login_body()).await;
    set_clock(&app, end);
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(app.me(&access).await.0, Status::Ok);
}

/// A retry within the grace window is never told to come back (it could come back past the
/// window and be taken for reuse, ending the session): under a cut-off too far ahead to wait
/// for, it gets the same successor at once, with a token the cut-off refuses. A rotation of
/// the successor is told to come back, rotates nothing, and once the cut-off has ended gets a
/// token that is accepted.
async fn a_grace_retry_far_before_a_cut_offs_end_is_answered_at_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let login = app.login("alice").await;
    let (status, rotated) = app.refresh(str_of(&login, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{rotated}");
    let end = app.clock().now() + 5;
    plant_cut_off(&app, &uid, end);

    let (status, retried) = app.refresh(str_of(&login, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{retried}");
    let successor = str_of(&rotated, "refresh_token");
    assert_eq!(str_of(&retried, "refresh_token"), successor);
    assert_eq!(
        app.me(str_of(&retried, "access_token")).await.0,
        Status::Unauthorized
    );

    app.token_unavailable(&refresh_body(successor)).await;
    set_clock(&app, end);
    let (status, json) = app.refresh(successor).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(app.me(str_of(&json, "access_token")).await.0, Status::Ok);
}

/// A session that ends before the cut-off's end could only get a token without time left
/// (`exp` at or before `iat`): its refresh is refused as expired instead, and rotates nothing.
async fn a_session_ending_under_a_cut_off_gets_no_token_past_it(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.session_ttl_secs = 120;
        c.access_token_ttl_secs = 60;
    })
    .await;
    let uid = app.register("alice").await;
    let login = app.login("alice").await;
    app.clock().advance(119);
    plant_cut_off(&app, &uid, app.clock().now() + 2);
    let (status, json) = app.refresh(str_of(&login, "refresh_token")).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant"),
        "{json}"
    );
    assert_eq!(live_sessions(&app, &uid), 1, "the session is left to end");
}

crate::on_both_backends!(
    a_token_that_would_end_by_the_cut_offs_end_is_not_waited_for,
    a_grace_retry_far_before_a_cut_offs_end_is_answered_at_once,
    a_session_ending_under_a_cut_off_gets_no_token_past_it,
    tokens_asked_for_under_a_cut_off_are_issued_at_its_end,
    a_cut_off_further_ahead_than_the_wait_is_answered_503,
);
