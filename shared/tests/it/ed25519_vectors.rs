//! Ed25519 test vectors through the verifier tokens use (`PublicKey::verify`: an `Ed25519Key`
//! checked at import, then `StrictEd25519`), and through the worker's path (the same key, then
//! `strict_signature_form` and a cofactorless equation computed elsewhere, as the runtime's
//! WebCrypto does; modelled here by ed25519-dalek's plain `verify`): both must agree on every
//! case. Sources: shared/tests/vectors/README.md.

use gatehouse_shared::{Ed25519Key, PublicKey, SigningKey};
use serde_json::Value;

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Our verdict: the key must import, then the signature must verify; the oracle path agrees.
fn accepts(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = Ed25519Key::from_bytes(public) else {
        return false;
    };
    let strict = PublicKey::Ed25519(key).verify(message, signature);
    let external = <[u8; 64]>::try_from(signature).is_ok_and(|sig| {
        gatehouse_shared::alg::strict_signature_form(&sig)
            && bare_equation(key.as_bytes(), message, &sig)
    });
    assert_eq!(strict, external, "strict and oracle paths disagree");
    strict
}

#[test]
fn rfc8032_section_7_1() {
    let cases = vectors("rfc8032_7_1.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (public, message, signature) = (
            hex(case["public_key"].as_str().unwrap()),
            hex(case["message"].as_str().unwrap()),
            hex(case["signature"].as_str().unwrap()),
        );
        assert!(accepts(&public, &message, &signature), "{name}");
        // Signing from the seed gives the same key and, Ed25519 being deterministic, the same
        // signature.
        let d = base64_url(&hex(case["secret_key"].as_str().unwrap()));
        let x = base64_url(&public);
        let key = SigningKey::from_jwk_json(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","d":"{d}","x":"{x}"}}"#
        ))
        .unwrap();
        assert_eq!(key.sign_message(&message), signature, "{name}");
        let mut other = message.clone();
        other.push(0);
        assert!(
            !accepts(&public, &other, &signature),
            "{name}, altered message"
        );
    }
}

/// The equation alone, with nothing else checked: `s` taken modulo L, `R' = [s]B - [k]A`
/// compared with `R` byte for byte. The weakest verifier an oracle could be (`BoringSSL`, behind
/// WebCrypto, checks at least this much), so whatever strictness the two paths share comes from
/// the key import and `strict_signature_form`.
fn bare_equation(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let Some(a) = CompressedEdwardsY(*public).decompress() else {
        return false;
    };
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    let s = Scalar::from_bytes_mod_order(s_bytes);
    let hash: [u8; 64] = Sha512::new()
        .chain_update(&signature[..32])
        .chain_update(public)
        .chain_update(message)
        .finalize()
        .into();
    let k = Scalar::from_bytes_mod_order_wide(&hash);
    let r = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s);
    r.compress().as_bytes() == &signature[..32]
}

fn base64_url(bytes: &[u8]) -> String {
    crate::fixture::b64(bytes)
}

#[test]
fn wycheproof_eddsa() {
    let doc = vectors("wycheproof_ed25519.json");
    let mut counted = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let public = hex(group["publicKey"]["pk"].as_str().unwrap());
        for test in group["tests"].as_array().unwrap() {
            let id = &test["tcId"];
            let message = hex(test["msg"].as_str().unwrap());
            let signature = hex(test["sig"].as_str().unwrap());
            let valid = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {id}: unexpected result {other}"),
            };
            assert_eq!(
                accepts(&public, &message, &signature),
                valid,
                "tcId {id}: {}",
                test["comment"]
            );
            if valid {
                counted.0 += 1;
            } else {
                counted.1 += 1;
            }
        }
    }
    assert_eq!(counted, (88, 63), "(valid, invalid) cases run");
}

/// "Taming the many `EdDSAs`" (Chalkias, Garillot, Nikolaenko, 2020): each case probes one
/// choice of a verifier. Ours refuses all twelve, each for a stated reason.
#[test]
fn speccheck_taming_the_many_eddsas() {
    let reasons = [
        "A and R of small order",
        "A of small order",
        "R of small order",
        "A of mixed order (not in the prime-order subgroup)",
        "A of mixed order; only the cofactored equation holds",
        "A of mixed order; only the cofactored equation holds",
        "S >= L",
        "S >= L (high bit set)",
        "R small and non-canonical",
        "R small and non-canonical",
        "A small and non-canonical",
        "A small and non-canonical",
    ];
    let cases = vectors("speccheck_ed25519.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), reasons.len());
    for (i, (case, reason)) in cases.iter().zip(reasons).enumerate() {
        let (public, message, signature) = (
            hex(case["pub_key"].as_str().unwrap()),
            hex(case["message"].as_str().unwrap()),
            hex(case["signature"].as_str().unwrap()),
        );
        assert!(
            !accepts(&public, &message, &signature),
            "case {i}: {reason}"
        );
    }
    // The same inputs through ed25519-dalek's own strict verifier, where it can read the key:
    // ours refuses at least what it refuses (case 3's mixed-order key is the one difference).
    let dalek_accepts: Vec<usize> = cases
        .iter()
        .enumerate()
        .filter(|(_, case)| {
            let public: [u8; 32] = hex(case["pub_key"].as_str().unwrap()).try_into().unwrap();
            let signature: [u8; 64] = hex(case["signature"].as_str().unwrap()).try_into().unwrap();
            ed25519_dalek::VerifyingKey::from_bytes(&public).is_ok_and(|k| {
                k.verify_strict(
                    &hex(case["message"].as_str().unwrap()),
                    &ed25519_dalek::Signature::from_bytes(&signature),
                )
                .is_ok()
            })
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dalek_accepts, [3]);
}

#[test]
fn a_small_order_key_cannot_be_made_so_no_universal_forgery() {
    // With A = identity, R = [s]B and any s satisfy [s]B = R + [k]A for every message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(Ed25519Key::from_bytes(&identity).is_err());
    let jwks = format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"id","x":"{}"}}]}}"#,
        base64_url(&identity)
    );
    let set = gatehouse_shared::KeySet::from_json(&jwks).unwrap();
    assert!(set.is_empty(), "the identity key is skipped");
    // And were it used directly, dalek's strict check refuses the forgery too.
    let s = curve25519_dalek::Scalar::from(7u8);
    let r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * s;
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(r.compress().as_bytes());
    forged[32..].copy_from_slice(s.as_bytes());
    let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let forged = ed25519_dalek::Signature::from_bytes(&forged);
    assert!(
        ed25519_dalek::Verifier::verify(&weak, b"any message", &forged).is_ok(),
        "the permissive check is fooled"
    );
    assert!(weak.verify_strict(b"any message", &forged).is_err());
}

#[test]
fn an_identity_r_made_by_the_key_holder_is_refused_on_both_paths() {
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    // With R the identity, s = k·a satisfies the cofactorless equation: only the key holder
    // can make it, but verify_strict refuses it (R has small order), so the oracle path must
    // too, although the bare equation accepts it.
    let secret = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let public = secret.verifying_key().to_bytes();
    let message = b"identity R";
    let mut r = [0u8; 32];
    r[0] = 1;
    let hash: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(public)
        .chain_update(message)
        .finalize()
        .into();
    let s = Scalar::from_bytes_mod_order_wide(&hash) * secret.to_scalar();
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice(s.as_bytes());
    assert!(
        bare_equation(&public, message, &signature),
        "the equation holds"
    );
    assert!(!accepts(&public, message, &signature));
}
