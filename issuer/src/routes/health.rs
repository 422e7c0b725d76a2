//! Liveness, readiness and metrics.

use std::io::Cursor;
use std::sync::Arc;

use rocket::http::ContentType;
use rocket::response::{self, Responder};
use rocket::serde::json::{Json, Value, json};
use rocket::{Request, Route, State, get, routes};

use crate::context::Now;
use crate::db::Db;
use crate::drain::Drain;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

#[get("/health/live")]
fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// Ready when the database answers and the signing keys may be signed with (read within two
/// maintenance periods, or re-read now: `KeyRing::for_signing`), until the replica drains.
#[get("/health/ready")]
async fn ready(
    db: &State<Db>,
    keys: &State<Arc<KeyRing>>,
    drain: &State<Arc<Drain>>,
    now: Now,
) -> Readiness {
    if drain.is_draining() {
        return Readiness {
            details: json!({"status": "draining"}),
            refusal: Some(ApiError::unavailable(
                "not ready: the issuer is shutting down",
            )),
        };
    }
    let Now(now) = now;
    let database = db.ping().await;
    // Not asked of a database that did not answer: a ring due for a re-read would wait on it
    // through the pool, whose calls a network dropping packets holds far longer.
    let signing_keys = database && keys.for_signing(db, now).await.is_ok();
    let kid = keys.current().signer.kid().to_owned();
    let refusal = match (database, signing_keys) {
        (true, true) => None,
        (false, _) => Some(ApiError::unavailable(
            "not ready: the database does not answer",
        )),
        (true, false) => Some(ApiError::unavailable(
            "not ready: the signing keys cannot be read",
        )),
    };
    Readiness {
        details: json!({
            "status": if refusal.is_none() { "ready" } else { "not_ready" },
            "database": database,
            "signing_keys": signing_keys,
            "signing_kid": kid,
        }),
        refusal,
    }
}

/// 200 with the details, or the issuer's own 503 (`temporarily_unavailable`, `Retry-After`,
/// `no-store`) with the details beside its `error`.
struct Readiness {
    details: Value,
    refusal: Option<ApiError>,
}

impl<'r> Responder<'r, 'static> for Readiness {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let Some(refusal) = self.refusal else {
            return Json(self.details).respond_to(request);
        };
        let mut body = refusal.body();
        if let (Some(body), Value::Object(details)) = (body.as_object_mut(), self.details) {
            body.extend(details);
        }
        let body = body.to_string();
        let mut response = refusal.respond_to(request)?;
        response.set_sized_body(body.len(), Cursor::new(body));
        Ok(response)
    }
}

#[get("/metrics")]
fn metrics(metrics: &State<Arc<Metrics>>, keys: &State<Arc<KeyRing>>) -> (ContentType, String) {
    metrics.capacity.key_ring_read_at.set(keys.read_at());
    (
        ContentType::new("application", "openmetrics-text")
            .with_params([("version", "1.0.0"), ("charset", "utf-8")]),
        metrics.render(),
    )
}

pub fn routes() -> Vec<Route> {
    routes![live, ready, metrics]
}
