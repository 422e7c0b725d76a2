//! Interop with Python's clients, both ways (tests/py/interop.py): tokens `PyJWT` signs verify
//! here and ours verify in `PyJWT` (pyca/cryptography, so OpenSSL's Ed25519 and P-256), a
//! revocation snapshot is a plain JWS to it. (Authlib, Python's OAuth 2.0 client, is in
//! `oauth_clients`.)

use gatehouse_shared::{
    Algorithm, ErrorCode, KeySet, RevocationList, SigningKey, Verifier, VerifierOptions,
    sign_access_token,
};
use gatehouse_tests::{python_json, unix_now};
use serde_json::json;

use crate::jose_interop::{AUDIENCE, ISSUER, claims, flip_last_signature_char};

const SCRIPT: &str = "tests/py/interop.py";

#[test]
fn tokens_signed_by_pyjwt_verify_here() {
    let now = unix_now();
    let expected = claims(now);
    let out = python_json(SCRIPT, &json!({"op": "sign", "claims": expected}));
    let keys = KeySet::from_json(&out["jwks"].to_string()).unwrap();
    assert_eq!(
        keys.len(),
        2,
        "both PyJWT keys are usable: {:?}",
        keys.skipped()
    );
    let verifier = Verifier::new(keys, VerifierOptions::new(ISSUER, AUDIENCE));
    for alg in ["EdDSA", "ES256"] {
        let token = out["tokens"][alg].as_str().unwrap();
        assert_eq!(
            verifier.verify(token, now).unwrap().into_inner(),
            expected,
            "{alg}"
        );
        assert_eq!(
            verifier
                .verify(&flip_last_signature_char(token), now)
                .unwrap_err()
                .code(),
            ErrorCode::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn tokens_signed_here_verify_in_pyjwt() {
    let now = unix_now();
    let expected = claims(now);
    for alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let key = SigningKey::generate(alg).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
        let token = sign_access_token(&key, &expected).unwrap();
        let verify = |token: &str, audience: &str| {
            python_json(
                SCRIPT,
                &json!({"op": "verify", "jwks": jwks, "token": token,
                        "issuer": ISSUER, "audience": audience}),
            )
        };
        let out = verify(&token, AUDIENCE);
        assert_eq!(out["ok"], true, "{alg}: {out}");
        assert_eq!(out["payload"], serde_json::to_value(&expected).unwrap());
        assert_eq!(out["header"]["kid"], key.kid());
        assert_eq!(out["header"]["alg"], alg.as_str());

        let out = verify(&flip_last_signature_char(&token), AUDIENCE);
        assert_eq!(out["error"], "InvalidSignatureError", "{alg}: {out}");
        let out = verify(&token, "https://nobody.test");
        assert_eq!(out["error"], "InvalidAudienceError", "{alg}: {out}");
    }
}

#[test]
fn revocation_snapshots_are_standard_jws_to_pyjwt() {
    let now = unix_now();
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let jwks: serde_json::Value =
        serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
    let list = RevocationList::builder(ISSUER, 3, now)
        .token("jti-1", now + 900)
        .session("sid-1", now + 900)
        .build();
    let snapshot = list.sign_snapshot(&key).unwrap();
    let out = python_json(
        SCRIPT,
        &json!({"op": "snapshot", "jwks": jwks, "jws": snapshot}),
    );
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        out["payload_b64"].as_str(),
        snapshot.split('.').nth(1),
        "{out}"
    );
    assert_eq!(out["header"]["kid"], key.kid());

    let tampered = flip_last_signature_char(&snapshot);
    let out = python_json(
        SCRIPT,
        &json!({"op": "snapshot", "jwks": jwks, "jws": tampered}),
    );
    assert_eq!(out["error"], "InvalidSignatureError", "{out}");
}
