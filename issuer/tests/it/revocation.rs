//! Revocation (RFC 7009), logout, logout everywhere, durability and the signed snapshot.

use gatehouse_issuer::store::revocations;
use gatehouse_shared::{RevocationDelta, RevocationList, RevocationReason, SnapshotOptions};
use rocket::http::Status;

use crate::common::{Backend, TestApp, refusal, str_of};

async fn revoke_endpoint(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    app.register("mallory").await;
    let a = app.login("alice").await;
    let a_access = str_of(&a, "access_token");
    let a2 = app.login("alice").await;
    let m = app.login("mallory").await;
    let m_access = str_of(&m, "access_token");

    // Holding someone else's live token is enough to revoke it (RFC 7009 §2.1, a public
    // client): its holder could send it as its own bearer. Before, this answered 200 and
    // revoked nothing. With no bearer at all, as with one.
    let mallory = str_of(&app.me(m_access).await.1, "sub").to_owned();
    for (bearer, by) in [(Some(m_access), Some(mallory.as_str())), (None, None)] {
        let held = str_of(&app.login("alice").await, "access_token").to_owned();
        let body = format!("token={held}");
        let (status, _) = app.send("POST", "/v1/revoke", Some(&body), bearer).await;
        assert_eq!(status, Status::Ok);
        assert_eq!(
            refusal(app.me(&held).await),
            (Status::Unauthorized, "revoked".into()),
            "{bearer:?}"
        );
        // The audit names who acted when a bearer said so.
        let alice = app.verifier().await.verify(&held, app.clock().now() - 1);
        let alice = alice.map(|c| c.sub.clone()).unwrap();
        let events = app
            .store()
            .run_sync(move |c| gatehouse_issuer::store::audit::recent(c, &alice, 1))
            .unwrap();
        let (kind, detail) = (&events[0].kind, &events[0].detail);
        let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
        assert_eq!(
            (kind.as_str(), detail["by"].as_str()),
            ("token_revoked", by),
            "{detail}"
        );
    }

    // The owner revokes an access token (a wrong hint changes nothing): that token dies, the
    // session does not.
    let hinted = format!("token={a_access}&token_type_hint=refresh_token");
    let (app_ref, body, a2_access) = (&app, hinted.as_str(), str_of(&a2, "access_token"));
    let revoke_a_access = || async move {
        app_ref
            .send("POST", "/v1/revoke", Some(body), Some(a2_access))
            .await
            .0
    };
    assert_eq!(revoke_a_access().await, Status::Ok);
    let (status, json) = app.me(a_access).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked")
    );
    assert_eq!(app.me(str_of(&a2, "access_token")).await.0, Status::Ok);
    assert_eq!(app.refresh(str_of(&a, "refresh_token")).await.0, Status::Ok);

    // Revoking it again writes no entry (before, each call added one, took the revocation
    // write lock and was pushed to every edge).
    let seq = app.store().run_sync(revocations::high_water).unwrap();
    for _ in 0..2 {
        assert_eq!(revoke_a_access().await, Status::Ok);
    }
    assert_eq!(app.store().run_sync(revocations::high_water).unwrap(), seq);

    // Revoking a refresh token ends its session.
    let body = format!(
        r#"{{"token":"{}","token_type_hint":"refresh_token"}}"#,
        str_of(&a2, "refresh_token")
    );
    let (status, _) = app
        .send(
            "POST",
            "/v1/revoke",
            Some(&body),
            Some(str_of(&a2, "access_token")),
        )
        .await;
    assert_eq!(status, Status::Ok);
    app.assert_signed_out(&a2).await;

    // Garbage is fine; a missing or empty token is not (RFC 6749 §3.1: empty is omitted).
    let (status, _) = app
        .send("POST", "/v1/revoke", Some("token=garbage"), Some(m_access))
        .await;
    assert_eq!(status, Status::Ok);
    for body in ["x=1", "token="] {
        let (status, json) = app
            .send("POST", "/v1/revoke", Some(body), Some(m_access))
            .await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_request"),
            "{body}"
        );
    }
    let a3 = app.login("alice").await;
    // A refresh token needs nothing else (RFC 7009 §2.1, a public client): a client whose
    // access token has expired still ends its session.
    app.clock().advance(900 + 1);
    let body = format!("token={}", str_of(&a3, "refresh_token"));
    let expired = str_of(&a3, "access_token");
    for bearer in [Some(expired), None] {
        assert_eq!(
            app.send("POST", "/v1/revoke", Some(&body), bearer).await.0,
            Status::Ok
        );
    }
    assert_eq!(
        refusal(app.refresh(str_of(&a3, "refresh_token")).await),
        (Status::BadRequest, "invalid_grant".into())
    );
}

