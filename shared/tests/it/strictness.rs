//! The strictness the thin layer around jwt-compact adds: `crit` in any form, repeated members
//! anywhere, `cty`, and a verified-token cache that only serves its own verifier.

use gatehouse_shared::{Algorithm, ErrorCode, VerifiedCache, VerifierOptions};
use serde_json::json;

use crate::fixture::{AUDIENCE, Fixture, ISSUER, NOW, claims};

fn header_code(f: &Fixture, header: &str) -> ErrorCode {
    let token = f
        .key
        .sign_raw_jws(header, &serde_json::to_vec(&claims()).unwrap());
    f.verifier.verify(&token, NOW).unwrap_err().code()
}

#[test]
fn crit_is_refused_whatever_its_value() {
    let f = Fixture::new(Algorithm::EdDsa);
    let kid = f.key.kid();
    for crit in ["null", "[]", r#"["exp"]"#, "5", r#""b64""#] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","crit":{crit}}}"#);
        assert_eq!(
            header_code(&f, &header),
            ErrorCode::UnsupportedHeader,
            "{crit}"
        );
    }
}

#[test]
fn repeated_header_members_are_malformed_declared_or_not() {
    let f = Fixture::new(Algorithm::EdDsa);
    let kid = f.key.kid();
    for repeat in [
        r#""alg":"EdDSA""#,
        r#""kid":"other""#,
        r#""typ":"at+jwt""#,
        r#""x":1,"x":2"#,
        r#""crv":1,"c\u0072v":2"#,
    ] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}",{repeat}}}"#);
        assert_eq!(header_code(&f, &header), ErrorCode::Malformed, "{repeat}");
    }
}

#[test]
fn repeated_claims_are_malformed_even_unknown_ones() {
    let f = Fixture::new(Algorithm::EdDsa);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.kid()}).to_string();
    let json = serde_json::to_string(&claims()).unwrap();
    for extra in [r#","sub":"admin""#, r#","note":1,"note":2"#] {
        let payload = format!("{}{extra}}}", json.trim_end_matches('}'));
        let token = f.key.sign_raw_jws(&header, payload.as_bytes());
        assert_eq!(
            f.verifier.verify(&token, NOW).unwrap_err().code(),
            ErrorCode::Malformed,
            "{extra}"
        );
    }
}

