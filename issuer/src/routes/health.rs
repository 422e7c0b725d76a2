//! Liveness, readiness and metrics.

use std::sync::Arc;

use rocket::http::{ContentType, Status};
use rocket::serde::json::{Json, Value, json};
use rocket::{Route, State, get, routes};

use crate::context::Now;
use crate::db::Db;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

#[get("/health/live")]
fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// Ready when the database answers and the signing keys may be signed with (read within two
/// maintenance periods, or re-read now: `KeyRing::for_signing`).
#[get("/health/ready")]
async fn ready(db: &State<Db>, keys: &State<Arc<KeyRing>>, now: Now) -> (Status, Json<Value>) {
    let Now(now) = now;
    let database = db.ping().await;
    let signing = keys.for_signing(db, now).await;
    let signing_keys = signing.is_ok();
    let kid = keys.current().signer.kid().to_owned();
    let ready = database && signing_keys;
    let status = if ready {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "database": database,
            "signing_keys": signing_keys,
            "signing_kid": kid,
        })),
    )
}

#[get("/metrics")]
fn metrics(metrics: &State<Arc<Metrics>>) -> (ContentType, String) {
    (
        ContentType::new("application", "openmetrics-text")
            .with_params([("version", "1.0.0"), ("charset", "utf-8")]),
        metrics.render(),
    )
}

pub fn routes() -> Vec<Route> {
    routes![live, ready, metrics]
}