/// A refresh token revoked (RFC 7009) just after its session's end still gets its session an
/// entry: the session's last access token expires with it, and verifiers accept it for their
/// leeway past that. Before, the revocation found no live session and wrote nothing.
async fn a_session_revoked_just_past_its_end_gets_its_entry(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.session_ttl_secs = 3600).await;
    app.register("alice").await;
    let r0 = str_of(&app.login("alice").await, "refresh_token").to_owned();
    app.clock().advance(3500);
    let (status, last) = app.refresh(&r0).await;
    assert_eq!(status, Status::Ok, "{last}");
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let claims = verifier
        .verify(str_of(&last, "access_token"), app.clock().now())
        .unwrap();
    // The session ends 100 s later; its last token with it.
    app.clock().advance(110);
    let body = format!("token={}", str_of(&last, "refresh_token"));
    assert_eq!(
        app.send("POST", "/v1/revoke", Some(&body), None).await.0,
        Status::Ok
    );
    let list = app.snapshot(&keys, app.clock().now()).await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Session));
    // What an operator compares with an edge's health details (`seq`).
    assert!(list.seq() > 0);
    let seq = app
        .metric("gatehouse_revocation_list_seq{list=\"snapshot\"}")
        .await;
    assert_eq!(seq, list.seq());
}

async fn logout_and_logout_everywhere(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let s1 = app.login("alice").await;
    let s2 = app.login("alice").await;
    let s3 = app.login("alice").await;

    let (status, json) = app
        .send(
            "POST",
            "/v1/logout",
            None,
            Some(str_of(&s1, "access_token")),
        )
        .await;
    assert_eq!((status, str_of(&json, "revoked")), (Status::Ok, "session"));
    app.assert_signed_out(&s1).await;
    assert_eq!(
        app.me(str_of(&s2, "access_token")).await.0,
        Status::Ok,
        "other sessions live"
    );

    let (status, _) = app
        .send(
            "POST",
            "/v1/logout/all",
            None,
            Some(str_of(&s2, "access_token")),
        )
        .await;
    assert_eq!(status, Status::Ok);
    for s in [&s2, &s3] {
        app.assert_signed_out(s).await;
    }
    // A login after the cut-off works.
    app.clock().advance(1);
    let fresh = app.login("alice").await;
    assert_eq!(app.me(str_of(&fresh, "access_token")).await.0, Status::Ok);
}

async fn revocations_survive_a_restart(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let s = app.login("alice").await;
    let access = str_of(&s, "access_token").to_owned();
    let (status, _) = app.send("POST", "/v1/logout", None, Some(&access)).await;
    assert_eq!(status, Status::Ok);
    let app = app.restart(|_| {}).await;
    let (status, json) = app.me(&access).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked")
    );
}

/// A user cut-off names each session it ends: a token issued with a later clock than the
/// cut-off's own (a refresh on another replica, which does not take the user row) is refused
/// by its session's entry, where the `issued_before` cut-off alone would let it through.
async fn a_user_cut_off_names_each_session_it_ends(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    app.clock().advance(10);
    let s = app.login("alice").await;
    let access = str_of(&s, "access_token").to_owned();
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let claims = verifier.verify(&access, app.clock().now()).unwrap();
    // The cut-off's request read its clock 10 s before the token was issued.
    app.clock().advance(-10);
    let (status, _) = app
        .send("POST", "/v1/logout/all", None, Some(&access))
        .await;
    assert_eq!(status, Status::Ok);
    app.clock().advance(10);
    let list = app.snapshot(&keys, app.clock().now()).await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Session));
}

