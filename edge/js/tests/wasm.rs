//! The Rust side of the package, run in wasm under Node by wasm-bindgen-test-runner
//! (`cargo test -p gatehouse-verify --target wasm32-unknown-unknown`).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use gatehouse_verify::{Verifier, decode_unverified, error_codes, expires_in, is_expired};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

const NOW: f64 = 1_800_000_000.0;

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

fn jwks() -> JsValue {
    let x = URL_SAFE_NO_PAD.encode(key().verifying_key().as_bytes());
    JsValue::from_str(&format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"k1"}}]}}"#
    ))
}

fn token(exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
    let claims = format!(
        r#"{{"iss":"https://i.test","sub":"u","aud":"app","exp":{exp},"iat":1799999000,"jti":"j","sid":"s","scope":"read"}}"#
    );
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let sig = key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn options() -> JsValue {
    js_sys::JSON::parse(r#"{"issuer":"https://i.test","audience":"app"}"#).unwrap()
}

fn code(err: &JsValue) -> String {
    js_sys::Reflect::get(err, &JsValue::from_str("code"))
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
fn verifies_and_returns_plain_claims() {
    let verifier = Verifier::new(&jwks(), options()).unwrap();
    assert_eq!(verifier.kids(), ["k1"]);
    let claims = verifier
        .verify(&token(1_800_000_600).into(), Some(NOW))
        .unwrap();
    let sub = js_sys::Reflect::get(&claims, &JsValue::from_str("sub")).unwrap();
    assert_eq!(sub.as_string().as_deref(), Some("u"));
}

#[wasm_bindgen_test]
fn failures_throw_gatehouse_errors_with_codes() {
    let verifier = Verifier::new(&jwks(), options()).unwrap();
    let err = verifier
        .verify(&token(1_700_000_000).into(), Some(NOW))
        .unwrap_err();
    assert_eq!(code(&err), "expired");
    let name = js_sys::Reflect::get(&err, &JsValue::from_str("name")).unwrap();
    assert_eq!(name.as_string().as_deref(), Some("GatehouseError"));
    assert!(wasm_bindgen::JsCast::is_instance_of::<js_sys::Error>(&err));
    assert_eq!(
        code(&verifier.verify(&"x.y.z".into(), Some(NOW)).unwrap_err()),
        "malformed"
    );
    // What JavaScript may hand in: no token at all, a number, or a string of megabytes; each
    // gets the package's own code, not the glue's TypeError, and the last one is not copied in.
    for (token, expected) in [
        (JsValue::UNDEFINED, "malformed"),
        (JsValue::from_f64(42.0), "malformed"),
        (JsValue::from_str(&"x".repeat(9000)), "too_large"),
    ] {
        assert_eq!(
            code(&verifier.verify(&token, Some(NOW)).unwrap_err()),
            expected
        );
    }
    assert_eq!(
        code(&decode_unverified(&JsValue::UNDEFINED).unwrap_err()),
        "malformed"
    );
    let bad_jwks = JsValue::from_str("[]");
    assert_eq!(
        code(&Verifier::new(&bad_jwks, options()).err().unwrap()),
        "invalid_key"
    );
    assert!(error_codes().iter().any(|c| c == "bad_signature"));
}

#[wasm_bindgen_test]
fn unverified_helpers() {
    let t: JsValue = token(1_800_000_600).into();
    assert!((expires_in(&t, Some(NOW)).unwrap() - 600.0).abs() < f64::EPSILON);
    // A `now` far outside the clock's range saturates (it overflowed, a trap in a debug build).
    assert!(expires_in(&t, Some(f64::NEG_INFINITY)).unwrap() > 1e18);
    assert!(expires_in(&t, Some(f64::INFINITY)).unwrap() < -1e18);
    assert!(is_expired(&token(1_000).into(), None).unwrap());
    let decoded = decode_unverified(&t).unwrap();
    let header = js_sys::Reflect::get(&decoded, &JsValue::from_str("header")).unwrap();
    let kid = js_sys::Reflect::get(&header, &JsValue::from_str("kid")).unwrap();
    assert_eq!(kid.as_string().as_deref(), Some("k1"));
}
