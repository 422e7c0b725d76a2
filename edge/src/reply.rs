//! The worker's own answers: RFC 6750 401/403, 503 by policy, and JSON bodies with the shared
//! stable codes. Built here, never as an `Err` out of the fetch event (that would be a bare 500).
//!
//! Built as the runtime's `Response` directly: `worker::Response` would hold the body in wasm
//! and copy it out again, and rebuild its headers and init, on every refusal.

use gatehouse_shared::{ErrorCode, Refusal};
use serde_json::json;
use worker::web_sys::{Headers, Response, ResponseInit};

/// A response whose body and headers the worker wrote. Only a broken runtime fails to build
/// one; the fallback is then a bare response with the same status.
pub fn text(status: u16, content_type: &str, body: &str, headers: &[(&str, &str)]) -> Response {
    let init = ResponseInit::new();
    init.set_status(status);
    if let Ok(out) = Headers::new() {
        let _ = out.set("content-type", content_type);
        let _ = out.set("cache-control", "no-store");
        for (name, value) in headers {
            let _ = out.set(name, value);
        }
        init.set_headers(&out);
    }
    Response::new_with_opt_str_and_init(Some(body), &init)
        .or_else(|_| Response::new_with_opt_str_and_init(None, &init))
        .unwrap_or_else(|_| bare())
}

#[allow(clippy::expect_used)] // `new Response()` with no arguments cannot throw
fn bare() -> Response {
    Response::new().expect("new Response()")
}

fn json_response(status: u16, body: &serde_json::Value, headers: &[(&str, &str)]) -> Response {
    text(status, "application/json", &body.to_string(), headers)
}

fn refusal(refusal: &Refusal) -> Response {
    text(
        refusal.status,
        "application/json",
        &refusal.body,
        &[("www-authenticate", &refusal.www_authenticate)],
    )
}

/// 401 with `WWW-Authenticate`, the OAuth error and the shared code (the shared contract).
pub fn unauthorized(realm: &str, code: ErrorCode) -> Response {
    refusal(&Refusal::unauthorized(realm, code))
}

pub fn insufficient_scope(realm: &str, scope: &str) -> Response {
    refusal(&Refusal::insufficient_scope(realm, scope))
}

/// 503 for operational reasons (no keys, no fresh revocation list, misconfiguration).
pub fn unavailable(code: &str, description: &str) -> Response {
    json_response(
        503,
        &json!({"error": "temporarily_unavailable", "code": code, "error_description": description}),
        &[("retry-after", "5")],
    )
}

pub fn json(status: u16, body: &serde_json::Value) -> Response {
    json_response(status, body, &[])
}
