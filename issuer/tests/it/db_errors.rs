//! Database failures are classified by diesel's error kind, the connection's state and the
//! deadline, never by the message: a lost server or a call that ran out of `db_timeout_ms` is
//! a 503 the client may retry, a failing statement a 500.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::R2D2Connection as _;
use diesel::{Connection as _, PgConnection, RunQueryDsl as _, SqliteConnection};
use gatehouse_issuer::error::ApiError;
use gatehouse_issuer::keys::KeyRing;
use rocket::http::Status;

use crate::common::{Backend, PG_ADMIN_URL, TestApp, header, str_of};

/// The error code of running `sql` through the issuer's pool.
async fn code_of(app: &TestApp, sql: &'static str) -> Result<usize, &'static str> {
    app.store()
        .run(move |c| diesel::sql_query(sql).execute(c).map_err(ApiError::from))
        .await
        .map_err(|e| e.code())
}

async fn a_failing_statement_is_internal(backend: Backend) {
    let app = TestApp::start(backend).await;
    let failing = code_of(&app, "SELECT * FROM no_such_table").await;
    assert_eq!(failing, Err("server_error"));
    assert!(app.store().ping().await);
}

/// PostgreSQL only: an SQLite database is a file, with no server to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_lost_server_is_unavailable() {
    let app = TestApp::start(Backend::Postgres).await;
    // The server ends this very connection mid-statement, as a restart or failover would.
    let lost = code_of(&app, "SELECT pg_terminate_backend(pg_backend_pid())").await;
    assert_eq!(lost, Err("temporarily_unavailable"));
    assert_eq!(unavailable_count(&app, "lost").await, 1);
    // The pool dropped the dead connection: the next call works.
    assert!(app.store().ping().await);
}

/// PostgreSQL only: a commit (a revocation above all) is flushed before its answer whatever
/// the server's default. `synchronous_commit = off`, a common tuning of a cluster, database or
/// role, answers a commit before its WAL is written, and a crash then loses what was answered
/// 200; it is raised to `on`. A stronger one (`remote_apply`, waiting for a standby) is kept.
/// Planted here as a connection default through the URL's options.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_commits_are_flushed_whatever_the_servers_default() {
    for (planted, kept) in [("off", "on"), ("remote_apply", "remote_apply")] {
        let app = TestApp::start_with(Backend::Postgres, |c| {
            c.database_url += "%20-csynchronous_commit%3D";
            c.database_url += planted;
        })
        .await;
        let setting_is = |value: &str| {
            format!("SELECT 1 WHERE current_setting('synchronous_commit') = '{value}'")
        };
        let mut plain = PgConnection::establish(&app.config.database_url).unwrap();
        assert_eq!(
            diesel::sql_query(setting_is(planted))
                .execute(&mut plain)
                .unwrap(),
            1,
            "the planted default holds on a plain connection"
        );
        let setting = setting_is(kept);
        let held = app
            .store()
            .run(move |c| {
                diesel::sql_query(setting)
                    .execute(c)
                    .map_err(ApiError::from)
            })
            .await
            .map_err(|e| e.code());
        assert_eq!(held, Ok(1), "{planted} became {kept}");
    }
}

/// The deadline of the tests that reach it: short enough to keep them quick, long enough for
/// their own setup's calls (startup, registration, logins) on a loaded 2-core machine, where an
/// SQLite commit's fsync alone may take hundreds of ms.
const SETUP_SAFE_MS: u32 = 1_000;

/// `gatehouse_db_unavailable_total{reason}` as `/metrics` shows it: there from the start.
async fn unavailable_count(app: &TestApp, reason: &str) -> u64 {
    app.metric(&format!(
        "gatehouse_db_unavailable_total{{reason=\"{reason}\"}}"
    ))
    .await
}

/// Another session holding locks in an open transaction, released when dropped.
struct Stall {
    _session: Box<dyn std::any::Any>,
}

