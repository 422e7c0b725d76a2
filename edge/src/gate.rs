//! The per-request path: let public paths and CORS preflights through, verify the token, check
//! revocation (a memory lookup) and the route's scope, then hand the request to `origin`.

use std::rc::Rc;

use gatehouse_shared::{AccessClaims, ErrorCode};
use serde::Serialize;
use worker::js_sys::Promise;
use worker::wasm_bindgen::prelude::*;
use worker::web_sys::Response;
use worker::{Context, Env, wasm_bindgen_futures::JsFuture};

use crate::config::{Config, StalePolicy};
use crate::credential::{self, Credential};
use crate::fastpath::{self, Due};
use crate::incoming::{self, Incoming};
use crate::origin::{Pass, forward, set_identity, with_timing};
use crate::state::NotVerified;
use crate::{cors, forwarded, keys, reply, state, sync};

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
            Err(_) => readable_by_listed_origin(reply::bad_gateway(), req, &config).into(),
        },
        (answer, _) => answer,
    }
}

/// The gate's own refusal, readable by a page on a `CORS_ORIGINS` origin (`crate::cors`).
fn readable_by_listed_origin(refusal: Response, req: &Incoming, config: &Config) -> Response {
    cors::readable_by(
        refusal,
        cors::listed_origin(&req.headers, config).as_deref(),
    )
}

/// `/_gatehouse/check`: the gate's verdict without the origin, for forward-auth proxies (and
/// the benchmark's verify-only probe). The same verification and revocation check, and the
/// route scopes of the request the proxy names (`forwarded`), whose path is read before
/// anything else, as a request's own is. `PUBLIC_PATHS` do not apply: every check needs a
/// token. The 200 carries the identity headers the gate sends the origin, for the proxy to copy
/// onto the request it sends on.
pub async fn check(req: &Incoming, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    if !config.is_usable() {
        return misconfigured();
    }
    let asked = match forwarded::asked(req, &config) {
        Ok(asked) => asked,
        Err(why) => {
            return reply::invalid_path(why);
        }
    };
    let claims = match authorize(req, env, ctx, &config, None).await {
        Ok((claims, _)) => claims,
        Err(response) => return response,
    };
    for path in &asked.paths {
        if let Some(scope) = config.missing_scope(path, asked.acts_below, |s| claims.has_scope(s)) {
            return reply::insufficient_scope(&config.realm, scope);
        }
    }
    let verdict = Verdict {
        sub: &claims.sub,
        scope: &claims.scope,
        sid: &claims.sid,
        exp: claims.exp,
    };
    // Serialising four borrowed members cannot fail.
    let body = serde_json::to_string(&verdict).unwrap_or_default();
    let response = reply::json_text(200, &body, None);
    set_identity(&response.headers(), &claims);
    response
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
        fastpath::catch_up(env, ctx, config).await;
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
    let (token, credential) = credential::token(req, config, path.is_none())
        .map_err(|code| reply::unauthorized(realm, code))?;
    // Another token in the query would reach the origin unchecked, as a second header would.
    if path.is_some() && incoming::names_another_access_token(&req.query, &token) {
        return Err(reply::unauthorized(realm, ErrorCode::Malformed));
    }
    refresh(env, ctx, config).await;
    let list = sync::current(env, ctx, config).await;
    let now = state::now_secs();
    let list_ok = list
        .age_secs(now)
        .is_some_and(|age| list.is_present() && age <= config.max_list_age_secs);
    if !list_ok && config.stale_policy == StalePolicy::FailClosed {
        return Err(if list.is_present() {
            reply::unavailable(
                "revocation_list_stale",
                "the revocation list is older than allowed",
            )
        } else {
            reply::list_missing()
        });
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
        NotVerified::CryptoFault => reply::verification_unavailable(),
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
