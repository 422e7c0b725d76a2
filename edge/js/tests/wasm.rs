//! The Rust side of the package, run in wasm under Node by wasm-bindgen-test-runner
//! (`cargo test -p gatehouse-verify --target wasm32-unknown-unknown`).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use gatehouse_verify::{
    RevocationList, Verifier, decode_unverified, error_codes, expires_in, is_expired,
};
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
    assert!(is_expired(&token(1_000).into(), None).unwrap());
    let decoded = decode_unverified(&t).unwrap();
    let header = js_sys::Reflect::get(&decoded, &JsValue::from_str("header")).unwrap();
    let kid = js_sys::Reflect::get(&header, &JsValue::from_str("kid")).unwrap();
    assert_eq!(kid.as_string().as_deref(), Some("k1"));
    // Absent header members are absent, as the type says (`kid?: string`), not `null`.
    let bare = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#),
        URL_SAFE_NO_PAD.encode("{}"),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    let decoded = decode_unverified(&bare.into()).unwrap();
    let header = js_sys::Reflect::get(&decoded, &JsValue::from_str("header")).unwrap();
    let has = |name: &str| js_sys::Reflect::has(&header, &JsValue::from_str(name)).unwrap();
    assert!(!has("kid") && !has("typ") && has("alg"));
}

/// What a caller may get wrong is refused with a code, never read with another meaning or
/// trapped on: a `now` in milliseconds or not finite (before, `Date.now()` made every token
/// `expired` and an `expiresIn` of -1.7e12; NaN read as 1970), an option the package does not
/// know (jose's `clockTolerance` left the leeway at 30 s), an empty issuer or audience, an
/// issuer that is no string (a number trapped in the glue's allocator), a leeway that is no
/// number of seconds (NaN read as 0, Infinity as never expired).
#[wasm_bindgen_test]
fn arguments_it_cannot_use_are_refused_with_a_code() {
    let verifier = Verifier::new(&jwks(), options()).unwrap();
    let t: JsValue = token(1_800_000_600).into();
    for now in [NOW * 1000.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            code(&verifier.verify(&t, Some(now)).unwrap_err()),
            "invalid_argument",
            "{now}"
        );
        assert_eq!(
            code(&expires_in(&t, Some(now)).unwrap_err()),
            "invalid_argument"
        );
    }
    for leeway in [f64::NAN, -1.0, f64::INFINITY] {
        assert_eq!(
            code(&is_expired(&t, Some(leeway)).unwrap_err()),
            "invalid_argument"
        );
    }
    for options in [
        r#"{"issuer":"https://i.test","audience":"app","clockTolerance":120}"#,
        r#"{"issuer":"","audience":"app"}"#,
        r#"{"issuer":"https://i.test","audience":""}"#,
    ] {
        let options = js_sys::JSON::parse(options).unwrap();
        assert_eq!(
            code(&Verifier::new(&jwks(), options).err().unwrap()),
            "invalid_key"
        );
    }
    // Every member the type declares is taken: the list of known names matches the fields.
    let every = js_sys::JSON::parse(
        r#"{"issuer":"https://i.test","audience":"app","leeway":10,"typ":"at+jwt","maxTokenBytes":4096}"#,
    )
    .unwrap();
    assert!(Verifier::new(&jwks(), every).is_ok());
    let huge = JsValue::from_str(&" ".repeat((1 << 20) + 1));
    assert_eq!(
        code(&Verifier::new(&huge, options()).err().unwrap()),
        "invalid_key"
    );
    for issuer in [
        JsValue::from_f64(42.0),
        JsValue::UNDEFINED,
        JsValue::from_str(""),
    ] {
        let refused = RevocationList::from_snapshot(&"a.b.c".into(), &jwks(), &issuer, Some(NOW));
        assert_eq!(code(&refused.err().unwrap()), "invalid_argument");
    }
    // Refused before it is copied in (the core's own limit says "bytes, over the limit").
    let issuer = JsValue::from_str("https://i.test");
    let text = JsValue::from_str(&"a".repeat(8 * 1024 * 1024 + 1));
    let bytes = js_sys::Uint8Array::new_with_length(8 * 1024 * 1024 + 1).into();
    for over in [text, bytes] {
        let refused = RevocationList::from_snapshot(&over, &jwks(), &issuer, Some(NOW));
        let err = refused.err().unwrap();
        assert_eq!(code(&err), "too_large");
        let message = js_sys::Reflect::get(&err, &JsValue::from_str("message")).unwrap();
        assert_eq!(
            message.as_string().as_deref(),
            Some("the snapshot is over 8 MiB")
        );
    }
    // A null-prototype options object is checked too.
    let no_prototype: js_sys::Object = wasm_bindgen::JsCast::unchecked_into(JsValue::NULL);
    let bare: js_sys::Object = js_sys::Object::create(&no_prototype);
    for (name, value) in [
        ("issuer", "https://i.test"),
        ("audience", "app"),
        ("ttl", "60"),
    ] {
        js_sys::Reflect::set(&bare, &name.into(), &value.into()).unwrap();
    }
    assert_eq!(
        code(&Verifier::new(&jwks(), bare.into()).err().unwrap()),
        "invalid_key"
    );
}