impl Stall {
    /// Every table (PostgreSQL), as a long migration or an operator's `VACUUM FULL` would; the
    /// write lock (SQLite).
    fn everything(url: &str) -> Self {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let mut conn = SqliteConnection::establish(path).unwrap();
            // The issuer's own writes (maintenance) may hold the lock for a moment.
            conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN EXCLUSIVE")
                .unwrap();
            return Self {
                _session: Box::new(conn),
            };
        }
        Self::postgres(
            url,
            "users, sessions, refresh_tokens, revocations, token_lifetimes, signing_keys, \
             lockouts_by_client, audit_events IN ACCESS EXCLUSIVE MODE",
        )
    }

    fn postgres(url: &str, lock: &str) -> Self {
        let mut conn = PgConnection::establish(url).unwrap();
        conn.batch_execute(&format!("BEGIN; LOCK TABLE {lock}"))
            .unwrap();
        Self {
            _session: Box::new(conn),
        }
    }
}

/// PostgreSQL only: a first key whose activation fails (its lock wait runs out of
/// `db_timeout_ms` behind another session's open write to the ring) leaves nothing behind.
/// Before, the key was stored before its activation's transaction: it stayed scheduled,
/// published in the JWKS, and another replica's schedule promoted it later, a rotation nobody
/// ordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_first_key_that_fails_to_activate_leaves_nothing() {
    let app = TestApp::start_with(Backend::Postgres, |c| c.db_timeout_ms = SETUP_SAFE_MS).await;
    let mut admin = PgConnection::establish(&app.db.url).unwrap();
    // An empty ring, as on a first start.
    admin.batch_execute("DELETE FROM signing_keys").unwrap();
    // Writes pass this lock; an activation's own (SHARE ROW EXCLUSIVE) waits behind it.
    let stall = Stall::postgres(&app.db.url, "signing_keys IN ROW EXCLUSIVE MODE");
    let config = app.config.clone();
    let now = app.clock().now();
    let loaded = app
        .store()
        .run(move |c| KeyRing::load(c, &config, now).map(|_| ()))
        .await;
    assert_eq!(loaded.map_err(|e| e.code()), Err("temporarily_unavailable"));
    // Counted while the stall holds: afterwards the server's own refresh may make a key.
    let left = diesel::sql_query("SELECT kid FROM signing_keys")
        .execute(&mut admin)
        .unwrap();
    drop(stall);
    assert_eq!(left, 0, "a key was left in the ring");
}

/// A stalled database is answered 503 with `Retry-After` once `db_timeout_ms` runs out, not
/// left hanging, and the retry after the stall does the work.
async fn a_stalled_database_is_a_503_not_a_hang(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.db_timeout_ms = SETUP_SAFE_MS).await;
    let admin = app.admin_token().await;
    app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let revoke = format!("token={access}");

    let stall = Stall::everything(&app.db.url);
    let answered = tokio::time::timeout(
        Duration::from_secs(30),
        app.send_full("POST", "/v1/revoke", Some(&revoke), Some(&admin)),
    )
    .await;
    let (status, json, headers) = answered.expect("a stalled database left the request hanging");
    drop(stall);
    assert_eq!(status, Status::ServiceUnavailable, "{json}");
    assert_eq!(json["error"], "temporarily_unavailable", "{json}");
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert!(unavailable_count(&app, "timed_out").await >= 1);

    let (status, json) = app
        .send("POST", "/v1/revoke", Some(&revoke), Some(&admin))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(app.me(&access).await.0, Status::Unauthorized);
}

/// A statement cancelled in the middle of a write transaction takes the transaction's earlier
/// writes with it: the revocation row is inserted, the audit row waits on a lock until the
/// deadline, and the 503 leaves no revocation behind (PostgreSQL: SQLite has one write lock,
/// taken before the first write).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_cancelled_midway_is_a_503_that_wrote_nothing() {
    crate::audit_log::capture();
    let app = TestApp::start_with(Backend::Postgres, |c| c.db_timeout_ms = SETUP_SAFE_MS).await;
    let admin = app.admin_token().await;
    let alice = app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let revoke = format!("token={access}");
    let high_water = || {
        app.store()
            .run_sync(gatehouse_issuer::store::revocations::high_water)
            .unwrap()
    };
    let before = high_water();

    // SHARE lets the revocation insert through and blocks only the audit insert after it.
    let stall = Stall::postgres(&app.db.url, "audit_events IN SHARE MODE");
    let answered = tokio::time::timeout(
        Duration::from_secs(30),
        app.send_full("POST", "/v1/revoke", Some(&revoke), Some(&admin)),
    )
    .await;
    drop(stall);
    let (status, json, _) = answered.expect("a stalled database left the request hanging");
    assert_eq!(status, Status::ServiceUnavailable, "{json}");
    assert_eq!(
        high_water(),
        before,
        "the revocation answered 503 was written"
    );
    assert_eq!(app.me(&access).await.0, Status::Ok);
    // Nor is it in the log: audit lines go out after the commit (before, this one was logged
    // before its insert, which then failed).
    let revoked = |alice: &str| {
        crate::audit_log::lines_with(alice)
            .into_iter()
            .filter(|line| line.contains("token_revoked"))
            .count()
    };
    assert_eq!(revoked(&alice), 0);
    let (status, _) = app
        .send("POST", "/v1/revoke", Some(&revoke), Some(&admin))
        .await;
    assert_eq!(status, Status::Ok);
    assert_eq!(revoked(&alice), 1, "the committed revocation is logged");
}

