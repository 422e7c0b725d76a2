//! Public documents: JWKS, authorization-server metadata (RFC 8414) and the signed revocation
//! snapshot.

use std::sync::Arc;

use rocket::http::uri::{Absolute, Origin};
use rocket::http::{ContentType, Header};
use rocket::serde::json::{Json, Value, json};
use rocket::{Request, Responder, Response, Route, State, get, routes};

use crate::config::{ADMIN_SCOPE, Config};
use crate::context::Now;
use crate::db::Db;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::sync::Snapshots;

#[derive(Responder)]
#[response(content_type = "json")]
struct Jwks {
    body: String,
    cache: Header<'static>,
}

#[get("/.well-known/jwks.json")]
async fn jwks(
    keys: &State<Arc<KeyRing>>,
    db: &State<Db>,
    metrics: &State<Arc<Metrics>>,
    now: Now,
) -> Jwks {
    metrics.jwks_served.inc();
    let Now(now) = now;
    Jwks {
        body: keys.for_publishing(db, now).await.jwks.clone(),
        // Short, so a rotation reaches verifiers quickly; unknown kids trigger a refetch anyway.
        cache: Header::new("Cache-Control", "public, max-age=60"),
    }
}

#[get("/.well-known/oauth-authorization-server")]
fn metadata(config: &State<Config>) -> Json<Value> {
    let base = config.issuer.trim_end_matches('/');
    let mut scopes: Vec<&str> = config.user_scopes.split_whitespace().collect();
    scopes.push(ADMIN_SCOPE);
    Json(json!({
        "issuer": config.issuer,
        "token_endpoint": format!("{base}/v1/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/v1/revoke"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        // Either token is revoked with nothing else: holding it is the proof (RFC 7009 §2.1 for
        // a public client). `bearer` is no registered client authentication method.
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "scopes_supported": scopes,
    }))
}

/// RFC 8414 §3.1: an issuer with a path (`https://host/auth`) publishes its metadata at its
/// host's `/.well-known/oauth-authorization-server/auth`, which the proxy in front routes here
/// (deploy.md). Any other path is not found.
#[get("/.well-known/oauth-authorization-server/<_..>")]
fn metadata_under_issuer_path(config: &State<Config>, uri: &Origin<'_>) -> Option<Json<Value>> {
    let issuer = Absolute::parse(&config.issuer).ok()?;
    let issuer_path = issuer.path().as_str().trim_end_matches('/');
    let asked = uri
        .path()
        .as_str()
        .strip_prefix("/.well-known/oauth-authorization-server")?;
    (!issuer_path.is_empty() && asked.trim_end_matches('/') == issuer_path)
        .then(|| metadata(config))
}

/// A signed list as `application/jwt`, cached as `cache_control` says. The body is the cached
/// list itself, shared, not a copy: a list may be megabytes, and a response holds its body for
/// as long as its client takes to read it, so copies grew with the connections open.
struct Snapshot {
    jws: Arc<[u8]>,
    cache_control: &'static str,
}

impl Snapshot {
    fn signed(jws: Arc<str>, cache_control: &'static str) -> Self {
        Self {
            jws: jws.into(),
            cache_control,
        }
    }
}

impl<'r> rocket::response::Responder<'r, 'static> for Snapshot {
    fn respond_to(self, _: &'r Request<'_>) -> rocket::response::Result<'static> {
        Response::build()
            .header(ContentType::new("application", "jwt"))
            .raw_header("Cache-Control", self.cache_control)
            .sized_body(self.jws.len(), std::io::Cursor::new(self.jws))
            .ok()
    }
}

#[get("/v1/revocations")]
async fn snapshot(
    snapshots: &State<Arc<Snapshots>>,
    db: &State<Db>,
    keys: &State<Arc<KeyRing>>,
    config: &State<Config>,
    now: Now,
) -> Result<Snapshot, ApiError> {
    let Now(now) = now;
    let jws = snapshots.current(db, keys, config, now).await?;
    Ok(Snapshot::signed(jws, "no-cache"))
}

/// The edge's fast path: the entries of the last `delta_window_secs`, signed, at most a second
/// old. Small (bytes in proportion to recent revocations) and the same for every caller, so a
/// location's cache can share one copy between its isolates.
#[get("/v1/revocations/delta")]
async fn delta(
    snapshots: &State<Arc<Snapshots>>,
    db: &State<Db>,
    keys: &State<Arc<KeyRing>>,
    config: &State<Config>,
    now: Now,
) -> Result<Snapshot, ApiError> {
    let Now(now) = now;
    let jws = snapshots.current_delta(db, keys, config, now).await?;
    Ok(Snapshot::signed(jws, "public, max-age=1"))
}

pub fn routes() -> Vec<Route> {
    routes![jwks, metadata, metadata_under_issuer_path, snapshot, delta]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response's body is the cached list's own bytes, not a copy of them.
    #[test]
    fn a_list_response_shares_the_cached_list() {
        let cached: Arc<str> = Arc::from("header.payload.signature");
        let response = Snapshot::signed(Arc::clone(&cached), "no-cache");
        assert_eq!(response.jws.as_ptr(), cached.as_ptr());
        assert_eq!(&*response.jws, cached.as_bytes());
    }
}
