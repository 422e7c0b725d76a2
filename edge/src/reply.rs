//! The worker's own answers: RFC 6750 401/403, 503 by policy, and JSON bodies with the shared
//! stable codes. Every refusal's status, body and headers are written here (the bearer ones by
//! the shared `Refusal`), never as an `Err` out of the fetch event (that would be a bare 500).
//!
//! Built as the runtime's `Response` directly: `worker::Response` would hold the body in wasm
//! and copy it out again, and rebuild its headers and init, on every refusal.

use gatehouse_shared::{ErrorBody, ErrorCode, Refusal};
use serde::Serialize;
use worker::wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use worker::web_sys::Response;

#[wasm_bindgen(inline_js = "export function respond(status, body, name, value) {
  const headers = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  if (name) headers[name] = value;
  return new Response(body, { status, headers });
}")]
extern "C" {
    /// The whole response in one call into the runtime: building `ResponseInit` and `Headers`
    /// from wasm costs a crossing, and a string copy, per member.
    #[wasm_bindgen(catch)]
    fn respond(status: u16, body: &str, name: &str, value: &str) -> Result<Response, JsValue>;
}

/// A JSON response the worker wrote, with at most one more header. A header value the runtime
/// refuses loses that header, never the status; only a broken runtime gets the bare fallback.
pub fn json_text(status: u16, body: &str, header: Option<(&str, &str)>) -> Response {
    let (name, value) = header.unwrap_or_default();
    respond(status, body, name, value)
        .or_else(|_| respond(status, body, "", ""))
        .unwrap_or_else(|_| bare())
}

#[allow(clippy::expect_used)] // `new Response()` with no arguments cannot throw
fn bare() -> Response {
    Response::new().expect("new Response()")
}

/// A refusal of the worker's own: `{"error", "code", "error_description"}`.
fn error(status: u16, body: &ErrorBody<'_>, header: Option<(&str, &str)>) -> Response {
    json_text(status, &body.to_json(), header)
}

fn refusal(refusal: &Refusal) -> Response {
    json_text(
        refusal.status,
        &refusal.body,
        Some(("www-authenticate", &refusal.www_authenticate)),
    )
}

/// 401 with `WWW-Authenticate`, the OAuth error and the shared code (the shared contract).
pub fn unauthorized(realm: &str, code: ErrorCode) -> Response {
    refusal(&Refusal::unauthorized(realm, code))
}

pub fn insufficient_scope(realm: &str, scope: &str) -> Response {
    refusal(&Refusal::insufficient_scope(realm, scope))
}

/// Why the request's own path is refused (see `crate::path`).
pub const AMBIGUOUS_PATH: &str = "the path or Destination is ambiguous (an escaped slash, a \
                                  semicolon or a dot segment), or the Destination names another host";

/// 400 for a path the gate will not read for the origin: the request's, or one a forward-auth
/// proxy asks about (`why`).
pub fn invalid_path(why: &str) -> Response {
    error(
        400,
        &ErrorBody::new("invalid_request", "invalid_path", why),
        None,
    )
}

/// 502 when the origin could not be reached.
pub fn bad_gateway() -> Response {
    error(
        502,
        &ErrorBody::new(
            "bad_gateway",
            "origin_unreachable",
            "the origin could not be reached",
        ),
        None,
    )
}

/// 411 for a push of no declared length: a chunked body of any size would be read whole
/// before anything could refuse it.
pub fn length_required() -> Response {
    error(
        411,
        &ErrorBody::new(
            "invalid_request",
            "length_required",
            "a push must declare its Content-Length",
        ),
        None,
    )
}

/// 413 for a push over the list's limit.
pub fn too_large() -> Response {
    error(
        413,
        &ErrorBody::new(
            "payload_too_large",
            "too_large",
            "a pushed list may be 8 MiB at most",
        ),
        None,
    )
}

/// 400 for a pushed body that could not be read as text.
pub fn unreadable_body() -> Response {
    error(
        400,
        &ErrorBody::new("invalid_request", "malformed", "the body is not UTF-8 text"),
        None,
    )
}

/// A pushed list refused for what it is: 409 with the seq held when it is not newer (so an
/// issuer whose database is behind, after a restore, can tell that from a race with another
/// replica's push), 400 otherwise.
pub fn rejected(code: &str, description: &str, held: Option<u64>) -> Response {
    let body = ErrorBody {
        held_seq: held,
        ..ErrorBody::new("rejected", code, description)
    };
    error(if held.is_some() { 409 } else { 400 }, &body, None)
}

/// 405 for a method no request to the origin may carry (CONNECT, TRACE, TRACK).
pub fn method_not_allowed() -> Response {
    error(
        405,
        &ErrorBody::new(
            "invalid_request",
            "method_not_allowed",
            "CONNECT, TRACE and TRACK are not forwarded",
        ),
        // RFC 9110 §15.5.6; which of these the origin serves is the origin's to say.
        Some(("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")),
    )
}

/// 503 when the edge has no keys at all, for a request and for a pushed list alike.
pub fn keys_unavailable() -> Response {
    unavailable("keys_unavailable", "the issuer's keys could not be loaded")
}

/// 503 when the runtime's WebCrypto failed on a signature (a request's or a pushed list's): no
/// fault of the token or list, which may be good, so no 401 or 400 that a client acts on.
pub fn verification_unavailable() -> Response {
    unavailable(
        "verification_unavailable",
        "the runtime could not check the signature",
    )
}

/// 503 while no revocation list has reached this isolate: a request under `fail_closed`, or a
/// pushed list, which is judged only against KV's.
pub fn list_missing() -> Response {
    unavailable(
        "revocation_list_missing",
        "no revocation list has reached the edge yet",
    )
}

/// 503 for operational reasons (no keys, no fresh revocation list, misconfiguration).
pub fn unavailable(code: &str, description: &str) -> Response {
    error(
        503,
        &ErrorBody::new("temporarily_unavailable", code, description),
        Some(("retry-after", "5")),
    )
}

/// 401 for a health request whose bearer token is not `HEALTH_TOKEN` (or when none is set): a
/// wrong secret is told so, where no token at all gets the public status.
pub fn health_token_refused(realm: &str) -> Response {
    error(
        401,
        &ErrorBody::new(
            "invalid_token",
            "health_token_mismatch",
            "not this edge's HEALTH_TOKEN",
        ),
        Some((
            "www-authenticate",
            &format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
        )),
    )
}

/// Any other body the worker writes (the health report, a push's outcome).
pub fn json(status: u16, body: &impl Serialize) -> Response {
    // Plain structs of numbers and strings: cannot fail.
    json_text(
        status,
        &serde_json::to_string(body).unwrap_or_default(),
        None,
    )
}
