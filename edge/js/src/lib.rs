//! `@gatehouse/verify`: the same verification code as the edge and the issuer, for JavaScript.
//! Verifying in a browser is for UX (show who is logged in, schedule a refresh), never for
//! authorisation: the edge and the origin decide.

mod revocations;
mod unverified;
mod verifier;

use gatehouse_shared::{ErrorCode, KeySet, SnapshotOptions};
use serde::Serialize;
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;

pub use revocations::RevocationList;
pub use unverified::{decode_unverified, expires_in, is_expired};
pub use verifier::Verifier;

#[wasm_bindgen(module = "/npm/errors.js")]
extern "C" {
    #[wasm_bindgen(js_name = GatehouseError)]
    type JsGatehouseError;

    #[wasm_bindgen(constructor, js_class = "GatehouseError")]
    fn new(code: &str, message: &str) -> JsGatehouseError;
}

// The shapes the bindings below name in their TypeScript signatures, so no public function of
// the package takes or returns `any` (tests/js/package.test.mjs checks it on the packed tarball).
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Claims of a verified Gatehouse access token (times in Unix seconds). */
export interface AccessClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  nbf?: number;
  jti: string;
  sid: string;
  scope?: string;
  /** The OAuth client the token was issued to (RFC 9068), when its token request named one. */
  client_id?: string;
}

export interface VerifierOptions {
  issuer: string;
  audience: string;
  /** Allowed clock difference in seconds (default 30, at most 60). */
  leeway?: number;
  /** Required header `typ` (default `at+jwt`). */
  typ?: string;
  /** Longer tokens are refused before decoding (default 8192). */
  maxTokenBytes?: number;
}

/** The edge's rules for a fetched key set, which `createRemoteVerifier` defaults to. */
export interface KeySetFetchDefaults {
  /** Refetched in the background once this old (seconds). */
  ttlSeconds: number;
  /** A token naming an unknown `kid` refetches at most this often (seconds). */
  refetchCooldownSeconds: number;
  /** A fetch is given up after this (seconds). */
  fetchTimeoutSeconds: number;
  /** A larger key set is refused (bytes). */
  maxBytes: number;
}

/** The edge's rules for a revocation list kept up to date by polling, which
 * `createRemoteVerifier` defaults to when it is given a `revocationsUrl`. */
export interface RevocationListFetchDefaults {
  /** Refetched in the background once this old (seconds). */
  ttlSeconds: number;
  /** A list signed longer ago than this is stale: tokens are refused, not checked (seconds). */
  maxAgeSeconds: number;
  /** A larger list is refused (bytes). */
  maxBytes: number;
}

/** One public JWK (RFC 7517); members other than these are kept and ignored. */
export interface Jwk {
  kty: string;
  kid?: string;
  alg?: string;
  use?: string;
  crv?: string;
  x?: string;
  y?: string;
  [member: string]: unknown;
}

/** A JWK set (`GET /.well-known/jwks.json`). */
export interface JwkSet {
  keys: Jwk[];
}

/** What `decodeUnverified` shows: nothing in it has been checked. */
export interface DecodedToken {
  header: { alg: string; kid?: string; typ?: string };
  claims: Record<string, unknown>;
}

/** Why a token is revoked. */
export type RevocationReason = "token" | "session" | "user" | "key";
"#;

pub(crate) fn error(code: ErrorCode, message: &str) -> JsValue {
    JsGatehouseError::new(code.as_str(), message).into()
}

pub(crate) fn error_from(code: ErrorCode, err: &impl std::fmt::Display) -> JsValue {
    error(code, &err.to_string())
}

/// An argument this package cannot use (a `now` that is no Unix seconds, an issuer that is no
/// string): the package's own code, outside the shared table, since nothing in a token is wrong.
pub(crate) fn invalid_argument(message: &str) -> JsValue {
    JsGatehouseError::new("invalid_argument", message).into()
}

pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| error(ErrorCode::Malformed, &e.to_string()))
}

/// Above this a `now` is taken for milliseconds (`Date.now()`): it is the year 5138 in seconds.
const MAX_NOW_SECS: f64 = 1e11;

/// Unix seconds, from `now` or the JS clock. A `now` that is not finite, or over
/// [`MAX_NOW_SECS`] (`Date.now()`'s milliseconds), is refused: read as seconds it would make
/// every token expired, or one that never expires.
pub(crate) fn now_secs(now: Option<f64>) -> Result<i64, JsValue> {
    let secs = match now {
        None => js_sys::Date::now() / 1000.0,
        Some(now) if now.is_finite() && now.abs() <= MAX_NOW_SECS => now,
        Some(_) => {
            return Err(invalid_argument(
                "now must be Unix seconds (Date.now() is milliseconds: divide it by 1000)",
            ));
        }
    };
    #[allow(clippy::cast_possible_truncation)] // checked above: far inside i64
    Ok(secs.floor() as i64)
}

/// What `createRemoteVerifier` defaults to, the edge's own rules for a fetched key set.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeySetFetchDefaults {
    ttl_seconds: u32,
    refetch_cooldown_seconds: u32,
    fetch_timeout_seconds: u64,
    max_bytes: usize,
}

/// The rules a fetched key set is kept by, the edge's defaults: `createRemoteVerifier` takes
/// them, so the two cannot drift apart.
#[wasm_bindgen(js_name = keySetFetchDefaults, unchecked_return_type = "KeySetFetchDefaults")]
pub fn key_set_fetch_defaults() -> Result<JsValue, JsValue> {
    to_js(&KeySetFetchDefaults {
        ttl_seconds: KeySet::FETCHED_TTL_SECS,
        refetch_cooldown_seconds: KeySet::REFETCH_COOLDOWN_SECS,
        fetch_timeout_seconds: KeySet::FETCH_TIMEOUT_SECS,
        max_bytes: KeySet::MAX_FETCHED_BYTES,
    })
}

/// What `createRemoteVerifier` defaults to for a revocation list, the edge's own rules.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevocationListFetchDefaults {
    ttl_seconds: u32,
    max_age_seconds: u32,
    max_bytes: usize,
}

/// The rules a polled revocation list is kept by, the edge's defaults (`KV_REFRESH_SECS`,
/// `MAX_LIST_AGE_SECS`, its size limit): `createRemoteVerifier` takes them.
#[wasm_bindgen(
    js_name = revocationListFetchDefaults,
    unchecked_return_type = "RevocationListFetchDefaults"
)]
pub fn revocation_list_fetch_defaults() -> Result<JsValue, JsValue> {
    to_js(&RevocationListFetchDefaults {
        ttl_seconds: SnapshotOptions::REFRESH_SECS,
        max_age_seconds: SnapshotOptions::DEFAULT_MAX_AGE_SECS,
        max_bytes: SnapshotOptions::DEFAULT_MAX_BYTES,
    })
}

/// A token handed in from JavaScript. Anything but a string (the `undefined` of a missing
/// header, say) is `malformed`, as the core would call it, where the glue would throw a
/// `TypeError`; and a string over `max` is `too_large` before it is copied into the wasm. Its
/// length in UTF-16 units is at most its length in UTF-8 bytes, so the check never refuses a
/// token the core would take.
pub(crate) fn token_text(token: &JsValue, max: usize) -> Result<String, JsValue> {
    let Some(text) = token.dyn_ref::<js_sys::JsString>() else {
        return Err(error(ErrorCode::Malformed, "the token is not a string"));
    };
    let len = usize::try_from(text.length()).unwrap_or(usize::MAX);
    if len > max {
        let e = gatehouse_shared::ParseError::TooLarge { len, max };
        return Err(error_from(e.code(), &e));
    }
    Ok(text.into())
}

/// The stable error codes, in table order (the same for the edge and the issuer).
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}
