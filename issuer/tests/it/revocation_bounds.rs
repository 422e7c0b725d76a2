//! How long revocations last and which tokens need one: entries against every verifier's
//! leeway and clock, and the SQL rule against the shared one. The lifetimes they are kept for:
//! `token_lifetimes.rs`.

use gatehouse_issuer::store::users;
use gatehouse_shared::{RevocationReason, SnapshotOptions, Verifier, VerifierOptions};
use rocket::http::Status;

use crate::common::{Backend, TestApp, str_of};
use crate::held::{HeldRevocation, start_watched, until_waiting};
use crate::revocation::{live_sessions, tally};

async fn the_snapshot_carries_live_revocations(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let s = app.login("alice").await;
    let access = str_of(&s, "access_token").to_owned();
    let verifier = app.verifier().await;
    let keys = verifier.keys().clone();
    let now = app.clock().now();
    let claims = verifier.verify(&access, now).unwrap();

    let fetch = || app.snapshot(&keys, app.clock().now());
    let before = fetch().await;
    assert!(before.check(&claims).is_none());
    app.send("POST", "/v1/logout", None, Some(&access)).await;
    let after = fetch().await;
    assert!(after.seq() > before.seq());
    assert_eq!(after.check(&claims), Some(RevocationReason::Session));

    // Once every token it could affect has expired at any verifier (the longest leeway one may
    // use, on a clock up to the list's 30 s behind), the entry leaves the snapshot, but the
    // sequence never goes back.
    let lifetime = 900
        + i64::from(VerifierOptions::MAX_LEEWAY_SECS)
        + i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS)
        + 1;
    // (The snapshot is rebuilt when its cached copy is 15 s old.)
    app.clock().advance(lifetime - 20);
    assert!(
        !fetch().await.is_empty(),
        "kept while a verifier may accept the token"
    );
    app.clock().advance(22);
    let later = fetch().await;
    assert!(later.is_empty());
    assert_eq!(later.seq(), after.seq());
}

/// The issuer's SQL and its bearer check's in-memory view hold to the shared revocation rule:
/// the same random sets, written as rows, answer random claims as `entry_revokes` does.
async fn sql_and_the_bearer_view_follow_the_shared_rule(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::auth_cache::{AuthCache, Standing};
    use gatehouse_issuer::db::schema::revocations;
    use gatehouse_shared::entry_revokes;
    use gatehouse_shared::revocation::testing::{Rng, random_claims, random_entries};

    let app = TestApp::start(backend).await;
    let now = app.clock().now();
    let mut rng = Rng::new(0x0073_716c);
    for round in 0..200 {
        let entries = random_entries(&mut rng, now);
        let rows = entries.clone();
        app.store()
            .run_sync(move |c| {
                diesel::delete(revocations::table).execute(c)?;
                for (kind, subject, issued_before, expires_at) in &rows {
                    diesel::insert_into(revocations::table)
                        .values((
                            revocations::kind.eq(kind.code()),
                            revocations::subject.eq(subject.as_str()),
                            revocations::issued_before.eq(issued_before),
                            revocations::expires_at.eq(expires_at),
                            revocations::created_at.eq(now),
                        ))
                        .execute(c)?;
                }
                Ok(())
            })
            .unwrap();
        let view = AuthCache::new(60_000);
        for _ in 0..8 {
            let claims = random_claims(&mut rng, now);
            let by_rule = entries
                .iter()
                .any(|e| entry_revokes(e.0, &e.1, e.2, e.3, &claims, now));
            let asked = claims.clone();
            let by_sql = app
                .store()
                .run_sync(|c| gatehouse_issuer::store::revocations::is_revoked(c, &asked, now))
                .unwrap();
            let by_view = matches!(
                view.standing(app.store(), &claims, now).await.unwrap(),
                Standing::Revoked
            );
            assert_eq!(
                (by_sql, by_view),
                (by_rule, by_rule),
                "round {round}: {entries:?} {claims:?}"
            );
        }
    }
}