#[test]
fn content_types_other_than_claims_are_refused() {
    let f = Fixture::new(Algorithm::EdDsa);
    let kid = f.key.kid();
    for cty in ["JWT", "text/plain"] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","cty":"{cty}"}}"#);
        assert_eq!(
            header_code(&f, &header),
            ErrorCode::UnsupportedHeader,
            "{cty}"
        );
    }
    // `cty: JSON` is what jwt-compact reads by default, and a `null` member it declares (`cty`,
    // `kid`, `typ`) it reads as absent: the token verifies. A decision, not an oversight: the
    // header is signed, and `kid: null` or `typ: null` fail as an absent one does.
    for cty in [r#""JSON""#, "null"] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","cty":{cty}}}"#);
        let token = f
            .key
            .sign_raw_jws(&header, &serde_json::to_vec(&claims()).unwrap());
        assert!(f.verifier.verify(&token, NOW).is_ok(), "{cty}");
    }
    for (members, code) in [
        (format!(r#""kid":"{kid}","typ":null"#), ErrorCode::WrongType),
        (
            r#""kid":null,"typ":"at+jwt""#.to_owned(),
            ErrorCode::UnknownKid,
        ),
    ] {
        let header = format!(r#"{{"alg":"EdDSA",{members}}}"#);
        assert_eq!(header_code(&f, &header), code, "{members}");
        let absent = header
            .replace(",\"typ\":null", "")
            .replace("\"kid\":null,", "");
        assert_eq!(header_code(&f, &absent), code, "{absent}");
    }
}

#[test]
fn a_cache_filled_by_one_verifier_serves_no_other() {
    let a = Fixture::new(Algorithm::EdDsa);
    let token = a.sign(&claims());
    let mut cache = VerifiedCache::new(8);
    a.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
    // Another key set: the hit that would skip kid, key and signature is not served.
    let b = Fixture::new(Algorithm::EdDsa);
    assert_eq!(
        b.verifier
            .verify_cached(&mut cache, &token, NOW)
            .unwrap_err()
            .code(),
        ErrorCode::UnknownKid
    );
    // The same keys but another required typ: not served either.
    a.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
    let other_typ = gatehouse_shared::Verifier::new(
        a.verifier.keys().clone(),
        VerifierOptions {
            token_type: "other+jwt".into(),
            ..VerifierOptions::new(ISSUER, AUDIENCE)
        },
    );
    assert_eq!(
        other_typ
            .verify_cached(&mut cache, &token, NOW)
            .unwrap_err()
            .code(),
        ErrorCode::WrongType
    );
    // An equal verifier (same keys and options) shares the cache.
    a.verifier.verify_cached(&mut cache, &token, NOW).unwrap();
    let twin =
        gatehouse_shared::Verifier::new(a.verifier.keys().clone(), a.verifier.options().clone());
    twin.verify_cached(&mut cache, &token, NOW).unwrap();
    assert_eq!(cache.len(), 1);
}

#[test]
fn fully_specified_ed25519_alg_is_accepted_and_names_the_same_key_type() {
    let f = Fixture::new(Algorithm::EdDsa);
    let header = json!({"alg": "Ed25519", "typ": "at+jwt", "kid": f.key.kid()}).to_string();
    let token = f
        .key
        .sign_raw_jws(&header, &serde_json::to_vec(&claims()).unwrap());
    assert!(f.verifier.verify(&token, NOW).is_ok());
    let es = Fixture::new(Algorithm::Es256);
    let header = json!({"alg": "Ed25519", "typ": "at+jwt", "kid": es.key.kid()}).to_string();
    let token = es
        .key
        .sign_raw_jws(&header, &serde_json::to_vec(&claims()).unwrap());
    assert_eq!(
        es.verifier.verify(&token, NOW).unwrap_err().code(),
        ErrorCode::AlgMismatch
    );
}

/// A key told to name Ed25519 `Ed25519` (RFC 9864) writes it in every JWS it signs (access
/// tokens, snapshots, deltas) and in the JWKS, and our verifiers take each, from a key set that
/// names it either way. An ES256 key keeps `ES256`; an unnamed key writes `EdDSA`.
#[test]
fn a_key_named_ed25519_writes_the_name_everywhere_and_is_verified() {
    use gatehouse_shared::{Ed25519Name, KeySet, RevocationDelta, RevocationList, SigningKey};
    let alg_of = |jws: &str| {
        let header = crate::fixture::unb64(jws.split('.').next().unwrap());
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["alg"].clone()
    };
    let f = Fixture::new(Algorithm::EdDsa);
    assert_eq!(alg_of(&f.sign(&claims())), "EdDSA");
    let key = SigningKey::from_jwk_json(&f.key.to_private_jwk_json().unwrap())
        .unwrap()
        .naming_ed25519(Ed25519Name::Ed25519);
    let token = gatehouse_shared::sign_access_token(&key, &claims()).unwrap();
    assert_eq!(alg_of(&token), "Ed25519");
    assert_eq!(f.verifier.verify(&token, NOW).unwrap().jti, claims().jti);
    // The worker's path, the signature checked by an oracle (WebCrypto there).
    let by_oracle = crate::fixture::oracle_verify(&f.verifier, &token, NOW).unwrap();
    assert_eq!(by_oracle.jti, claims().jti);
    let jwks = f.verifier.keys().to_json_naming(Ed25519Name::Ed25519);
    let published: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(published["keys"][0]["alg"], "Ed25519");
    let unnamed = f.verifier.keys().to_json_naming(Ed25519Name::EdDsa);
    assert_eq!(f.verifier.keys().to_json(), unnamed);
    let keys = KeySet::from_json(&jwks).unwrap();
    let named = gatehouse_shared::Verifier::new(keys.clone(), f.verifier.options().clone());
    assert!(named.verify(&token, NOW).is_ok());
    assert!(named.verify(&f.sign(&claims()), NOW).is_ok());

    let opts = gatehouse_shared::SnapshotOptions::new(ISSUER);
    let list = RevocationList::builder(ISSUER, 3, NOW)
        .token("a", NOW + 900)
        .build();
    let snapshot = list.sign_snapshot(&key).unwrap();
    assert_eq!(alg_of(&snapshot), "Ed25519");
    crate::fixture::verify_snapshot(&snapshot, &keys, &opts, NOW).unwrap();
    let delta = RevocationDelta::new(2, list).sign(&key).unwrap();
    assert_eq!(alg_of(&delta), "Ed25519");
    crate::fixture::verify_delta(&delta, &keys, &opts, NOW).unwrap();

    let es = Fixture::new(Algorithm::Es256);
    let es_key = SigningKey::from_jwk_json(&es.key.to_private_jwk_json().unwrap())
        .unwrap()
        .naming_ed25519(Ed25519Name::Ed25519);
    let token = gatehouse_shared::sign_access_token(&es_key, &claims()).unwrap();
    assert_eq!(alg_of(&token), "ES256");
    let jwks = es.verifier.keys().to_json_naming(Ed25519Name::Ed25519);
    assert!(jwks.contains(r#""alg":"ES256""#), "{jwks}");
}
