//! Harnesses shared by the `cargo fuzz` targets (`fuzz_targets/`) and the regression tests that
//! replay every input the fuzzers ever found interesting (`shared/tests/it/fuzz_regressions.rs`).
//! Each asserts invariants; a panic is a bug. Both include this file by path, so it is test
//! code and never part of the `gatehouse-shared` library.

use gatehouse_shared::{
    Ed25519Key, ErrorCode, KeySet, PublicKey, RevocationList, SigningKey, SnapshotOptions,
    UntrustedToken, Verifier, VerifierOptions, replaces,
};

/// The fixed key the harnesses trust (RFC 8037's example public key, `kid` "fuzz").
pub fn keys() -> KeySet {
    KeySet::from_json(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"fuzz"}]}"#,
    )
    .unwrap_or_default()
}

/// The private half of [`keys`] (RFC 8037's example key), to sign what the harnesses decode.
fn signing_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::from_jwk_json(
            r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"fuzz"}"#,
        )
        .expect("RFC 8037's key")
    })
}

/// Token parsing and verification: never panics, and fails only with a verifier's codes.
pub fn token(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let verifier = Verifier::new(keys(), VerifierOptions::new("https://issuer.test", "api"));
    if let Err(e) = verifier.verify(text, 1_800_000_000) {
        // A verifier's failure is a parse or validation stage's, never the signer's.
        assert_ne!(e.code(), ErrorCode::SigningFailed, "{e}");
    }
    if let Ok(untrusted) = UntrustedToken::parse(text, usize::MAX) {
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
/// same bytes; a version 1 list re-encodes as the current version, to the same list); a signed
/// snapshot that is not ours fails with a code. Signed by the trusted key, a decoded list
/// verifies to the same entries with that key as its signer, and never replaces itself; unless
/// it revokes that key, which is refused (`unknown_kid`).
pub fn snapshot(data: &[u8]) {
    if let Ok(list) = RevocationList::from_bytes(data) {
        let bytes = list.to_bytes();
        if data.get(4) == bytes.get(4) {
            assert_eq!(bytes, data, "the compact encoding is canonical");
        } else {
            assert_eq!(RevocationList::from_bytes(&bytes).as_ref(), Ok(&list));
        }
        let jws = list
            .sign_snapshot(signing_key())
            .expect("a decoded list signs");
        let opts = SnapshotOptions::new(list.issuer());
        match RevocationList::verify_snapshot(&jws, &keys(), &opts, list.issued_at()) {
            Ok(verified) => {
                assert!(
                    !list.revokes_key("fuzz"),
                    "a list revoking its signer was taken"
                );
                assert_eq!(verified.to_bytes(), bytes);
                assert_eq!(verified.signer(), "fuzz");
                assert!(
                    !replaces(&verified, verified.rank()),
                    "a list replaced itself"
                );
            }
            Err(e) => {
                assert!(list.revokes_key("fuzz"), "{e}");
                assert_eq!(e.code(), ErrorCode::UnknownKid);
            }
        }
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let opts = SnapshotOptions::new("https://issuer.test");
        if let Err(e) = RevocationList::verify_snapshot(text, &keys(), &opts, 1_800_000_000) {
            assert_ne!(e.code(), ErrorCode::SigningFailed);
        }
    }
}

/// Ed25519 differential: the verifier tokens go through ([`PublicKey::verify`], that is
/// `StrictEd25519` with an [`Ed25519Key`]) against ed25519-dalek used directly.
/// `data`: a mode byte, 32 key bytes, 64 signature bytes, then the message. Even modes sign the
/// message with the key bytes as a secret and XOR the signature bytes in as a mask (all zero: a
/// valid signature), so the fuzzer explores around valid signatures; odd modes take the key and
/// signature bytes as they are (small-order and non-canonical keys included).
pub fn ed25519(data: &[u8]) {
    use ed25519_dalek::{Signer as _, Verifier as _};
    let (Some(&mode), Some(key), Some(sig), Some(message)) = (
        data.first(),
        data.get(1..33).and_then(|k| <[u8; 32]>::try_from(k).ok()),
        data.get(33..97).and_then(|s| <[u8; 64]>::try_from(s).ok()),
        data.get(97..),
    ) else {
        return;
    };
    let (public, signature) = if mode % 2 == 0 {
        let secret = ed25519_dalek::SigningKey::from_bytes(&key);
        let mut signature = secret.sign(message).to_bytes();
        for (byte, mask) in signature.iter_mut().zip(sig) {
            *byte ^= mask;
        }
        (secret.verifying_key().to_bytes(), signature)
    } else {
        (key, sig)
    };
    let ours = Ed25519Key::from_bytes(&public)
        .is_ok_and(|k| PublicKey::Ed25519(k).verify(message, &signature));
    let reference = ed25519_dalek::VerifyingKey::from_bytes(&public).ok();
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&signature);
    let strict = reference
        .as_ref()
        .is_some_and(|k| k.verify_strict(message, &dalek_sig).is_ok());
    let plain = reference
        .as_ref()
        .is_some_and(|k| k.verify(message, &dalek_sig).is_ok());
    if ours {
        assert!(strict && plain, "accepted what ed25519-dalek refuses");
    }
    let usable_key = reference.is_some_and(|k| {
        let point = k.to_edwards();
        !k.is_weak() && point.is_torsion_free() && point.compress().to_bytes() == public
    });
    if strict && usable_key {
        assert!(ours, "refused what verify_strict accepts with a sound key");
    }
    if mode % 2 == 0 && sig.iter().all(|&b| b == 0) {
        assert!(ours, "a fresh signature must verify");
    }
}