/// The bearer check's in-memory view: this replica's own revocations apply to the next request;
/// another replica's within `auth_cache_ms`; with 0, at once.
async fn another_replicas_revocation_applies_within_the_cache_bound(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth_cache_ms = 300).await;
    let replica = app.replica().await;
    app.register("alice").await;
    let tokens = app.login("alice").await;
    let access = str_of(&tokens, "access_token").to_owned();
    assert_eq!(
        crate::common::me_on(&replica, &access).await,
        Status::Ok,
        "the replica's view now holds alice"
    );
    let (status, _) = app.send("POST", "/v1/logout", None, Some(&access)).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        app.me(&access).await.0,
        Status::Unauthorized,
        "at once where it was revoked"
    );
    let revoked_at = std::time::Instant::now();
    while crate::common::me_on(&replica, &access).await == Status::Ok {
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_secs(2),
            "the replica never saw the logout"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let strict = TestApp::start_with(backend, |c| c.auth_cache_ms = 0).await;
    let strict_replica = strict.replica().await;
    strict.register("bob").await;
    let bob = strict.login("bob").await;
    let bob_access = str_of(&bob, "access_token");
    assert_eq!(
        crate::common::me_on(&strict_replica, bob_access).await,
        Status::Ok
    );
    strict
        .send("POST", "/v1/logout", None, Some(bob_access))
        .await;
    assert_eq!(
        crate::common::me_on(&strict_replica, bob_access).await,
        Status::Unauthorized,
        "auth_cache_ms = 0 asks the database every time"
    );
}

/// The fast path's feed: signed, its own type, the entries of the window only, and `from`
/// reaching back to the newest entry older than the window.
async fn the_delta_feed_carries_the_window_signed(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.delta_window_secs = 400).await;
    app.register("alice").await;
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let opts = SnapshotOptions::new("https://issuer.test");
    let delta = || async {
        let (status, body) = app.send("GET", "/v1/revocations/delta", None, None).await;
        assert_eq!(status, Status::Ok);
        let jws = body.as_str().unwrap().to_owned();
        let now = app.clock().now();
        assert_eq!(
            RevocationList::verify_snapshot(&jws, &keys, &opts, now)
                .unwrap_err()
                .code(),
            gatehouse_shared::ErrorCode::WrongType,
            "a delta never passes as a snapshot"
        );
        RevocationDelta::verify(&jws, &keys, &opts, now).unwrap()
    };
    let old = str_of(&app.login("alice").await, "access_token").to_owned();
    let old_claims = verifier.verify(&old, app.clock().now()).unwrap();
    app.send("POST", "/v1/logout", None, Some(&old)).await;
    let first = delta().await;
    assert_eq!(first.from_seq(), 0, "nothing older than the window yet");
    assert!(first.list().check(&old_claims).is_some());
    let old_seq = first.list().seq();

    // Past the window, a new revocation: the delta carries only it, from the old entry's seq.
    app.clock().advance(401);
    let new = str_of(&app.login("alice").await, "access_token").to_owned();
    let new_claims = verifier.verify(&new, app.clock().now()).unwrap();
    app.send("POST", "/v1/logout", None, Some(&new)).await;
    let second = delta().await;
    assert_eq!(second.from_seq(), old_seq);
    assert!(second.list().seq() > old_seq);
    assert!(second.list().check(&new_claims).is_some());
    assert!(
        second.list().check(&old_claims).is_none(),
        "outside the window"
    );
    assert_eq!(second.list().len(), 1);

    // A revocation that arrived before the window but waited past it (for a connection, the
    // write lock) is placed in the window by when it was written, not when it arrived: the
    // delta carries it. Stamped with its arrival, it counted as older than the window, and
    // `from` moved past it and every entry below it.
    let waited = str_of(&app.login("alice").await, "access_token").to_owned();
    let waited_claims = verifier.verify(&waited, app.clock().now()).unwrap();
    let arrived = app.clock().now();
    app.clock().advance(401);
    let revoker = app
        .client
        .rocket()
        .state::<gatehouse_issuer::revoker::Revoker>()
        .unwrap();
    let sid = waited_claims.sid.clone();
    assert!(
        revoker
            .run(arrived, move |r| r.session(&sid, "logout"))
            .await
            .unwrap()
    );
    let third = delta().await;
    assert!(third.list().check(&waited_claims).is_some(), "in the delta");
    assert!(third.from_seq() < third.list().seq());
}

