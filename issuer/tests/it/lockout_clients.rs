//! Lockout per client and per account: one client's lock keeps no one else out, failures
//! spread over clients lock the account for the clients it does not know, and the move from
//! per-account rows keeps existing locks.

use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, audit_details, decode, header};
use crate::lockout::WRONG;

/// A password grant for alice from `ip` (`address:port`); the right password unless `wrong`.
async fn login_from(app: &TestApp, ip: &str, wrong: bool) -> (Status, String, Option<String>) {
    let body = if wrong {
        WRONG.to_owned()
    } else {
        format!("grant_type=password&username=alice&password={PASSWORD}")
    };
    let response = app
        .client
        .post("/v1/token")
        .header(rocket::http::ContentType::Form)
        .remote(ip.parse().unwrap())
        .body(body)
        .dispatch()
        .await;
    let (status, json, headers) = decode(response).await;
    // Which refusal: a checked wrong password says so, a lock has a code of its own.
    let outcome = if status == Status::BadRequest
        && json["error_description"] == "invalid username or password"
    {
        "checked".to_owned()
    } else {
        json["code"].as_str().unwrap_or_default().to_owned()
    };
    (
        status,
        outcome,
        header(&headers, "retry-after").map(str::to_owned),
    )
}

/// The `failures` counted on `uid`'s row for `client` ("" for the account's).
fn failures_of(app: &TestApp, uid: &str, client: &str) -> i32 {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::lockouts_by_client as rows;
    let (uid, client) = (uid.to_owned(), client.to_owned());
    app.store()
        .run_sync(move |c| {
            Ok(rows::table
                .filter(rows::user_id.eq(uid))
                .filter(rows::client.eq(client))
                .select(rows::failures)
                .first(c)?)
        })
        .unwrap()
}

/// A client that failed the threshold is locked out of the account, and no one else is: before,
/// anyone who knew a username kept its owner out with a few wrong passwords an hour. An IPv6
/// /64 is one client, as for the rate limit.
async fn a_locked_out_client_does_not_lock_out_the_others(backend: Backend) {
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    for ip in [
        "[2001:db8::1]:1000",
        "[2001:db8::2]:1000",
        "[2001:db8::3]:1000",
    ] {
        assert_eq!(login_from(&app, ip, true).await.1, "checked");
    }
    // The /64 that failed three times, the right password too.
    let (status, code, retry_after) = login_from(&app, "[2001:db8::4]:1000", false).await;
    assert_eq!((status, code.as_str()), (Status::BadRequest, "locked_out"));
    assert!(retry_after.is_some());
    assert_eq!(
        audit_details(&app, &uid, "account_locked"),
        [serde_json::json!({"scope": "client"})]
    );
    // Another /64 and an IPv4 client log in.
    for ip in ["[2001:db8:0:1::1]:1000", "10.0.0.1:1000"] {
        assert_eq!(login_from(&app, ip, false).await.0, Status::Ok, "{ip}");
    }
}

/// Failures spread over many clients lock the account at `account_threshold`, for every client
/// that has not logged in to it lately: the owner's usual client still gets in.
async fn failures_from_many_clients_lock_the_account_but_not_for_known_clients(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.lockout.account_threshold = Some(4)).await;
    let uid = app.register("alice").await;
    assert_eq!(login_from(&app, "10.0.0.9:1000", false).await.0, Status::Ok);
    // A known client's failures do not count toward the account's threshold.
    for _ in 0..2 {
        assert_eq!(login_from(&app, "10.0.0.9:1000", true).await.1, "checked");
    }
    for i in 1..=4 {
        let ip = format!("10.0.1.{i}:1000");
        assert_eq!(login_from(&app, &ip, true).await.1, "checked");
    }
    assert_eq!(
        audit_details(&app, &uid, "account_locked"),
        [serde_json::json!({"scope": "account"})]
    );
    let (status, code, retry_after) = login_from(&app, "10.0.2.1:1000", false).await;
    assert_eq!(
        (status, code.as_str()),
        (Status::BadRequest, "locked_out"),
        "a new client, the right password"
    );
    let retry_after: i64 = retry_after.unwrap().parse().unwrap();
    assert!((58..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        failures_of(&app, &uid, "10.0.2.1"),
        0,
        "the attempt the account refused went back to its client"
    );
    assert_eq!(
        login_from(&app, "10.0.0.9:1000", false).await.0,
        Status::Ok,
        "the known client"
    );
    // The lock ends for everyone at its backoff.
    app.clock().advance(61);
    assert_eq!(login_from(&app, "10.0.2.1:1000", false).await.0, Status::Ok);
}