/// A revocation writes an entry for any token some verifier may still accept (a leeway up to
/// the 60 s maximum), not only for one the issuer's own, shorter leeway still takes: the edge
/// would honour the token the issuer skipped.
async fn revoke_covers_what_the_most_lenient_verifier_accepts(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.leeway_secs = 30).await;
    app.register("alice").await;
    let old = str_of(&app.login("alice").await, "access_token").to_owned();
    // 75 s past `exp`: a verifier with the largest leeway (60 s) whose clock is 30 s behind
    // this one (as far as a list it takes may be ahead) still accepts the token. Before,
    // entries were written only within 60 s of `exp`.
    app.clock().advance(900 + 75);
    let fresh = app.login("alice").await;
    let body = format!("token={old}");
    let bearer = Some(str_of(&fresh, "access_token"));
    let (status, _) = app.send("POST", "/v1/revoke", Some(&body), bearer).await;
    assert_eq!(status, Status::Ok);
    let keys = app.verifier().await.keys().clone();
    let lenient = VerifierOptions {
        leeway_secs: VerifierOptions::MAX_LEEWAY_SECS,
        ..VerifierOptions::new("https://issuer.test", "https://api.test")
    };
    let now = app.clock().now() - i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS);
    let claims = Verifier::new(keys.clone(), lenient)
        .verify(&old, now)
        .unwrap();
    let list = app.snapshot(&keys, now).await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Token));
}

/// RFC 7009 §2.2: a token that needs no entry gets 200 with or without a bearer token: a
/// JWT-shaped string that is no token, and a token already revoked (a client that revoked its
/// own token and lost the answer retries with that token as its bearer).
async fn revoking_what_needs_no_entry_needs_no_bearer(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let s = app.login("alice").await;
    let access = str_of(&s, "access_token");
    let body = format!("token={access}");
    for attempt in ["first", "retry"] {
        let (status, json) = app
            .send("POST", "/v1/revoke", Some(&body), Some(access))
            .await;
        assert_eq!(status, Status::Ok, "{attempt}: {json}");
    }
    assert_eq!(app.me(access).await.0, Status::Unauthorized);
    for bearer in [Some(access), None] {
        let (status, json) = app
            .send("POST", "/v1/revoke", Some("token=a.b.c"), bearer)
            .await;
        assert_eq!(status, Status::Ok, "{bearer:?}: {json}");
    }
}

/// Ending every session writes an entry for each session that may still have a valid access
/// token, and none for one that expired longer ago than any token lives: those stay in the
/// table a day past expiry, and one request would otherwise add an entry for each.
async fn ending_every_session_skips_sessions_long_expired(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.session_ttl_secs = 3600).await;
    let uid = app.register("alice").await;
    for _ in 0..3 {
        app.login("alice").await;
    }
    app.clock().advance(1000);
    app.login("alice").await;
    // The first three are past their expiry, the longest token lifetime and the entries'
    // margin; the fourth expired 30 s ago, and an edge with a 60 s leeway still takes its
    // last token.
    app.clock().advance(3600 + 30);
    let recent = app.login("alice").await;
    assert_eq!(
        live_sessions(&app, &uid),
        5,
        "expired sessions are not ended yet"
    );
    let (entries, _, _) = tally(&app);
    let bearer = Some(str_of(&recent, "access_token"));
    let (status, _) = app.send("POST", "/v1/logout/all", None, bearer).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(live_sessions(&app, &uid), 0);
    // The recent and the just-expired sessions' entries, and the user's cut-off.
    assert_eq!(tally(&app).0 - entries, 3);
}

/// A session's entry outlives every token the session signed, counted from when the revocation
/// is written, not from when its request came in: a refresh that rotated while the logout
/// waited (for a connection, the write-order lock, argon2) signed with a later `now`. Before,
/// the entry lasted from the request's `now`, and here left the list about two minutes before
/// a verifier with the largest leeway, on a clock 30 s behind, stopped taking the token.
async fn a_revocation_that_waited_covers_a_token_refreshed_meanwhile(backend: Backend) {
    use gatehouse_issuer::revoker::Revoker;
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let session = app.login("alice").await;
    let arrived = app.clock().now();
    app.clock().advance(120);
    let (status, refreshed) = app.refresh(str_of(&session, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{refreshed}");
    let late = str_of(&refreshed, "access_token").to_owned();
    let sid = app
        .verifier()
        .await
        .verify(&late, app.clock().now())
        .unwrap()
        .sid
        .clone();
    let revoker = app.client.rocket().state::<Revoker>().unwrap();
    let ended = revoker
        .run(arrived, move |r| r.session(&sid, "logout"))
        .await
        .unwrap();
    assert!(ended, "the session was live");

    // The last second a verifier with the largest leeway, 30 s behind the list, takes it.
    let keys = app.verifier().await.keys().clone();
    let lenient = Verifier::new(
        keys.clone(),
        VerifierOptions {
            leeway_secs: VerifierOptions::MAX_LEEWAY_SECS,
            ..VerifierOptions::new("https://issuer.test", "https://api.test")
        },
    );
    let behind = i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS);
    let exp = lenient.verify(&late, app.clock().now()).unwrap().exp;
    let last = exp + i64::from(VerifierOptions::MAX_LEEWAY_SECS) - 1;
    // A second short of the most the list may be ahead: a second that passes before the list
    // is signed would otherwise put it beyond.
    app.clock().advance(last + behind - 1 - app.clock().now());
    let claims = lenient.verify(&late, last).expect("still accepted there");
    let list = app.snapshot(&keys, last).await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Session));
}

