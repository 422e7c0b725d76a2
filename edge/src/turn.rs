//! One at a time within an isolate: a request's async work that must not interleave with the
//! same work of another request of its isolate (the KV writes of two accepted lists, whose puts
//! would otherwise land in either order). A JS promise chain: each holder's turn ends when its
//! [`Turn`] drops, the request's future included when the runtime cancels it.

use std::cell::RefCell;
use std::thread::LocalKey;
use std::time::Duration;

use worker::js_sys::{Function, Promise};
use worker::wasm_bindgen::JsValue;

use crate::outliving;

/// The end of the latest turn taken, on one isolate's chain.
pub struct Chain(RefCell<Option<Promise>>);

/// Held while it is this request's turn; the next one begins when it drops.
pub struct Turn(Option<Function>);

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            let _ = end.call0(&JsValue::UNDEFINED);
        }
    }
}

impl Chain {
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }
}

/// Waits for the turn before this one on `chain` to end, at most `limit` (a holder the runtime
/// cut off mid-await may never drop its turn), and takes the next.
pub async fn take(chain: &'static LocalKey<Chain>, limit: Duration) -> Turn {
    let mut end = None;
    let mine = Promise::new(&mut |resolve, _| end = Some(resolve));
    let before = chain.with(|chain| chain.0.borrow_mut().replace(mine));
    if let Some(before) = before {
        outliving::finished_within(before, limit).await;
    }
    Turn(end)
}
