//! The Gatehouse edge worker: verifies every request's access token with the shared core, checks
//! the revocation list the issuer keeps in sync through KV, and forwards only valid requests to
//! the origin. Handlers build their own 401/403/503 responses; nothing returns `Err` to the
//! runtime, which would turn it into a bare 500.

mod config;
mod cors;
mod credential;
mod entry;
mod fastpath;
mod first_list;
mod forwarded;
mod gate;
mod incoming;
mod keys;
mod origin;
mod outliving;
mod path;
mod reply;
mod state;
mod sync;
mod turn;
mod upstream;
mod webcrypto;

pub use config::offline_problems;
#[cfg(not(target_arch = "wasm32"))]
pub use config::unknown_var_problems;

use entry::Started;
use gate::Answer;
use gatehouse_shared::SnapshotError;
use incoming::Incoming;
use serde::Serialize;
use sync::SyncError;
use worker::wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use worker::web_sys::Response;
use worker::{Context, Env, Request, ScheduleContext, ScheduledEvent, event};

/// Lists (a snapshot, pushed or fetched, or a delta) larger than this are refused before
/// reading further: the shared core's limit.
const MAX_SNAPSHOT_BYTES: usize = gatehouse_shared::SnapshotOptions::DEFAULT_MAX_BYTES;
/// The declared bytes of the pushes an isolate reads at once: two of the largest. Anyone may
/// push, and each push is read whole into wasm before its signature can be checked; a dozen
/// at once would pass the isolate's memory limit and fail every request it holds.
const MAX_PUSH_BYTES_IN_FLIGHT: usize = 2 * MAX_SNAPSHOT_BYTES;

/// A reservation older than this is taken for abandoned and given back: on Cloudflare, a request
/// whose client went away may be torn down without its future ever finishing or being dropped.
/// A push is read, verified and stored well within it.
const PUSH_RESERVATION_MS: f64 = 30_000.0;

