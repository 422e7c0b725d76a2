//! Ed25519 signatures, of request tokens and of signed revocation lists, checked by the runtime's
//! WebCrypto (`crypto.subtle.verify`, native code in workerd) instead of curve arithmetic in
//! wasm. Only the equation moves: the shared core still picks the key by `kid` and the algorithm
//! from the key, checks the signature's form (what `verify_strict` adds to the equation) and
//! decodes in jwt-compact's order, so every input keeps its error code (`Verifier::verify_with`,
//! `RevocationList::verify_snapshot_with`, `RevocationDelta::verify_with`).

use std::cell::RefCell;
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

/// The runtime's WebCrypto threw or rejected (the import or the verify) on a key the shared core
/// already checked: the runtime's fault, not the token's or list's, so the answer is 503
/// `verification_unavailable` rather than `bad_signature` (on which a client signs its user
/// out) or a 400 for a pushed list (which the issuer would not retry).
pub struct RuntimeFault;

/// The runtime's native Ed25519.
pub struct WebCrypto;

impl Ed25519Oracle for WebCrypto {
    type Fault = RuntimeFault;

    async fn verify(&self, input: &Ed25519Input<'_>) -> Result<bool, RuntimeFault> {
        let key = crypto_key(input.key.as_bytes()).await.ok_or(RuntimeFault)?;
        let signature = Uint8Array::from(&input.signature[..]);
        let data = Uint8Array::from(input.signed);
        let promise =
            subtle_verify("Ed25519", &key, &signature, &data).map_err(|_| RuntimeFault)?;
        JsFuture::from(promise)
            .await
            .ok()
            .and_then(|verdict| verdict.as_bool())
            .ok_or(RuntimeFault)
    }
}
