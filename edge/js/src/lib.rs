//! `@gatehouse/verify`: the same verification code as the edge and the issuer, for JavaScript.
//! Verifying in a browser is for UX (show who is logged in, schedule a refresh), never for
//! authorisation: the edge and the origin decide.

use gatehouse_shared::{ErrorCode, KeySet, SnapshotOptions, UntrustedToken, VerifierOptions};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;

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

fn error(code: ErrorCode, message: &str) -> JsValue {
    JsGatehouseError::new(code.as_str(), message).into()
}

fn error_from(code: ErrorCode, err: &impl std::fmt::Display) -> JsValue {
    error(code, &err.to_string())
}

/// An argument this package cannot use (a `now` that is no Unix seconds, an issuer that is no
/// string): the package's own code, outside the shared table, since nothing in a token is wrong.
fn invalid_argument(message: &str) -> JsValue {
    JsGatehouseError::new("invalid_argument", message).into()
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| error(ErrorCode::Malformed, &e.to_string()))
}

/// Above this a `now` is taken for milliseconds (`Date.now()`): it is the year 5138 in seconds.
const MAX_NOW_SECS: f64 = 1e11;

/// Unix seconds, from `now` or the JS clock. A `now` that is not finite, or over
/// [`MAX_NOW_SECS`] (`Date.now()`'s milliseconds), is refused: read as seconds it would make
/// every token expired, or one that never expires.
fn now_secs(now: Option<f64>) -> Result<i64, JsValue> {
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

fn key_set(jwks: &JsValue) -> Result<KeySet, JsValue> {
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

/// A list is checked only with a verifier of its own issuer: another's `jti`, `sid` or `sub`
/// looked up in it answers "not revoked" (or a false hit on a shared id).
fn same_issuer(list: &RevocationList, verifier: &Verifier) -> Result<(), JsValue> {
    if list.inner.issuer() == verifier.inner.options().issuer {
        Ok(())
    } else {
        Err(invalid_argument(
            "the revocation list and the verifier are of different issuers",
        ))
    }
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
    inner: gatehouse_shared::Verifier,
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

/// A token handed in from JavaScript. Anything but a string (the `undefined` of a missing
/// header, say) is `malformed`, as the core would call it, where the glue would throw a
/// `TypeError`; and a string over `max` is `too_large` before it is copied into the wasm. Its
/// length in UTF-16 units is at most its length in UTF-8 bytes, so the check never refuses a
/// token the core would take.
fn token_text(token: &JsValue, max: usize) -> Result<String, JsValue> {
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

/// A verified revocation snapshot, for apps that want to check tokens against it.
#[wasm_bindgen]
pub struct RevocationList {
    inner: gatehouse_shared::RevocationList,
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

/// The stable error codes, in table order (the same for the edge and the issuer).
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}
