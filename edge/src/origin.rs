//! What the origin gets: the request as a proxy sends it (same method, canonical path, query
//! and body), without the headers a client could use to make the origin act otherwise than the
//! gate checked, with ours added for a verified token, and redirects passed on untouched.

use gatehouse_shared::AccessClaims;
use worker::js_sys::{Array, Function, Promise};
use worker::wasm_bindgen::prelude::*;
use worker::web_sys::{
    Headers, RequestCache, RequestInit, RequestRedirect, Response, ResponseInit,
};

use crate::config::Config;
use crate::credential::{Credential, copies};
use crate::gate::Answer;
use crate::incoming::{Incoming, authority};
use crate::reply;

const IDENTITY_PREFIX: &str = "x-gatehouse-";

/// Why a request may go on to the origin.
#[derive(Clone, Copy)]
pub enum Pass<'a> {
    /// A `PUBLIC_PATHS` path: as sent, without identity headers.
    Public,
    /// A CORS preflight: no body, no `Authorization`, no `Cookie`.
    Preflight,
    /// A verified token: with the identity headers of its claims, and of the request's
    /// credentials only the one it came in.
    Verified(&'a AccessClaims, Credential),
}

/// Headers a client could write to make an origin route, link or act differently from what the
/// gate checked: the host an origin builds links from (`Forwarded`, `X-Forwarded-Host`,
/// `-Server`, `-Port`, `-Prefix`, `X-Original-Host`), the path IIS and Symfony route by
/// (`X-Original-URL`, `X-Rewrite-URL`), the host and scheme Rack, Rails and Spring also read
/// (`X-Host`, `X-Forwarded-Scheme`, `X-Forwarded-Ssl`: `http` there makes a `force_ssl` origin
/// redirect, and a public path's redirect is cached for everyone), and the method Rack, Laravel,
/// Symfony and Express's `method-override` run instead of the request's (`X-HTTP-Method-Override`,
/// `X-HTTP-Method`, `X-Method-Override`: a `POST` the gate let through on a `read` rule would run
/// as a `DELETE` of everything below it; the gate judges the method it sees, and a query's
/// `_method` as `Incoming::acts_below` says), and `True-Client-IP`, which Cloudflare sets only
/// on Enterprise zones with its managed transform on and otherwise passes on as the client
/// wrote it (an origin's allow-list or rate limit would trust it). Also `X-Script-Name`, which
/// the widely copied Flask `ReverseProxied` middleware makes the app's mount point and cuts off
/// the path (`/api/x/api/admin/users` checked under `/api/*`, run as `/api/admin/users`), and
/// `X-Scheme` and `X-Url-Scheme`, the scheme Tornado and that middleware read. One string, not
/// a slice: a slice costs the worker two words a name.
const CLIENT_ROUTING_HEADERS: &str = concat!(
    "host,forwarded,x-forwarded-host,x-forwarded-server,x-forwarded-port,",
    "x-forwarded-prefix,x-original-host,x-original-url,x-rewrite-url,",
    "x-forwarded-scheme,x-forwarded-ssl,x-host,x-http-method-override,",
    "x-http-method,x-method-override,true-client-ip,x-script-name,x-scheme,",
    "x-url-scheme",
);

/// Headers Cloudflare sets itself on every request (the client's address and scheme, and every
/// `cf-` one): their
/// `-` spelling reaches the origin as Cloudflare wrote it, and their `_` spelling, which it
/// leaves alone, is dropped.
const CLOUDFLARE_HEADERS: &str = "x-real-ip,x-forwarded-for,x-forwarded-proto";

/// Whether a (lower-cased) header name is dropped before the origin: ours (`x-gatehouse-…`) or
/// one of `CLIENT_ROUTING_HEADERS`, each also spelled with `_`, which CGI-style origin stacks
/// (WSGI, Rack, `FastCGI`) file under the same name as `-`, and the `_` spelling of
/// `CLOUDFLARE_HEADERS`. `Destination` goes unless the gate checked it (`forward` sets it).
fn is_dropped_header(name: &str) -> bool {
    // Whether `name` starts with `ours`, in either spelling.
    let starts_as = |ours: &str| {
        name.len() >= ours.len()
            && name
                .bytes()
                .zip(ours.bytes())
                .all(|(got, ours)| got == ours || (got == b'_' && ours == b'-'))
    };
    let is = |ours: &str| name.len() == ours.len() && starts_as(ours);
    let underscored = name.contains('_');
    starts_as(IDENTITY_PREFIX)
        || name == "destination"
        || CLIENT_ROUTING_HEADERS.split(',').any(is)
        || (underscored && (starts_as("cf-") || CLOUDFLARE_HEADERS.split(',').any(is)))
}

