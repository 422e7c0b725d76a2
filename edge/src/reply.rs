//! The worker's own answers: RFC 6750 401/403, 503 by policy, and JSON bodies with the shared
//! stable codes. Built here, never as an `Err` out of the fetch event (that would be a bare 500).

use gatehouse_shared::ErrorCode;
use serde_json::json;
use worker::{Headers, Response};

fn json_response(status: u16, body: &serde_json::Value, headers: &[(&str, String)]) -> Response {
    let out = Headers::new();
    let _ = out.set("Content-Type", "application/json");
    let _ = out.set("Cache-Control", "no-store");
    for (name, value) in headers {
        let _ = out.set(name, value);
    }
    Response::builder()
        .with_status(status)
        .with_headers(out)
        .fixed(body.to_string().into_bytes())
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
        &[("WWW-Authenticate", www)],
    )
}

pub fn insufficient_scope(realm: &str, scope: &str) -> Response {
    let code = ErrorCode::InsufficientScope;
    json_response(
        403,
        &json!({"error": "insufficient_scope", "code": code.as_str(), "error_description": code.description(), "scope": scope}),
        &[(
            "WWW-Authenticate",
            format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""),
        )],
    )
}

/// 503 for operational reasons (no keys, no fresh revocation list, misconfiguration).
pub fn unavailable(code: &str, description: &str) -> Response {
    json_response(
        503,
        &json!({"error": "temporarily_unavailable", "code": code, "error_description": description}),
        &[("Retry-After", "5".into())],
    )
}

pub fn json(status: u16, body: &serde_json::Value) -> Response {
    json_response(status, body, &[])
}
