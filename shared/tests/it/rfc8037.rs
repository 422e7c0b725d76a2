//! RFC 8037 appendix A: Ed25519 key, thumbprint and JWS test vectors.

use gatehouse_shared::{Jwk, SigningKey, UntrustedToken};

use crate::fixture::unb64;

const D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn rfc_key() -> SigningKey {
    SigningKey::from_jwk(&Jwk {
        kty: "OKP".into(),
        crv: Some("Ed25519".into()),
        d: Some(D.into()),
        x: Some(X.into()),
        ..Jwk::default()
    })
    .unwrap()
}

#[test]
fn a1_a2_public_key_from_private_key() {
    let key = rfc_key();
    assert_eq!(key.public_key().to_jwk().x.as_deref(), Some(X));
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
    assert_eq!(token.header().alg, "EdDSA");
    assert_eq!(token.payload_unverified(), b"Example of Ed25519 signing");
    let mut bad = unb64(signature);
    bad[0] ^= 1;
    assert!(!public.verify(input.as_bytes(), &bad));
}

#[test]
fn private_jwk_round_trips_and_mismatched_x_is_refused() {
    let key = rfc_key();
    let jwk = key.to_private_jwk();
    assert_eq!(jwk.d.as_deref(), Some(D));
    assert_eq!(SigningKey::from_jwk(&jwk).unwrap().kid(), key.kid());
    let other = SigningKey::generate(gatehouse_shared::Algorithm::EdDsa).unwrap();
    let mixed = Jwk {
        x: other.public_key().to_jwk().x,
        ..jwk
    };
    assert!(SigningKey::from_jwk(&mixed).is_err());
    assert!(
        !format!("{key:?}").contains(D),
        "Debug must not print the secret"
    );
}
