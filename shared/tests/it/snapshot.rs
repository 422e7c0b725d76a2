//! Signed revocation snapshots: round trip, tamper, type confusion, order and size.

use gatehouse_shared::{
    Algorithm, ErrorCode, KeySet, RevocationDelta, RevocationList, SNAPSHOT_TYPE, SigningKey,
    SnapshotError, SnapshotOptions, UntrustedToken, sign_access_token,
};

use crate::fixture::{Fixture, ISSUER, NOW, b64, claims, trusted, unb64};

fn setup() -> (SigningKey, KeySet, SnapshotOptions) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::new([key.verifying_jwk()]);
    (key, keys, SnapshotOptions::new(ISSUER))
}

fn list(seq: u64, n: usize) -> RevocationList {
    let mut b = RevocationList::builder(ISSUER, seq, NOW);
    for i in 0..n {
        b = b.token(&format!("jti-{i}"), NOW + 900);
    }
    b.session("sid-1", NOW + 900)
        .user("user-9", NOW, NOW + 900)
        .build()
}

#[test]
fn round_trip() {
    let (key, keys, opts) = setup();
    let original = list(7, 100);
    let jws = original.sign_snapshot(&key).unwrap();
    let parsed = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap();
    // The same entries, and the kid that signed them (a list built here has none).
    assert_eq!(
        (parsed.to_bytes(), parsed.signer()),
        (original.to_bytes(), key.kid())
    );
    assert_eq!(original.signer(), "");
    assert_eq!(
        (parsed.seq(), parsed.issued_at(), parsed.len()),
        (7, NOW, 102)
    );
    assert!(
        parsed.check(&trusted(&claims())).is_some(),
        "sid-1 is revoked"
    );
}

#[test]
fn tampered_snapshots_fail() {
    let (key, keys, opts) = setup();
    let jws = list(7, 10).sign_snapshot(&key).unwrap();
    let (header, rest) = jws.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut bytes = unb64(payload);
    // The last byte of the list, which is the whole payload.
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = format!("{header}.{}.{sig}", b64(&bytes));
    let err = crate::fixture::verify_snapshot(&tampered, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadSignature);
    // A newer list's payload under an older signature.
    let newer = list(8, 10).sign_snapshot(&key).unwrap();
    let newer_payload = newer.split('.').nth(1).unwrap();
    let spliced = format!("{header}.{newer_payload}.{sig}");
    let err = crate::fixture::verify_snapshot(&spliced, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadSignature);
}