/// A login keeps its client known to the account for 30 days, and no longer: after that the
/// account's lock holds it out like any other client.
async fn a_client_stays_known_for_thirty_days(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.lockout.account_threshold = Some(4)).await;
    app.register("alice").await;
    assert_eq!(login_from(&app, "10.0.0.9:1000", false).await.0, Status::Ok);
    let lock_the_account = |round: u8| {
        let app = &app;
        async move {
            for i in 1..=4 {
                let ip = format!("10.{round}.1.{i}:1000");
                assert_eq!(login_from(app, &ip, true).await.1, "checked");
            }
        }
    };
    app.clock().advance(30 * 86_400 - 100);
    lock_the_account(1).await;
    assert_eq!(
        login_from(&app, "10.0.0.9:1000", false).await.0,
        Status::Ok,
        "known, 100 s before its 30 days are up"
    );
    // That login made it known for 30 days more; past them, it is a stranger again.
    app.clock().advance(30 * 86_400 + 1);
    lock_the_account(2).await;
    assert_eq!(
        login_from(&app, "10.0.0.9:1000", false).await.1,
        "locked_out"
    );
}

/// Parallel wrong passwords from as many clients check no more than `account_threshold`: each
/// reservation takes its client's attempt and the account's in one transaction.
async fn parallel_attempts_from_many_clients_stop_at_the_account_threshold(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.lockout.account_threshold = Some(4)).await;
    app.register("alice").await;
    let ips: Vec<String> = (1..=12).map(|i| format!("10.0.3.{i}:1000")).collect();
    let attempts = ips.iter().map(|ip| login_from(&app, ip, true));
    let results = rocket::futures::future::join_all(attempts).await;
    let checked = results
        .iter()
        .filter(|(_, code, _)| code == "checked")
        .count();
    assert_eq!(checked, 4, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(status, code, _)| *status == Status::BadRequest
                && (code == "checked" || code == "locked_out")),
        "{results:?}"
    );
}

/// A lock set before the move to per-client rows holds after it: the migration copies each
/// account's row as the account's, for every client.
async fn a_lock_from_before_the_migration_still_holds(backend: Backend) {
    use diesel::migration::MigrationVersion;
    use diesel::{Connection, PgConnection, SqliteConnection};
    use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
    const PG: EmbeddedMigrations = embed_migrations!("migrations/postgres");
    const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
    /// Reverts down to the migration that made `lockouts_by_client`, runs `before` on the
    /// schema it found, and migrates again.
    fn replay<C>(conn: &mut C, migrations: fn() -> EmbeddedMigrations, before: &str)
    where
        C: MigrationHarness<C::Backend> + Connection,
    {
        // The issuer's maintenance may be writing: wait for it rather than fail (SQLite).
        let _ = conn.batch_execute("PRAGMA busy_timeout = 10000");
        loop {
            let reverted = conn.revert_last_migration(migrations()).unwrap();
            if reverted == MigrationVersion::from("20261206000001") {
                break;
            }
        }
        conn.batch_execute(before).unwrap();
        conn.run_pending_migrations(migrations()).unwrap();
    }
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let locked_until = app.clock().now() + 600;
    let old_lock = format!(
        "INSERT INTO lockouts (user_id, failures, window_start, locked_until, lock_count) \
         VALUES ('{uid}', 0, 0, {locked_until}, 3)"
    );
    match backend {
        Backend::Postgres => replay(
            &mut PgConnection::establish(&app.db.url).unwrap(),
            || PG,
            &old_lock,
        ),
        Backend::Sqlite => replay(
            &mut SqliteConnection::establish(app.db.url.trim_start_matches("sqlite://")).unwrap(),
            || SQLITE,
            &old_lock,
        ),
    }
    let (status, code, retry_after) = login_from(&app, "10.0.0.1:1000", false).await;
    assert_eq!((status, code.as_str()), (Status::BadRequest, "locked_out"));
    let retry_after: i64 = retry_after.unwrap().parse().unwrap();
    assert!((598..=600).contains(&retry_after), "{retry_after}");
}