/// The identity headers of verified `claims`: what the origin gets with a forwarded request,
/// and a forward-auth proxy with the check's 200.
pub fn set_identity(headers: &Headers, claims: &AccessClaims) {
    // Cannot fail: verified claims hold printable ASCII without surrounding spaces here (the
    // shared claims rule), which a header value carries unchanged.
    let _ = headers.set("x-gatehouse-sub", &claims.sub);
    let _ = headers.set("x-gatehouse-scope", &claims.scope);
    let _ = headers.set("x-gatehouse-sid", &claims.sid);
    let _ = headers.set("x-gatehouse-jti", &claims.jti);
    if let Some(client_id) = &claims.client_id {
        let _ = headers.set("x-gatehouse-client-id", client_id);
    }
}

/// The names of `headers`, lower-cased by the runtime, in one string: one crossing into wasm
/// instead of one per header. Header names are tokens and cannot contain a comma.
fn header_names(headers: &Headers) -> String {
    Array::from(&headers.keys()).join(",").into()
}

/// Sends the request on to the origin with the same method, canonical path, query and body;
/// client-sent identity headers and `CLIENT_ROUTING_HEADERS` are dropped, `X-Forwarded-Host`
/// set to the host the client asked for and, for a verified token, ours added.
pub fn forward(req: &Incoming, config: &Config, pass: Pass<'_>) -> Answer {
    let target = format!("{}{}{}", config.origin_url, req.path(), req.query);
    // Our 502 is readable by a listed page, as the gate's refusals are.
    let page = crate::cors::listed_origin(&req.headers, config);
    let unreachable = || crate::cors::readable_by(reply::bad_gateway(), page.as_deref());
    // Copied by the runtime in one call.
    let Ok(headers) = Headers::new_with_headers(&req.headers) else {
        return unreachable().into();
    };
    for name in header_names(&req.headers).split(',') {
        if is_dropped_header(name) {
            let _ = headers.delete(name);
        }
    }
    // `Host` is the origin's own now: the host the client asked for (from the URL the runtime
    // routed here, not from a header the client wrote) is what the origin's links and
    // redirects must name.
    let _ = headers.set("x-forwarded-host", authority(&req.url));
    // The destination the gate checked, in the form the request itself is sent.
    if let Some(destination) = req.destination_on(&config.origin_url) {
        let _ = headers.set("destination", &destination);
    }
    // With every request, public ones too: the origin refuses what lacks it.
    if let Some(secret) = &config.origin_secret {
        let _ = headers.set("x-gatehouse-origin-secret", secret.expose());
    }
    let init = RequestInit::new();
    match pass {
        Pass::Verified(c, credential) => {
            // The response is this user's: Cloudflare's cache, keyed by URL alone, must not hand
            // it to another (an origin that forgets `private` on `/api/me/avatar.png`).
            init.set_cache(RequestCache::NoStore);
            set_identity(&headers, c);
            // An origin that reads a credential itself must find none but the one checked: not
            // an `Authorization` the gate did not read as a bearer token (another scheme, a tab
            // after `Bearer`) beside a verified cookie, nor another token in the cookie beside a
            // verified bearer token (a `;` pair holding a copy goes whole: `x=1 gh_at=t` is
            // one to lenient parsers, `credential::copies`).
            match (credential, &config.token_cookie) {
                (Credential::Cookie, _) => {
                    let _ = headers.delete("authorization");
                }
                (Credential::Bearer, Some(name)) => {
                    if let Some(cookies) = req.header("cookie") {
                        let mut others = String::new();
                        for pair in cookies.split(';') {
                            if copies(pair, name).next().is_none() {
                                if !others.is_empty() {
                                    others.push(';');
                                }
                                others.push_str(pair);
                            }
                        }
                        // Rewritten only when a copy was removed: most requests carry none.
                        if others.len() < cookies.len() {
                            let _ = match others.trim_start() {
                                "" => headers.delete("cookie"),
                                others => headers.set("cookie", others),
                            };
                        }
                    }
                }
                (Credential::Bearer, None) => {}
            }
        }
        Pass::Preflight => {
            let _ = headers.delete("authorization");
            let _ = headers.delete("cookie");
        }
        Pass::Public => {}
    }
    let method = req.method();
    init.set_method(method);
    init.set_headers(&headers);
    // A proxy passes redirects on: following them here would hide a 302 from the browser and
    // could carry the identity headers to another host.
    init.set_redirect(RequestRedirect::Manual);
    if method != "GET" && method != "HEAD" && !matches!(pass, Pass::Preflight) {
        init.set_body(&req.raw.body().map_or(JsValue::NULL, Into::into));
    }
    match fetch_with_init(&target, &init) {
        Ok(promise) => Answer::Origin(match &page {
            None => ORIGIN_UNREACHABLE.with(|on_failure| promise.catch_with(on_failure)),
            // Bound to the page's origin: a JS function the runtime collects, where a closure
            // made per request would stay in wasm for good if the origin answered.
            Some(page) => ORIGIN_UNREACHABLE_FOR_PAGE.with(|on_failure| {
                let bound = on_failure.bind1(&JsValue::NULL, &JsValue::from_str(page));
                promise.catch_with(bound.unchecked_ref())
            }),
        }),
        Err(_) => unreachable().into(),
    }
}

