//! The periodic cleanup: what it deletes, and how it finds it.

use gatehouse_issuer::maintenance;
use gatehouse_issuer::store::revocations;

use crate::common::{Backend, TestApp, str_of};

/// Three sessions of alice, each logged out: three revocation entries and three ended sessions.
async fn three_sessions_logged_out(app: &TestApp) {
    for _ in 0..3 {
        let t = str_of(&app.login("alice").await, "access_token").to_owned();
        app.send("POST", "/v1/logout", None, Some(&t)).await;
    }
}

async fn cleanup_removes_only_what_expired(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    three_sessions_logged_out(&app).await;
    let now = app.clock().now();
    let nothing = maintenance::cleanup(app.store(), &app.config, now)
        .await
        .unwrap();
    assert_eq!(nothing.revocations, 0, "live entries stay");
    let seq = app.store().run_sync(revocations::high_water).unwrap();
    let later = now + 2 * 24 * 3600;
    let report = maintenance::cleanup(app.store(), &app.config, later)
        .await
        .unwrap();
    assert_eq!(
        report.revocations, 2,
        "the newest row stays to hold the sequence"
    );
    assert_eq!(report.sessions, 3);
    assert_eq!(app.store().run_sync(revocations::high_water).unwrap(), seq);
}

/// Audit rows are kept for good unless `audit_retention_days` is set; then the cleanup deletes
/// those older than that, and only those.
async fn audit_rows_go_after_their_retention_only(backend: Backend) {
    let count = |app: &TestApp, uid: &str| {
        let uid = uid.to_owned();
        app.store()
            .run_sync(move |c| gatehouse_issuer::store::audit::recent(c, &uid, 100))
            .unwrap()
            .len()
    };
    let kept = TestApp::start(backend).await;
    let uid = kept.register("alice").await;
    let years_later = kept.clock().now() + 3 * 365 * 24 * 3600;
    let report = maintenance::cleanup(kept.store(), &kept.config, years_later)
        .await
        .unwrap();
    assert_eq!(
        (report.audit_events, count(&kept, &uid)),
        (0, 1),
        "kept by default"
    );

    // One row a batch, so every due row is gone only if the cleanup goes on while audit rows
    // fill their batches.
    let app = TestApp::start_with(backend, |c| {
        c.audit_retention_days = 30;
        c.cleanup_batch = 1;
    })
    .await;
    let t0 = app.clock().now();
    let uid = app.register("alice").await;
    app.send("POST", "/v1/token", Some(crate::lockout::WRONG), None)
        .await;
    app.clock().advance(20 * 24 * 3600);
    app.login("alice").await;
    let kinds = || {
        let uid = uid.clone();
        app.store()
            .run_sync(move |c| gatehouse_issuer::store::audit::recent_kinds(c, &uid, 100))
            .unwrap()
    };
    let all = ["login_ok", "login_failed", "user_created"];
    let thirty_days = 30 * 24 * 3600;
    // Exactly 30 days after the first two rows: not older than that yet.
    let report = maintenance::cleanup(app.store(), &app.config, t0 + thirty_days)
        .await
        .unwrap();
    assert_eq!(kinds(), all, "{report:?}");
    let report = maintenance::cleanup(app.store(), &app.config, t0 + thirty_days + 1)
        .await
        .unwrap();
    assert!(report.audit_events >= 2, "{report:?}");
    assert_eq!(
        kinds(),
        ["login_ok"],
        "every row older than 30 days, in one cleanup"
    );
}

