//! Refresh rotation: every use rotates, retries within the grace window get the same successor,
//! reuse after it revokes the family, and sessions end at their absolute lifetime.

use std::sync::Arc;

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use gatehouse_issuer::clock::Clock;
use rocket::http::Status;

use crate::common::{Backend, TestApp, refresh_on, refusal, str_of};
use crate::held::{start_watched, until_waiting};

fn clock_of(client: &rocket::local::asynchronous::Client) -> Arc<Clock> {
    Arc::clone(client.rocket().state::<Arc<Clock>>().unwrap())
}

fn audit_kinds_of_alice(app: &TestApp) -> Vec<String> {
    app.store()
        .run_sync(|c| {
            let uid = gatehouse_issuer::store::users::by_username(c, "alice")?
                .unwrap()
                .id;
            gatehouse_issuer::store::audit::recent_kinds(c, &uid, 5)
        })
        .unwrap()
}

async fn rotation_grace_and_reuse(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let first = app.login("alice").await;
    let r0 = str_of(&first, "refresh_token").to_owned();

    let (status, second) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{second}");
    let r1 = str_of(&second, "refresh_token").to_owned();
    assert_ne!(r0, r1);
    assert_ne!(
        str_of(&first, "access_token"),
        str_of(&second, "access_token")
    );

    // A retry of r0 within the grace window: the same successor, not a revocation, and
    // counted as a retry, not a rotation.
    app.clock().advance(2);
    let (status, retry) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{retry}");
    assert_eq!(str_of(&retry, "refresh_token"), r1);
    assert_eq!(
        (
            app.metric("gatehouse_refreshes_total").await,
            app.metric("gatehouse_refresh_retries_total").await
        ),
        (1, 1)
    );

    // r1 moves on; now r0 is stale even within the window, and past it certainly.
    let (status, third) = app.refresh(&r1).await;
    assert_eq!(status, Status::Ok);
    let r2 = str_of(&third, "refresh_token").to_owned();
    app.clock().advance(10);
    let (status, json) = app.refresh(&r0).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant")
    );
    assert!(str_of(&json, "error_description").contains("already used"));

    // The whole family is dead: the current refresh token and the session's access tokens.
    assert_eq!(
        refusal(app.refresh(&r2).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    let (status, json) = app.me(str_of(&third, "access_token")).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked")
    );
    let kinds = audit_kinds_of_alice(&app);
    assert!(kinds.contains(&"refresh_reuse".to_owned()), "{kinds:?}");
}

async fn concurrent_retries_share_one_successor(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let attempts = (0..16).map(|_| app.refresh(&r0));
    // Polled together, so the requests run concurrently on the issuer's blocking pool.
    let results = rocket::futures::future::join_all(attempts).await;
    let mut successors: Vec<String> = Vec::new();
    for (status, json) in &results {
        assert_eq!(*status, Status::Ok, "{json}");
        successors.push(str_of(json, "refresh_token").to_owned());
    }
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "every concurrent retry gets the same successor"
    );
    let (status, _) = app.refresh(&successors[0]).await;
    assert_eq!(status, Status::Ok, "the shared successor is the live token");
}

async fn two_issuers_agree_on_one_successor(backend: Backend) {
    let app = TestApp::start(backend).await;
    let replica = app.replica().await;
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let attempts = (0..24).map(|i| {
        let client = if i % 2 == 0 { &app.client } else { &replica };
        refresh_on(client, &r0)
    });
    let results = rocket::futures::future::join_all(attempts).await;
    let mut successors: Vec<&str> = results
        .iter()
        .map(|(status, json)| {
            assert_eq!(*status, Status::Ok, "{json}");
            str_of(json, "refresh_token")
        })
        .collect();
    successors.sort_unstable();
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "both processes hand out the same successor"
    );

    // Reuse detected on one process is seen by the other.
    app.clock().advance(30);
    clock_of(&replica).advance(30);
    for refused in [
        refresh_on(&replica, &r0).await,
        app.refresh(successors[0]).await,
    ] {
        assert_eq!(
            refusal(refused),
            (Status::BadRequest, "invalid_grant".into())
        );
    }
}

