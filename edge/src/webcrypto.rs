//! Ed25519 signatures checked by the runtime's WebCrypto (`crypto.subtle.verify`, native code in
//! workerd) instead of curve arithmetic in wasm. Only the equation moves: the shared verifier
//! still picks the key by `kid` and the algorithm from the key, checks the signature's form
//! (what `verify_strict` adds to the equation) and decodes the claims in jwt-compact's order,
//! so every input keeps its error code (`Verifier::verify_with`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use gatehouse_shared::{Ed25519Input, Ed25519Oracle};
use worker::js_sys::{Array, Promise, Uint8Array};
use worker::wasm_bindgen::prelude::*;
use worker::wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = importKey)]
    fn import_key(
        format: &str,
        key_data: &Uint8Array,
        algorithm: &str,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = verify)]
    fn subtle_verify(
        algorithm: &str,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

thread_local! {
    /// Imported keys by their bytes: a key set holds a handful, imported once per isolate.
    static KEYS: RefCell<HashMap<[u8; 32], JsValue>> = RefCell::new(HashMap::new());
}

/// The imported key, or `None` when the runtime failed to import it.
async fn crypto_key(bytes: &[u8; 32]) -> Option<JsValue> {
    if let Some(key) = KEYS.with_borrow(|keys| keys.get(bytes).cloned()) {
        return Some(key);
    }
    let usages = Array::of1(&JsValue::from_str("verify"));
    let promise = import_key(
        "raw",
        &Uint8Array::from(&bytes[..]),
        "Ed25519",
        false,
        &usages,
    )
    .ok()?;
    let key = JsFuture::from(promise).await.ok()?;
    KEYS.with_borrow_mut(|keys| {
        // Keys come from the issuer's small JWKS; a garbage-filled set cannot grow this much.
        if keys.len() >= 64 {
            keys.clear();
        }
        keys.insert(*bytes, key.clone());
    });
    Some(key)
}

/// The runtime's native Ed25519, for one request. A call that fails (the import or the verify
/// throws or rejects, on a key the shared core already checked) is the runtime's fault, not
/// the token's: it answers "not verified" and says so in [`Self::faulted`], so the gate
/// answers 503 instead of `bad_signature`, which would sign a client out.
#[derive(Default)]
pub struct WebCrypto {
    fault: Cell<bool>,
}

impl WebCrypto {
    pub fn faulted(&self) -> bool {
        self.fault.get()
    }

    async fn equation_holds(input: &Ed25519Input<'_>) -> Option<bool> {
        let key = crypto_key(input.key.as_bytes()).await?;
        let signature = Uint8Array::from(&input.signature[..]);
        let data = Uint8Array::from(input.signed);
        let promise = subtle_verify("Ed25519", &key, &signature, &data).ok()?;
        JsFuture::from(promise).await.ok()?.as_bool()
    }
}

impl Ed25519Oracle for WebCrypto {
    async fn verify(&self, input: &Ed25519Input<'_>) -> bool {
        let verdict = Self::equation_holds(input).await;
        self.fault.set(verdict.is_none());
        verdict.unwrap_or(false)
    }
}
