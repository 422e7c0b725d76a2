//! The verified-token cache: a hit skips the signature, never the clock; failures and other
//! tokens are not served from it; it stays within its capacity.

use gatehouse_shared::{Algorithm, ErrorCode, VerifiedCache};

use crate::fixture::{Fixture, NOW, claims};

#[test]
fn a_hit_returns_the_same_claims_and_still_checks_time() {
    let f = Fixture::new(Algorithm::EdDsa);
    let token = f.sign(&claims());
    let mut cache = VerifiedCache::new(8);
    let first = f.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(
        f.verifier.verify_cached(&mut cache, &token, NOW).unwrap(),
        first
    );
    let expired_at = claims().exp + 30;
    let err = f
        .verifier
        .verify_cached(&mut cache, &token, expired_at)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Expired);
    let early = claims().iat - 31;
    let err = f
        .verifier
        .verify_cached(&mut cache, &token, early)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotYetValid);
}

#[test]
fn failures_are_not_cached_and_a_tampered_token_misses() {
    let f = Fixture::new(Algorithm::EdDsa);
    let token = f.sign(&claims());
    let mut cache = VerifiedCache::new(8);
    f.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = crate::fixture::unb64(sig);
    sig[0] ^= 1;
    let tampered = format!("{input}.{}", crate::fixture::b64(sig));
    let err = f
        .verifier
        .verify_cached(&mut cache, &tampered, NOW)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadSignature);
    assert_eq!(cache.len(), 1, "the failure was not remembered");
    // Another key's verifier shares nothing: the cache empties itself for it.
    let other = Fixture::new(Algorithm::EdDsa);
    let err = other
        .verifier
        .verify_cached(&mut cache, &token, NOW)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownKid);
    assert!(cache.is_empty());
}

#[test]
fn capacity_bounds_the_cache_and_zero_disables_it() {
    let f = Fixture::new(Algorithm::EdDsa);
    let mut cache = VerifiedCache::new(3);
    for i in 0..10 {
        let token = f.sign(&gatehouse_shared::TokenClaims {
            jti: format!("jti-{i}"),
            ..claims()
        });
        f.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
        assert!(cache.len() <= 3);
    }
    let mut off = VerifiedCache::new(0);
    f.verifier
        .verify_cached(&mut off, &f.sign(&claims()), NOW)
        .unwrap();
    assert!(off.is_empty());
}
