//! `RevocationList`: a verified revocation snapshot, for apps that check tokens against it.

use gatehouse_shared::{ErrorCode, SnapshotOptions};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;

use crate::verifier::{Verifier, key_set};
use crate::{error, error_from, invalid_argument, now_secs, token_text};

/// A list is checked only with a verifier of its own issuer: another's `jti`, `sid` or `sub`
/// looked up in it answers "not revoked" (or a false hit on a shared id).
pub(crate) fn same_issuer(list: &RevocationList, verifier: &Verifier) -> Result<(), JsValue> {
    if list.inner.issuer() == verifier.inner.options().issuer {
        Ok(())
    } else {
        Err(invalid_argument(
            "the revocation list and the verifier are of different issuers",
        ))
    }
}

/// A verified revocation snapshot, for apps that want to check tokens against it.
#[wasm_bindgen]
pub struct RevocationList {
    pub(crate) inner: gatehouse_shared::RevocationList,
}

#[wasm_bindgen]
impl RevocationList {
    /// Verifies a signed snapshot (`GET /v1/revocations`) against the issuer's JWK set. The
    /// snapshot may be text or its bytes (`Uint8Array`); bytes are faster for large lists, as a
    /// string crosses into wasm character by character.
    #[wasm_bindgen(js_name = fromSnapshot)]
    pub fn from_snapshot(
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] snapshot: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "JwkSet | string")] jwks: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] issuer: &JsValue,
        now: Option<f64>,
    ) -> Result<RevocationList, JsValue> {
        let issuer = issuer
            .as_string()
            .filter(|issuer| !issuer.is_empty())
            .ok_or_else(|| invalid_argument("issuer must be the issuer's URL, a string"))?;
        // Refused before it is copied into the wasm, whose memory never shrinks. A string's
        // length in UTF-16 units is at most its UTF-8 bytes, as for tokens.
        let length = if let Some(bytes) = snapshot.dyn_ref::<js_sys::Uint8Array>() {
            bytes.length()
        } else {
            snapshot
                .dyn_ref::<js_sys::JsString>()
                .map_or(0, js_sys::JsString::length)
        };
        if usize::try_from(length).unwrap_or(usize::MAX) > SnapshotOptions::DEFAULT_MAX_BYTES {
            return Err(error(ErrorCode::TooLarge, "the snapshot is over 8 MiB"));
        }
        let snapshot = if let Some(bytes) = snapshot.dyn_ref::<js_sys::Uint8Array>() {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| error(ErrorCode::Malformed, "the snapshot is not UTF-8"))?
        } else {
            snapshot.as_string().ok_or_else(|| {
                error(
                    ErrorCode::Malformed,
                    "the snapshot must be a string or a Uint8Array",
                )
            })?
        };
        let keys = key_set(jwks)?;
        let inner = gatehouse_shared::RevocationList::verify_snapshot(
            &snapshot,
            &keys,
            &SnapshotOptions::new(issuer),
            now_secs(now)?,
        )
        .map_err(|e| error_from(e.code(), &e))?;
        Ok(Self { inner })
    }

    /// `undefined` when `token` is not revoked, else why: `"token"`, `"session"`, `"user"` or
    /// `"key"`.
    /// The token is verified by `verifier` first (throwing as `verify` does): only verified
    /// claims reach the list, never an object from JavaScript.
    #[wasm_bindgen(unchecked_return_type = "RevocationReason | undefined")]
    pub fn check(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
        verifier: &Verifier,
        now: Option<f64>,
    ) -> Result<Option<String>, JsValue> {
        same_issuer(self, verifier)?;
        let token = token_text(token, verifier.inner.options().max_token_bytes)?;
        let claims = verifier
            .inner
            .verify(&token, now_secs(now)?)
            .map_err(|e| error_from(e.code(), &e))?;
        Ok(self.inner.check(&claims).map(|r| r.as_str().to_owned()))
    }

    /// Whether this list replaces `held`, by the edge's rule (`gatehouse_shared::replaces_list`):
    /// a higher `seq`, the same `seq` signed later, or a list that revokes the key that signed
    /// `held` (a key that leaked can sign any `seq`); never a list signed by a key `held`
    /// revokes.
    pub fn replaces(&self, held: &RevocationList) -> bool {
        gatehouse_shared::replaces_list(&self.inner, &held.inner)
    }

    #[wasm_bindgen(getter)]
    pub fn seq(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // sequence numbers stay far below 2^53
        let seq = self.inner.seq() as f64;
        seq
    }

    #[wasm_bindgen(getter, js_name = issuedAt)]
    pub fn issued_at(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let at = self.inner.issued_at() as f64;
        at
    }

    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.inner.len()
    }
}
