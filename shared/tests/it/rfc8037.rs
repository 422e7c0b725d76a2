//! RFC 8037 appendix A: Ed25519 key, thumbprint and JWS test vectors, through jwt-compact's JWK.

use gatehouse_shared::{SigningKey, UntrustedToken};

use crate::fixture::unb64;

const D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn private_jwk(x: &str) -> String {
    format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}","x":"{x}"}}"#)
}

fn rfc_key() -> SigningKey {
    SigningKey::from_jwk_json(&private_jwk(X)).unwrap()
}

#[test]
fn a1_a2_public_key_from_private_key() {
    let jwk = serde_json::to_value(rfc_key().public_key().to_jwk()).unwrap();
    assert_eq!(
        jwk,
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": X})
    );
}

#[test]
fn a3_thumbprint_is_the_default_kid() {
    assert_eq!(rfc_key().kid(), THUMBPRINT);
}

#[test]
fn a4_signing_is_deterministic_and_matches() {
    let (input, signature) = JWS.rsplit_once('.').unwrap();
    assert_eq!(rfc_key().sign_message(input.as_bytes()), unb64(signature));
}

#[test]
fn a5_verification() {
    let (input, signature) = JWS.rsplit_once('.').unwrap();
    let public = rfc_key().public_key();
    assert!(public.verify(input.as_bytes(), &unb64(signature)));
    let token = UntrustedToken::parse(JWS, 4096).unwrap();
    assert_eq!(token.algorithm(), "EdDSA");
    let mut bad = unb64(signature);
    bad[0] ^= 1;
    assert!(!public.verify(input.as_bytes(), &bad));
}

#[test]
fn private_jwk_round_trips_and_mismatched_x_is_refused() {
    let key = rfc_key();
    let json = key.to_private_jwk_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["d"], D);
    assert_eq!(value["kid"], THUMBPRINT);
    assert_eq!(SigningKey::from_jwk_json(&json).unwrap().kid(), key.kid());
    let other = SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let other_x = serde_json::to_value(other.public_key().to_jwk()).unwrap()["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let mismatch =
        gatehouse_shared::JwkError::Invalid("d is missing, malformed or does not match x");
    assert_eq!(
        SigningKey::from_jwk_json(&private_jwk(&other_x)).unwrap_err(),
        mismatch
    );
    let without_x = format!(r#"{{"kty":"OKP","crv":"Ed25519","d":"{D}"}}"#);
    assert_eq!(
        SigningKey::from_jwk_json(&without_x).unwrap_err(),
        gatehouse_shared::JwkError::Invalid("not a private JWK"),
        "x is required (RFC 8037 §2)"
    );
    assert!(
        !format!("{key:?}").contains(D),
        "Debug must not print the secret"
    );
}
