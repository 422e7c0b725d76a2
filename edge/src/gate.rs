//! The per-request path: strip identity headers, let public paths and CORS preflights through,
//! verify the token, check revocation (a memory lookup) and the route's scope, then forward to
//! the origin as a proxy would: redirects reach the client untouched.

use std::rc::Rc;

use gatehouse_shared::{AccessClaims, ErrorBody, ErrorCode, bearer_token, trim_http_whitespace};
use serde::Serialize;
use worker::js_sys::{Array, Function, Promise};
use worker::wasm_bindgen::prelude::*;
use worker::web_sys::{
    Headers, RequestCache, RequestInit, RequestRedirect, Response, ResponseInit,
};
use worker::{Context, Env, wasm_bindgen_futures::JsFuture};

use crate::config::{Config, StalePolicy};
use crate::fastpath::{self, Due};
use crate::incoming::{Incoming, authority, is_safe_method};
use crate::state::NotVerified;
use crate::{keys, reply, state, sync};

const IDENTITY_PREFIX: &str = "x-gatehouse-";

fn misconfigured() -> Response {
    reply::unavailable(
        "misconfigured",
        "the edge is misconfigured; see /_gatehouse/health",
    )
}

/// A CORS preflight carries no credentials by design (Fetch spec). With `CORS_PREFLIGHT =
/// "forward"` the origin answers it: a browser's preflight always names its `Origin`, and it
/// is forwarded without a body, credentials or cookies (`Pass::Preflight`). Otherwise it needs
/// a token like any request.
fn is_preflight(req: &Incoming) -> bool {
    let has = |name| req.headers.has(name).unwrap_or(false);
    req.method() == "OPTIONS" && has("access-control-request-method") && has("origin")
}

/// Why a request may go on to the origin.
#[derive(Clone, Copy)]
enum Pass<'a> {
    /// A `PUBLIC_PATHS` path: as sent, without identity headers.
    Public,
    /// A CORS preflight: no body, no `Authorization`, no `Cookie`.
    Preflight,
    /// A verified token: with the identity headers of its claims, and of the request's
    /// credentials only the one it came in.
    Verified(&'a AccessClaims, Credential),
}

/// Where the request's token was read from.
#[derive(Clone, Copy)]
enum Credential {
    Bearer,
    Cookie,
}

/// What the gate answers: a response of its own, or the origin's, still on its way.
pub enum Answer {
    Now(Response),
    /// The forwarded request's promise, handed to the runtime as it is: the worker is not woken
    /// again when the origin answers (no executor task, no call back into wasm).
    Origin(Promise),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self::Now(response)
    }
}

impl From<Answer> for JsValue {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Now(response) => response.into(),
            Answer::Origin(promise) => promise.into(),
        }
    }
}

pub async fn handle(req: &Incoming, env: &Env, ctx: &Context) -> Answer {
    let config = state::config(env);
    if !config.is_usable() {
        return misconfigured().into();
    }
    let path = req.path();
    // A public path's `COPY` or `MOVE` to a protected one is not public.
    let public = |p: &str| config.is_public(p, req.acts_below());
    if public(path) && req.destination_path().is_none_or(public) {
        return forward(req, &config, Pass::Public);
    }
    if config.forward_preflights && is_preflight(req) {
        return forward(req, &config, Pass::Preflight);
    }
    let started = state::now_ms();
    let (claims, credential) = match authorize(req, env, ctx, &config, Some(path)).await {
        Ok(verified) => verified,
        Err(refusal) => return readable_by_listed_origin(refusal, req, &config).into(),
    };
    let timing = config.server_timing.then(|| {
        format!(
            "gatehouse;desc=\"verify\";dur={:.1}",
            state::now_ms() - started
        )
    });
    match (
        forward(req, &config, Pass::Verified(&claims, credential)),
        timing,
    ) {
        // The origin's promise never rejects (`forward`): its value is a response.
        (Answer::Origin(promise), Some(timing)) => match JsFuture::from(promise).await {
            Ok(response) => with_timing(response.unchecked_into(), &timing).into(),
            Err(_) => bad_gateway().into(),
        },
        (answer, _) => answer,
    }
}

