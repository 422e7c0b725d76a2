//! The edge's own GETs to the issuer (its JWKS, delta feed and snapshot), each bounded in time,
//! the body included: a hung issuer must not hold a client's request (an unknown `kid`, a cold
//! isolate, a poll it waits for) or the cron's pull past a limit the edge chose.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{Either, select};
use gatehouse_shared::KeySet;
use worker::web_sys::{self, RequestInit, RequestRedirect};
use worker::{AbortController, Delay, Fetch, Request};

/// The issuer's key set, fetched on a client request's path.
pub const KEYS_LIMIT: Duration = Duration::from_secs(KeySet::FETCH_TIMEOUT_SECS);
/// The whole snapshot, fetched by the cron (up to a few MB).
pub const SNAPSHOT_LIMIT: Duration = Duration::from_secs(20);
/// The snapshot fetched on a request's path while KV has never held one (a first deploy): short,
/// as a hung issuer must not hold the request long; the cron fetches it with the longer limit.
pub const FIRST_LIST_LIMIT: Duration = Duration::from_secs(2);

/// `url`'s body if it answers 200 within `limit` with at most `max_bytes`; the fetch is aborted
/// at the limit. A body that declares more is refused before it is read: read whole, a hostile
/// or misrouted `ISSUER_URL` answering hundreds of MB would exhaust the isolate's memory. One
/// sent without a length (chunked) is read whole, within the time limit, then refused.
pub async fn get(url: &str, limit: Duration, max_bytes: usize) -> Result<Vec<u8>, String> {
    // A plain Request, not `Url::parse`: the url crate's parser and IDNA tables would cost the
    // worker ~40 KB gzipped, and the runtime parses the URL anyway. Redirects are not followed
    // (a 3xx is an error, as `@gatehouse/verify` answers it): a key set that came over a hop the
    // configured URL does not name, plain http included, would be trusted for every token.
    let init = RequestInit::new();
    init.set_redirect(RequestRedirect::Manual);
    let request = web_sys::Request::new_with_str_and_init(url, &init)
        .map(Request::from)
        .map_err(|_| format!("{url} is not a URL"))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetched = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        match response.status_code() {
            200 => {
                let too_large = || format!("{url} answers a body over {max_bytes} bytes");
                let declared = response.headers().get("content-length").ok().flatten();
                if declared
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n > max_bytes)
                {
                    return Err(too_large());
                }
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                if body.len() > max_bytes {
                    return Err(too_large());
                }
                Ok(body)
            }
            status => Err(format!("{url} answered {status}")),
        }
    };
    match select(pin!(fetched), pin!(Delay::from(limit))).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(format!(
                "{url} did not answer within {} ms",
                limit.as_millis()
            ))
        }
    }
}

/// [`get`], as text.
pub async fn get_text(url: &str, limit: Duration, max_bytes: usize) -> Result<String, String> {
    String::from_utf8(get(url, limit, max_bytes).await?)
        .map_err(|_| format!("{url} answered non-UTF-8"))
}