/// The grace window is measured on the database's clock: a retry that lands on a replica whose
/// own clock runs ahead of the rotating one's by more than the window is still a retry (it was
/// taken for reuse, and the session ended), and one behind gets no longer window.
async fn the_grace_window_is_the_databases_not_a_replicas(backend: Backend) {
    let app = TestApp::start(backend).await;
    let ahead = app.replica().await;
    let behind = app.replica().await;
    clock_of(&ahead).skew(20);
    clock_of(&behind).skew(-20);
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let (status, rotated) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{rotated}");
    let r1 = str_of(&rotated, "refresh_token");

    let (status, retry) = refresh_on(&ahead, &r0).await;
    assert_eq!(status, Status::Ok, "{retry}");
    assert_eq!(str_of(&retry, "refresh_token"), r1);

    // Past the window, on the replica whose own clock says it is 20 s earlier: reuse.
    for client in [&app.client, &ahead, &behind] {
        clock_of(client).advance(10);
    }
    assert_eq!(
        refusal(refresh_on(&behind, &r0).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    assert_eq!(
        refusal(app.refresh(r1).await),
        (Status::BadRequest, "invalid_grant".into()),
        "the session ended"
    );
}

/// A refresh refused because the session ended by this replica's clock does not spend the
/// token: on a replica whose clock is behind, the session is still live, and the token must not
/// look rotated with no successor (a reuse, which would end the session and raise an alarm).
async fn a_refused_refresh_does_not_spend_the_token(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.session_ttl_secs = 1000).await;
    let ahead = app.replica().await;
    clock_of(&ahead).skew(20);
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    for client in [&app.client, &ahead] {
        clock_of(client).advance(990);
    }
    // 1010 s by its clock: the session has ended there.
    assert_eq!(
        refusal(refresh_on(&ahead, &r0).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    // 990 s here: it has not, and the token was never spent.
    let (status, rotated) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{rotated}");
    let kinds = audit_kinds_of_alice(&app);
    assert!(!kinds.contains(&"refresh_reuse".to_owned()), "{kinds:?}");
}

async fn sessions_have_an_absolute_lifetime(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.session_ttl_secs = 1000).await;
    app.register("alice").await;
    let mut token = str_of(&app.login("alice").await, "refresh_token").to_owned();
    // Rotation every 300 s does not extend the session.
    for elapsed in [300, 600, 900] {
        app.clock().advance(300);
        let (status, json) = app.refresh(&token).await;
        assert_eq!(status, Status::Ok);
        // The access token never outlives the session (a second may tick during the test).
        let expires_in = json["expires_in"].as_i64().unwrap();
        let bound = (1000 - elapsed).min(900);
        assert!(
            (bound - 2..=bound).contains(&expires_in),
            "{expires_in} vs {bound}"
        );
        str_of(&json, "refresh_token").clone_into(&mut token);
    }
    app.clock().advance(101);
    let (status, json) = app.refresh(&token).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant")
    );
}

async fn garbage_refresh_tokens(backend: Backend) {
    let app = TestApp::start(backend).await;
    for token in ["", "nope", &"x".repeat(5000), "a.b.c"] {
        let (status, json) = app.refresh(token).await;
        assert_eq!(status, Status::BadRequest, "{token}");
        assert!(matches!(
            str_of(&json, "error"),
            "invalid_grant" | "invalid_request"
        ));
    }
}

/// RFC 6749 §6: a refresh may ask for fewer scopes than the session holds, never more; a
/// refusal spends no rotation, and the session keeps its scopes for the next refresh.
async fn a_refresh_may_narrow_its_scope_never_widen_it(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let first = app.login("alice").await;
    assert_eq!(str_of(&first, "scope"), "read write");
    let r0 = str_of(&first, "refresh_token").to_owned();
    let ask = |token: &str, scope: &str| {
        format!("grant_type=refresh_token&refresh_token={token}&scope={scope}")
    };
    for wider in ["admin", "read%20admin"] {
        let (status, json) = app
            .send("POST", "/v1/token", Some(&ask(&r0, wider)), None)
            .await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_scope"),
            "{wider}"
        );
    }
    // Empty means omitted (§3.1): the session's scopes.
    let (status, narrow) = app
        .send("POST", "/v1/token", Some(&ask(&r0, "write")), None)
        .await;
    assert_eq!(
        status,
        Status::Ok,
        "r0 was not spent by the refusals: {narrow}"
    );
    assert_eq!(str_of(&narrow, "scope"), "write");
    let (_, me) = app.me(str_of(&narrow, "access_token")).await;
    assert_eq!(str_of(&me, "scope"), "write");
    let (status, next) = app
        .send(
            "POST",
            "/v1/token",
            Some(&ask(str_of(&narrow, "refresh_token"), "")),
            None,
        )
        .await;
    assert_eq!(status, Status::Ok, "{next}");
    assert_eq!(str_of(&next, "scope"), "read write");
    // A rotated token with a scope it may not have still trips the reuse detection: a scope
    // does not let a thief probe the session without ending it.
    app.clock().advance(10);
    let (status, json) = app
        .send("POST", "/v1/token", Some(&ask(&r0, "admin")), None)
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant"),
        "{json}"
    );
    assert_eq!(
        app.refresh(str_of(&next, "refresh_token")).await.0,
        Status::BadRequest,
        "the session ended"
    );
}

