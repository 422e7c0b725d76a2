//! Audit events: a row in the database and a structured log line. Details never hold
//! passwords, tokens or keys; callers pass ids only.
//!
//! The log line goes out once the row is committed: inside a write transaction it waits for
//! the commit ([`super::write_tx`]), and a transaction rolled back logs nothing, so the log
//! never tells of an event the database does not hold.

use std::cell::RefCell;

use diesel::prelude::*;

use crate::db::DbConn;
use crate::db::schema::audit_events;
use crate::error::ApiError;

/// One audit event's log line, held until its transaction commits.
struct Line {
    kind: String,
    user_id: Option<String>,
    detail: String,
}

impl Line {
    fn log(&self) {
        let (kind, user_id, detail) = (&self.kind, self.user_id.as_deref(), &self.detail);
        tracing::info!(target: "audit", kind, user_id, %detail, "audit event");
    }
}

thread_local! {
    /// The lines of the write transactions open on this thread (a transaction runs on one
    /// blocking thread, start to end), and how deeply they are nested.
    static PENDING: RefCell<(usize, Vec<Line>)> = const { RefCell::new((0, Vec::new())) };
}

/// Opens a transaction's share of the pending lines; returns where its lines start.
pub(super) fn begin() -> usize {
    PENDING.with_borrow_mut(|(depth, lines)| {
        *depth += 1;
        lines.len()
    })
}

/// Closes the transaction opened at `start`: its lines are dropped if it rolled back, and all
/// are logged when the outermost one commits.
pub(super) fn end(start: usize, committed: bool) {
    let ready = PENDING.with_borrow_mut(|(depth, lines)| {
        *depth = depth.saturating_sub(1);
        if !committed {
            lines.truncate(start);
        }
        if *depth == 0 {
            std::mem::take(lines)
        } else {
            Vec::new()
        }
    });
    for line in &ready {
        line.log();
    }
}

/// An audit detail naming who asked: an admin's `("by", sub)`, the CLI's `("via", "cli")`.
pub fn who((name, value): (&str, &str)) -> serde_json::Map<String, serde_json::Value> {
    let mut detail = serde_json::Map::new();
    detail.insert(name.to_owned(), value.into());
    detail
}

pub fn record(
    conn: &mut DbConn,
    now: i64,
    kind: &str,
    user_id: Option<&str>,
    detail: &serde_json::Value,
) -> Result<(), ApiError> {
    let detail = detail.to_string();
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::at.eq(now),
            audit_events::kind.eq(kind),
            audit_events::user_id.eq(user_id),
            audit_events::detail.eq(&detail),
        ))
        .execute(conn)?;
    let line = Line {
        kind: kind.to_owned(),
        user_id: user_id.map(str::to_owned),
        detail,
    };
    // Outside a transaction the insert has committed already.
    let committed = PENDING.with_borrow_mut(|(depth, lines)| {
        if *depth == 0 {
            return Some(line);
        }
        lines.push(line);
        None
    });
    if let Some(line) = committed {
        line.log();
    }
    Ok(())
}

/// Deletes up to `batch` events recorded before `cutoff` (the cleanup, under
/// `audit_retention_days`), oldest first; returns how many.
pub fn delete_before(conn: &mut DbConn, cutoff: i64, batch: i64) -> Result<usize, ApiError> {
    let doomed: Vec<i64> = due_before(cutoff, batch).load(conn)?;
    if doomed.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(audit_events::table.filter(audit_events::id.eq_any(&doomed)))
            .execute(conn)?,
    )
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Event {
    pub at: i64,
    pub kind: String,
    /// JSON text, as recorded.
    pub detail: String,
}

/// How many of a user's events the admin view and `users events` show by default, and at most.
pub const DEFAULT_RECENT: i64 = 50;
pub const MAX_RECENT: i64 = 500;

/// The kinds of the most recent events of a user, newest first (tests).
pub fn recent_kinds(conn: &mut DbConn, user_id: &str, limit: i64) -> Result<Vec<String>, ApiError> {
    Ok(recent(conn, user_id, limit)?
        .into_iter()
        .map(|event| event.kind)
        .collect())
}

/// The most recent events of a user, newest first (the admin view, and tests).
pub fn recent(conn: &mut DbConn, user_id: &str, limit: i64) -> Result<Vec<Event>, ApiError> {
    Ok(recent_of(user_id.to_owned(), limit).load(conn)?)
}

/// The query behind [`recent`]: found by the index on `(user_id, id)` (migration
/// `audit_by_user`), so an account's view does not read the whole log.
#[diesel::dsl::auto_type]
pub fn recent_of(user_id: String, limit: i64) -> _ {
    audit_events::table
        .filter(audit_events::user_id.eq(user_id))
        .order(audit_events::id.desc())
        .limit(limit)
        .select((audit_events::at, audit_events::kind, audit_events::detail))
}

/// The query behind [`delete_before`]: the oldest rows before `cutoff`, found by the index on
/// `at`, so each batch reads only what it deletes.
#[diesel::dsl::auto_type]
pub fn due_before(cutoff: i64, batch: i64) -> _ {
    audit_events::table
        .filter(audit_events::at.lt(cutoff))
        .order(audit_events::at)
        .select(audit_events::id)
        .limit(batch)
}
