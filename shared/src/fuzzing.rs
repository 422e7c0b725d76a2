//! Harnesses shared by the `cargo fuzz` targets (`shared/fuzz/`) and the regression tests that
//! replay every input the fuzzers ever found interesting. Each asserts invariants; a panic is a
//! bug.

use crate::{ErrorCode, KeySet, RevocationList, SnapshotOptions, Verifier, VerifierOptions};

/// The fixed key the harnesses trust (RFC 8037's example public key, `kid` "fuzz").
pub fn keys() -> KeySet {
    KeySet::from_json(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"fuzz"}]}"#,
    )
    .unwrap_or_default()
}

/// Token parsing and verification: never panics, every failure has a code.
pub fn token(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let verifier = Verifier::new(keys(), VerifierOptions::new("https://issuer.test", "api"));
    if let Err(e) = verifier.verify(text, 1_800_000_000) {
        assert!(!e.code().as_str().is_empty());
    }
    if let Ok(untrusted) = crate::UntrustedToken::parse(text, usize::MAX) {
        let _ = untrusted.has_type("at+jwt");
    }
}

/// JWKS parsing: never panics, and what a set writes it reads back identically.
pub fn jwks(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = KeySet::from_json(text) {
        let again = KeySet::from_json(&set.to_json());
        assert_eq!(
            again.map(|s| s.keys().to_vec()).ok(),
            Some(set.keys().to_vec())
        );
    }
}

/// Snapshot decoding: never panics; the encoding is canonical (decode then encode gives the
/// same bytes); a signed snapshot that is not ours fails with a code.
pub fn snapshot(data: &[u8]) {
    if let Ok(list) = RevocationList::from_bytes(data) {
        assert_eq!(list.to_bytes(), data, "the compact encoding is canonical");
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let opts = SnapshotOptions::new("https://issuer.test");
        if let Err(e) = RevocationList::verify_snapshot(text, &keys(), &opts, 1_800_000_000) {
            assert_ne!(e.code(), ErrorCode::SigningFailed);
        }
    }
}