/// The gate's own refusal, readable by a page on a `CORS_ORIGINS` origin. Without these headers
/// the browser hides the 401 behind a network error, and the app (`@gatehouse/verify/client`)
/// cannot tell `expired` or `revoked` (refresh, then retry or sign out) from a failure it cannot
/// mend. The origin answers CORS
/// for what it serves; refusals are `no-store`, so no cache keeps one origin's copy for another.
fn readable_by_listed_origin(refusal: Response, req: &Incoming, config: &Config) -> Response {
    if config.cors_origins.is_empty() {
        return refusal;
    }
    if let Some(origin) = req
        .header("origin")
        .filter(|origin| config.cors_origins.iter().any(|listed| listed == origin))
    {
        let headers = refusal.headers();
        let _ = headers.set("access-control-allow-origin", &origin);
        let _ = headers.set("access-control-allow-credentials", "true");
        let _ = headers.set("access-control-expose-headers", "www-authenticate");
    }
    refusal
}

/// `/_gatehouse/check`: the gate's verdict without the origin. The same verification and
/// revocation check, answered by the worker itself: forward-auth for other proxies, and the
/// benchmark's verify-only probe. No route scope applies; the caller reads `scope` itself.
pub async fn check(req: &Incoming, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    if !config.is_usable() {
        return misconfigured();
    }
    match authorize(req, env, ctx, &config, None).await {
        Ok((claims, _)) => {
            let verdict = Verdict {
                sub: &claims.sub,
                scope: &claims.scope,
                sid: &claims.sid,
                exp: claims.exp,
            };
            // Serialising four borrowed members cannot fail.
            let body = serde_json::to_string(&verdict).unwrap_or_default();
            reply::json_text(200, &body, None)
        }
        Err(response) => response,
    }
}

/// The check's answer, written straight from the claims (a `json!` value would copy each member).
#[derive(Serialize)]
struct Verdict<'a> {
    sub: &'a str,
    scope: &'a str,
    sid: &'a str,
    exp: i64,
}

/// Keeps the fast path and the key set fresh: in the background while they are young enough,
/// before answering when this isolate has been idle for several poll intervals.
async fn refresh(env: &Env, ctx: &Context, config: &Rc<Config>) {
    let due = fastpath::due(config, state::now_ms());
    if due == Due::Now {
        fastpath::catch_up(env, config).await;
    }
    let keys_due = keys::expired(config);
    if due == Due::InBackground || keys_due {
        let (env, config) = (env.clone(), Rc::clone(config));
        ctx.wait_until(async move {
            if due == Due::InBackground {
                fastpath::poll(&env, &config).await;
            }
            if keys_due {
                let _ = keys::refetch(&env, &config, keys::Asker::Client).await;
            }
        });
    }
}

/// Verifies the request's token, checks revocation, and, for a `path`, that route's scope and
/// its `Destination`'s, and for a method that acts on everything under them the scopes of the
/// rules below them too.
async fn authorize(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    config: &Rc<Config>,
    path: Option<&str>,
) -> Result<(AccessClaims, Credential), Response> {
    let realm = &config.realm;
    // No token is refused before anything is waited for: refusing is safe whatever the list.
    let (token, credential) =
        token(req, config, path.is_none()).map_err(|code| reply::unauthorized(realm, code))?;
    refresh(env, ctx, config).await;
    let list = sync::current(env, config).await;
    let now = state::now_secs();
    let list_ok = list
        .age_secs(now)
        .is_some_and(|age| list.is_present() && age <= config.max_list_age_secs);
    if !list_ok && config.stale_policy == StalePolicy::FailClosed {
        let (code, text) = if list.is_present() {
            (
                "revocation_list_stale",
                "the revocation list is older than allowed",
            )
        } else {
            (
                "revocation_list_missing",
                "no revocation list has reached the edge yet",
            )
        };
        return Err(reply::unavailable(code, text));
    }
    let Some(mut verifier) = keys::verifier(env, config).await else {
        return Err(reply::keys_unavailable());
    };
    // The clock again after each wait (a key fetch may take seconds, and a Worker's clock
    // moves only across I/O): a token that expired meanwhile is expired.
    let mut result = state::verify(&verifier, config, &token, state::now_secs()).await;
    if matches!(&result, Err(NotVerified::Token(e)) if e.code() == ErrorCode::UnknownKid)
        && let Some(fresh) = keys::refetch(env, config, keys::Asker::Client).await
    {
        verifier = fresh;
        result = state::verify(&verifier, config, &token, state::now_secs()).await;
    }
    let claims = result.map_err(|e| match e {
        NotVerified::Token(e) => reply::unauthorized(realm, e.code()),
        NotVerified::CryptoFault => reply::unavailable(
            "verification_unavailable",
            "the runtime could not check the signature",
        ),
    })?;
    // Entries are honoured even from a list too old to rely on: refusing is always safe. The
    // list as the isolate holds it now, not as it was before this request's waits (keys,
    // WebCrypto): another request may have installed a delta naming this token meanwhile.
    if state::with_revocations(|list| list.check(&claims).is_some()) {
        return Err(reply::unauthorized(realm, ErrorCode::Revoked));
    }
    let below = req.acts_below();
    for route in [path, path.and(req.destination_path())]
        .into_iter()
        .flatten()
    {
        if let Some(scope) = config.missing_scope(route, below, |s| claims.has_scope(s)) {
            return Err(reply::insufficient_scope(realm, scope));
        }
    }
    Ok((claims, credential))
}

