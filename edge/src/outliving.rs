//! Work one request begins for its whole isolate (a catch-up poll of the delta feed, the first
//! load of the revocation list), run under `waitUntil`: Cloudflare is reported to cancel a
//! request's own work, its subrequests included, when its client goes away (not reproduced in
//! the local runtime), and a poll or load cut off that way would leave every other request of
//! the isolate waiting for it, or refused for want of a list. The
//! request that began it, and any other, awaits it through its promise.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use worker::Context;
use worker::js_sys::Promise;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::{JsFuture, future_to_promise};

/// Starts `work` under `ctx`'s `waitUntil`; the promise settles when it ends.
pub fn begin(ctx: &Context, work: impl Future<Output = ()> + 'static) -> Promise {
    begin_boxed(ctx, Box::pin(work))
}

/// One copy of the glue for every kind of work (the worker's size).
fn begin_boxed(ctx: &Context, work: Pin<Box<dyn Future<Output = ()>>>) -> Promise {
    let promise = future_to_promise(async move {
        work.await;
        Ok(JsValue::UNDEFINED)
    });
    let kept = promise.clone();
    ctx.wait_until(async move {
        let _ = JsFuture::from(kept).await;
    });
    promise
}

/// Waits for work [`begin`] started (it never rejects), for at most `limit`: work that the
/// runtime cut off all the same (its request's CPU limit) never settles, and a request waiting
/// for it would never answer.
pub async fn finished_within(promise: Promise, limit: Duration) {
    let done = JsFuture::from(promise);
    let _ = futures_util::future::select(done, worker::Delay::from(limit)).await;
}