/// With every connection busy, a call waits for one no longer than the deadline; a call that
/// ran past the deadline and succeeded is still a success.
async fn a_call_waits_for_a_connection_no_longer_than_the_deadline(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.db_timeout_ms = SETUP_SAFE_MS;
        c.db_pool_size = 1;
    })
    .await;
    let db = app.store().clone();
    assert_eq!(unavailable_count(&app, "busy").await, 0);
    let (holding, held) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let db = db.clone();
        async move {
            db.run(move |_| {
                let _ = holding.send(());
                std::thread::sleep(Duration::from_millis(u64::from(SETUP_SAFE_MS) * 8));
                Ok(())
            })
            .await
        }
    });
    held.await.unwrap();
    let asked = Instant::now();
    let waiter = tokio::spawn({
        let db = db.clone();
        async move {
            let waited = db.run(|c| c.ping().map_err(ApiError::from)).await;
            (waited, asked.elapsed())
        }
    });
    // What /metrics shows meanwhile: the pool full, and a call waiting for it.
    assert_eq!(app.metric("gatehouse_db_pool_size").await, 1);
    assert_eq!(app.metric("gatehouse_db_calls_running").await, 1);
    let mut waiting = 0;
    // A bound against a hang: the spawned call reaches its wait at once.
    for _ in 0..100 {
        waiting = app.metric("gatehouse_db_calls_waiting").await;
        if waiting == 1 || waiter.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(waiting, 1);
    let (waited, took) = waiter.await.unwrap();
    assert_eq!(waited.map_err(|e| e.code()), Err("temporarily_unavailable"));
    // Given up near the deadline, while the connection was still held (for eight deadlines):
    // the bound is the deadline's, with room for a loaded machine, well short of the hold.
    assert!(!holder.is_finished(), "the connection was still held");
    let deadline = Duration::from_millis(u64::from(SETUP_SAFE_MS));
    assert!(
        took >= deadline * 9 / 10 && took < deadline * 4,
        "gave up after {took:?}, the deadline being {deadline:?}"
    );
    // A replica busy serving is still ready: readiness has a connection of its own (through
    // the pool it answered 503, and a balancer would drop every replica under the same load).
    let (status, ready) = app.send("GET", "/health/ready", None, None).await;
    assert_eq!(status, Status::Ok, "{ready}");
    assert!(!holder.is_finished(), "the connection was held throughout");
    assert!(holder.await.unwrap().is_ok());
    assert!(unavailable_count(&app, "busy").await >= 1);
    assert!(db.ping().await);
    // A call given up waiting, and one that ended, hold nothing.
    assert_eq!(app.metric("gatehouse_db_calls_waiting").await, 0);
    assert_eq!(app.metric("gatehouse_db_calls_running").await, 0);
}