/// Entries, audit rows and the revocations metric, as the revocation service leaves them.
pub(crate) fn tally(app: &TestApp) -> (i64, i64, u64) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::{audit_events, revocations};
    let (entries, audits) = app
        .store()
        .run_sync(|c| {
            let entries = revocations::table.count().get_result::<i64>(c)?;
            let audits = audit_events::table
                .filter(audit_events::kind.like("%_revoked"))
                .count()
                .get_result::<i64>(c)?;
            Ok((entries, audits))
        })
        .unwrap();
    let metrics = app
        .client
        .rocket()
        .state::<std::sync::Arc<gatehouse_issuer::metrics::Metrics>>()
        .unwrap();
    (entries, audits, metrics.revocations.get())
}

/// How many sessions of `uid` are live.
pub(crate) fn live_sessions(app: &TestApp, uid: &str) -> i64 {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::sessions;
    let uid = uid.to_owned();
    app.store()
        .run_sync(move |c| {
            Ok(sessions::table
                .filter(sessions::user_id.eq(&uid))
                .filter(sessions::revoked_at.is_null())
                .count()
                .get_result::<i64>(c)?)
        })
        .unwrap()
}

/// Every way a revocation happens goes through the one revocation service: each writes its
/// entries and one audit row in one transaction, and the metric counts the entries; one that
/// fails writes and counts nothing.
async fn every_revocation_path_goes_through_the_service(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.register("alice").await;
    let admin = app.admin_token().await;
    let mut expected = tally(&app);
    // A user-wide revocation also writes an entry per session it ends (`sessions`); a password
    // change writes only those (`own` false). A user's cut-off takes the place of the earlier
    // ones it covers (`replaced`): written and counted, one row fewer in the table each.
    let mut step = |what: &str, app: &TestApp, own: bool, sessions: i64, replaced: i64| {
        let entries = i64::from(own) + sessions;
        if entries > 0 {
            let counted = u64::try_from(entries).unwrap();
            expected = (
                expected.0 + entries - replaced,
                expected.1 + 1,
                expected.2 + counted,
            );
        }
        assert_eq!(tally(app), expected, "{what}");
    };
    let session = |json: &serde_json::Value| {
        (
            str_of(json, "access_token").to_owned(),
            str_of(json, "refresh_token").to_owned(),
        )
    };

    let (access, _) = session(&app.login("alice").await);
    assert_eq!(
        app.send("POST", "/v1/logout", None, Some(&access)).await.0,
        Status::Ok
    );
    step("logout", &app, true, 0, 0);

    let (access, _) = session(&app.login("alice").await);
    let body = format!("token={access}");
    assert_eq!(
        app.send("POST", "/v1/revoke", Some(&body), Some(&access))
            .await
            .0,
        Status::Ok
    );
    step("RFC 7009, access token", &app, true, 0, 0);

    let (access, refresh) = session(&app.login("alice").await);
    let body = format!("token={refresh}");
    assert_eq!(
        app.send("POST", "/v1/revoke", Some(&body), Some(&access))
            .await
            .0,
        Status::Ok
    );
    step("RFC 7009, refresh token", &app, true, 0, 0);

    let (_, refresh) = session(&app.login("alice").await);
    assert_eq!(app.refresh(&refresh).await.0, Status::Ok);
    app.clock().advance(10);
    assert_eq!(app.refresh(&refresh).await.0, Status::BadRequest);
    step("refresh token reuse", &app, true, 0, 0);

    let (access, _) = session(&app.login("alice").await);
    let sid = app.me(&access).await.1["sid"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/sessions/{sid}/revoke");
    assert_eq!(
        app.send("POST", &path, None, Some(&admin)).await.0,
        Status::Ok
    );
    step("admin: a session", &app, true, 0, 0);

    let live = live_sessions(&app, &alice);
    let path = format!("/v1/admin/users/{alice}/revoke");
    assert_eq!(
        app.send("POST", &path, None, Some(&admin)).await.0,
        Status::Ok
    );
    step("admin: a user", &app, true, live, 0);

    let path = "/v1/admin/users/no-such-user/revoke";
    assert_eq!(
        app.send("POST", path, None, Some(&admin)).await.0,
        Status::NotFound
    );
    step("admin: an unknown user writes nothing", &app, false, 0, 0);

    let live = live_sessions(&app, &alice);
    let path = format!("/v1/admin/users/{alice}/disable");
    assert_eq!(
        app.send("POST", &path, None, Some(&admin)).await.0,
        Status::Ok
    );
    step("admin: disable", &app, true, live, 1);

    let path = format!("/v1/admin/users/{alice}/enable");
    assert_eq!(
        app.send("POST", &path, None, Some(&admin)).await.0,
        Status::Ok
    );
    // Past the second of the cut-off, which covers every token issued in it.
    app.clock().advance(2);
    let (access, _) = session(&app.login("alice").await);
    session(&app.login("alice").await);
    let others = live_sessions(&app, &alice) - 1;
    assert_eq!(others, 1);
    let body = format!(
        r#"{{"current_password":"{}","new_password":"quiet-lantern-harbor-9"}}"#,
        crate::common::PASSWORD
    );
    assert_eq!(
        app.send("POST", "/v1/password", Some(&body), Some(&access))
            .await
            .0,
        Status::Ok
    );
    step("password change", &app, false, others, 0);

    let live = live_sessions(&app, &alice);
    assert_eq!(
        app.send("POST", "/v1/logout/all", None, Some(&access))
            .await
            .0,
        Status::Ok
    );
    step("logout everywhere", &app, true, live, 1);
}

/// RFC 7009 on a refresh token that was already rotated (by a thief, say) ends its session: the
/// rotated token still names it, and the chain the thief holds dies with it.
async fn revoking_a_rotated_refresh_token_ends_its_session(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let login = app.login("alice").await;
    let (stolen, access) = (
        str_of(&login, "refresh_token"),
        str_of(&login, "access_token"),
    );
    let (status, thief) = app.refresh(stolen).await;
    assert_eq!(status, Status::Ok);
    let body = format!("token={stolen}&token_type_hint=refresh_token");
    let (status, _) = app
        .send("POST", "/v1/revoke", Some(&body), Some(access))
        .await;
    assert_eq!(status, Status::Ok);
    let (status, json) = app.refresh(str_of(&thief, "refresh_token")).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::BadRequest, "invalid_grant")
    );
    assert_eq!(
        refusal(app.me(str_of(&thief, "access_token")).await),
        (Status::Unauthorized, "revoked".into())
    );
}

/// `/v1/revoke` needs no credential for a refresh token, so a token that names no session
/// must not take the revocations' write lock: anyone could queue behind it the revocations,
/// and the refreshes that end a session for reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_revoke_of_no_session_does_not_queue_behind_a_revocation() {
    let app = TestApp::start(Backend::Postgres).await;
    let (status, _) = app
        .without_waiting_for_a_held_revocation(app.send(
            "POST",
            "/v1/revoke",
            Some("token=no-such-token"),
            None,
        ))
        .await;
    assert_eq!(status, Status::Ok);
}

crate::on_both_backends!(
    a_session_revoked_just_past_its_end_gets_its_entry,
    revoking_a_rotated_refresh_token_ends_its_session,
    every_revocation_path_goes_through_the_service,
    the_delta_feed_carries_the_window_signed,
    another_replicas_revocation_applies_within_the_cache_bound,
    revoke_endpoint,
    logout_and_logout_everywhere,
    revocations_survive_a_restart,
    a_user_cut_off_names_each_session_it_ends,
);