#[test]
fn snapshots_and_access_tokens_cannot_stand_in_for_each_other() {
    let f = Fixture::new(Algorithm::EdDsa);
    let keys = f.verifier.keys().clone();
    let opts = SnapshotOptions::new(ISSUER);
    let snapshot = list(1, 1).sign_snapshot(&f.key).unwrap();
    assert_eq!(
        f.verifier.verify(&snapshot, NOW).unwrap_err().code(),
        ErrorCode::WrongType
    );
    let token = sign_access_token(&f.key, &claims()).unwrap();
    let err = crate::fixture::verify_snapshot(&token, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::WrongType);
    // Correct typ, but claims JSON as the payload: not a list.
    let header = serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": f.key.kid()});
    let fake = f.sign_raw(&header, br#"{"seq":99}"#);
    let err = crate::fixture::verify_snapshot(&fake, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Malformed);
}

#[test]
fn issuer_time_and_sequence_are_checked() {
    let (key, keys, opts) = setup();
    let foreign = RevocationList::builder("https://other.test", 5, NOW).build();
    let err =
        crate::fixture::verify_snapshot(&foreign.sign_snapshot(&key).unwrap(), &keys, &opts, NOW);
    assert_eq!(err.unwrap_err().code(), ErrorCode::WrongIssuer);
    let future = RevocationList::builder(ISSUER, 5, NOW + 31).build();
    let err =
        crate::fixture::verify_snapshot(&future.sign_snapshot(&key).unwrap(), &keys, &opts, NOW);
    assert_eq!(err.unwrap_err().code(), ErrorCode::NotYetValid);
    let held = list(5, 0);
    assert_eq!(
        list(5, 0).ensure_newer_than(held.rank()),
        Err(SnapshotError::Stale { seq: 5, held: 5 })
    );
    assert_eq!(
        list(4, 0)
            .ensure_newer_than((5, NOW, 0))
            .unwrap_err()
            .code(),
        ErrorCode::StaleSnapshot
    );
    assert!(list(6, 0).ensure_newer_than((5, NOW, 0)).is_ok());
    // The same seq, re-signed later, refreshes the age; an older seq never does.
    assert!(list(5, 0).ensure_newer_than((5, NOW - 60, 0)).is_ok());
    assert!(list(4, 0).ensure_newer_than((5, NOW - 60, 0)).is_err());
}

#[test]
fn a_hundred_thousand_entries_fit_in_two_mebibytes() {
    let (key, keys, opts) = setup();
    let mut b = RevocationList::builder(ISSUER, 1, NOW);
    for i in 0..50_000 {
        b = b
            .token(&format!("jti-{i}"), NOW + 900)
            .session(&format!("sid-{i}"), NOW + 900);
    }
    let big = b.build();
    assert_eq!(big.len(), 100_000);
    let jws = big.sign_snapshot(&key).unwrap();
    assert!(jws.len() <= 2 * 1024 * 1024, "{} bytes", jws.len());
    let parsed = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap();
    let mut c = claims();
    c.jti = "jti-49999".into();
    assert!(parsed.check(&trusted(&c)).is_some());
    c.jti = "jti-50000".into();
    c.sid = "sid-50000".into();
    assert!(parsed.check(&trusted(&c)).is_none());
}

#[test]
fn lists_are_signed_and_checked_by_the_keys_algorithm() {
    // A P-256 key signs and verifies lists as an Ed25519 key does; the header alg must name the
    // key's algorithm.
    let f = Fixture::new(Algorithm::Es256);
    let keys = f.verifier.keys().clone();
    let opts = SnapshotOptions::new(ISSUER);
    let jws = list(3, 5).sign_snapshot(&f.key).unwrap();
    let parsed = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap();
    assert_eq!(parsed.to_bytes(), list(3, 5).to_bytes());
    assert_eq!(parsed.signer(), f.key.kid());
    let delta = RevocationDelta::new(2, list(3, 5));
    let signed = delta.sign(&f.key).unwrap();
    let parsed = crate::fixture::verify_delta(&signed, &keys, &opts, NOW).unwrap();
    assert_eq!(
        (parsed.from_seq(), parsed.list().to_bytes()),
        (2, delta.list().to_bytes())
    );
    let payload = list(3, 5).to_bytes();
    let header = serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": f.key.kid()});
    let err = crate::fixture::verify_snapshot(&f.sign_raw(&header, &payload), &keys, &opts, NOW);
    assert_eq!(err.unwrap_err().code(), ErrorCode::AlgMismatch);
    let header = serde_json::json!({"alg": "ES256", "typ": SNAPSHOT_TYPE, "kid": f.key.kid()});
    let good = f.sign_raw(&header, &payload);
    assert!(crate::fixture::verify_snapshot(&good, &keys, &opts, NOW).is_ok());
    // The worker's path checks Ed25519 only (WebCrypto's): a P-256 list is `alg_mismatch` there.
    let oracle = crate::fixture::ready(RevocationList::verify_snapshot_with(
        &crate::fixture::DalekOracle,
        &good,
        &keys,
        &opts,
        NOW,
    ));
    assert_eq!(oracle.unwrap_err().code(), ErrorCode::AlgMismatch);
    // A signature of the wrong length never reaches the equation.
    let (input, _) = good.rsplit_once('.').unwrap();
    let short = format!("{input}.{}", b64([7u8; 63]));
    let err = crate::fixture::verify_snapshot(&short, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadSignature);
}

#[test]
fn a_list_in_cbor_claims_is_refused_as_an_unsupported_header() {
    // The format before the list became the payload: `cty: CBOR`, which this build cannot read.
    // An edge or package of this version keeps its held list instead of misreading one.
    let f = Fixture::new(Algorithm::EdDsa);
    let keys = f.verifier.keys().clone();
    let header = serde_json::json!({
        "alg": "EdDSA", "cty": "CBOR", "typ": SNAPSHOT_TYPE, "kid": f.key.kid()
    });
    let old = f.sign_raw(&header, &list(3, 1).to_bytes());
    let err = crate::fixture::verify_snapshot(&old, &keys, &SnapshotOptions::new(ISSUER), NOW);
    assert_eq!(err.unwrap_err().code(), ErrorCode::UnsupportedHeader);
}

#[test]
fn a_delta_too_short_to_name_its_start_is_malformed() {
    let f = Fixture::new(Algorithm::EdDsa);
    let keys = f.verifier.keys().clone();
    let header = serde_json::json!({
        "alg": "EdDSA", "typ": gatehouse_shared::DELTA_TYPE, "kid": f.key.kid()
    });
    for payload in [&b""[..], &[0u8; 7][..], &list(3, 1).to_bytes()[..]] {
        let signed = f.sign_raw(&header, payload);
        let err = crate::fixture::verify_delta(&signed, &keys, &SnapshotOptions::new(ISSUER), NOW);
        assert_eq!(err.unwrap_err().code(), ErrorCode::Malformed, "{payload:?}");
    }
}

#[test]
fn a_list_is_held_to_the_form_checks_of_a_token() {
    // jwt-compact parses a list's header and signature, the layer its payload: each malformed
    // part keeps the code a token would get, and the size limit comes before any decoding.
    let f = Fixture::new(Algorithm::EdDsa);
    let keys = f.verifier.keys().clone();
    let opts = SnapshotOptions::new(ISSUER);
    let header = serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": f.key.kid()});
    let good = f.sign_raw(&header, &list(3, 1).to_bytes());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let crit =
        serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": f.key.kid(), "crit": null});
    let repeated = format!(
        r#"{{"alg":"EdDSA","typ":"{SNAPSHOT_TYPE}","kid":"{}","kid":"x"}}"#,
        f.key.kid()
    );
    let cases = [
        (format!("{head}.{payload}="), ErrorCode::Malformed),
        (format!("{head}.A.{sig}"), ErrorCode::Malformed),
        (format!("{head}.{payload}*.{sig}"), ErrorCode::Malformed),
        (
            format!("{head}.{payload}.{sig}.{sig}"),
            ErrorCode::Malformed,
        ),
        (format!("{head}.{payload}"), ErrorCode::Malformed),
        (format!("{head}.{payload}.{sig}x"), ErrorCode::Malformed),
        (format!("x{head}.{payload}.{sig}"), ErrorCode::Malformed),
        (
            f.sign_raw(&crit, &list(3, 1).to_bytes()),
            ErrorCode::UnsupportedHeader,
        ),
        (
            f.key.sign_raw_jws(&repeated, &list(3, 1).to_bytes()),
            ErrorCode::Malformed,
        ),
    ];
    for (jws, code) in cases {
        let err = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap_err();
        assert_eq!(err.code(), code, "{jws}");
    }
    // Two faults at once, an odd header (`crit`, a `cty` that is not claims) and a payload that
    // is not base64url: `malformed`, as the same text parsed as a token is. Before, a list got
    // `unsupported_header`.
    let cty = serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": f.key.kid(), "cty": "CBOR"});
    for odd in [&crit, &cty] {
        let signed = f.sign_raw(odd, &list(3, 1).to_bytes());
        let (odd_head, odd_rest) = signed.split_once('.').unwrap();
        let (_, odd_sig) = odd_rest.split_once('.').unwrap();
        let both = format!("{odd_head}.A.{odd_sig}");
        let as_token = UntrustedToken::parse(&both, usize::MAX).unwrap_err().code();
        let err = crate::fixture::verify_snapshot(&both, &keys, &opts, NOW).unwrap_err();
        assert_eq!(
            (err.code(), as_token),
            (ErrorCode::Malformed, ErrorCode::Malformed),
            "{odd}"
        );
    }
    let small = SnapshotOptions {
        max_bytes: good.len() - 1,
        ..opts.clone()
    };
    let err = crate::fixture::verify_snapshot(&good, &keys, &small, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooLarge);
    assert!(crate::fixture::verify_snapshot(&good, &keys, &opts, NOW).is_ok());

    // A header of many members, signed: refused by its size before it is parsed (its members'
    // uniqueness check costs their number squared, and a list's limit is MBs).
    let padding = (0..200).fold(String::new(), |mut padding, i| {
        use std::fmt::Write as _;
        let _ = write!(padding, r#","p{i}":0"#);
        padding
    });
    let padded = format!(
        r#"{{"alg":"EdDSA","typ":"{SNAPSHOT_TYPE}","kid":"{}"{padding}}}"#,
        f.key.kid()
    );
    let jws = f.key.sign_raw_jws(&padded, &list(3, 1).to_bytes());
    let err = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Malformed, "{err}");
}

/// Ed25519's group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// What `verify_strict` refuses beyond the equation, on a list: a non-canonical `s` (`s + L`)
/// and `R` the identity (which only the key holder can make, and the bare equation accepts).
/// Both paths refuse both as `bad_signature`; the fixture checks that they agree. The identity
/// `R` is what catches an oracle path without the strict form check: the stand-in oracle, like
/// WebCrypto, refuses `s + L` by itself.
#[test]
fn a_list_signature_that_verify_strict_refuses_is_refused_on_both_paths() {
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::Signer as _;
    use sha2::{Digest as _, Sha512};
    let secret = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let public = secret.verifying_key().to_bytes();
    let jwk = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k9"}}"#,
        b64(public)
    );
    let keys = KeySet::new([gatehouse_shared::VerifyingJwk::from_json(&jwk).unwrap()]);
    let opts = SnapshotOptions::new(ISSUER);
    let header = serde_json::json!({"alg": "EdDSA", "typ": SNAPSHOT_TYPE, "kid": "k9"});
    let signed = format!("{}.{}", b64(header.to_string()), b64(list(3, 2).to_bytes()));
    let with = |signature: &[u8; 64]| format!("{signed}.{}", b64(signature));
    let good = secret.sign(signed.as_bytes()).to_bytes();
    assert!(crate::fixture::verify_snapshot(&with(&good), &keys, &opts, NOW).is_ok());

    // s + L, little-endian: a second encoding of the same s.
    let mut high_s = good;
    let mut carry = 0u16;
    for (byte, l) in high_s[32..].iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    // R the identity, s = H(R, A, M)·a: the cofactorless equation holds.
    let mut identity_r = [0u8; 64];
    identity_r[0] = 1;
    let hash: [u8; 64] = Sha512::new()
        .chain_update(&identity_r[..32])
        .chain_update(public)
        .chain_update(signed.as_bytes())
        .finalize()
        .into();
    let s = Scalar::from_bytes_mod_order_wide(&hash) * secret.to_scalar();
    identity_r[32..].copy_from_slice(s.as_bytes());
    for forged in [high_s, identity_r] {
        let err = crate::fixture::verify_snapshot(&with(&forged), &keys, &opts, NOW).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadSignature);
    }
}