#[wasm_bindgen]
extern "C" {
    /// The promise of a fetch to the origin.
    type OriginFetch;

    /// The global `fetch(url, init)`: no `Request` object of ours, which the runtime would copy.
    #[wasm_bindgen(catch, js_name = fetch)]
    fn fetch_with_init(url: &str, init: &RequestInit) -> Result<OriginFetch, JsValue>;

    /// `promise.catch(onRejected)` with a handler that returns the value to settle with
    /// (js-sys's `catch` takes a closure returning nothing).
    #[wasm_bindgen(method, js_name = catch)]
    fn catch_with(this: &OriginFetch, on_rejected: &Function) -> Promise;
}

thread_local! {
    /// The origin's failure as our 502 (a rejected promise handed to the runtime would be a
    /// bare 500), made once per wasm instance. After a trap the module is re-instantiated, and
    /// the old instance's handler refuses to run: a forward still pending across that reset
    /// whose origin then fails gets the runtime's 500 (before, it got no answer at all).
    static ORIGIN_UNREACHABLE: Function = Closure::<dyn FnMut(JsValue) -> Response>::new(
        |_: JsValue| reply::bad_gateway(),
    )
    .into_js_value()
    .unchecked_into();

    /// [`ORIGIN_UNREACHABLE`] readable by the listed page whose origin is bound first.
    static ORIGIN_UNREACHABLE_FOR_PAGE: Function =
        Closure::<dyn FnMut(JsValue, JsValue) -> Response>::new(|page: JsValue, _: JsValue| {
            crate::cors::readable_by(reply::bad_gateway(), page.as_string().as_deref())
        })
        .into_js_value()
        .unchecked_into();
}

/// The origin's response with our `Server-Timing` entry. Fetched responses have immutable
/// headers, so this is `new Response(body, response)`: the runtime copies status, status text
/// and headers, and the body stream passes through untouched.
pub fn with_timing(response: Response, timing: &str) -> Response {
    let init: &ResponseInit = response.unchecked_ref();
    let Ok(copy) = Response::new_with_opt_readable_stream_and_init(response.body().as_ref(), init)
    else {
        return response;
    };
    let _ = copy.headers().append("server-timing", timing);
    copy
}

#[cfg(test)]
mod tests {
    use super::is_dropped_header;

    #[test]
    fn identity_and_routing_headers_are_dropped_in_either_spelling() {
        for name in [
            "x-gatehouse-sub",
            "x_gatehouse_sub",
            "x-gatehouse_scope",
            "x_gatehouse-",
            "host",
            "forwarded",
            "x-forwarded-host",
            "x_forwarded_host",
            "x_forwarded-prefix",
            "x-original-url",
            "x_rewrite_url",
            "x-script-name",
            "x_scheme",
            "x-url_scheme",
            "x-forwarded-scheme",
            "x_forwarded_ssl",
            "x-host",
            "x-http-method-override",
            "x_http_method",
            "x-method-override",
            "destination",
            "cf_connecting_ip",
            "cf-connecting_ip",
            "cf_ipcountry",
            "true_client_ip",
            "true-client-ip",
            "x_real_ip",
            "x_forwarded_for",
            "x-forwarded_proto",
        ] {
            assert!(is_dropped_header(name), "{name}");
        }
        for name in [
            "x-gatehouse",
            "x-gatehousesub",
            "authorization",
            "xx-gatehouse-sub",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-real-ip",
            "x-forwarded-hosts",
            "hostname",
            "cf-connecting-ip",
            "cf-ray",
            "x-http-method-overrides",
            "x_real_ip_address",
        ] {
            assert!(!is_dropped_header(name), "{name}");
        }
    }

    /// The names in a `const NAME = new Set([...])` of a JavaScript source.
    fn js_set<'a>(source: &'a str, name: &str) -> Vec<&'a str> {
        let start = source
            .find(&format!("const {name} = new Set(["))
            .unwrap_or_else(|| panic!("no {name} set"));
        let list = &source[start..];
        let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
        let mut names: Vec<_> = list.split('"').skip(1).step_by(2).collect();
        names.sort_unstable();
        names
    }

    /// Row 1c's baseline "jose forwarding by the gate's rules" (`bench/edge/jose-worker.mjs`)
    /// carries its own copy of this rule's lists: a copy that drifted would compare ours with
    /// a forward doing other work.
    #[test]
    fn the_jose_baselines_copy_of_the_rule_names_the_same_headers() {
        let baseline = include_str!("../../bench/edge/jose-worker.mjs");
        let sorted = |names: &'static str| {
            let mut names: Vec<_> = names.split(',').collect();
            names.sort_unstable();
            names
        };
        assert_eq!(
            js_set(baseline, "ROUTING_HEADERS"),
            sorted(super::CLIENT_ROUTING_HEADERS)
        );
        assert_eq!(
            js_set(baseline, "CLOUDFLARE_HEADERS"),
            sorted(super::CLOUDFLARE_HEADERS)
        );
        assert!(baseline.contains(&format!("startsWith(\"{}\")", super::IDENTITY_PREFIX)));
    }
}