/// The plan each backend makes for `query`, a line a step. PostgreSQL is told to avoid the
/// `avoided` methods (`seqscan`, `sort`, …) where it can, as it prefers them on tables this
/// small; `args` are its bind values.
fn plan_of<Q>(app: &TestApp, query: &Q, args: &str, avoided: &[&str]) -> Vec<String>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>
        + diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>,
{
    use diesel::RunQueryDsl as _;
    use diesel::connection::SimpleConnection as _;
    use gatehouse_issuer::db::DbConn;

    #[derive(diesel::QueryableByName)]
    struct PgPlan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(diesel::QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    /// The SQL of a query, its bind values left as placeholders.
    fn sql_of(debug: &str) -> String {
        debug.split(" -- binds:").next().unwrap().to_owned()
    }
    app.store()
        .run_sync(|c| {
            let lines = match c {
                DbConn::Postgres(pg) => {
                    let debug = diesel::debug_query::<diesel::pg::Pg, _>(query);
                    let sql = sql_of(&debug.to_string());
                    let (avoid, reset): (String, String) = avoided
                        .iter()
                        .map(|m| {
                            (
                                format!("SET enable_{m} = off;"),
                                format!("RESET enable_{m};"),
                            )
                        })
                        .unzip();
                    pg.batch_execute(&format!("{avoid} PREPARE planned AS {sql}"))?;
                    let lines = diesel::sql_query(format!("EXPLAIN EXECUTE planned({args})"))
                        .load::<PgPlan>(pg);
                    pg.batch_execute(&format!("DEALLOCATE planned; {reset}"))?;
                    lines?.into_iter().map(|l| l.line).collect()
                }
                DbConn::Sqlite(lite) => {
                    let debug = diesel::debug_query::<diesel::sqlite::Sqlite, _>(query);
                    diesel::sql_query(format!("EXPLAIN QUERY PLAN {}", sql_of(&debug.to_string())))
                        .load::<SqlitePlan>(lite)?
                        .into_iter()
                        .map(|l| l.detail)
                        .collect::<Vec<_>>()
                }
            };
            Ok(lines)
        })
        .unwrap()
}

/// Whether a plan reads the whole of `table`.
fn scans(plan: &[String], table: &str) -> bool {
    plan.iter().any(|l| {
        (l.contains("Seq Scan") && l.contains(table))
            // SQLite: `SCAN t` (`SCAN TABLE t` before 3.36), with no index `USING`.
            || (l.contains("SCAN") && l.contains(table) && !l.contains("USING"))
    })
}

/// Whether a plan reads through the named index.
fn reads_by(plan: &[String], index: &str) -> bool {
    plan.iter().any(|l| l.contains(index))
}

/// Whether a plan sorts rows itself instead of reading them in an index's order.
fn sorts(plan: &[String]) -> bool {
    plan.iter()
        .any(|l| l.contains("Sort") || l.contains("TEMP B-TREE"))
}

/// The cleanup finds ended sessions through indexes, not by reading every session: on a large
/// table a scan would outlast `db_timeout_ms`, and cleanup would fail at every tick. The query
/// is cleanup's own rule (`store::sessions::ended_by`).
async fn ended_sessions_are_found_by_index(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::sessions;
    use gatehouse_issuer::store::sessions::ended_by;

    let ended = sessions::table
        .filter(ended_by(0))
        .select(sessions::id)
        .limit(1000);
    let app = TestApp::start(backend).await;
    let plan = plan_of(&app, &ended, "0, 0, 1000", &["seqscan"]);
    assert!(!scans(&plan, "sessions"), "{plan:#?}");
}

/// The two audit queries that run as the log grows, each found by its index and read in the
/// index's order: an account's events for the admin view (`audit_by_user`), and the oldest rows
/// for the retention cleanup (`at`). The queries are the store's own.
async fn audit_events_are_found_by_index(backend: Backend) {
    use gatehouse_issuer::store::audit::{due_before, recent_of};

    let app = TestApp::start(backend).await;
    // PostgreSQL sorts a few rows rather than read an index in order unless told not to,
    // which it does only where an index has the order.
    let avoided = ["seqscan", "bitmapscan", "sort"];
    let view = plan_of(
        &app,
        &recent_of("someone".into(), 50),
        "'someone', 50",
        &avoided,
    );
    assert!(
        reads_by(&view, "audit_events_user") && !sorts(&view),
        "{view:#?}"
    );
    let due = plan_of(&app, &due_before(0, 1000), "0, 1000", &avoided);
    assert!(
        reads_by(&due, "audit_events_at") && !sorts(&due),
        "{due:#?}"
    );
}

/// `gatehouse-issuer cleanup` judges expiry by the earlier of its shell's clock and the
/// database's: a shell two days ahead deletes no revocation entry a verifier still needs, and
/// two days later, on both clocks, the same cleanup deletes the expired ones. Before, it judged
/// by the shell's clock alone.
async fn a_cleanup_from_a_shell_whose_clock_runs_ahead_keeps_what_verifiers_need(backend: Backend) {
    use gatehouse_issuer::clock::Clock;
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    three_sessions_logged_out(&app).await;
    let two_days = 2 * 24 * 3600;
    let ahead = Clock::default();
    ahead.skew(two_days);
    let report = maintenance::cleanup_from_a_shell(app.store(), &app.config, &ahead)
        .await
        .unwrap();
    assert_eq!((report.revocations, report.sessions), (0, 0));
    let later = Clock::default();
    later.advance(two_days);
    let report = maintenance::cleanup_from_a_shell(app.store(), &app.config, &later)
        .await
        .unwrap();
    assert_eq!((report.revocations, report.sessions), (2, 3));
}

/// The cleanup finds the rotation nonces it forgets through their partial index, which holds
/// only the rows rotated within the last minutes; the query is the store's own.
async fn held_nonces_are_found_by_index(backend: Backend) {
    use gatehouse_issuer::store::sessions::nonces_held_before;

    let app = TestApp::start(backend).await;
    let plan = plan_of(&app, &nonces_held_before(0, 1000), "0, 1000", &["seqscan"]);
    assert!(
        reads_by(&plan, "refresh_tokens_nonce_held") && !scans(&plan, "refresh_tokens"),
        "{plan:#?}"
    );
}

crate::on_both_backends!(
    a_cleanup_from_a_shell_whose_clock_runs_ahead_keeps_what_verifiers_need,
    audit_events_are_found_by_index,
    held_nonces_are_found_by_index,
    audit_rows_go_after_their_retention_only,
    cleanup_removes_only_what_expired,
    ended_sessions_are_found_by_index,
);
