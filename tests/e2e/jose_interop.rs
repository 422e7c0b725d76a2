//! Interop with the npm `jose` package in Node, both ways: tokens jose signs verify here, tokens
//! signed here verify in jose. Also the revocation snapshot, which is a plain JWS to jose.

use gatehouse_shared::{
    Algorithm, Audience, ErrorCode, KeySet, RevocationList, SNAPSHOT_TYPE, SigningKey, TokenClaims,
    Verifier, VerifierOptions, sign_access_token,
};
use gatehouse_tests::{node_json, unix_now};
use serde_json::json;

const SCRIPT: &str = "tests/js/jose-interop.mjs";
pub(crate) const ISSUER: &str = "https://issuer.interop.test";
pub(crate) const AUDIENCE: &str = "https://api.interop.test";

pub(crate) fn claims(now: i64) -> TokenClaims {
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
    }
}

pub(crate) fn flip_last_signature_char(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.to_owned();
    let last = sig.pop().unwrap();
    // 'A' and 'Q' differ in a bit that is never a trailing padding bit of a 64-byte signature.
    sig.push(if last == 'A' { 'Q' } else { 'A' });
    format!("{input}.{sig}")
}

#[test]
fn tokens_signed_by_jose_verify_here() {
    let now = unix_now();
    let expected = claims(now);
    let out = node_json(SCRIPT, &json!({"op": "sign", "claims": expected}));
    let keys = KeySet::from_json(&out["jwks"].to_string()).unwrap();
    assert_eq!(
        keys.len(),
        2,
        "both jose keys are usable: {:?}",
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

#[test]
fn tokens_signed_here_verify_in_jose() {
    let now = unix_now();
    let expected = claims(now);
    for alg in [Algorithm::EdDsa, Algorithm::Es256] {
        let key = SigningKey::generate(alg).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
        let token = sign_access_token(&key, &expected).unwrap();
        let verify = |token: &str, audience: &str| {
            node_json(
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
        assert_eq!(
            out["code"], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
            "{alg}"
        );
        let out = verify(&token, "https://nobody.test");
        assert_eq!(out["code"], "ERR_JWT_CLAIM_VALIDATION_FAILED", "{alg}");
    }
}

#[test]
fn revocation_snapshots_are_standard_jws_to_jose() {
    let now = unix_now();
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let jwks: serde_json::Value =
        serde_json::from_str(&KeySet::new([key.verifying_jwk()]).to_json()).unwrap();
    let list = RevocationList::builder(ISSUER, 3, now)
        .token("jti-1", now + 900)
        .session("sid-1", now + 900)
        .user("user-1", now, now + 900)
        .build();
    let snapshot = list.sign_snapshot(&key).unwrap();
    let out = node_json(
        SCRIPT,
        &json!({"op": "verify_snapshot", "jwks": jwks, "jws": snapshot, "typ": SNAPSHOT_TYPE}),
    );
    assert_eq!(out["ok"], true, "{out}");
    let payload = out["payload_b64"].as_str().unwrap();
    assert_eq!(Some(payload), snapshot.split('.').nth(1));
}
