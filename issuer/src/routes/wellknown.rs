//! Public documents: JWKS, authorization-server metadata (RFC 8414) and the signed revocation
//! snapshot.

use rocket::http::{ContentType, Header};
use rocket::serde::json::{Json, Value, json};
use rocket::{Responder, Route, get, routes};

use crate::context::Ctx;
use crate::error::ApiError;

#[derive(Responder)]
#[response(content_type = "json")]
struct Jwks {
    body: String,
    cache: Header<'static>,
}

#[get("/.well-known/jwks.json")]
fn jwks(ctx: Result<Ctx<'_>, ApiError>) -> Result<Jwks, ApiError> {
    let ctx = ctx?;
    ctx.metrics.jwks_served.inc();
    Ok(Jwks {
        body: ctx.keys.current().published.to_json(),
        // Short, so a rotation reaches verifiers quickly; unknown kids trigger a refetch anyway.
        cache: Header::new("Cache-Control", "public, max-age=60"),
    })
}

#[get("/.well-known/oauth-authorization-server")]
fn metadata(ctx: Result<Ctx<'_>, ApiError>) -> Result<Json<Value>, ApiError> {
    let config = ctx?.config;
    let base = config.issuer.trim_end_matches('/');
    let mut scopes: Vec<&str> = config.user_scopes.split_whitespace().collect();
    scopes.push("admin");
    Ok(Json(json!({
        "issuer": config.issuer,
        "token_endpoint": format!("{base}/v1/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/v1/revoke"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["bearer"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "scopes_supported": scopes,
    })))
}

#[derive(Responder)]
struct Snapshot {
    body: String,
    content_type: ContentType,
    cache: Header<'static>,
}

#[get("/v1/revocations")]
async fn snapshot(ctx: Result<Ctx<'_>, ApiError>) -> Result<Snapshot, ApiError> {
    let ctx = ctx?;
    let jws = ctx
        .snapshots
        .current(ctx.db, ctx.keys, ctx.config, ctx.now)
        .await?;
    Ok(Snapshot {
        body: jws.to_string(),
        content_type: ContentType::new("application", "jwt"),
        cache: Header::new("Cache-Control", "no-cache"),
    })
}

/// The edge's fast path: the entries of the last `delta_window_secs`, signed, at most a second
/// old. Small (bytes in proportion to recent revocations) and the same for every caller, so a
/// location's cache can share one copy between its isolates.
#[get("/v1/revocations/delta")]
async fn delta(ctx: Result<Ctx<'_>, ApiError>) -> Result<Snapshot, ApiError> {
    let ctx = ctx?;
    let jws = ctx
        .snapshots
        .current_delta(ctx.db, ctx.keys, ctx.config, ctx.now)
        .await?;
    Ok(Snapshot {
        body: jws.to_string(),
        content_type: ContentType::new("application", "jwt"),
        cache: Header::new("Cache-Control", "public, max-age=1"),
    })
}

pub fn routes() -> Vec<Route> {
    routes![jwks, metadata, snapshot, delta]
}
