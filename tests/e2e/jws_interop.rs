//! Interop with two other JOSE libraries, both ways: npm's `jose` in Node
//! (tests/js/jose-interop.mjs) and Python's `PyJWT` on pyca/cryptography, so OpenSSL's Ed25519
//! and P-256 (tests/py/interop.py). Tokens each signs verify here, tokens signed here verify in
//! each, and a revocation snapshot is a plain JWS to each.

use gatehouse_shared::{
    Algorithm, Audience, ErrorCode, KeySet, RevocationList, SNAPSHOT_TYPE, SigningKey, TokenClaims,
    Verifier, VerifierOptions, sign_access_token,
};
use gatehouse_tests::{node_json, python_json, unix_now};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.interop.test";
const AUDIENCE: &str = "https://api.interop.test";

/// One library's side: its script, and the codes it reports a bad signature and a wrong
/// audience with.
struct Library {
    run: fn(&Value) -> Value,
    bad_signature: &'static str,
    wrong_audience: &'static str,
}

const JOSE: Library = Library {
    run: |input| node_json("tests/js/jose-interop.mjs", input),
    bad_signature: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
    wrong_audience: "ERR_JWT_CLAIM_VALIDATION_FAILED",
};

const PYJWT: Library = Library {
    run: |input| python_json("tests/py/interop.py", input),
    bad_signature: "InvalidSignatureError",
    wrong_audience: "InvalidAudienceError",
};

fn claims(now: i64) -> TokenClaims {
    TokenClaims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: Audience::Many(vec!["https://other.test".into(), AUDIENCE.into()]),
        exp: now + 300,
        iat: now,
        nbf: Some(now),
        jti: "jti-interop".into(),
        sid: "sid-interop".into(),
        scope: "read write".into(),
        client_id: Some("interop-app".into()),
    }
}

fn flip_last_signature_char(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.to_owned();
    let last = sig.pop().unwrap();
    // 'A' and 'Q' differ in a bit that is never a trailing padding bit of a 64-byte signature.
    sig.push(if last == 'A' { 'Q' } else { 'A' });
    format!("{input}.{sig}")
}

fn tokens_signed_by(library: &Library) {
    let now = unix_now();
    let expected = claims(now);
    let out = (library.run)(&json!({"op": "sign", "claims": expected}));
    let keys = KeySet::from_json(&out["jwks"].to_string()).unwrap();
    assert_eq!(keys.len(), 2, "both keys are usable: {:?}", keys.skipped());
    let verifier = Verifier::new(keys, VerifierOptions::new(ISSUER, AUDIENCE));
    for alg in ["EdDSA", "ES256"] {
        let token = out["tokens"][alg].as_str().unwrap();
        assert_eq!(
            verifier.verify(token, now).unwrap().into_inner(),
            expected,
            "{alg}"
        );
        let tampered = flip_last_signature_char(token);
        assert_eq!(
            verifier.verify(&tampered, now).unwrap_err().code(),
            ErrorCode::BadSignature,
            "{alg}"
        );
        let wrong_audience = Verifier::new(
            verifier.keys().clone(),
            VerifierOptions::new(ISSUER, "https://nobody.test"),
        );
        assert_eq!(
            wrong_audience.verify(token, now).unwrap_err().code(),
            ErrorCode::WrongAudience
        );
    }
}

fn tokens_signed_here_verify_in(library: &Library) {
    let now = unix_now();
    let expected = claims(now);
    for alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let key = SigningKey::generate(alg).unwrap();
        let jwks: Value =
            serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
        let token = sign_access_token(&key, &expected).unwrap();
        let verify = |token: &str, audience: &str| {
            (library.run)(&json!({"op": "verify", "jwks": jwks, "token": token,
                                  "issuer": ISSUER, "audience": audience}))
        };
        let out = verify(&token, AUDIENCE);
        assert_eq!(out["ok"], true, "{alg}: {out}");
        assert_eq!(out["payload"], serde_json::to_value(&expected).unwrap());
        assert_eq!(out["header"]["kid"], key.kid());
        assert_eq!(out["header"]["alg"], alg.as_str());

        let out = verify(&flip_last_signature_char(&token), AUDIENCE);
        assert_eq!(out["code"], library.bad_signature, "{alg}: {out}");
        let out = verify(&token, "https://nobody.test");
        assert_eq!(out["code"], library.wrong_audience, "{alg}: {out}");
    }
}

fn revocation_snapshots_are_plain_jws_to(library: &Library) {
    let now = unix_now();
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let jwks: Value = serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
    let list = RevocationList::builder(ISSUER, 3, now)
        .token("jti-1", now + 900)
        .session("sid-1", now + 900)
        .user("user-1", now, now + 900)
        .build();
    let snapshot = list.sign_snapshot(&key).unwrap();
    let verify = |jws: &str| {
        (library.run)(&json!({"op": "verify_snapshot", "jwks": jwks, "jws": jws,
                              "typ": SNAPSHOT_TYPE}))
    };
    let out = verify(&snapshot);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["payload_b64"].as_str(), snapshot.split('.').nth(1));
    let out = verify(&flip_last_signature_char(&snapshot));
    assert_eq!(out["code"], library.bad_signature, "{out}");
}

#[test]
fn tokens_signed_by_jose_verify_here() {
    tokens_signed_by(&JOSE);
}

#[test]
fn tokens_signed_here_verify_in_jose() {
    tokens_signed_here_verify_in(&JOSE);
}

#[test]
fn revocation_snapshots_are_standard_jws_to_jose() {
    revocation_snapshots_are_plain_jws_to(&JOSE);
}

#[test]
fn tokens_signed_by_pyjwt_verify_here() {
    tokens_signed_by(&PYJWT);
}

#[test]
fn tokens_signed_here_verify_in_pyjwt() {
    tokens_signed_here_verify_in(&PYJWT);
}

#[test]
fn revocation_snapshots_are_standard_jws_to_pyjwt() {
    revocation_snapshots_are_plain_jws_to(&PYJWT);
}