/// `n` attempts of user `id` from `ip` at `now`, each granted (a refusal fails the test).
fn granted(
    c: &mut gatehouse_issuer::db::DbConn,
    (id, ip, now): (&str, Option<std::net::IpAddr>, i64),
    cfg: &gatehouse_issuer::config::LockoutConfig,
    n: u32,
) -> Result<Vec<gatehouse_issuer::store::lockout::Attempt>, gatehouse_issuer::error::ApiError> {
    use gatehouse_issuer::store::lockout::{Reservation, reserve};
    (0..n)
        .map(|i| match reserve(c, id, ip, now, cfg)? {
            Reservation::Granted(attempt) => Ok(attempt),
            refused @ Reservation::Refused { .. } => panic!("attempt {i}: {refused:?}"),
        })
        .collect()
}

/// An attempt whose password was never checked (a saturated hasher) goes back to both counters
/// it was charged to, and the lock history stays.
async fn a_released_attempt_goes_back_to_its_client_and_the_account(backend: Backend) {
    use gatehouse_issuer::store::lockout::release;
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let (cfg, now) = (app.config.lockout, app.clock().now());
    let ip = Some("10.0.4.1".parse().unwrap());
    let id = uid.clone();
    app.store()
        .run_sync(move |c| {
            let attempts = granted(c, (&id, ip, now), &cfg, 2)?;
            release(c, &attempts[0])
        })
        .unwrap();
    assert_eq!(failures_of(&app, &uid, "10.0.4.1"), 1);
    assert_eq!(failures_of(&app, &uid, ""), 1);
}

/// A right password checked beside wrong ones from the same client: the wrong ones' lock,
/// set while the right one was being checked, is lifted by its success (the client knows the
/// password), rather than keeping out the owner who just logged in.
async fn a_success_lifts_the_lock_its_own_client_raced_into(backend: Backend) {
    use gatehouse_issuer::store::lockout::{Reservation, record_failure, record_success, reserve};
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let (cfg, now) = (app.config.lockout, app.clock().now());
    let ip = Some("10.0.9.1".parse().unwrap());
    let id = uid.clone();
    let (locks, after) = app
        .store()
        .run_sync(move |c| {
            let attempts = granted(c, (&id, ip, now), &cfg, cfg.threshold)?;
            let locks = record_failure(c, &attempts[0], now, &cfg)?;
            record_success(c, &attempts[attempts.len() - 1], now)?;
            Ok((locks, reserve(c, &id, ip, now + 1, &cfg)?))
        })
        .unwrap();
    assert!(locks.client, "the failure locked the client");
    assert!(matches!(after, Reservation::Granted(_)), "{after:?}");
}

/// A check reserved just before its window ended and still under way when cleanup runs: its
/// row stays, and its failure locks. Before, cleanup deleted the row once the window ended, the
/// failure locked nothing, and a new count began: twice the threshold before the first lock.
async fn cleanup_keeps_the_row_of_a_check_under_way(backend: Backend) {
    use gatehouse_issuer::store::lockout::{delete_stale, record_failure};
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    let (cfg, now) = (app.config.lockout, app.clock().now());
    let ip = Some("10.0.10.1".parse().unwrap());
    let id = uid.clone();
    let locks = app
        .store()
        .run_sync(move |c| {
            let attempts = granted(c, (&id, ip, now), &cfg, cfg.threshold)?;
            // The window ends while the last check runs, and cleanup comes by.
            let later = now + i64::from(cfg.window_secs) + 1;
            delete_stale(c, later, &cfg, 100)?;
            record_failure(c, &attempts[attempts.len() - 1], later, &cfg)
        })
        .unwrap();
    assert!(
        locks.client,
        "the failure found its row and locked the client"
    );
}

/// Three failures from 10.0.5.1 and one from 10.0.6.1: with `account_threshold` 4, both that
/// client (threshold 3) and the account are locked.
async fn lock_a_client_and_the_account(app: &TestApp) {
    for ip in [
        "10.0.5.1:1000",
        "10.0.5.1:1000",
        "10.0.5.1:1000",
        "10.0.6.1:1000",
    ] {
        assert_eq!(login_from(app, ip, true).await.1, "checked");
    }
}