/// The request's token: its bearer header, else the `TOKEN_COOKIE` cookie unless a browser sent
/// it cross-site to change state. For `/_gatehouse/check` (`forward_auth`), the method is the
/// one the proxy names (`X-Forwarded-Method`, as Traefik and Caddy send it, or
/// `X-Original-Method`, nginx's usual `auth_request` header): its own request is a `GET`, and
/// without either header, or with either naming a write, the request it guards is taken for a
/// write. Two copies of the cookie are `malformed`, as two `Authorization` headers are: the
/// origin may read the other one (a cookie planted from a sibling subdomain comes first).
fn token(
    req: &Incoming,
    config: &Config,
    forward_auth: bool,
) -> Result<(String, Credential), ErrorCode> {
    let authorization = req.header("authorization");
    if let Some(token) = bearer_token(authorization.as_deref()) {
        return Ok((token.to_owned(), Credential::Bearer));
    }
    let name = config
        .token_cookie
        .as_deref()
        .ok_or(ErrorCode::MissingToken)?;
    let safe = if forward_auth {
        proxy_names_a_safe_method(req)
    } else {
        is_safe_method(req.method())
    };
    if is_cross_site_write(req, safe) {
        return Err(ErrorCode::MissingToken);
    }
    let cookies = req.header("cookie").unwrap_or_default();
    let mut named = cookies
        .split(';')
        .filter_map(|pair| cookie_value(pair, name));
    match (named.next(), named.next()) {
        (Some(value), None) if !value.is_empty() => Ok((value.to_owned(), Credential::Cookie)),
        (Some(_), Some(_)) => Err(ErrorCode::Malformed),
        _ => Err(ErrorCode::MissingToken),
    }
}

/// The value of a cookie `pair` (`name=value`) named `name` as lenient origins read names
/// (ASP.NET ignores their case, others the spaces around them, and PHP reads `.`, a space and
/// `[` as `_`: `gh.at` is its `gh_at`), so that no copy the origin may take goes uncounted. The
/// value loses only HTTP's whitespace around it, as a bearer token does.
fn cookie_value<'c>(pair: &'c str, name: &str) -> Option<&'c str> {
    let (k, v) = pair.split_once('=')?;
    let as_read = |b: u8| match b {
        b'.' | b' ' | b'[' => b'_',
        b => b.to_ascii_lowercase(),
    };
    let k = k.trim();
    (k.len() == name.len() && k.bytes().map(as_read).eq(name.bytes().map(as_read)))
        .then(|| trim_http_whitespace(v))
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
/// wrote it (an origin's allow-list or rate limit would trust it).
const CLIENT_ROUTING_HEADERS: &[&str] = &[
    "host",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "true-client-ip",
];

/// Headers Cloudflare sets itself on every request (the client's address and scheme, and every
/// `cf-` one): their
/// `-` spelling reaches the origin as Cloudflare wrote it, and their `_` spelling, which it
/// leaves alone, is dropped.
const CLOUDFLARE_HEADERS: &[&str] = &["x-real-ip", "x-forwarded-for", "x-forwarded-proto"];

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
    let is = |ours: &&str| name.len() == ours.len() && starts_as(ours);
    let underscored = name.contains('_');
    starts_as(IDENTITY_PREFIX)
        || name == "destination"
        || CLIENT_ROUTING_HEADERS.iter().any(is)
        || (underscored && (starts_as("cf-") || CLOUDFLARE_HEADERS.iter().any(is)))
}

