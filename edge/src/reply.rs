//! The worker's own answers: RFC 6750 401/403, 503 by policy, and JSON bodies with the shared
//! stable codes. Built here, never as an `Err` out of the fetch event (that would be a bare 500).
//!
//! Built as the runtime's `Response` directly: `worker::Response` would hold the body in wasm
//! and copy it out again, and rebuild its headers and init, on every refusal.

use gatehouse_shared::ErrorCode;
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

/// 401 with `WWW-Authenticate`, the OAuth error and the shared code.
pub fn unauthorized(realm: &str, code: ErrorCode) -> Response {
    let www = if code == ErrorCode::MissingToken {
        format!("Bearer realm=\"{realm}\"")
    } else {
        format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
            code.description()
        )
    };
    json_response(
        401,
        &json!({"error": "invalid_token", "code": code.as_str(), "error_description": code.description()}),
        &[("www-authenticate", &www)],
    )
}

pub fn insufficient_scope(realm: &str, scope: &str) -> Response {
    let code = ErrorCode::InsufficientScope;
    json_response(
        403,
        &json!({"error": "insufficient_scope", "code": code.as_str(), "error_description": code.description(), "scope": scope}),
        &[(
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""),
        )],
    )
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