/// An admin lifts every lock of an account at once, each client's and the account's, and the
/// failures counted with them; the lock history stays, so the next lock is doubled. An unknown
/// user is 404.
async fn an_admin_unlocks_every_lock_of_an_account(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.lockout.account_threshold = Some(4)).await;
    let admin = app.admin_token().await;
    let uid = app.register("alice").await;
    lock_a_client_and_the_account(&app).await;
    for ip in ["10.0.5.1:1000", "10.0.7.1:1000"] {
        assert_eq!(login_from(&app, ip, false).await.1, "locked_out", "{ip}");
    }
    let path = format!("/v1/admin/users/{uid}/unlock");
    let (status, json) = app.send("POST", &path, None, Some(&admin)).await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(
        json["locks_lifted"], 2,
        "the client's and the account's: {json}"
    );
    assert_eq!(failures_of(&app, &uid, "10.0.6.1"), 0);
    for ip in ["10.0.5.1:1000", "10.0.7.1:1000"] {
        assert_eq!(login_from(&app, ip, false).await.0, Status::Ok, "{ip}");
    }
    for i in 1..=4 {
        assert_eq!(
            login_from(&app, &format!("10.0.8.{i}:1000"), true).await.1,
            "checked"
        );
    }
    let (_, code, retry_after) = login_from(&app, "10.0.9.1:1000", false).await;
    let retry_after: i64 = retry_after.unwrap().parse().unwrap();
    assert_eq!(code, "locked_out");
    assert!((118..=120).contains(&retry_after), "doubled: {retry_after}");
    let (status, _) = app
        .send("POST", "/v1/admin/users/nobody/unlock", None, Some(&admin))
        .await;
    assert_eq!(status, Status::NotFound);
}

/// `users unlock NAME` does what the admin endpoint does, for an operator at a shell (an admin
/// locked out of their own account, say).
async fn the_cli_unlocks_an_account(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.lockout.account_threshold = Some(4)).await;
    let uid = app.register("alice").await;
    lock_a_client_and_the_account(&app).await;
    assert_eq!(
        login_from(&app, "10.0.7.1:1000", false).await.1,
        "locked_out"
    );
    let unlock = |name: &str| app.cli(&["users", "unlock", name], "");
    let (ok, stdout, stderr) = unlock("alice");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "alice\tlocks lifted: 2\n");
    assert_eq!(
        audit_details(&app, &uid, "user_unlocked"),
        [serde_json::json!({"via": "cli", "locks": 2})]
    );
    for ip in ["10.0.5.1:1000", "10.0.7.1:1000"] {
        assert_eq!(login_from(&app, ip, false).await.0, Status::Ok, "{ip}");
    }
    let (ok, _, stderr) = unlock("bob");
    assert!(!ok && stderr.contains("no user named bob"), "{stderr}");
}

/// `gatehouse-issuer cleanup` leaves lockout rows to the replicas: a shell without their
/// `lockout.*` settings would judge which are stale by the defaults, and forget counts and lock
/// histories the replicas keep. Before, it deleted these (stale by the defaults).
async fn the_cli_cleanup_leaves_lockout_and_audit_rows_to_the_replicas(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::lockouts_by_client as rows;
    let app = TestApp::start(backend).await;
    let uid = app.register("alice").await;
    assert_eq!(login_from(&app, "10.0.11.1:1000", true).await.1, "checked");
    let id = uid.clone();
    let rows_of_alice = move |c: &mut gatehouse_issuer::db::DbConn| -> Result<i64, _> {
        Ok(rows::table
            .filter(rows::user_id.eq(id.clone()))
            .count()
            .get_result(c)?)
    };
    let id = uid.clone();
    // A day old: stale by the default window and backoff.
    let aged = app
        .store()
        .run_sync(move |c| {
            Ok(diesel::update(rows::table.filter(rows::user_id.eq(id)))
                .set(rows::window_start.eq(rows::window_start - 86_400))
                .execute(c)?)
        })
        .unwrap();
    assert_eq!(aged, 2, "the client's row and the account's");
    // Alice's audit rows, two days old: past a retention of one day, which the shell has.
    let aged_events = |c: &mut gatehouse_issuer::db::DbConn| -> Result<usize, _> {
        use gatehouse_issuer::db::schema::audit_events as events;
        Ok(diesel::update(events::table)
            .set(events::at.eq(events::at - 2 * 86_400))
            .execute(c)?)
    };
    assert!(app.store().run_sync(aged_events).unwrap() >= 2);
    let events_of_alice = || {
        let id = uid.clone();
        app.store()
            .run_sync(move |c| gatehouse_issuer::store::audit::recent(c, &id, 100))
            .unwrap()
            .len()
    };
    let events_before = events_of_alice();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::binary::command(dir.path())
        .env("GATEHOUSE_DATABASE_URL", &app.db.url)
        .env("GATEHOUSE_AUDIT_RETENTION_DAYS", "1")
        .arg("cleanup")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("lockout and audit rows are left to the replicas"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.store().run_sync(rows_of_alice).unwrap(), 2);
    assert_eq!(events_of_alice(), events_before);
}

