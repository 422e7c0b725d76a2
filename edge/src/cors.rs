//! The gate's own answers made readable by a page on a `CORS_ORIGINS` origin. Without these
//! headers the browser hides a 401 (or a 400, 502, 503) behind a network error, and the app
//! (`@gatehouse/verify/client`) cannot tell `expired` or `revoked` (refresh, then retry or sign
//! out) from a failure it cannot mend. The origin answers CORS for what it serves; the gate's
//! answers are `no-store`, so no cache keeps one origin's copy for another.

use worker::web_sys::{Headers, Request, Response};

use crate::config::Config;

/// The request's `Origin` when `CORS_ORIGINS` lists it. No header is read when none is listed.
pub fn listed_origin(headers: &Headers, config: &Config) -> Option<String> {
    if config.cors_origins.is_empty() {
        return None;
    }
    headers
        .get("origin")
        .ok()
        .flatten()
        .filter(|origin| config.cors_origins.iter().any(|listed| listed == origin))
}

/// `answer`, one of the gate's own, readable by a page on `origin` (a [`listed_origin`]), with
/// the headers that say what to do next: the challenge, and when to retry a 503.
pub fn readable_by(answer: Response, origin: Option<&str>) -> Response {
    if let Some(origin) = origin {
        let headers = answer.headers();
        let _ = headers.set("access-control-allow-origin", origin);
        let _ = headers.set("access-control-allow-credentials", "true");
        let _ = headers.set(
            "access-control-expose-headers",
            "www-authenticate, retry-after",
        );
    }
    answer
}

/// The answer to a listed page's preflight for a request the gate refuses before any origin
/// sees it (a path it will not read): with `CORS_PREFLIGHT = "forward"` the origin answers
/// preflights, but it is never asked about this path, and a refused preflight leaves the page
/// a network error instead of the 400. The request is allowed as asked; it is refused anyway.
/// `None` when `raw` is not such a preflight.
pub fn preflight_of_a_refused_request(
    raw: &Request,
    origin: Option<&str>,
    config: &Config,
) -> Option<Response> {
    let headers = raw.headers();
    let asked = |name| headers.get(name).ok().flatten();
    let method = asked("access-control-request-method")?;
    let origin = origin.filter(|_| config.forward_preflights && raw.method() == "OPTIONS")?;
    let answer = Response::new_with_opt_str_and_init(None, &{
        let init = worker::web_sys::ResponseInit::new();
        init.set_status(204);
        init
    })
    .ok()?;
    let out = answer.headers();
    let _ = out.set("access-control-allow-origin", origin);
    let _ = out.set("access-control-allow-credentials", "true");
    let _ = out.set("access-control-allow-methods", &method);
    if let Some(wanted) = asked("access-control-request-headers") {
        let _ = out.set("access-control-allow-headers", &wanted);
    }
    let _ = out.set("cache-control", "no-store");
    Some(answer)
}