/// Whether `series` in /metrics rises past `value` within 10 s (a bound against a hang, not a
/// speed goal), polled every 100 ms.
async fn rises_past(app: &TestApp, series: &str, value: u64) -> bool {
    for _ in 0..100 {
        if app.metric(series).await > value {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// What an operator watches besides requests: a periodic task that fails is counted by task
/// (it was only logged), the key ring's read time against the age past which it stops
/// signing, each list's size against the 8 MiB edges take, and the version.
async fn failing_maintenance_list_sizes_and_the_version_are_in_the_metrics(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.cleanup_interval_secs = 1).await;
    // The key ring's age against the age past which it stops signing: read at start, again
    // at each tick.
    let read_at = "gatehouse_key_ring_read_timestamp_seconds";
    assert_eq!(app.metric("gatehouse_key_ring_max_age_seconds").await, 2);
    let first_read = app.metric(read_at).await;
    let now = u64::try_from(app.clock().now()).unwrap();
    assert!(
        first_read <= now && first_read + 60 > now,
        "{first_read} at {now}"
    );
    assert!(
        rises_past(&app, read_at, first_read).await,
        "the key ring was not read again in 10 s of 1 s ticks"
    );
    let failures = "gatehouse_maintenance_failures_total{task=\"lifetime_announcement\"}";
    let (_, before) = app.send("GET", "/metrics", None, None).await;
    assert!(
        !before.as_str().unwrap_or_default().contains(failures),
        "{before}"
    );
    // Signed while the ring is young: once its re-reads fail, it stops signing after two ticks.
    let response = app.client.get("/v1/revocations").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    let snapshot = response.into_string().await.unwrap();
    let size = app
        .metric("gatehouse_revocation_list_bytes{list=\"snapshot\"}")
        .await;
    assert_eq!(size, u64::try_from(snapshot.len()).unwrap());
    let version = format!(
        "gatehouse_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(app.metric(&version).await, 1);
    // The announcement's table gone: every tick's announcement fails.
    app.store()
        .run_sync(|c| {
            diesel::sql_query("ALTER TABLE token_lifetimes RENAME TO token_lifetimes_gone")
                .execute(c)?;
            Ok::<_, ApiError>(())
        })
        .unwrap();
    let mut counted = false;
    // A bound against a hang, not a speed goal: the first tick comes a period after start.
    for _ in 0..100 {
        let (_, text) = app.send("GET", "/metrics", None, None).await;
        if text.as_str().unwrap_or_default().contains(failures) {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted, "no {failures} after 10 s of 1 s ticks");
    // The ring is read with the lifetimes the table announced: not again while it is gone,
    // which the timestamp shows, tick after tick.
    let key_refresh_failures = "gatehouse_maintenance_failures_total{task=\"key_refresh\"}";
    let (stuck, failed) = (
        app.metric(read_at).await,
        app.metric(key_refresh_failures).await,
    );
    assert!(failed >= 1);
    assert!(
        rises_past(&app, key_refresh_failures, failed).await,
        "no tick in 10 s of 1 s ticks"
    );
    assert_eq!(app.metric(read_at).await, stuck);
    assert!(app.metric(failures).await >= 1);
}

crate::on_both_backends!(
    a_failing_statement_is_internal,
    a_stalled_database_is_a_503_not_a_hang,
    a_call_waits_for_a_connection_no_longer_than_the_deadline,
    failing_maintenance_list_sizes_and_the_version_are_in_the_metrics,
);

/// PostgreSQL migrations are not bounded by the deadline: a replica starting while another
/// holds the migration lock longer than `db_timeout_ms` waits for it and starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_waits_for_another_replicas_migration_past_the_deadline() {
    // Advisory locks are per database, so this holds every test schema's migrations meanwhile.
    use gatehouse_issuer::db::MIGRATION_LOCK;
    let deadline = Duration::from_millis(u64::from(SETUP_SAFE_MS));
    let name = format!("migration-waiter-{}", std::process::id());
    let mut migrating = PgConnection::establish(PG_ADMIN_URL)
        .expect("PostgreSQL must run on 127.0.0.1:5432 (make test starts it)");
    migrating
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .unwrap();
    let waiter = name.clone();
    let release = std::thread::spawn(move || {
        // Released only once this issuer has waited on the lock for three times its deadline.
        let waiting = format!(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = '{waiter}' \
             AND wait_event_type = 'Lock' AND now() - state_change > interval '{} ms'",
            deadline.as_millis() * 3
        );
        let seen = Instant::now();
        while diesel::sql_query(&waiting).execute(&mut migrating).unwrap() == 0 {
            assert!(
                seen.elapsed() < Duration::from_secs(30),
                "the issuer never waited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(migrating);
    });
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.db_timeout_ms = u32::try_from(deadline.as_millis()).unwrap();
        c.database_url = format!("{}&application_name={name}", c.database_url);
    })
    .await;
    release.join().unwrap();
    assert!(app.store().ping().await);
}
