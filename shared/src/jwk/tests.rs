use super::*;

const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn okp(kid: &str, x: &str) -> String {
    format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"{kid}"}}"#)
}

#[test]
fn skips_unusable_keys_but_keeps_good_ones() {
    let json = format!(
        r#"{{"keys":[
            {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"}},
            {{"kty":"OKP","crv":"X25519","x":"{RFC8037_X}","kid":"x"}},
            {good},
            {{"kty":"OKP","crv":"Ed25519","x":"short","kid":"bad-x"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"enc","use":"enc"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"hs","alg":"HS256"}},
            {{"kty":7,"kid":"typed"}},
            {dup},
            "not an object",
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","x":"{RFC8037_X}","kid":"twice"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}=","kid":"padded"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{loose_bits}","kid":"loose-bits"}},
            {{"kty":"EC","crv":"P-256","x":"{RFC8037_X}","kid":"no-y"}},
            {{"kty":"OKP","x":"{RFC8037_X}","kid":"no-crv"}},
            {{"crv":"Ed25519","x":"{RFC8037_X}","kid":"no-kty"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"k","kid":"twice"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"{RFC8037_X}=","kid":"bad-d"}},
            {{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","d":"A","d":"A","kid":"two-d"}}
        ]}}"#,
        // The same key with the unused low bits of its last character set: not canonical.
        loose_bits = RFC8037_X.replace("URo", "URp"),
        good = okp("good", RFC8037_X),
        dup = okp("good", RFC8037_X),
    );
    let set = KeySet::from_json(&json).unwrap();
    assert_eq!(set.kids().collect::<Vec<_>>(), ["good"]);
    let skipped: Vec<_> = set.skipped().iter().map(|s| s.index).collect();
    assert_eq!(skipped, (0..=18).filter(|i| *i != 2).collect::<Vec<_>>());
    assert_eq!(set.get("good").unwrap().algorithm(), Algorithm::EdDsa);
    assert_eq!(set.skipped()[0].kid.as_deref(), Some("rsa"));
}

#[test]
fn key_ops_private_parts_and_any_repeat_are_refused() {
    let with = |extra: &str| {
        VerifyingJwk::from_json(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"k"{extra}}}"#
        ))
    };
    for extra in [
        r#","key_ops":["verify"]"#,
        r#","key_ops":["sign","verify"]"#,
        r#","ext":true"#,
    ] {
        assert!(with(extra).is_ok(), "{extra}");
    }
    for (extra, reason) in [
        (
            r#","key_ops":["encrypt"]"#,
            JwkError::Unsupported("key_ops does not include verify"),
        ),
        (
            r#","key_ops":[]"#,
            JwkError::Unsupported("key_ops does not include verify"),
        ),
        (
            r#","key_ops":["verify","verify"]"#,
            JwkError::Invalid("key_ops names an operation twice"),
        ),
        (
            r#","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A""#,
            JwkError::Invalid("a private key (d) in a public key set"),
        ),
        (
            r#","ext":true,"ext":false"#,
            JwkError::Invalid("not a valid JWK object"),
        ),
        (
            r#","k\u0069d":"other""#,
            JwkError::Invalid("not a valid JWK object"),
        ),
    ] {
        assert_eq!(with(extra), Err(reason), "{extra}");
    }
    // `null` is no member's value, and not an absent member: `"use": null` is no `sig`.
    for extra in [
        r#","use":null"#,
        r#","alg":null"#,
        r#","key_ops":null"#,
        r#","y":null"#,
    ] {
        assert_eq!(
            with(extra),
            Err(JwkError::Invalid("not a valid JWK object")),
            "{extra}"
        );
    }
}

#[test]
fn a_document_that_is_not_a_key_set_is_an_error() {
    for doc in [
        "",
        "[]",
        "{}",
        r#"{"keys":{}}"#,
        "null",
        r#"{"keys":[],"keys":[]}"#,
    ] {
        assert!(KeySet::from_json(doc).is_err(), "{doc}");
    }
}

#[test]
fn round_trips_through_json_without_private_members() {
    let json = format!(r#"{{"keys":[{}]}}"#, okp("k1", RFC8037_X));
    let set = KeySet::from_json(&json).unwrap();
    let out = set.to_json();
    assert!(out.contains(r#""alg":"EdDSA""#) && out.contains(r#""use":"sig""#));
    assert!(!out.contains(r#""d""#));
    assert_eq!(KeySet::from_json(&out).unwrap(), set);
    assert_eq!(
        KeySet::from_json(&out).unwrap().fingerprint(),
        set.fingerprint()
    );
}

#[test]
fn rfc8037_thumbprint() {
    // RFC 8037 appendix A.3.
    let key = VerifyingJwk::from_json(&okp("k", RFC8037_X)).unwrap();
    assert_eq!(
        key.key().thumbprint(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[cfg(feature = "es256")]
#[test]
fn p256_point_must_be_on_the_curve() {
    let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let json =
        format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{zero}","y":"{zero}","kid":"p"}}]}}"#);
    let set = KeySet::from_json(&json).unwrap();
    assert!(set.is_empty());
    assert_eq!(
        set.skipped()[0].reason,
        JwkError::Invalid("P-256 point is not on the curve")
    );
}
