//! Account lockout under parallel attempts, and the per-IP rate limit (per client and per
//! account: `lockout_clients`).

use rocket::http::{Header, Status};

use gatehouse_issuer::maintenance;

use crate::common::{Backend, PASSWORD, TestApp, decode, header, str_of};

pub const WRONG: &str = "grant_type=password&username=alice&password=wrong-password";

async fn lockout_holds_under_parallel_attempts(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let attempts = (0..20).map(|_| app.send("POST", "/v1/token", Some(WRONG), None));
    let results = rocket::futures::future::join_all(attempts).await;
    let checked = results
        .iter()
        .filter(|(_, json)| str_of(json, "error_description") == "invalid username or password")
        .count();
    assert_eq!(
        checked, 3,
        "exactly the threshold of passwords were checked: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(status, _)| *status == Status::BadRequest)
    );

    // Locked now, even with the right password, and the answer says when to come back.
    let good = format!("grant_type=password&username=alice&password={PASSWORD}");
    let (status, json, headers) = app.send_full("POST", "/v1/token", Some(&good), None).await;
    assert_eq!(
        (status, str_of(&json, "error"), str_of(&json, "code")),
        (Status::BadRequest, "invalid_grant", "locked_out"),
        "a lock has a code of its own beside RFC 6749's error"
    );
    let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // After the backoff the right password works and resets the count.
    app.clock().advance(61);
    let (status, _) = app.send("POST", "/v1/token", Some(&good), None).await;
    assert_eq!(status, Status::Ok);
}

async fn backoff_grows_with_each_lock(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let mut waits = Vec::new();
    for _ in 0..2 {
        for _ in 0..3 {
            app.send("POST", "/v1/token", Some(WRONG), None).await;
        }
        let (_, _, headers) = app.send_full("POST", "/v1/token", Some(WRONG), None).await;
        let wait: i64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        waits.push(wait);
        app.clock().advance(wait + 1);
    }
    // The lock starts at the failing request; a second may tick before the next one asks.
    assert!(
        (58..=60).contains(&waits[0]) && (118..=120).contains(&waits[1]),
        "{waits:?}"
    );
}

/// Cleanup keeps a row's lock history until `max_backoff_secs` after its last lock: before, the
/// row went once the lock and window were over, and the next lock was the shortest again.
async fn cleanup_keeps_the_backoff_history(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let mut waits = Vec::new();
    for _ in 0..2 {
        for _ in 0..3 {
            app.send("POST", "/v1/token", Some(WRONG), None).await;
        }
        let (_, _, headers) = app.send_full("POST", "/v1/token", Some(WRONG), None).await;
        let wait: i64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        waits.push(wait);
        // Past the lock, the counting window (900 s) and the 300 s cleanup leaves a window's
        // checks still under way, then a cleanup run.
        app.clock().advance(wait + 900 + 301);
        maintenance::cleanup(app.store(), &app.config, app.clock().now())
            .await
            .unwrap();
    }
    assert!(
        (118..=120).contains(&waits[1]),
        "the second lock doubled: {waits:?}"
    );
    // Once `max_backoff_secs` (3600 s) have passed since the last lock, the history may go
    // (the client's: the account's row, never locked, went at each cleanup above).
    app.clock().advance(3600);
    let report = maintenance::cleanup(app.store(), &app.config, app.clock().now())
        .await
        .unwrap();
    assert_eq!(report.lockouts, 1);
}

async fn rate_limit_per_client_ip(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.token_rate_per_minute = 2).await;
    let send = |ip: &'static str| {
        app.client
            .post("/v1/token")
            .header(rocket::http::ContentType::Form)
            .header(Header::new("X-Real-IP", "9.9.9.9"))
            .remote(ip.parse().unwrap())
            .body(WRONG)
            .dispatch()
    };
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(
            decode(send("10.0.0.1:1000").await).await.0,
            Status::BadRequest
        );
    }
    let (status, json, headers) = decode(send("10.0.0.1:1000").await).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::TooManyRequests, "rate_limited")
    );
    // Two a minute: the next is allowed 30 s after the first, which came after `started`. A
    // client that waits `Retry-After` must not be refused again: it was rounded down before
    // (29 for a wait of 29.8 s).
    let retry_after: f64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    let least_wait = 30.0 - started.elapsed().as_secs_f64();
    assert!(
        retry_after >= least_wait,
        "Retry-After {retry_after} s, the wait at least {least_wait:.2} s"
    );
    // Another client is unaffected; a spoofed X-Real-IP header is not trusted by default.
    assert_eq!(
        decode(send("10.0.0.2:1000").await).await.0,
        Status::BadRequest
    );
}