/// A token not valid yet on the clock the revocation check assumes (30 s behind, the longest
/// leeway), as one signed by a replica whose clock runs ahead is, still gets an entry: a
/// verifier whose clock is ahead takes it now, and every one later. Before, the check that
/// finds tokens needing no entry took "not valid yet" for one, and the revocation answered 200
/// with nothing written, for the token's whole life.
async fn a_token_not_valid_yet_is_revoked_all_the_same(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let bearer = str_of(&app.login("alice").await, "access_token").to_owned();
    // Replicas 20 s fast and 25 s slow: the fast one signs, the slow one revokes.
    app.clock().advance(45);
    let ahead = str_of(&app.login("alice").await, "access_token").to_owned();
    app.clock().advance(-45);
    let body = format!("token={ahead}");
    let (status, json) = app
        .send("POST", "/v1/revoke", Some(&body), Some(&bearer))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    let verifier = app.verifier().await;
    let claims = verifier.verify(&ahead, app.clock().now() + 45).unwrap();
    let list = app.snapshot(verifier.keys(), app.clock().now()).await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Token));
}

/// A refresh that comes while a revocation of its session is written but not committed waits
/// for the commit, and is refused. Before, on PostgreSQL, it read the session live and signed a
/// token after the revocation's entry had begun counting (SQLite's write lock already made it
/// wait there). The same for a revocation of every session of the user and for the user's
/// disabling, which end the session too: the rotation reads its user's state and cut-off in the
/// statement that waited, from before the wait, and the session as it committed.
async fn a_refresh_during_a_revocation_waits_for_it_and_is_refused(backend: Backend) {
    let name = format!("refresh-waits-{}", std::process::id());
    let app = start_watched(backend, &name).await;
    let uid = app.register("alice").await;
    for revocation in ["session", "user", "disable"] {
        let session = app.login("alice").await;
        let refresh = str_of(&session, "refresh_token").to_owned();
        let now = app.clock().now();
        let verified = app
            .verifier()
            .await
            .verify(str_of(&session, "access_token"), now);
        let sid = verified.unwrap().sid.clone();
        let user = uid.clone();
        let revoking = HeldRevocation::start(&app, now, move |r| match revocation {
            "session" => r.session(&sid, "logout").map(drop),
            "user" => r.user(&user, "logout_all"),
            _ => users::set_standing(r, &user, true, ("via", "cli")).map(drop),
        });
        let ((status, json), ()) = tokio::join!(app.refresh(&refresh), async {
            let never = "the refresh never waited for the revocation's commit";
            until_waiting(backend, &name, "transactionid", never).await;
            revoking.commit();
        });
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_grant"),
            "{revocation}: {json}"
        );
        if revocation == "disable" {
            continue;
        }
        // The next second, so that the next login is not under the cut-off.
        app.clock().advance(1);
    }
}

