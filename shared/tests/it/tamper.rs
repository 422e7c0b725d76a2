//! Tampering with any part of a signed token must fail, with the right code.

use gatehouse_shared::{ErrorCode, KeySet, SigningKey, Verifier, VerifierOptions};
use serde_json::json;

use crate::fixture::{ALGORITHMS, AUDIENCE, Fixture, ISSUER, NOW, b64, claims, unb64};

/// The code of the refusal; for Ed25519 keys the oracle path (the worker's) must refuse with
/// the same code.
fn code(f: &Fixture, token: &str) -> ErrorCode {
    let code = f.verifier.verify(token, NOW).unwrap_err().code();
    if f.key.algorithm() == gatehouse_shared::Algorithm::EdDsa {
        let oracle = crate::fixture::oracle_verify(&f.verifier, token, NOW);
        assert_eq!(oracle.unwrap_err().code(), code, "oracle path, {token}");
    }
    code
}

#[test]
fn every_signature_bit_flip_fails() {
    for alg in ALGORITHMS {
        let f = Fixture::new(alg);
        let token = f.sign(&claims());
        assert!(f.verifier.verify(&token, NOW).is_ok());
        if alg == gatehouse_shared::Algorithm::EdDsa {
            let claims = crate::fixture::oracle_verify(&f.verifier, &token, NOW).unwrap();
            assert_eq!(
                claims.jti, "jti-1",
                "the oracle path hands out the same claims"
            );
        }
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = unb64(sig);
        for bit in 0..sig.len() * 8 {
            let mut flipped = sig.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let tampered = format!("{input}.{}", b64(&flipped));
            assert_eq!(
                code(&f, &tampered),
                ErrorCode::BadSignature,
                "{alg} bit {bit}"
            );
        }
    }
}

#[test]
fn swapped_headers_and_claims_fail() {
    for alg in ALGORITHMS {
        let f = Fixture::new(alg);
        let a = f.sign(&claims());
        let mut admin = claims();
        admin.scope = "admin".into();
        admin.sub = "user-2".into();
        let b = f.sign(&admin);
        let pa: Vec<&str> = a.split('.').collect();
        let pb: Vec<&str> = b.split('.').collect();
        // Claims of b under a's header and signature, and the other way round.
        let swapped_claims = format!("{}.{}.{}", pa[0], pb[1], pa[2]);
        assert_eq!(code(&f, &swapped_claims), ErrorCode::BadSignature);
        // A header that differs only in a member the verifier ignores still changes the input.
        let header = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": f.key.kid(), "x": 1});
        let swapped_header = format!("{}.{}.{}", b64(header.to_string()), pa[1], pa[2]);
        assert_eq!(code(&f, &swapped_header), ErrorCode::BadSignature);
        // Same claims, signed by a key that is not in the set but claims its kid.
        let impostor = SigningKey::generate(alg).unwrap();
        let input = format!("{}.{}", pa[0], pa[1]);
        let forged = format!("{input}.{}", b64(impostor.sign_message(input.as_bytes())));
        assert_eq!(code(&f, &forged), ErrorCode::BadSignature);
    }
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new(gatehouse_shared::Algorithm::EdDsa);
    let payload = b64(serde_json::to_vec(&claims()).unwrap());
    for alg in ["none", "None", "NONE", ""] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": f.key.kid()});
        for sig in [String::new(), b64([0u8; 64])] {
            let token = format!("{}.{payload}.{sig}", b64(header.to_string()));
            assert_eq!(
                code(&f, &token),
                ErrorCode::AlgMismatch,
                "alg {alg:?} sig {sig:?}"
            );
        }
    }
}

#[test]
fn hmac_with_the_public_key_is_refused() {
    use hmac::{Hmac, Mac};
    let f = Fixture::new(gatehouse_shared::Algorithm::EdDsa);
    let jwk = serde_json::to_value(f.key.public_key().to_jwk()).unwrap();
    let x = jwk["x"].as_str().unwrap().to_owned();
    let secrets = [
        x.clone().into_bytes(),
        unb64(&x),
        f.verifier.keys().to_json().into_bytes(),
    ];
    let payload = b64(serde_json::to_vec(&claims()).unwrap());
    for alg in ["HS256", "HS384", "HS512"] {
        for secret in &secrets {
            let header = json!({"alg": alg, "typ": "at+jwt", "kid": f.key.kid()});
            let input = format!("{}.{payload}", b64(header.to_string()));
            // The MAC with the hash `alg` names.
            macro_rules! tag {
                ($hash:ty) => {{
                    let mut mac = Hmac::<$hash>::new_from_slice(secret).unwrap();
                    mac.update(input.as_bytes());
                    mac.finalize().into_bytes().to_vec()
                }};
            }
            let tag = match alg {
                "HS256" => tag!(sha2::Sha256),
                "HS384" => tag!(sha2::Sha384),
                _ => tag!(sha2::Sha512),
            };
            assert_eq!(
                code(&f, &format!("{input}.{}", b64(&tag))),
                ErrorCode::AlgMismatch
            );
        }
    }
}

#[test]
fn the_key_decides_the_algorithm() {
    // An ES256 key in the set; a header that says EdDSA with its kid fails before the signature.
    let f = Fixture::new(gatehouse_shared::Algorithm::Es256);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.kid()});
    let token = f.sign_raw(&header, &serde_json::to_vec(&claims()).unwrap());
    assert_eq!(code(&f, &token), ErrorCode::AlgMismatch);
}

#[test]
fn unknown_and_missing_kid() {
    let f = Fixture::new(gatehouse_shared::Algorithm::EdDsa);
    let payload = serde_json::to_vec(&claims()).unwrap();
    for header in [
        json!({"alg": "EdDSA", "typ": "at+jwt"}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "nope"}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "../../etc/passwd"}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "' OR 1=1 --"}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": 5}),
    ] {
        let token = f.sign_raw(&header, &payload);
        let want = if header["kid"].is_number() {
            ErrorCode::Malformed
        } else {
            ErrorCode::UnknownKid
        };
        assert_eq!(code(&f, &token), want, "{header}");
    }
    // Key-bearing headers are ignored, never trusted.
    let attacker = SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let header = json!({
        "alg": "EdDSA", "typ": "at+jwt", "kid": attacker.kid(),
        "jwk": serde_json::from_str::<serde_json::Value>(&attacker.verifying_jwk().to_json().unwrap()).unwrap(), "jku": "https://evil.test/jwks",
    });
    let input = format!("{}.{}", b64(header.to_string()), b64(&payload));
    let token = format!("{input}.{}", b64(attacker.sign_message(input.as_bytes())));
    assert_eq!(code(&f, &token), ErrorCode::UnknownKid);
}

#[test]
fn key_rotation_accepts_tokens_of_every_key_in_the_set() {
    let old = SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let new = SigningKey::generate(gatehouse_shared::Algorithm::Es256).unwrap();
    let verifier = Verifier::new(
        KeySet::new([old.verifying_jwk(), new.verifying_jwk()]),
        VerifierOptions::new(ISSUER, AUDIENCE),
    );
    for key in [&old, &new] {
        let token = gatehouse_shared::sign_access_token(key, &claims()).unwrap();
        assert_eq!(verifier.verify(&token, NOW).unwrap().into_inner(), claims());
    }
}