/// PostgreSQL only: deleting a user takes its lockout rows each client's before the account's,
/// as a reservation takes them. The cascade from the user's row took the account's first, and
/// a reservation holding its client's row and waiting for the account's deadlocked with it
/// (PostgreSQL aborted one). The reservation's two steps are played here by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_users_deletion_and_a_reservation_do_not_deadlock() {
    use diesel::connection::SimpleConnection as _;
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::lockouts_by_client as rows;

    use crate::held::{start_watched, until_waiting};

    let name = format!("deletion-reservation-{}", std::process::id());
    let app = start_watched(Backend::Postgres, &name).await;
    let uid = app.register("alice").await;
    let admin = app.admin_token().await;
    // The first client's row and the account's are written at the first failure, the second
    // client's at the second: a scan of the user's rows reaches the account's before the second
    // client's, by the unique index on (user, client) as by the rows' first places.
    for ip in ["203.0.113.9:4000", "198.51.100.7:4000"] {
        let (status, _, _) = login_from(&app, ip, true).await;
        assert_eq!(status, Status::BadRequest);
    }
    // A connection the watch does not see.
    let url = app
        .config
        .database_url
        .replace(&format!("&application_name={name}"), "");
    let mut reservation = PgConnection::establish(&url).unwrap();
    let rows_of_user: i64 = rows::table
        .filter(rows::user_id.eq(&uid))
        .count()
        .get_result(&mut reservation)
        .unwrap();
    assert_eq!(rows_of_user, 3, "two clients' rows and the account's");
    // The second client's reservation, between its two steps: its own row taken, the
    // account's next.
    let hold = format!(
        "BEGIN; UPDATE lockouts_by_client SET failures = failures \
         WHERE user_id = '{uid}' AND client = '198.51.100.7'"
    );
    reservation.batch_execute(&hold).unwrap();
    let path = format!("/v1/admin/users/{uid}/delete");
    let ((status, json), ended) =
        tokio::join!(app.send("POST", &path, None, Some(&admin)), async {
            let never = "the deletion never waited for the client's row";
            until_waiting(Backend::Postgres, &name, "transactionid", never).await;
            let account = format!(
                "UPDATE lockouts_by_client SET failures = failures \
             WHERE user_id = '{uid}' AND client = ''; COMMIT"
            );
            tokio::task::spawn_blocking(move || {
                reservation
                    .batch_execute(&account)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap()
        });
    assert_eq!(ended, Ok(()), "the reservation went on");
    assert_eq!(status, Status::Ok, "{json}");
}

crate::on_both_backends!(
    the_cli_cleanup_leaves_lockout_and_audit_rows_to_the_replicas,
    an_admin_unlocks_every_lock_of_an_account,
    the_cli_unlocks_an_account,
    a_locked_out_client_does_not_lock_out_the_others,
    failures_from_many_clients_lock_the_account_but_not_for_known_clients,
    parallel_attempts_from_many_clients_stop_at_the_account_threshold,
    a_client_stays_known_for_thirty_days,
    a_released_attempt_goes_back_to_its_client_and_the_account,
    a_success_lifts_the_lock_its_own_client_raced_into,
    cleanup_keeps_the_row_of_a_check_under_way,
    a_lock_from_before_the_migration_still_holds,
);