thread_local! {
    /// The pushes being read: (id, declared bytes, taken at ms).
    static PUSHES_IN_FLIGHT: std::cell::RefCell<Vec<(u64, usize, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static NEXT_PUSH_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A push's share of `MAX_PUSH_BYTES_IN_FLIGHT`, given back when the push ends, however it ends,
/// or once it is `PUSH_RESERVATION_MS` old.
struct PushReservation(u64);

impl PushReservation {
    fn take(bytes: usize, now_ms: f64) -> Option<Self> {
        PUSHES_IN_FLIGHT.with_borrow_mut(|pushes| {
            pushes.retain(|&(_, _, taken)| now_ms - taken < PUSH_RESERVATION_MS);
            let held: usize = pushes.iter().map(|&(_, bytes, _)| bytes).sum();
            if held.checked_add(bytes)? > MAX_PUSH_BYTES_IN_FLIGHT {
                return None;
            }
            let id = NEXT_PUSH_ID.replace(NEXT_PUSH_ID.get().wrapping_add(1));
            pushes.push((id, bytes, now_ms));
            Some(Self(id))
        })
    }
}

impl Drop for PushReservation {
    fn drop(&mut self) {
        PUSHES_IN_FLIGHT.with_borrow_mut(|pushes| pushes.retain(|&(id, _, _)| id != self.0));
    }
}

/// The fetch handler, exported as `#[event(fetch)]` would export it, with one difference: a
/// request the gate settles without waiting for anything (a cached token's verdict or forward,
/// any refusal before the signature) is answered in this call, as a `Response` or the origin
/// fetch's own promise, where the macro's export always returns a promise driven by an executor
/// task in a microtask. A request that waits (WebCrypto, KV) goes on as a promise from where it
/// stopped (`entry`); the origin's answer is never waited for in wasm (`gate::Answer`).
#[wasm_bindgen]
pub fn fetch(req: worker::web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let req = match Incoming::new(req) {
        Ok(req) => req,
        Err(refused) => return invalid_path(&refused, &env).into(),
    };
    match entry::start(route(req, env, Context::new(ctx))) {
        Started::Settled(answer) => answer.into(),
        Started::Waiting(rest) => {
            worker::wasm_bindgen_futures::future_to_promise(
                async move { Ok(JsValue::from(rest.await)) },
            )
            .into()
        }
    }
}

/// 400 for a path the gate will not read for the origin, readable by a listed page, whose
/// preflight for it is answered here (`cors::preflight_of_a_refused_request`).
fn invalid_path(raw: &worker::web_sys::Request, env: &Env) -> Response {
    let config = state::config(env);
    let origin = cors::listed_origin(&raw.headers(), &config);
    cors::preflight_of_a_refused_request(raw, origin.as_deref(), &config).unwrap_or_else(|| {
        cors::readable_by(
            reply::invalid_path(reply::AMBIGUOUS_PATH),
            origin.as_deref(),
        )
    })
}

async fn route(req: Incoming, env: Env, ctx: Context) -> Answer {
    // Methods no fetch may send (the Fetch standard's forbidden methods): TRACE would echo the
    // origin secret back to the client from an origin that answers it.
    if ["CONNECT", "TRACE", "TRACK"]
        .iter()
        .any(|m| req.method().eq_ignore_ascii_case(m))
    {
        return reply::method_not_allowed().into();
    }
    // The runtime's own request and response types, and no Router (rebuilt per request, it
    // borrows its handlers): every proxied request would pay for four control routes.
    let path = req.path();
    if !path.starts_with("/_gatehouse/") {
        return gate::handle(&req, &env, &ctx).await;
    }
    // HEAD as GET (RFC 9110 §9.3.2; uptime monitors probe with it): the runtime drops the body.
    let method = match req.method() {
        "HEAD" => "GET",
        method => method,
    };
    match (path, method) {
        ("/_gatehouse/check", "GET") => gate::check(&req, &env, &ctx).await.into(),
        ("/_gatehouse/health", "GET") => health(&req, &env, &ctx).await.into(),
        ("/_gatehouse/sync", "POST") => push(req.into_worker(), &env, &ctx).await.into(),
        ("/_gatehouse/crash", "POST") if state::config(&env).crash_route => state::crash(),
        _ => gate::handle(&req, &env, &ctx).await,
    }
}

/// `POST /_gatehouse/sync`: the issuer pushes its signed snapshot here. Signed, so no secret is
/// needed: anyone may deliver it, nobody can forge or replay an older one.
async fn push(mut req: Request, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    // Read whole only when the length is declared: a chunked body of any size would otherwise
    // be buffered, and copied into wasm, before anything could refuse it.
    let length = req
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok());
    let Some(length) = length else {
        return reply::length_required();
    };
    if length > MAX_SNAPSHOT_BYTES {
        return reply::too_large();
    }
    let Some(_reserved) = PushReservation::take(length, state::now_ms()) else {
        return reply::unavailable("push_busy", "other pushes are being read; retry shortly");
    };
    // Bytes, not text: the runtime copies them into wasm in one go, where a 2 MB string would
    // cross character by character (3 ms of a 100k-entry snapshot's 8 ms load).
    let Some(jws) = req
        .bytes()
        .await
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return reply::unreadable_body();
    };
    // An isolate that holds no list loads KV's first, as a request would: the keys a list is
    // verified with leave out those it revokes (`keys::verifier`), and only KV's list may say
    // that a key still published leaked. Before, a leaked key's list replayed here after
    // `keys revoke` was taken, and stored over the issuer's list in KV. A load that does not
    // finish within the wait leaves the push to a 503 (`SyncError::ListMissing`).
    if state::with_revocations(|view| view.base().is_none()) {
        first_list::wait(env, ctx, &config).await;
    }
    // Anyone can push a signed list: an unknown kid in one waits for the client cooldown.
    match sync::accept(env, &config, jws.trim(), keys::Asker::Client).await {
        Ok((view, _)) => reply::json(
            200,
            &ListSummary {
                seq: view.seq(),
                entries: view.len(),
            },
        ),
        // Not durable at the edge: the issuer must retry rather than believe it delivered.
        Err(SyncError::KvWrite(e)) => reply::unavailable("kv_write_failed", &e),
        // The same answers a request gets: the issuer retries it, as it should.
        Err(SyncError::NoKeys) => reply::keys_unavailable(),
        Err(SyncError::CryptoFault) => reply::verification_unavailable(),
        Err(SyncError::ListMissing) => reply::list_missing(),
        // A fresh list is taken: the issuer's next push is one.
        Err(SyncError::TooOld(e)) => reply::rejected("list_too_old", &e, None),
        Err(SyncError::Snapshot(e)) => {
            let held = match e {
                SnapshotError::Stale { held, .. } => Some(held),
                _ => None,
            };
            reply::rejected(e.code().as_str(), &e.to_string(), held)
        }
    }
}

/// A push taken: the list now held.
#[derive(Serialize)]
struct ListSummary {
    seq: u64,
    entries: usize,
}

