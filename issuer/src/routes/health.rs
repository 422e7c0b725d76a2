//! Liveness, readiness and metrics.

use std::sync::Arc;

use rocket::http::{ContentType, Status};
use rocket::serde::json::{Json, Value, json};
use rocket::{Route, State, get, routes};

use crate::db::Db;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

#[get("/health/live")]
fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// Ready when the database answers and a signing key is loaded.
#[get("/health/ready")]
async fn ready(db: &State<Db>, keys: &State<Arc<KeyRing>>) -> (Status, Json<Value>) {
    let database = db.ping().await;
    let kid = keys.current().signer.kid().to_owned();
    let status = if database {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (
        status,
        Json(
            json!({"status": if database { "ready" } else { "not_ready" }, "database": database, "signing_kid": kid}),
        ),
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
