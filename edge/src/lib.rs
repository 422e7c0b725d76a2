//! The Gatehouse edge worker: verifies every request's access token with the shared core, checks
//! the revocation list the issuer keeps in sync through KV, and forwards only valid requests to
//! the origin. Handlers build their own 401/403/503 responses; nothing returns `Err` to the
//! runtime, which would turn it into a bare 500.

mod config;
mod gate;
mod keys;
mod reply;
mod state;
mod sync;

use serde_json::json;
use worker::{
    Context, Env, Method, Request, Response, Result, RouteContext, Router, ScheduleContext,
    ScheduledEvent, event,
};

/// Snapshots larger than this are refused before reading further.
const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // Proxied traffic and the check route skip the Router: it is rebuilt per request (it
    // borrows its handlers), a cost every request would pay for the two control routes' sake.
    let path = req.path();
    if !path.starts_with("/_gatehouse/") {
        return Ok(gate::handle(req, &env).await);
    }
    if path == "/_gatehouse/check" && req.method() == Method::Get {
        return Ok(gate::check(&req, &env).await);
    }
    let response = Router::new()
        .get_async("/_gatehouse/health", health)
        .post_async("/_gatehouse/sync", push)
        .or_else_any_method_async("/*path", gate_route)
        .run(req, env)
        .await;
    Ok(response.unwrap_or_else(|_| {
        reply::unavailable("edge_error", "the edge could not handle the request")
    }))
}

async fn gate_route(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    Ok(gate::handle(req, &ctx.env).await)
}

/// `POST /_gatehouse/sync`: the issuer pushes its signed snapshot here. Signed, so no secret is
/// needed: anyone may deliver it, nobody can forge or replay an older one.
async fn push(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = state::config(&ctx.env);
    let too_large = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > MAX_SNAPSHOT_BYTES);
    if too_large {
        return Ok(reply::json(
            413,
            &json!({"error": "payload_too_large", "code": "too_large"}),
        ));
    }
    // Bytes, not text: the runtime copies them into wasm in one go, where a 2 MB string would
    // cross character by character (3 ms of a 100k-entry snapshot's 8 ms load).
    let Some(jws) = req
        .bytes()
        .await
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Ok(reply::json(
            400,
            &json!({"error": "invalid_request", "code": "malformed"}),
        ));
    };
    Ok(match sync::accept(&ctx.env, &config, jws.trim()).await {
        Ok(list) => reply::json(200, &json!({"seq": list.seq(), "entries": list.len()})),
        Err(e) => {
            let status = if e.code() == gatehouse_shared::ErrorCode::StaleSnapshot {
                409
            } else {
                400
            };
            reply::json(
                status,
                &json!({"error": "rejected", "code": e.code().as_str(), "error_description": e.to_string()}),
            )
        }
    })
}

/// `GET /_gatehouse/health`: the list's seq and age, known kids, and configuration problems.
async fn health(_req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = state::config(&ctx.env);
    let list = sync::current(&ctx.env, &config).await;
    let verifier = keys::verifier(&ctx.env, &config).await;
    let now = state::now_secs();
    let kids: Vec<String> = verifier
        .as_ref()
        .map(|v| v.keys().kids().map(str::to_owned).collect())
        .unwrap_or_default();
    let fresh = list
        .as_ref()
        .is_some_and(|l| l.age_secs(now) <= config.max_list_age_secs);
    let mut problems = config.problems.clone();
    if kids.is_empty() {
        problems.push("no verification keys (JWKS unset and the issuer's JWKS unreachable)".into());
    }
    if !fresh {
        problems.push("no fresh revocation list".into());
    }
    let body = json!({
        "status": if problems.is_empty() { "ok" } else { "degraded" },
        // The isolate's wasm heap: flat under load means the worker does not leak.
        "wasm_memory_bytes": wasm_memory_bytes(),
        "revocations": list.map(|l| json!({"seq": l.seq(), "age_secs": l.age_secs(now), "entries": l.len()})),
        "kids": kids,
        "stale_policy": format!("{:?}", config.stale_policy),
        "problems": problems,
    });
    Ok(reply::json(
        if config.is_usable() { 200 } else { 503 },
        &body,
    ))
}

fn wasm_memory_bytes() -> f64 {
    use worker::wasm_bindgen::JsCast as _;
    wasm_bindgen::memory()
        .dyn_into::<worker::js_sys::WebAssembly::Memory>()
        .map_or(0.0, |m| {
            m.buffer()
                .dyn_into::<worker::js_sys::ArrayBuffer>()
                .map_or(0.0, |b| f64::from(b.byte_length()))
        })
}

/// Cron: pull the snapshot from the issuer (repairs any push that was missed) and refresh keys.
#[event(scheduled)]
pub async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = state::config(&env);
    let _ = keys::refetch(&env, &config).await;
    if let Err(e) = sync::pull(&env, &config).await {
        worker::console_warn!("gatehouse: revocation pull failed: {e}");
    }
}