/// One user's revoked access tokens keep at most `MAX_TOKEN_ENTRIES_PER_USER` token entries and
/// one cut-off live: past the bound each revocation replaces the user's cut-off. Without it a
/// user minting and revoking tokens grew the list, and the delta every location polls, by one
/// entry per token until edges refused it as too large. Every token revoked stays refused, and
/// the session goes on with tokens issued after the cut-off.
async fn one_users_revoked_tokens_keep_a_bounded_number_of_entries(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::{audit_events, revocations};
    use gatehouse_issuer::revoker::MAX_TOKEN_ENTRIES_PER_USER;

    let app = TestApp::start(backend).await;
    app.register("alice").await;
    app.register("bob").await;
    let bob = str_of(&app.login("bob").await, "access_token").to_owned();
    let mut session = app.login("alice").await;
    let total = MAX_TOKEN_ENTRIES_PER_USER + 8;
    let mut revoked = Vec::new();
    for i in 0..total {
        // The last cut-off at the start of a wall-clock second, so that the refresh below falls
        // in its second: the clock is the real one moved on, and the checks in between took
        // long enough to cross into the next second now and then.
        if i == total - 1 {
            let into_second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis();
            let to_next = u64::from(1000 - into_second);
            tokio::time::sleep(std::time::Duration::from_millis(to_next + 20)).await;
        }
        // A second apart, so each token has an `iat` of its own.
        app.clock().advance(1);
        let (status, next) = app.refresh(str_of(&session, "refresh_token")).await;
        assert_eq!(status, Status::Ok, "{next}");
        session = next;
        let access = str_of(&session, "access_token").to_owned();
        let body = format!("token={access}");
        let (status, json) = app.send("POST", "/v1/revoke", Some(&body), None).await;
        assert_eq!(status, Status::Ok, "{json}");
        revoked.push(access);
    }
    // In the second of the cut-off, a token issued then would be refused at once: the refresh
    // is issued at the cut-off's end. Before, it was answered 503 (and earlier still, with a
    // token the cut-off already refused).
    let (status, json) = app.refresh(str_of(&session, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{json}");
    session = json;
    let (tokens, cut_offs, audited) = app
        .store()
        .run_sync(|c| {
            let count = |kind: gatehouse_shared::RevocationKind| {
                revocations::table
                    .filter(revocations::kind.eq(kind.code()))
                    .count()
            };
            let tokens = count(gatehouse_shared::RevocationKind::Token).get_result::<i64>(c)?;
            let cut_offs = count(gatehouse_shared::RevocationKind::User).get_result::<i64>(c)?;
            let audited = audit_events::table
                .filter(audit_events::kind.eq("token_revoked"))
                .count()
                .get_result::<i64>(c)?;
            Ok((tokens, cut_offs, audited))
        })
        .unwrap();
    assert_eq!((tokens, cut_offs), (MAX_TOKEN_ENTRIES_PER_USER, 1));
    assert_eq!(audited, total, "every revocation is audited");
    for (n, access) in revoked.iter().enumerate() {
        assert_eq!(
            app.me(access).await.0,
            Status::Unauthorized,
            "revoked token {n}"
        );
    }
    // The snapshot edges take refuses them too.
    let verifier = app.verifier().await;
    let snapshot = app.snapshot(verifier.keys(), app.clock().now()).await;
    for access in [&revoked[0], &revoked[revoked.len() - 1]] {
        let claims = verifier.verify(access, app.clock().now()).unwrap();
        assert!(
            snapshot.check(&claims).is_some(),
            "the snapshot refuses {}",
            claims.jti
        );
    }
    // The session goes on: the token issued past the cut-off is accepted, and so is another
    // user's, and so is the next refresh's.
    let last = verifier
        .verify(&revoked[revoked.len() - 1], app.clock().now())
        .unwrap();
    let after = str_of(&session, "access_token");
    let claims = verifier.verify(after, app.clock().now()).unwrap();
    assert_eq!(claims.iat, last.iat + 1, "issued at the cut-off's end");
    assert_eq!(snapshot.check(&claims), None);
    assert_eq!(app.me(after).await.0, Status::Ok);
    assert_eq!(app.me(&bob).await.0, Status::Ok);
    let (status, next) = app.refresh(str_of(&session, "refresh_token")).await;
    assert_eq!(status, Status::Ok, "{next}");
    assert_eq!(app.me(str_of(&next, "access_token")).await.0, Status::Ok);
}

/// "Log out everywhere" again and again keeps one cut-off per user: each takes the place of the
/// earlier ones it covers, as past the token bound. Before, each call left a cut-off of its own
/// for the longest token lifetime (about 991 s), beyond the one per user SECURITY.md states. A
/// cut-off that outlives the new one (written under a longer lifetime) stays, and so does
/// another user's.
async fn repeated_logouts_everywhere_keep_one_cut_off_per_user(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::revocations;

    let app = TestApp::start(backend).await;
    let alice_id = app.register("alice").await;
    let bob_id = app.register("bob").await;
    let bob = str_of(&app.login("bob").await, "access_token").to_owned();
    let (status, _) = app.send("POST", "/v1/logout/all", None, Some(&bob)).await;
    assert_eq!(status, Status::Ok);
    // Alice's cut-off from before a lifetime was lowered: it lasts beyond any written now.
    let user_kind = gatehouse_shared::RevocationKind::User.code();
    let now = app.clock().now();
    let outlasting = (now - 100, now + 100_000);
    let planted = alice_id.clone();
    app.store()
        .run_sync(move |c| {
            diesel::insert_into(revocations::table)
                .values((
                    revocations::kind.eq(user_kind),
                    revocations::subject.eq(planted),
                    revocations::issued_before.eq(outlasting.0),
                    revocations::expires_at.eq(outlasting.1),
                    revocations::created_at.eq(now),
                ))
                .execute(c)
                .map_err(Into::into)
        })
        .unwrap();
    let mut logged_out = Vec::new();
    let mut last_asked = 0;
    for _ in 0..3 {
        // Out of the last cut-off's second, where a login is answered 503.
        app.clock().advance(2);
        let access = str_of(&app.login("alice").await, "access_token").to_owned();
        last_asked = app.clock().now();
        let (status, json) = app
            .send("POST", "/v1/logout/all", None, Some(&access))
            .await;
        assert_eq!(status, Status::Ok, "{json}");
        logged_out.push(access);
    }
    let cut_offs = |user: &str| {
        let user = user.to_owned();
        app.store()
            .run_sync(move |c| {
                revocations::table
                    .filter(revocations::kind.eq(user_kind))
                    .filter(revocations::subject.eq(&user))
                    .select((revocations::issued_before, revocations::expires_at))
                    .order(revocations::issued_before)
                    .load::<(i64, i64)>(c)
                    .map_err(Into::into)
            })
            .unwrap()
    };
    let alices = cut_offs(&alice_id);
    assert_eq!(alices.len(), 2, "{alices:?}");
    assert_eq!(
        alices[0], outlasting,
        "the cut-off that outlasts the new one stays"
    );
    // The one left is the last logout's: it covers every token issued up to it.
    let last = last_asked + 1..=app.clock().now() + 1;
    assert!(
        last.contains(&alices[1].0),
        "{alices:?}, the last in {last:?}"
    );
    assert_eq!(cut_offs(&bob_id).len(), 1);
    for (n, access) in logged_out.iter().chain([&bob]).enumerate() {
        let (status, json) = app.me(access).await;
        assert_eq!(
            (status, str_of(&json, "code")),
            (Status::Unauthorized, "revoked"),
            "token {n}"
        );
    }
}

/// A command run from a shell whose clock is behind the database's (`users disable`, `keys
/// revoke`: `Revoker::run_sync`) dates its entries by the database's clock: the user's cut-off
/// covers the tokens issued up to the command, for as long as they may verify. Before, an hour
/// behind, the cut-off covered none of them.
async fn a_command_whose_clock_runs_behind_dates_its_entries_by_the_databases(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::revocations;

    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let verifier = app.verifier().await;
    let claims = verifier.verify(&access, app.clock().now()).unwrap();
    let behind = app.clock().now() - 3600;
    gatehouse_issuer::revoker::Revoker::for_command(app.store().clone(), app.config.clone())
        .run_sync(behind, |r| r.user(&uid, "disabled"))
        .unwrap();
    let (issued_before, expires_at) = app
        .store()
        .run_sync(move |c| {
            Ok(revocations::table
                .filter(revocations::subject.eq(uid))
                .select((revocations::issued_before, revocations::expires_at))
                .first::<(i64, i64)>(c)?)
        })
        .unwrap();
    assert!(
        issued_before > claims.iat,
        "the cut-off ({issued_before}) misses a token issued at {}",
        claims.iat
    );
    assert!(expires_at >= gatehouse_shared::entry_expiry(claims.exp));
}

crate::on_both_backends!(
    a_command_whose_clock_runs_behind_dates_its_entries_by_the_databases,
    repeated_logouts_everywhere_keep_one_cut_off_per_user,
    the_snapshot_carries_live_revocations,
    sql_and_the_bearer_view_follow_the_shared_rule,
    revoke_covers_what_the_most_lenient_verifier_accepts,
    revoking_what_needs_no_entry_needs_no_bearer,
    ending_every_session_skips_sessions_long_expired,
    a_revocation_that_waited_covers_a_token_refreshed_meanwhile,
    a_token_not_valid_yet_is_revoked_all_the_same,
    a_refresh_during_a_revocation_waits_for_it_and_is_refused,
    one_users_revoked_tokens_keep_a_bounded_number_of_entries,
);
