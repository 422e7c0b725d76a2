//! Claim validation: time boundaries with leeway, issuer, audience, type, size, revocation.

use gatehouse_shared::{
    Algorithm, Audience, ErrorCode, RevocationList, RevocationReason, SNAPSHOT_TYPE, TokenClaims,
    ValidationError, VerifierOptions, VerifyError,
};
use serde_json::json;

use crate::fixture::{AUDIENCE, Fixture, NOW, claims};

const LEEWAY: u32 = 30;

fn fixture() -> Fixture {
    Fixture::with_options(
        Algorithm::EdDsa,
        VerifierOptions {
            leeway_secs: LEEWAY,
            ..VerifierOptions::new(crate::fixture::ISSUER, AUDIENCE)
        },
    )
}

fn verify_at(f: &Fixture, c: &TokenClaims, now: i64) -> Result<TokenClaims, ErrorCode> {
    f.verifier
        .verify(&f.sign(c), now)
        .map(gatehouse_shared::AccessClaims::into_inner)
        .map_err(|e| e.code())
}

#[test]
fn exp_boundary_with_leeway() {
    let f = fixture();
    let c = claims();
    let last_valid = c.exp + i64::from(LEEWAY) - 1;
    assert!(verify_at(&f, &c, last_valid).is_ok());
    assert_eq!(verify_at(&f, &c, last_valid + 1), Err(ErrorCode::Expired));
    let no_leeway = Fixture::with_options(
        Algorithm::EdDsa,
        VerifierOptions {
            leeway_secs: 0,
            ..VerifierOptions::new(crate::fixture::ISSUER, AUDIENCE)
        },
    );
    assert!(verify_at(&no_leeway, &c, c.exp - 1).is_ok());
    assert_eq!(verify_at(&no_leeway, &c, c.exp), Err(ErrorCode::Expired));
}

/// A verifier never stretches `exp` past the revocation entry's life: a larger leeway is
/// capped, and at every second the capped verifier accepts, the entry still refuses the token.
#[test]
fn the_leeway_is_capped_where_revocation_entries_end() {
    let max = i64::from(VerifierOptions::MAX_LEEWAY_SECS);
    let lenient = Fixture::with_options(
        Algorithm::EdDsa,
        VerifierOptions {
            leeway_secs: 600,
            ..VerifierOptions::new(crate::fixture::ISSUER, AUDIENCE)
        },
    );
    let c = claims();
    assert!(verify_at(&lenient, &c, c.exp + max - 1).is_ok());
    assert_eq!(
        verify_at(&lenient, &c, c.exp + max),
        Err(ErrorCode::Expired)
    );
    let accepted = lenient
        .verifier
        .verify(&lenient.sign(&c), c.exp + max - 1)
        .unwrap();
    let expires_at = gatehouse_shared::entry_expiry(c.exp);
    for now in [c.exp, c.exp + max - 1] {
        assert!(
            gatehouse_shared::entry_revokes(
                gatehouse_shared::RevocationKind::Token,
                &c.jti,
                0,
                expires_at,
                &accepted,
                now
            ),
            "the entry has lapsed at {now}, while the token is still accepted"
        );
    }
}

#[test]
fn nbf_and_iat_boundaries_with_leeway() {
    let f = fixture();
    let mut c = claims();
    c.nbf = Some(NOW + 100);
    assert_eq!(
        verify_at(&f, &c, NOW + 100 - i64::from(LEEWAY) - 1),
        Err(ErrorCode::NotYetValid)
    );
    assert!(verify_at(&f, &c, NOW + 100 - i64::from(LEEWAY)).is_ok());
    // Without nbf, a token issued in the future is not valid yet either.
    c.nbf = None;
    c.iat = NOW + 100;
    assert_eq!(verify_at(&f, &c, NOW + 69), Err(ErrorCode::NotYetValid));
    assert!(verify_at(&f, &c, NOW + 70).is_ok());
}