/// Failed password checks have a budget of their own per client IP: a spray of one password
/// over many accounts stays under each account's lockout, and was limited only by the request
/// budget (120 a minute). Past it the client is refused before any check, the right password
/// too; a correct login spends nothing, and other clients are unaffected.
async fn failed_logins_have_a_budget_per_client_ip(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.failed_logins_per_minute = 2).await;
    app.register("alice").await;
    let login = |ip: &'static str, body: String| grant_from(&app.client, ip, body);
    let right = format!("grant_type=password&username=alice&password={PASSWORD}");
    for _ in 0..3 {
        let (status, json, _) = login("10.0.0.1:1000", right.clone()).await;
        assert_eq!(status, Status::Ok, "a correct login spends nothing: {json}");
    }
    let started = std::time::Instant::now();
    for user in ["alice", "nobody"] {
        let wrong = format!("grant_type=password&username={user}&password=wrong-password");
        let (status, json, _) = login("10.0.0.1:1000", wrong).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_grant")
        );
    }
    let (status, json, headers) = login("10.0.0.1:1000", right.clone()).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::TooManyRequests, "rate_limited"),
        "the right password, past the budget"
    );
    // Two a minute: the first failure is paid off 30 s after it came.
    let retry_after: f64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    let least_wait = 30.0 - started.elapsed().as_secs_f64();
    assert!(
        (least_wait..=30.0).contains(&retry_after),
        "Retry-After {retry_after} s, the wait at least {least_wait:.2} s"
    );
    let (status, _, _) = login("10.0.0.2:1000", right).await;
    assert_eq!(status, Status::Ok, "another client");

    // Wrong passwords at once: charged before their checks, so no more than the budget are
    // checked (before, every one passed the budget before any had failed).
    let wrong = |i: usize| format!("grant_type=password&username=user{i}&password=wrong-password");
    let attempts = (0..8).map(|i| login("10.0.0.3:1000", wrong(i)));
    let mut checked = 0;
    for (status, json, _) in rocket::futures::future::join_all(attempts).await {
        match (status, str_of(&json, "error")) {
            (Status::BadRequest, "invalid_grant") => checked += 1,
            (Status::TooManyRequests, "rate_limited") => {}
            other => panic!("{other:?}: {json}"),
        }
    }
    assert_eq!(checked, 2, "checked in parallel, over a budget of 2");
}

/// A user's first logins racing each other (no lockout row yet) are all granted: one creates the
/// row, the others must not read it as a refusal. Seen as a stray "try again" under load.
async fn parallel_first_logins_are_not_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    for i in 0..8 {
        let name = format!("fresh{i}");
        app.register(&name).await;
        let good = format!("grant_type=password&username={name}&password={PASSWORD}");
        let logins = (0..3).map(|_| app.send("POST", "/v1/token", Some(&good), None));
        for (status, json) in rocket::futures::future::join_all(logins).await {
            assert_eq!(status, Status::Ok, "{json}");
        }
    }
}

/// Attempts refused because other checks are still under way, not because the account is
/// locked, say to come back in a second, not at the end of the window (900 s).
async fn a_refusal_for_checks_under_way_says_one_second(backend: Backend) {
    use gatehouse_issuer::store::lockout::{Reservation, reserve};
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let cfg = app.config.lockout;
    let now = app.clock().now();
    let refused = app
        .store()
        .run_sync(move |c| {
            let uid = gatehouse_issuer::store::users::by_username(c, "alice")?
                .unwrap()
                .id;
            // The threshold's worth of checks, none finished yet.
            for _ in 0..cfg.threshold {
                let reservation = reserve(c, &uid, None, now, &cfg)?;
                assert!(matches!(reservation, Reservation::Granted(_)));
            }
            reserve(c, &uid, None, now, &cfg)
        })
        .unwrap();
    assert_eq!(refused, Reservation::Refused { retry_after: 1 });
}

/// A password change without the current password is a malformed request, as a login without
/// a password is: before, an empty one counted as a wrong one and spent a lockout attempt.
async fn an_empty_or_over_long_current_password_spends_no_attempt(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let json_body = r#"{"current_password":"","new_password":"quiet-lantern-harbor-9"}"#;
    let form_body = "current_password=&new_password=quiet-lantern-harbor-9";
    // Past the threshold (3 in tests), each in both encodings.
    for body in [json_body, form_body].repeat(2) {
        let (status, json) = app
            .send("POST", "/v1/password", Some(body), Some(&access))
            .await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_request"),
            "{body}: {json}"
        );
    }
    // Longer than any password can be: wrong, and no attempt either (as at the token endpoint).
    let over_long = format!(
        r#"{{"current_password":"{}","new_password":"quiet-lantern-harbor-9"}}"#,
        "x".repeat(1025)
    );
    for _ in 0..4 {
        let (status, json) = app
            .send("POST", "/v1/password", Some(&over_long), Some(&access))
            .await;
        assert_eq!(status, Status::BadRequest, "{json}");
        assert_eq!(str_of(&json, "error"), "invalid_password", "{json}");
    }
    app.login("alice").await;
    let body =
        format!(r#"{{"current_password":"{PASSWORD}","new_password":"quiet-lantern-harbor-9"}}"#);
    let (status, json) = app
        .send("POST", "/v1/password", Some(&body), Some(&access))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// The failure budget is the database's, so every replica spends from one: a client's failures
/// on two replicas add up. Before, each replica held its own in memory, and N replicas allowed
/// a client N times `failed_logins_per_minute`.
async fn the_failure_budget_holds_across_replicas(backend: Backend) {
    let wrong = |client, user: &str| {
        let body = format!("grant_type=password&username={user}&password=wrong-password");
        grant_from(client, "10.0.0.1:1000", body)
    };
    let app = TestApp::start_with(backend, |c| c.failed_logins_per_minute = 2).await;
    let replica = app.replica().await;
    for (client, user) in [(&app.client, "ann"), (&replica, "bob")] {
        let (status, json, _) = wrong(client, user).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, "invalid_grant"),
            "{json}"
        );
    }
    for client in [&app.client, &replica] {
        let (status, json, _) = wrong(client, "cy").await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::TooManyRequests, "rate_limited"),
            "the third failure, on either replica: {json}"
        );
    }
}