/// A scope withdrawn from `user_scopes` leaves a session at its next refresh, not a week later
/// when it ends; asked for by name, it is refused before the rotation is spent. The session
/// keeps what the policy still grants, and an admin keeps `admin`.
async fn a_withdrawn_scope_leaves_sessions_at_their_next_refresh(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    app.admin_token().await;
    let alice = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let root = app
        .login_with("root-admin", "&scope=read%20write%20admin")
        .await;
    let root = str_of(&root, "refresh_token").to_owned();
    let app = app.restart(|c| c.user_scopes = "read".into()).await;

    let ask = |token: &str, scope: &str| {
        format!("grant_type=refresh_token&refresh_token={token}&scope={scope}")
    };
    let (status, json) = app
        .send("POST", "/v1/token", Some(&ask(&alice, "write")), None)
        .await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_scope"),
        "{json}"
    );
    let (status, json) = app.refresh(&alice).await;
    assert_eq!(status, Status::Ok, "the refusal spent no rotation: {json}");
    assert_eq!(str_of(&json, "scope"), "read");
    let (_, me) = app.me(str_of(&json, "access_token")).await;
    assert_eq!(str_of(&me, "scope"), "read");
    let (status, json) = app.refresh(&root).await;
    assert_eq!((status, str_of(&json, "scope")), (Status::Ok, "read admin"));
    // Introspection tells what the next refresh grants.
    let admin = str_of(&json, "access_token").to_owned();
    let body = format!(
        "token={}&token_type_hint=refresh_token",
        str_of(&json, "refresh_token")
    );
    let (_, json) = app
        .send("POST", "/v1/introspect", Some(&body), Some(&admin))
        .await;
    assert_eq!(str_of(&json, "scope"), "read admin", "{json}");
}

/// `refresh_grace_secs = 0` admits no retry, even within the same second.
async fn a_grace_of_zero_admits_no_retry(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.refresh_grace_secs = 0).await;
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    assert_eq!(app.refresh(&r0).await.0, Status::Ok);
    let (status, json) = app.refresh(&r0).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant")
    );
}

/// The nonce of a rotated token, as a dump of the database would show it.
fn nonce_of(app: &TestApp, refresh_token: &str) -> Option<String> {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::refresh_tokens;
    let hash = gatehouse_issuer::ids::hash_secret(refresh_token);
    app.store()
        .run_sync(move |c| {
            Ok(refresh_tokens::table
                .find(hash)
                .select(refresh_tokens::rotation_nonce)
                .first::<Option<String>>(c)?)
        })
        .unwrap()
}

