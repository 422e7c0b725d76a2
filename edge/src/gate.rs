//! The per-request path: strip identity headers, let public paths and CORS preflights through,
//! verify the token, check revocation (a memory lookup) and the route's scope, then forward to
//! the origin as a proxy would: redirects reach the client untouched.

use std::rc::Rc;

use gatehouse_shared::{AccessClaims, ErrorCode};
use worker::wasm_bindgen::JsValue;
use worker::{
    Context, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response, web_sys,
};

use crate::config::{Config, StalePolicy};
use crate::fastpath::{self, Due};
use crate::{keys, reply, state, sync};

const IDENTITY_PREFIX: &str = "x-gatehouse-";

fn misconfigured() -> Response {
    reply::unavailable(
        "misconfigured",
        "the edge is misconfigured; see /_gatehouse/health",
    )
}

/// A CORS preflight carries no credentials by design (Fetch spec): the origin answers it.
fn is_preflight(req: &Request) -> bool {
    req.method() == Method::Options
        && req
            .headers()
            .has("Access-Control-Request-Method")
            .unwrap_or(false)
}

pub async fn handle(req: Request, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    if !config.is_usable() {
        return misconfigured();
    }
    let path = req.path();
    if config.is_public(&path) || is_preflight(&req) {
        return forward(&req, &config, None, None).await;
    }
    let started = state::now_ms();
    let claims = match authorize(&req, env, ctx, &config, Some(&path)).await {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let timing = format!(
        "gatehouse;desc=\"verify\";dur={:.1}",
        state::now_ms() - started
    );
    forward(&req, &config, Some(&claims), Some(timing)).await
}

/// `/_gatehouse/check`: the gate's verdict without the origin. The same verification and
/// revocation check, answered by the worker itself: forward-auth for other proxies, and the
/// benchmark's verify-only probe. No route scope applies; the caller reads `scope` itself.
pub async fn check(req: &Request, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    if !config.is_usable() {
        return misconfigured();
    }
    match authorize(req, env, ctx, &config, None).await {
        Ok(claims) => reply::json(
            200,
            &serde_json::json!({"sub": claims.sub, "scope": claims.scope, "sid": claims.sid, "exp": claims.exp}),
        ),
        Err(response) => response,
    }
}

/// Keeps the fast path and the key set fresh: in the background while they are young enough,
/// before answering when this isolate has been idle for several poll intervals.
async fn refresh(env: &Env, ctx: &Context, config: &Rc<Config>) {
    let due = fastpath::due(config, state::now_ms());
    if due == Due::Now {
        fastpath::poll(env, config).await;
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

/// Verifies the request's token, checks revocation, and, for a `path`, that route's scope.
async fn authorize(
    req: &Request,
    env: &Env,
    ctx: &Context,
    config: &Rc<Config>,
    path: Option<&str>,
) -> Result<AccessClaims, Response> {
    let realm = &config.realm;
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
    let Some(token) = token(req, config) else {
        return Err(reply::unauthorized(realm, ErrorCode::MissingToken));
    };
    let Some(mut verifier) = keys::verifier(env, config).await else {
        return Err(reply::unavailable(
            "keys_unavailable",
            "the issuer's keys could not be loaded",
        ));
    };
    let mut result = state::verify(&verifier, config, &token, now).await;
    if matches!(&result, Err(e) if e.code() == ErrorCode::UnknownKid)
        && let Some(fresh) = keys::refetch(env, config, keys::Asker::Client).await
    {
        verifier = fresh;
        result = state::verify(&verifier, config, &token, now).await;
    }
    let claims = result.map_err(|e| reply::unauthorized(realm, e.code()))?;
    // Entries are honoured even from a list too old to rely on: refusing is always safe.
    if list.check(&claims).is_some() {
        return Err(reply::unauthorized(realm, ErrorCode::Revoked));
    }
    if let Some(scope) = path.and_then(|p| config.required_scope(p))
        && !claims.has_scope(scope)
    {
        return Err(reply::insufficient_scope(realm, scope));
    }
    Ok(claims)
}

fn token(req: &Request, config: &Config) -> Option<String> {
    let headers = req.headers();
    if let Ok(Some(auth)) = headers.get("Authorization")
        && let Some((scheme, token)) = auth.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    let name = config.token_cookie.as_deref()?;
    let cookies = headers.get("Cookie").ok()??;
    cookies.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// Sends the request on to the origin with the same method, path, query and body; client-sent
/// identity headers are dropped and, for a verified token, ours added.
async fn forward(
    req: &Request,
    config: &Config,
    claims: Option<&AccessClaims>,
    timing: Option<String>,
) -> Response {
    let target = format!(
        "{}{}",
        config.origin_url,
        path_and_query(&req.inner().url())
    );
    // Copied by the runtime in one call; only the names cross into wasm (they come lower-cased).
    let headers = copy_headers(req.headers());
    for name in req.headers().keys() {
        if name.starts_with(IDENTITY_PREFIX) || name == "host" {
            let _ = headers.delete(&name);
        }
    }
    if let Some(c) = claims {
        let _ = headers.set("X-Gatehouse-Sub", &c.sub);
        let _ = headers.set("X-Gatehouse-Scope", &c.scope);
        let _ = headers.set("X-Gatehouse-Sid", &c.sid);
        let _ = headers.set("X-Gatehouse-Jti", &c.jti);
    }
    let method = req.method();
    let mut init = RequestInit::new();
    // A proxy passes redirects on: following them here would hide a 302 from the browser and
    // could carry the identity headers to another host.
    init.with_method(method.clone())
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        init.with_body(req.inner().body().map(JsValue::from));
    }
    let sent = match Request::new_with_init(&target, &init) {
        Ok(out) => Fetch::Request(out).send().await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(response) => with_timing(response, timing),
        Err(_) => reply::json(
            502,
            &serde_json::json!({"error": "bad_gateway", "code": "origin_unreachable"}),
        ),
    }
}

fn copy_headers(headers: &Headers) -> Headers {
    web_sys::Headers::new_with_headers(&headers.0).map_or_else(|_| Headers::new(), Headers)
}

/// `/path?query` of the absolute URL the runtime hands over (already normalised by it), without
/// a fragment. Plain string work: the url crate's parser would cost ~40 KB of worker size.
fn path_and_query(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(after_scheme..).unwrap_or_default();
    let from_path = rest.find('/').map_or("/", |i| rest.get(i..).unwrap_or("/"));
    from_path.split('#').next().unwrap_or("/")
}

fn with_timing(response: Response, timing: Option<String>) -> Response {
    let Some(timing) = timing else {
        return response;
    };
    // Fetched responses have immutable headers: a copy takes the entry.
    let headers = copy_headers(response.headers());
    let _ = headers.append("Server-Timing", &timing);
    response.with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::path_and_query;

    #[test]
    fn path_and_query_keeps_the_query_and_drops_the_fragment() {
        for (url, expected) in [
            ("https://edge.example/", "/"),
            ("https://edge.example", "/"),
            (
                "http://127.0.0.1:8787/api/echo?x=1&y=two",
                "/api/echo?x=1&y=two",
            ),
            (
                "https://edge.example/a/b?next=https://x/y#frag",
                "/a/b?next=https://x/y",
            ),
            ("https://edge.example/p#/not?query", "/p"),
        ] {
            assert_eq!(path_and_query(url), expected, "{url}");
        }
    }
}