/// A charge is given back unless kept, also by a request dropped mid-check (its client went
/// away); a kept one is recorded for every replica: another replica's limiter, which never saw
/// it, refuses the client too.
async fn a_charge_is_given_back_unless_kept_and_a_kept_one_holds_on_every_replica(
    backend: Backend,
) {
    use gatehouse_issuer::ratelimit::RateLimit;
    let app = TestApp::start(backend).await;
    let (db, clock) = (app.store(), app.clock());
    let (limit, other_replica) = (RateLimit::new(0, 1), RateLimit::new(0, 1));
    let ip = Some("192.0.2.7".parse().unwrap());
    limit
        .charge_failure(db, clock, ip)
        .await
        .unwrap()
        .settle(db, clock)
        .await;
    drop(limit.charge_failure(db, clock, ip).await.unwrap());
    let charge = limit.charge_failure(db, clock, ip).await.unwrap();
    charge.keep();
    charge.settle(db, clock).await;
    assert!(
        limit.charge_failure(db, clock, ip).await.is_err(),
        "the kept charge holds"
    );
    assert!(
        other_replica.charge_failure(db, clock, ip).await.is_err(),
        "and holds on another replica"
    );
    assert!(
        limit.charge_failure(db, clock, None).await.is_ok(),
        "no address, no charge"
    );
}

/// The shared record's arithmetic, on the database's rows with the times given: two a minute,
/// one paid off each 30 s; cleanup deletes a row once it is paid off.
async fn the_failure_budget_pays_off_one_failure_each_interval(backend: Backend) {
    use gatehouse_issuer::store::failure_budget::{Budget, delete_paid_off, record_failure, spent};
    let app = TestApp::start(backend).await;
    let budget = Budget::per_minute(2).unwrap();
    let at = |secs: i64| 1_000_000_000 + secs * 1000;
    let (waits, deleted) = app
        .store()
        .run_sync(move |c| {
            let mut waits = vec![spent(c, "192.0.2.1", at(0), budget)?];
            record_failure(c, "192.0.2.1", at(0), budget)?;
            waits.push(spent(c, "192.0.2.1", at(1), budget)?);
            record_failure(c, "192.0.2.1", at(1), budget)?;
            // Paid off at 60 s, one of them at 30 s: spent until 31 s.
            waits.push(spent(c, "192.0.2.1", at(1), budget)?);
            waits.push(spent(c, "192.0.2.2", at(1), budget)?);
            waits.push(spent(c, "192.0.2.1", at(31), budget)?);
            record_failure(c, "192.0.2.2", at(1), budget)?;
            let deleted = [
                delete_paid_off(c, at(59), 100)?,
                delete_paid_off(c, at(61), 100)?,
            ];
            // A row behind now starts again from now: the third failure, long after.
            record_failure(c, "192.0.2.1", at(600), budget)?;
            waits.push(spent(c, "192.0.2.1", at(600), budget)?);
            Ok((waits, deleted))
        })
        .unwrap();
    assert_eq!(waits, [None, None, Some(29_000), None, None, None]);
    assert_eq!(
        deleted,
        [1, 1],
        "192.0.2.2 (paid off at 31 s), then 192.0.2.1 (at 60 s)"
    );
    assert!(Budget::per_minute(0).is_none(), "0 turns the budget off");
}

/// A form to the token endpoint from the client address `ip`: its status, body and headers.
async fn grant_from(
    client: &rocket::local::asynchronous::Client,
    ip: &str,
    body: String,
) -> (Status, serde_json::Value, Vec<(String, String)>) {
    let request = client
        .post("/v1/token")
        .header(rocket::http::ContentType::Form)
        .remote(ip.parse().unwrap())
        .body(body);
    decode(request.dispatch().await).await
}

crate::on_both_backends!(
    an_empty_or_over_long_current_password_spends_no_attempt,
    a_refusal_for_checks_under_way_says_one_second,
    parallel_first_logins_are_not_refused,
    lockout_holds_under_parallel_attempts,
    backoff_grows_with_each_lock,
    cleanup_keeps_the_backoff_history,
    rate_limit_per_client_ip,
    failed_logins_have_a_budget_per_client_ip,
    the_failure_budget_holds_across_replicas,
    the_failure_budget_pays_off_one_failure_each_interval,
    a_charge_is_given_back_unless_kept_and_a_kept_one_holds_on_every_replica,
);