/// Whether a forward-auth proxy names a safe method for the request it guards. One that names
/// none is taken to ask about a write: the check's own `GET` says nothing about that request.
/// nginx's `auth_request` passes the client's own headers on, so a client can send the header
/// nginx does not set: a write named by either header wins over a safe method named by the
/// other.
fn proxy_names_a_safe_method(req: &Incoming) -> bool {
    let named = [
        req.header("x-forwarded-method"),
        req.header("x-original-method"),
    ];
    named.iter().any(Option::is_some) && named.iter().flatten().all(|m| is_safe_method(m))
}

/// Whether a browser sent this request from another site with a method that changes state
/// (not `safe_method`), or to open a WebSocket (a `GET` whose socket then acts for the user): a
/// token from `TOKEN_COOKIE` is then not read, as a `SameSite` cookie would not have been sent
/// (cross-site request forgery). `Sec-Fetch-Site` decides where the browser sends it; else an
/// `Origin` other than the request's own; a request with neither (not a browser) is not
/// cross-site. A bearer header is never sent by a browser on its own, so it is not affected.
fn is_cross_site_write(req: &Incoming, safe_method: bool) -> bool {
    // A forward-auth proxy drops `Upgrade` (hop-by-hop) before asking; `Sec-WebSocket-Key`
    // is end-to-end and goes with every WebSocket handshake.
    let opens_a_socket =
        req.header("upgrade").is_some() || req.header("sec-websocket-key").is_some();
    if safe_method && !opens_a_socket {
        return false;
    }
    if let Some(site) = req.header("sec-fetch-site") {
        return !matches!(site.as_str(), "same-origin" | "none");
    }
    req.header("origin").is_some_and(|origin| {
        !req.url
            .strip_prefix(origin.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The names of `headers`, lower-cased by the runtime, in one string: one crossing into wasm
/// instead of one per header. Header names are tokens and cannot contain a comma.
fn header_names(headers: &Headers) -> String {
    Array::from(&headers.keys()).join(",").into()
}

/// Sends the request on to the origin with the same method, canonical path, query and body;
/// client-sent identity headers and `CLIENT_ROUTING_HEADERS` are dropped, `X-Forwarded-Host`
/// set to the host the client asked for and, for a verified token, ours added.
fn forward(req: &Incoming, config: &Config, pass: Pass<'_>) -> Answer {
    let target = format!("{}{}{}", config.origin_url, req.path(), req.query);
    // Copied by the runtime in one call.
    let Ok(headers) = Headers::new_with_headers(&req.headers) else {
        return bad_gateway().into();
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
            // Cannot fail: verified claims hold printable ASCII without surrounding spaces here
            // (the shared claims rule), which a header value carries unchanged.
            let _ = headers.set("x-gatehouse-sub", &c.sub);
            let _ = headers.set("x-gatehouse-scope", &c.scope);
            let _ = headers.set("x-gatehouse-sid", &c.sid);
            let _ = headers.set("x-gatehouse-jti", &c.jti);
            // An origin that reads a credential itself must find none but the one checked: not
            // an `Authorization` the gate did not read as a bearer token (another scheme, a tab
            // after `Bearer`) beside a verified cookie, nor another token in the cookie beside a
            // verified bearer token.
            match (credential, &config.token_cookie) {
                (Credential::Cookie, _) => {
                    let _ = headers.delete("authorization");
                }
                (Credential::Bearer, Some(name)) => {
                    if let Some(cookies) = req.header("cookie") {
                        let mut others = String::new();
                        for pair in cookies.split(';') {
                            if cookie_value(pair, name).is_none() {
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
        Ok(promise) => {
            Answer::Origin(ORIGIN_UNREACHABLE.with(|on_failure| promise.catch_with(on_failure)))
        }
        Err(_) => bad_gateway().into(),
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
        |_: JsValue| bad_gateway(),
    )
    .into_js_value()
    .unchecked_into();
}

fn bad_gateway() -> Response {
    reply::error(
        502,
        &ErrorBody::new(
            "bad_gateway",
            "origin_unreachable",
            "the origin could not be reached",
        ),
        None,
    )
}

/// The origin's response with our `Server-Timing` entry. Fetched responses have immutable
/// headers, so this is `new Response(body, response)`: the runtime copies status, status text
/// and headers, and the body stream passes through untouched.
fn with_timing(response: Response, timing: &str) -> Response {
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
}
