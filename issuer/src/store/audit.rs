//! Audit events: a row in the database and a structured log line. Details never hold
//! passwords, tokens or keys; callers pass ids only.

use diesel::prelude::*;

use crate::db::DbConn;
use crate::db::schema::audit_events;
use crate::error::ApiError;

pub fn record(
    conn: &mut DbConn,
    now: i64,
    kind: &str,
    user_id: Option<&str>,
    detail: &serde_json::Value,
) -> Result<(), ApiError> {
    tracing::info!(target: "audit", kind, user_id, %detail, "audit event");
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::at.eq(now),
            audit_events::kind.eq(kind),
            audit_events::user_id.eq(user_id),
            audit_events::detail.eq(detail.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The kinds of the most recent events of a user, newest first (admin views and tests).
pub fn recent_kinds(conn: &mut DbConn, user_id: &str, limit: i64) -> Result<Vec<String>, ApiError> {
    Ok(recent(conn, user_id, limit)?
        .into_iter()
        .map(|(kind, _)| kind)
        .collect())
}

/// The most recent events of a user, newest first: kind and detail (JSON text).
pub fn recent(
    conn: &mut DbConn,
    user_id: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, ApiError> {
    Ok(audit_events::table
        .filter(audit_events::user_id.eq(user_id))
        .order(audit_events::id.desc())
        .limit(limit)
        .select((audit_events::kind, audit_events::detail))
        .load(conn)?)
}