/// chrono's range ends at year ±262,143: times inside it verify without overflow (the `nbf`
/// guard keeps chrono's panicking subtraction away from its lower end); times outside it are
/// malformed, and the issuer cannot sign them.
#[test]
fn extreme_times_do_not_overflow() {
    const CHRONO_MAX: i64 = 8_210_266_876_799;
    const CHRONO_MIN: i64 = -8_334_601_228_800;
    let f = fixture();
    let mut c = claims();
    c.exp = CHRONO_MAX;
    c.iat = CHRONO_MIN;
    c.nbf = Some(CHRONO_MIN);
    assert!(verify_at(&f, &c, NOW).is_ok());
    c.exp = CHRONO_MIN;
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::Expired));
    c.exp = -1;
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::Expired));
    c.exp = i64::MAX;
    assert!(gatehouse_shared::sign_access_token(&f.key, &c).is_err());
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.kid()});
    for exp in ["9223372036854775807", "1e300", "-9223372036854775808"] {
        let mut raw = serde_json::to_value(claims()).unwrap();
        raw["exp"] = serde_json::from_str(exp).unwrap();
        let token = f.sign_raw(&header, raw.to_string().as_bytes());
        assert_eq!(
            f.verifier.verify(&token, NOW).unwrap_err().code(),
            ErrorCode::Malformed,
            "{exp}"
        );
    }
}

#[test]
fn issuer_audience_and_missing_claims() {
    let f = fixture();
    let mut c = claims();
    c.iss = "https://other.test".into();
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::WrongIssuer));
    let mut c = claims();
    c.aud = Audience::Many(vec!["https://other.test".into()]);
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::WrongAudience));
    c.aud = Audience::Many(vec![]);
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::WrongAudience));
    c.aud = Audience::Many(vec!["https://other.test".into(), AUDIENCE.into()]);
    assert_eq!(verify_at(&f, &c, NOW).unwrap().aud, c.aud);

    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": f.key.kid()});
    let mut raw = serde_json::to_value(claims()).unwrap();
    raw.as_object_mut().unwrap().remove("sid");
    let token = f.sign_raw(&header, raw.to_string().as_bytes());
    assert_eq!(
        f.verifier.verify(&token, NOW),
        Err(VerifyError::Validation(ValidationError::MissingClaim(
            "sid"
        )))
    );
}

#[test]
fn type_must_be_at_jwt() {
    let f = fixture();
    let payload = serde_json::to_vec(&claims()).unwrap();
    for typ in [
        json!("JWT"),
        json!(SNAPSHOT_TYPE),
        json!(null),
        json!("application/at+jwt"),
    ] {
        let header = json!({"alg": "EdDSA", "typ": typ, "kid": f.key.kid()});
        let got = f
            .verifier
            .verify(&f.sign_raw(&header, &payload), NOW)
            .map_err(|e| e.code());
        if typ == "application/at+jwt" {
            assert!(got.is_ok());
        } else {
            assert_eq!(got.unwrap_err(), ErrorCode::WrongType, "{typ}");
        }
    }
    // A token without typ at all.
    let header = json!({"alg": "EdDSA", "kid": f.key.kid()});
    let token = f.sign_raw(&header, &payload);
    assert_eq!(
        f.verifier.verify(&token, NOW).unwrap_err().code(),
        ErrorCode::WrongType
    );
}

#[test]
fn size_limit_is_enforced() {
    let f = Fixture::with_options(
        Algorithm::EdDsa,
        VerifierOptions {
            max_token_bytes: 600,
            ..VerifierOptions::new(crate::fixture::ISSUER, AUDIENCE)
        },
    );
    let mut c = claims();
    assert!(verify_at(&f, &c, NOW).is_ok());
    c.scope = "x".repeat(1000);
    assert_eq!(verify_at(&f, &c, NOW), Err(ErrorCode::TooLarge));
    let megabyte = "a".repeat(1 << 20);
    assert_eq!(
        f.verifier.verify(&megabyte, NOW).unwrap_err().code(),
        ErrorCode::TooLarge
    );
}

#[test]
fn revoked_tokens_fail_with_the_reason() {
    let f = fixture();
    let token = f.sign(&claims());
    let c = claims();
    for (list, reason) in [
        (
            RevocationList::builder("i", 1, NOW).token(&c.jti, NOW + 900),
            RevocationReason::Token,
        ),
        (
            RevocationList::builder("i", 1, NOW).session(&c.sid, NOW + 900),
            RevocationReason::Session,
        ),
        (
            RevocationList::builder("i", 1, NOW).user(&c.sub, NOW + 1, NOW + 900),
            RevocationReason::User,
        ),
    ] {
        let err = f
            .verifier
            .verify_not_revoked(&token, NOW, &list.build())
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::Validation(ValidationError::Revoked(reason))
        );
        assert_eq!(err.code(), ErrorCode::Revoked);
    }
    let unrelated = RevocationList::builder("i", 1, NOW)
        .token("other", NOW + 900)
        .build();
    assert_eq!(
        f.verifier
            .verify_not_revoked(&token, NOW, &unrelated)
            .unwrap()
            .into_inner(),
        c
    );
}