/// An oracle that cannot check (the runtime's WebCrypto failing) is the outer error, for a
/// good list: not a verdict on it. A list refused before the equation (here, by its `typ`) never
/// reaches the oracle, and keeps its code.
#[test]
fn an_oracle_fault_is_no_verdict_on_the_list() {
    struct Broken;
    impl gatehouse_shared::Ed25519Oracle for Broken {
        type Fault = &'static str;
        async fn verify(
            &self,
            _: &gatehouse_shared::Ed25519Input<'_>,
        ) -> Result<bool, &'static str> {
            Err("the runtime failed")
        }
    }
    let poll = |future: std::pin::Pin<&mut dyn Future<Output = _>>| {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.poll(&mut context) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => panic!("never waits"),
        }
    };
    let (key, keys, opts) = setup();
    let good = list(3, 2).sign_snapshot(&key).unwrap();
    let verdict: Result<Result<RevocationList, SnapshotError>, &str> = poll(std::pin::pin!(
        RevocationList::verify_snapshot_with(&Broken, &good, &keys, &opts, NOW)
    ));
    assert_eq!(verdict.unwrap_err(), "the runtime failed");
    let delta = RevocationDelta::new(2, list(3, 2)).sign(&key).unwrap();
    let verdict: Result<Result<RevocationList, SnapshotError>, &str> = poll(std::pin::pin!(
        RevocationList::verify_snapshot_with(&Broken, &delta, &keys, &opts, NOW)
    ));
    assert_eq!(verdict.unwrap().unwrap_err().code(), ErrorCode::WrongType);
}