/// `GET /_gatehouse/health`: `status` for anyone (monitors, load balancers), and 503 when the
/// worker cannot work at all. The details (the list's seq and age, the fast path, known kids,
/// the last KV write error, configuration problems) only for the bearer token `HEALTH_TOKEN`:
/// they would tell anyone how old the list is and what is misconfigured.
async fn health(req: &Incoming, env: &Env, ctx: &Context) -> Response {
    let config = state::config(env);
    let details = match req.bearer_matches(config.health_token.as_ref()) {
        None => false,
        Some(true) => true,
        Some(false) => return reply::health_token_refused(&config.realm),
    };
    // As a request would: a failing feed is not waited for (monitors have short timeouts).
    if fastpath::due(&config, state::now_ms()) == fastpath::Due::Now {
        fastpath::catch_up(env, ctx, &config).await;
    }
    let list = sync::current(env, ctx, &config).await;
    let verifier = keys::verifier(env, &config).await;
    let now = state::now_secs();
    let kids: Vec<String> = verifier
        .as_ref()
        .map(|v| v.keys().kids().map(str::to_owned).collect())
        .unwrap_or_default();
    let fresh = list.is_present()
        && list
            .age_secs(now)
            .is_some_and(|age| age <= config.max_list_age_secs);
    let mut problems = config.problems.clone();
    let kv_write_error = state::kv_write_error();
    if let Some(e) = &kv_write_error {
        problems.push(e.clone());
    }
    if kids.is_empty() {
        problems.push("no verification keys (JWKS unset and the issuer's JWKS unreachable)".into());
    }
    if !fresh {
        problems.push("no fresh revocation list".into());
    }
    if let Some(b) = state::issuer_behind().filter(|b| b.persists(state::now_ms())) {
        problems.push(format!(
            "the issuer's list (seq {}) is older than the one held (seq {}): see deploy.md",
            b.issuer_seq, b.held_seq
        ));
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let http_status = if config.is_usable() { 200 } else { 503 };
    if !details {
        return reply::json(http_status, &StatusOnly { status });
    }
    let report = HealthReport {
        status,
        wasm_memory_bytes: wasm_memory_bytes(),
        revocations: list.is_present().then(|| ListHealth {
            seq: list.seq(),
            age_secs: list.age_secs(now),
            entries: list.len(),
            base_seq: list.base().map(gatehouse_shared::RevocationList::seq),
            delta: list.delta().map(|d| DeltaHealth {
                from: d.from_seq(),
                seq: d.list().seq(),
                entries: d.list().len(),
            }),
        }),
        fast_path: config.fast_path_enabled().then(|| FastPathHealth {
            poll_ms: config.delta_poll_ms,
            last_poll_ms_ago: state::delta_poll_age_ms(state::now_ms()),
            failing: fastpath::failing(&config, state::now_ms()),
        }),
        kv_write_error,
        origin_secret: config.origin_secret.is_some(),
        kids,
        stale_policy: format!("{:?}", config.stale_policy),
        problems,
    };
    reply::json(http_status, &report)
}

/// The health route's body for anyone.
#[derive(Serialize)]
struct StatusOnly {
    status: &'static str,
}

/// The health route's body for `HEALTH_TOKEN`.
#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    /// The isolate's wasm heap: flat under load means the worker does not leak.
    wasm_memory_bytes: f64,
    revocations: Option<ListHealth>,
    fast_path: Option<FastPathHealth>,
    kv_write_error: Option<String>,
    /// Whether `ORIGIN_SECRET` is sent. Not a problem when it is not: an origin reached only
    /// through the worker (its route on the origin's host, the origin's firewall) needs none.
    origin_secret: bool,
    kids: Vec<String>,
    stale_policy: String,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct ListHealth {
    seq: u64,
    age_secs: Option<i64>,
    entries: usize,
    base_seq: Option<u64>,
    delta: Option<DeltaHealth>,
}

#[derive(Serialize)]
struct DeltaHealth {
    from: u64,
    seq: u64,
    entries: usize,
}

#[derive(Serialize)]
struct FastPathHealth {
    poll_ms: f64,
    last_poll_ms_ago: f64,
    failing: bool,
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
    let _ = keys::refetch(&env, &config, keys::Asker::Cron).await;
    if let Err(e) = sync::pull(&env, &config).await {
        worker::console_warn!("gatehouse: revocation pull failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_SNAPSHOT_BYTES, PushReservation};

    #[test]
    fn pushes_in_flight_are_bounded_and_an_abandoned_one_expires() {
        let first = PushReservation::take(MAX_SNAPSHOT_BYTES, 0.0).unwrap();
        let second = PushReservation::take(MAX_SNAPSHOT_BYTES, 1.0).unwrap();
        assert!(
            PushReservation::take(1, 2.0).is_none(),
            "the budget is full"
        );
        drop(second);
        let third = PushReservation::take(MAX_SNAPSHOT_BYTES, 3.0).unwrap();
        // The first one's request is torn down: its future is never dropped.
        std::mem::forget(first);
        assert!(PushReservation::take(1, 29_999.0).is_none());
        assert!(
            PushReservation::take(1, 30_001.0).is_some(),
            "the abandoned share is given back after 30 s"
        );
        drop(third);
    }
}