/// The cleanup forgets a rotated token's nonce once its grace window is well past, so a dump
/// of the database and that old token no longer derive its successor; a retry within the
/// window keeps working, and one whose nonce is gone early (the cleanup of a replica whose
/// clock runs far ahead) is refused without ending the session.
async fn a_rotated_tokens_nonce_is_forgotten_after_its_grace(backend: Backend) {
    use gatehouse_issuer::maintenance::cleanup;
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let (status, json) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{json}");
    let r1 = str_of(&json, "refresh_token").to_owned();
    let now = app.clock().now();
    let nonce = nonce_of(&app, &r0).expect("a nonce held while a retry may come");
    assert_eq!(gatehouse_issuer::ids::successor_secret(&r0, &nonce), r1);

    // Within the window (and its margin) the cleanup keeps it, and a retry gets r1.
    let report = cleanup(app.store(), &app.config, now + 60).await.unwrap();
    assert_eq!(report.nonces, 0);
    let (status, retry) = app.refresh(&r0).await;
    assert_eq!(
        (status, str_of(&retry, "refresh_token")),
        (Status::Ok, r1.as_str())
    );

    // Two minutes on (the longest grace, and a minute for clocks), the nonce goes.
    let forgotten_at = now + gatehouse_issuer::maintenance::NONCE_KEPT_SECS + 1;
    let report = cleanup(app.store(), &app.config, forgotten_at)
        .await
        .unwrap();
    assert_eq!(report.nonces, 1);
    assert_eq!(nonce_of(&app, &r0), None);
    // A retry still within the window cannot be given r1: refused, and the session lives on.
    assert_eq!(
        refusal(app.refresh(&r0).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    let (status, json) = app.refresh(&r1).await;
    assert_eq!(status, Status::Ok, "the session was ended: {json}");
    let r2 = str_of(&json, "refresh_token").to_owned();

    // Past the window, the old token is reuse as ever.
    app.clock().advance(10);
    assert_eq!(
        refusal(app.refresh(&r0).await),
        (Status::BadRequest, "invalid_grant".into())
    );
    assert_eq!(
        refusal(app.refresh(&r2).await),
        (Status::BadRequest, "invalid_grant".into()),
        "reuse past the window ends the session"
    );
}

/// A refresh does not wait for revocations: it takes the revocations' write lock only when it
/// ends a session for reuse. (On SQLite every write waits for the one writer anyway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_refresh_does_not_queue_behind_a_revocation() {
    let app = TestApp::start(Backend::Postgres).await;
    app.register("alice").await;
    let refresh_token = str_of(&app.login("alice").await, "refresh_token").to_owned();
    let (status, json) = app
        .without_waiting_for_a_held_revocation(app.refresh(&refresh_token))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// PostgreSQL only: a rotation that does not take its token (a retry, a reuse) locks the token's
/// row before its session's, in the order a user's deletion takes them (the session's tokens,
/// then the session). Locking the session first, it held the session while it waited for the
/// token the deletion held, and the deletion, going on to the session, deadlocked with it
/// (PostgreSQL aborted one after `deadlock_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_retry_and_a_users_deletion_do_not_deadlock() {
    let name = format!("retry-deletion-{}", std::process::id());
    let app = start_watched(Backend::Postgres, &name).await;
    app.register("alice").await;
    let first = app.login("alice").await;
    let r0 = str_of(&first, "refresh_token").to_owned();
    let (status, json) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{json}");
    let verified = app
        .verifier()
        .await
        .verify(str_of(&first, "access_token"), app.clock().now());
    let sid = verified.unwrap().sid.clone();
    // A user's deletion's two steps by hand, on a connection the watch does not see.
    let url = app
        .config
        .database_url
        .replace(&format!("&application_name={name}"), "");
    let mut deletion = PgConnection::establish(&url).unwrap();
    let tokens = format!("BEGIN; DELETE FROM refresh_tokens WHERE session_id = '{sid}'");
    deletion.batch_execute(&tokens).unwrap();
    let ((status, json), ended) = tokio::join!(app.refresh(&r0), async {
        let never = "the retry never waited for the deletion";
        until_waiting(Backend::Postgres, &name, "transactionid", never).await;
        tokio::task::spawn_blocking(move || {
            let session = format!("UPDATE sessions SET revoked_at = 1 WHERE id = '{sid}'; COMMIT");
            deletion.batch_execute(&session).map_err(|e| e.to_string())
        })
        .await
        .unwrap()
    });
    assert_eq!(ended, Ok(()), "the deletion went on");
    assert_eq!(
        refusal((status, json)),
        (Status::BadRequest, "invalid_grant".into())
    );
}

crate::on_both_backends!(
    rotation_grace_and_reuse,
    concurrent_retries_share_one_successor,
    two_issuers_agree_on_one_successor,
    the_grace_window_is_the_databases_not_a_replicas,
    sessions_have_an_absolute_lifetime,
    a_refused_refresh_does_not_spend_the_token,
    garbage_refresh_tokens,
    a_refresh_may_narrow_its_scope_never_widen_it,
    a_withdrawn_scope_leaves_sessions_at_their_next_refresh,
    a_grace_of_zero_admits_no_retry,
    a_rotated_tokens_nonce_is_forgotten_after_its_grace,
);
