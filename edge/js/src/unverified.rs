//! What a token says, read WITHOUT verifying anything: for display and for scheduling a refresh.

use gatehouse_shared::{ErrorCode, UntrustedToken};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::{error, error_from, invalid_argument, now_secs, to_js, token_text};

/// Absent members are left out, not `null`: the type says `kid?: string`.
#[derive(Serialize)]
struct DecodedHeader<'a> {
    alg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

/// The size limit of the unverified readers below: generous, since they only decode.
const MAX_UNVERIFIED_BYTES: usize = 64 * 1024;

fn parse(token: &str) -> Result<UntrustedToken<'_>, JsValue> {
    UntrustedToken::parse(token, MAX_UNVERIFIED_BYTES).map_err(|e| error_from(e.code(), &e))
}

/// The header and claims WITHOUT verifying anything: for display only. The claims object is
/// `JSON.parse` of the payload, so it shows exactly what the token says.
#[wasm_bindgen(js_name = decodeUnverified, unchecked_return_type = "DecodedToken")]
pub fn decode_unverified(
    #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
) -> Result<JsValue, JsValue> {
    let token = token_text(token, MAX_UNVERIFIED_BYTES)?;
    let untrusted = parse(&token)?;
    let header = untrusted.header();
    let header = to_js(&DecodedHeader {
        alg: untrusted.algorithm(),
        kid: header.key_id.as_deref(),
        typ: header.token_type.as_deref(),
    })?;
    let not_json = || error(ErrorCode::Malformed, "the claims are not a JSON object");
    let payload = untrusted.payload_unverified().ok_or_else(not_json)?;
    let text = core::str::from_utf8(&payload).map_err(|_| not_json())?;
    let claims = js_sys::JSON::parse(text).map_err(|_| not_json())?;
    // `null`, a number or an array parse too; the type promises an object.
    if !claims.is_object() || js_sys::Array::is_array(&claims) {
        return Err(not_json());
    }
    let decoded = js_sys::Object::new();
    js_sys::Reflect::set(&decoded, &"header".into(), &header)?;
    js_sys::Reflect::set(&decoded, &"claims".into(), &claims)?;
    Ok(decoded.into())
}

fn exp_of(token: &str) -> Result<i64, JsValue> {
    parse(token)?
        .claims_unverified::<jwt_compact::Empty>()
        .map_err(|_| error(ErrorCode::Malformed, "the claims are not a JSON object"))?
        .expiration
        .map(|exp| exp.timestamp())
        .ok_or_else(|| error(ErrorCode::MissingClaim, "the token has no exp"))
}

/// Seconds until `exp` (negative once expired), from the unverified claims. `now` defaults to
/// the clock.
#[wasm_bindgen(js_name = expiresIn)]
pub fn expires_in(
    #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
    now: Option<f64>,
) -> Result<f64, JsValue> {
    let token = token_text(token, MAX_UNVERIFIED_BYTES)?;
    #[allow(clippy::cast_precision_loss)] // a difference of Unix seconds
    let secs = exp_of(&token)?.saturating_sub(now_secs(now)?) as f64;
    Ok(secs)
}

/// The most `isExpired` allows: a larger number is a time (`Date.now() / 1000` passed by
/// mistake), which would read every token as never expired.
const MAX_LEEWAY_ARG_SECS: f64 = 86_400.0;

/// Whether `exp` has passed, allowing `leeway` seconds (default 0, at most a day).
#[wasm_bindgen(js_name = isExpired)]
pub fn is_expired(
    #[wasm_bindgen(unchecked_param_type = "string")] token: &JsValue,
    leeway: Option<f64>,
) -> Result<bool, JsValue> {
    let token = token_text(token, MAX_UNVERIFIED_BYTES)?;
    let leeway = leeway.unwrap_or(0.0);
    if !(leeway.is_finite() && (0.0..=MAX_LEEWAY_ARG_SECS).contains(&leeway)) {
        return Err(invalid_argument(
            "leeway must be a number of seconds from 0 to 86400 (isExpired takes no time)",
        ));
    }
    #[allow(clippy::cast_possible_truncation)] // a finite number of seconds; `as` saturates
    let leeway = leeway as i64;
    Ok(gatehouse_shared::exp_has_passed(
        exp_of(&token)?,
        now_secs(None)?,
        leeway,
    ))
}
