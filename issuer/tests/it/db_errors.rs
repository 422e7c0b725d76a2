//! Database failures are classified by diesel's error kind and the connection's state, never by
//! the message: a lost server is a 503 the client may retry, a failing statement a 500.

use diesel::RunQueryDsl as _;
use gatehouse_issuer::error::ApiError;

use crate::common::{Backend, TestApp};

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

crate::on_both_backends!(a_lost_server_is_unavailable_and_a_failing_statement_internal);
