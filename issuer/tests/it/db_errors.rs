//! Database failures are classified by diesel's error kind, the connection's state and the
//! deadline, never by the message: a lost server or a call that ran out of `db_timeout_ms` is
//! a 503 the client may retry, a failing statement a 500.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::R2D2Connection as _;
use diesel::{Connection as _, PgConnection, RunQueryDsl as _, SqliteConnection};
use gatehouse_issuer::error::ApiError;
use rocket::http::Status;

use crate::common::{Backend, TestApp, header, str_of};

async fn a_lost_server_is_unavailable_and_a_failing_statement_internal(backend: Backend) {
    let app = TestApp::start(backend).await;
    let db = app.store().clone();
    let failing = db
        .run(|c| {
            diesel::sql_query("SELECT * FROM no_such_table")
                .execute(c)
                .map_err(ApiError::from)
        })
        .await;
    assert_eq!(failing.map_err(|e| e.code()), Err("server_error"));
    if backend == Backend::Postgres {
        // The server ends this very connection mid-statement, as a restart or failover would.
        let lost = db
            .run(|c| {
                diesel::sql_query("SELECT pg_terminate_backend(pg_backend_pid())")
                    .execute(c)
                    .map_err(ApiError::from)
            })
            .await;
        assert_eq!(lost.map_err(|e| e.code()), Err("temporarily_unavailable"));
    }
    // The pool dropped the dead connection: the next call works.
    assert!(db.ping().await);
}

/// Another session holding every table, as a long migration or an operator's `VACUUM FULL`
/// would (PostgreSQL), or the write lock (SQLite). Released when dropped.
struct Stall {
    _session: Box<dyn std::any::Any>,
}

impl Stall {
    fn begin(url: &str) -> Self {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let mut conn = SqliteConnection::establish(path).unwrap();
            conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
            Self {
                _session: Box::new(conn),
            }
        } else {
            let mut conn = PgConnection::establish(url).unwrap();
            conn.batch_execute(
                "BEGIN; LOCK TABLE users, sessions, refresh_tokens, revocations, token_lifetimes, \
                 signing_keys, lockouts, audit_events IN ACCESS EXCLUSIVE MODE",
            )
            .unwrap();
            Self {
                _session: Box::new(conn),
            }
        }
    }
}

/// A stalled database is answered 503 with `Retry-After` once `db_timeout_ms` runs out, not
/// left hanging; and what the call started commits nothing, so the 503 is honest and the retry
/// after the stall does the work once.
async fn a_stalled_database_is_a_503_that_commits_nothing(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.db_timeout_ms = 500).await;
    let admin = app.admin_token().await;
    app.register("alice").await;
    let access = str_of(&app.login("alice").await, "access_token").to_owned();
    let revoke = format!("token={access}");

    let stall = Stall::begin(&app.db.url);
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

    let (status, json) = app.me(&access).await;
    assert_eq!(
        status,
        Status::Ok,
        "the revocation answered 503 was written: {json}"
    );
    let (status, json) = app
        .send("POST", "/v1/revoke", Some(&revoke), Some(&admin))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    assert_eq!(app.me(&access).await.0, Status::Unauthorized);
}

/// With every connection busy, a call waits for one no longer than the deadline; a call that
/// ran past the deadline and succeeded is still a success.
async fn a_call_waits_for_a_connection_no_longer_than_the_deadline(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.db_timeout_ms = 300;
        c.db_pool_size = 1;
    })
    .await;
    let db = app.store().clone();
    let (holding, held) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let db = db.clone();
        async move {
            db.run(move |_| {
                let _ = holding.send(());
                std::thread::sleep(Duration::from_millis(1500));
                Ok(())
            })
            .await
        }
    });
    held.await.unwrap();
    let waited = db.run(|c| c.ping().map_err(ApiError::from)).await;
    assert_eq!(waited.map_err(|e| e.code()), Err("temporarily_unavailable"));
    assert!(holder.await.unwrap().is_ok());
    assert!(db.ping().await);
}

crate::on_both_backends!(
    a_lost_server_is_unavailable_and_a_failing_statement_internal,
    a_stalled_database_is_a_503_that_commits_nothing,
    a_call_waits_for_a_connection_no_longer_than_the_deadline,
);

/// Migrations are not bounded by the deadline: a replica starting while another holds the
/// migration lock longer than `db_timeout_ms` waits for it and starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_waits_for_another_replicas_migration_past_the_deadline() {
    // The key `db::MIGRATION_LOCK` takes ("gatehous" in ASCII); advisory locks are per
    // database, so this holds every test schema's migrations for the second.
    const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;
    let mut migrating = PgConnection::establish("postgres://postgres@127.0.0.1:5432/postgres")
        .expect("PostgreSQL must run on 127.0.0.1:5432 (make test starts it)");
    migrating
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .unwrap();
    let started = Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(migrating);
    });
    let app = TestApp::start_with(Backend::Postgres, |c| c.db_timeout_ms = 200).await;
    release.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the issuer started without waiting for the migration lock"
    );
    assert!(app.store().ping().await);
}
