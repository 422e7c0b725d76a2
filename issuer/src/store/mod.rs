//! Queries, one module per table family. Every function takes the connection and `now`; the
//! invariants that must hold across issuer replicas (rotation, lockout, revocation order) are
//! enforced here with conditional updates inside write transactions.

pub mod audit;
pub mod failure_budget;
pub mod lifetimes;
pub mod lockout;
pub mod revocations;
pub mod sessions;
pub mod users;

use diesel::Connection as _;
use diesel::connection::SimpleConnection as _;

use crate::db::DbConn;
use crate::error::ApiError;

/// A write transaction. SQLite gets `BEGIN IMMEDIATE`, which takes the write lock up front (and
/// honours the busy timeout) instead of failing on a read-to-write upgrade; PostgreSQL gets a
/// normal transaction whose conditional updates serialise on row locks.
/// Its audit events are logged once it commits (`audit`).
pub fn write_tx<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let start = audit::begin();
    let result = if matches!(conn, DbConn::Sqlite(_)) {
        sqlite_write_tx(conn, f)
    } else {
        conn.transaction(f)
    };
    audit::end(start, result.is_ok());
    result
}

fn sqlite_write_tx<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    conn.batch_execute("BEGIN IMMEDIATE")?;
    let result = f(conn).and_then(|value| {
        conn.batch_execute("COMMIT")?;
        Ok(value)
    });
    if result.is_err() {
        // Never hand a connection back to the pool inside a transaction.
        let _ = conn.batch_execute("ROLLBACK");
    }
    result
}

/// Whether a diesel error is a unique-constraint violation.
/// A row that names a parent row which is gone (a user deleted meanwhile).
pub fn is_foreign_key_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _
        )
    )
}

pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
