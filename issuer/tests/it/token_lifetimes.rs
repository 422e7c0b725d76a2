//! The token lifetimes revocation entries are kept for: each replica announces its own, a logout
//! covers the longest announced, and a long cleanup does not hold the announcement back.

use rocket::http::Status;

use crate::common::{Backend, TestApp, str_of};

/// A logout after `access_token_ttl_secs` was lowered still refuses the session's tokens issued
/// under the longer lifetime, until they expire. Before, the session's entry lived for the new
/// lifetime only (the restarted issuer's own), and such a token was accepted again once it had
/// gone: here from 961 s after the logout until 3,600 s after the login.
async fn a_lowered_token_lifetime_keeps_revocations_for_the_longest_token(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.access_token_ttl_secs = 3600).await;
    app.register("alice").await;
    let long = app.login("alice").await;
    let access = str_of(&long, "access_token").to_owned();
    let app = app.restart(|c| c.access_token_ttl_secs = 900).await;
    let (status, _) = app.send("POST", "/v1/logout", None, Some(&access)).await;
    assert_eq!(status, Status::Ok);
    app.clock().advance(1100);
    let (status, json) = app.me(&access).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked"),
        "{json}"
    );
    let verifier = app.verifier().await;
    let now = app.clock().now();
    let list = app.snapshot(verifier.keys(), now).await;
    let claims = verifier.verify(&access, now).unwrap();
    assert!(list.check(&claims).is_some(), "the edge's list too");
}

/// Every replica announces its token lifetime on every tick, over a row that exists after the
/// first: the announcement is an update, which never shortens what was announced. Before, it
/// tried an insert first, refused as a duplicate: an ERROR line in PostgreSQL's log each tick
/// on each replica, and inside a transaction an abort (the second call here failed).
async fn announcing_a_lifetime_again_updates_its_row(backend: Backend) {
    use gatehouse_issuer::store::{lifetimes, write_tx};

    let app = TestApp::start(backend).await;
    let now = app.clock().now();
    let ttl = 7_777;
    app.store()
        .run_sync(move |c| {
            write_tx(c, |c| {
                lifetimes::announce(c, ttl, now + 5_000)?;
                lifetimes::announce(c, ttl, now + 4_000)?;
                lifetimes::announce(c, ttl, now + 6_000)
            })
        })
        .unwrap();
    assert_eq!(announced_until(&app, ttl), now + 6_000);
    let longest = app
        .store()
        .run_sync(move |c| lifetimes::longest(c, now + 5_500, 0))
        .unwrap();
    assert_eq!(longest, ttl);
}

/// A cleanup with a backlog (thousands of expired entries, one per batch here) stops at half a
/// period and goes on at the next tick, so the lifetime announcement of every tick is not held
/// back. Before, a tick ran its cleanup to the end, and the ticks after it waited: past three
/// periods this replica's announcement lapsed while it issued tokens, and a revocation by a
/// replica with a shorter lifetime could end before those tokens did.
async fn a_long_cleanup_does_not_hold_the_lifetime_announcement_back(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::revocations;

    // Far more than a fast disk clears in the seconds this takes (one row per batch).
    const BACKLOG: i64 = 200_000;
    let app = TestApp::start_with(backend, |c| {
        c.cleanup_interval_secs = 1;
        c.cleanup_batch = 1;
    })
    .await;
    let now = app.clock().now();
    // One statement (both databases take a recursive WITH before an INSERT).
    let kind = gatehouse_shared::RevocationKind::Token.code();
    let insert = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BACKLOG}) \
         INSERT INTO revocations (kind, subject, issued_before, expires_at, created_at) \
         SELECT {kind}, 'expired-' || i, 0, {}, {} FROM n",
        now - 10,
        now - 2_000
    );
    app.store()
        .run_sync(move |c| diesel::sql_query(insert).execute(c).map_err(Into::into))
        .unwrap();
    let left = || {
        app.store()
            .run_sync(|c| {
                revocations::table
                    .count()
                    .get_result::<i64>(c)
                    .map_err(Into::into)
            })
            .unwrap()
    };
    // A bound against a hang, not a speed goal: the cleanup starts on the backlog.
    for _ in 0..100 {
        if left() < BACKLOG {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left() < BACKLOG, "the cleanup never started");
    let ttl = i64::from(app.config.access_token_ttl_secs);
    let announced = || announced_until(&app, ttl);
    // The clock moves on; a tick announces from it within a period or two.
    app.clock().advance(600);
    let mut renewed = false;
    for _ in 0..50 {
        if announced() >= now + 600 + ttl {
            renewed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let remaining = left();
    assert!(
        remaining > 1,
        "the backlog was gone before the announcement was checked: {remaining} left"
    );
    assert!(
        renewed,
        "no announcement from the moved clock while the cleanup ran: until {}, {remaining} rows left",
        announced() - now
    );
}

/// Until when this lifetime is announced (`store::lifetimes`).
fn announced_until(app: &TestApp, ttl: i64) -> i64 {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::token_lifetimes;
    app.store()
        .run_sync(move |c| {
            token_lifetimes::table
                .find(ttl)
                .select(token_lifetimes::announced_until)
                .first::<i64>(c)
                .map_err(Into::into)
        })
        .unwrap()
}

crate::on_both_backends!(
    a_lowered_token_lifetime_keeps_revocations_for_the_longest_token,
    announcing_a_lifetime_again_updates_its_row,
    a_long_cleanup_does_not_hold_the_lifetime_announcement_back,
);
