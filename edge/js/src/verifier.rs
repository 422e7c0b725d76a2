//! `Verifier`: access tokens checked against a JWK set, as the edge and the issuer check them.

use gatehouse_shared::{ErrorCode, KeySet, VerifierOptions};
use serde::Deserialize;
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;

use crate::revocations::{RevocationList, same_issuer};
use crate::{error, error_from, now_secs, to_js, token_text};

pub(crate) fn key_set(jwks: &JsValue) -> Result<KeySet, JsValue> {
    let text: js_sys::JsString = if jwks.is_string() {
        jwks.clone().unchecked_into()
    } else {
        // `undefined` (an unset variable) stringifies to `undefined`, not to text.
        js_sys::JSON::stringify(jwks)
            .ok()
            .filter(|json| json.is_string())
            .ok_or_else(|| {
                error(
                    ErrorCode::InvalidKey,
                    "jwks must be a JWK set object or its JSON text",
                )
            })?
    };
    // A set longer than a fetched one may be (`createRemoteVerifier`'s limit) is refused before
    // it is copied into the wasm, whose memory never shrinks (UTF-16 units are at most its
    // UTF-8 bytes, as for tokens), and again by its bytes.
    let max = KeySet::MAX_FETCHED_BYTES;
    let too_large = || {
        let text = format!("the JWK set is over {} MiB", max >> 20);
        error(ErrorCode::InvalidKey, &text)
    };
    if usize::try_from(text.length()).unwrap_or(usize::MAX) > max {
        return Err(too_large());
    }
    let json = String::from(text);
    if json.len() > max {
        return Err(too_large());
    }
    KeySet::from_json(&json).map_err(|e| error_from(e.code(), &e))
}

/// The members `Options` reads (serde-wasm-bindgen looks up only these, so any other would be
/// ignored, a jose `clockTolerance` say).
const OPTION_NAMES: [&str; 5] = ["issuer", "audience", "leeway", "typ", "maxTokenBytes"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    issuer: String,
    audience: String,
    leeway: Option<u32>,
    typ: Option<String>,
    max_token_bytes: Option<usize>,
}

/// Verifies access tokens against a JWK set.
#[wasm_bindgen]
pub struct Verifier {
    pub(crate) inner: gatehouse_shared::Verifier,
}

#[wasm_bindgen]
impl Verifier {
    /// `jwks`: a JWK set (object or JSON text). `options`: `{issuer, audience, leeway?, typ?,
    /// maxTokenBytes?}`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "JwkSet | string")] jwks: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "VerifierOptions")] options: JsValue,
    ) -> Result<Verifier, JsValue> {
        let keys = key_set(jwks)?;
        let invalid = |why: &str| error(ErrorCode::InvalidKey, &format!("invalid options: {why}"));
        // `is_object`, not `instanceof Object`: a null-prototype object or one of another realm
        // is read as options all the same.
        if options.is_object() {
            let names = js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>());
            if let Some(name) = names
                .iter()
                .filter_map(|name| name.as_string())
                .find(|name| !OPTION_NAMES.contains(&name.as_str()))
            {
                return Err(invalid(&format!(
                    "unknown member `{name}` (the members are {})",
                    OPTION_NAMES.join(", ")
                )));
            }
        }
        let o: Options =
            serde_wasm_bindgen::from_value(options).map_err(|e| invalid(&e.to_string()))?;
        if o.issuer.is_empty() || o.audience.is_empty() {
            return Err(invalid("issuer and audience must not be empty"));
        }
        let mut options = VerifierOptions::new(o.issuer, o.audience);
        if let Some(leeway) = o.leeway {
            if leeway > VerifierOptions::MAX_LEEWAY_SECS {
                return Err(error(
                    ErrorCode::InvalidKey,
                    &format!(
                        "invalid options: leeway is at most {} s (revocation entries cover no \
                         longer leeway)",
                        VerifierOptions::MAX_LEEWAY_SECS
                    ),
                ));
            }
            options.leeway_secs = leeway;
        }
        if let Some(typ) = o.typ {
            options.token_type = typ;
        }
        if let Some(max) = o.max_token_bytes {
            options.max_token_bytes = max;
        }
        Ok(Self {
            inner: gatehouse_shared::Verifier::new(keys, options),
        })
    }

    /// The verified claims as a plain object; throws a `GatehouseError` with a stable `code`.
    /// `now` (Unix seconds) defaults to the clock.
    #[wasm_bindgen(unchecked_return_type = "AccessClaims")]
    pub fn verify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
        now: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let token = token_text(token, self.inner.options().max_token_bytes)?;
        let claims = self
            .inner
            .verify(&token, now_secs(now)?)
            .map_err(|e| error_from(e.code(), &e))?;
        to_js(&claims)
    }

    /// [`verify`](Self::verify), then the revocation check against `revocations`, in one call
    /// without a round trip of the claims through JavaScript. A revoked token throws `revoked`.
    #[wasm_bindgen(js_name = verifyNotRevoked, unchecked_return_type = "AccessClaims")]
    pub fn verify_not_revoked(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
        revocations: &RevocationList,
        now: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        same_issuer(revocations, self)?;
        let token = token_text(token, self.inner.options().max_token_bytes)?;
        let claims = self
            .inner
            .verify_not_revoked(&token, now_secs(now)?, &revocations.inner)
            .map_err(|e| error_from(e.code(), &e))?;
        to_js(&claims)
    }

    /// The `kid`s this verifier knows.
    #[wasm_bindgen(getter)]
    pub fn kids(&self) -> Vec<String> {
        self.inner.keys().kids().map(str::to_owned).collect()
    }
}
