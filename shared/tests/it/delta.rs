//! Signed deltas (the fast path) and the view that applies them over a base list.

use gatehouse_shared::{
    Algorithm, ErrorCode, KeySet, RevocationDelta, RevocationList, RevocationReason,
    RevocationView, SigningKey, SnapshotError, SnapshotOptions, TokenClaims, replaces,
    replaces_list,
};

use crate::fixture::{ISSUER, NOW, claims, trusted};

fn setup() -> (SigningKey, KeySet, SnapshotOptions) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = KeySet::new([key.verifying_jwk()]);
    (key, keys, SnapshotOptions::new(ISSUER))
}

fn with_jti(jti: &str) -> TokenClaims {
    TokenClaims {
        jti: jti.into(),
        sid: "live-session".into(),
        ..claims()
    }
}

/// A delta over `(from, seq]` revoking the given jtis, signed at `at`.
fn delta(from: u64, seq: u64, at: i64, jtis: &[&str]) -> RevocationDelta {
    let mut b = RevocationList::builder(ISSUER, seq, at);
    for jti in jtis {
        b = b.token(jti, NOW + 900);
    }
    RevocationDelta::new(from, b.build())
}

fn base(seq: u64, at: i64, jtis: &[&str]) -> RevocationList {
    delta(0, seq, at, jtis).list().clone()
}

fn revoked(view: &RevocationView, jti: &str) -> bool {
    view.check(&trusted(&with_jti(jti))) == Some(RevocationReason::Token)
}

#[test]
fn a_delta_round_trips_and_cannot_pass_as_a_snapshot_or_the_reverse() {
    let (key, keys, opts) = setup();
    let original = delta(5, 9, NOW, &["a", "b"]);
    let jws = original.sign(&key).unwrap();
    let parsed = crate::fixture::verify_delta(&jws, &keys, &opts, NOW).unwrap();
    assert_eq!(parsed.list().to_bytes(), original.list().to_bytes());
    assert_eq!(parsed.list().signer(), key.kid());
    assert_eq!((parsed.from_seq(), parsed.list().seq()), (5, 9));
    // A delta taken for a snapshot would replace the base list and drop its entries.
    let err = crate::fixture::verify_snapshot(&jws, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::WrongType);
    let snapshot = base(9, NOW, &["a"]).sign_snapshot(&key).unwrap();
    let err = crate::fixture::verify_delta(&snapshot, &keys, &opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::WrongType);
}

#[test]
fn a_delta_from_another_key_issuer_or_the_future_is_refused() {
    let (key, keys, opts) = setup();
    let (other, _, _) = setup();
    let jws = delta(0, 1, NOW, &["a"]).sign(&other).unwrap();
    assert_eq!(
        crate::fixture::verify_delta(&jws, &keys, &opts, NOW)
            .unwrap_err()
            .code(),
        ErrorCode::UnknownKid
    );
    let foreign = RevocationDelta::new(
        0,
        RevocationList::builder("https://elsewhere.test", 1, NOW).build(),
    );
    let jws = foreign.sign(&key).unwrap();
    assert_eq!(
        crate::fixture::verify_delta(&jws, &keys, &opts, NOW)
            .unwrap_err()
            .code(),
        ErrorCode::WrongIssuer
    );
    let jws = delta(0, 1, NOW + 3600, &["a"]).sign(&key).unwrap();
    assert_eq!(
        crate::fixture::verify_delta(&jws, &keys, &opts, NOW)
            .unwrap_err()
            .code(),
        ErrorCode::NotYetValid
    );
}

#[test]
fn a_delta_that_starts_after_its_end_is_malformed() {
    let (key, keys, opts) = setup();
    // Also when its values are wrong too: the form is judged first, as a token's is.
    for issued_at in [NOW, NOW + 3600] {
        let jws = delta(10, 5, issued_at, &[]).sign(&key).unwrap();
        let err = crate::fixture::verify_delta(&jws, &keys, &opts, NOW).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Malformed, "{issued_at}");
    }
}

#[test]
fn a_contiguous_delta_adds_its_entries_and_its_freshness() {
    let view = RevocationView::default()
        .with_base(base(10, NOW - 600, &["old"]))
        .unwrap();
    assert_eq!((view.seq(), view.age_secs(NOW)), (10, Some(600)));
    let view = view.with_delta(delta(8, 12, NOW - 1, &["new"])).unwrap();
    assert!(revoked(&view, "old") && revoked(&view, "new"));
    assert!(!revoked(&view, "other"));
    assert_eq!((view.seq(), view.age_secs(NOW)), (12, Some(1)));
}

#[test]
fn a_delta_past_a_gap_still_revokes_but_does_not_freshen() {
    let view = RevocationView::default()
        .with_base(base(10, NOW - 600, &[]))
        .unwrap()
        .with_delta(delta(20, 25, NOW - 1, &["new"]))
        .unwrap();
    assert!(
        revoked(&view, "new"),
        "revocations only add: applying is safe"
    );
    assert_eq!((view.seq(), view.age_secs(NOW)), (10, Some(600)));
    // A later base that covers the gap makes the view whole, and the delta fresh again.
    let view = view.with_base(base(21, NOW - 60, &[])).unwrap();
    assert_eq!((view.seq(), view.age_secs(NOW)), (25, Some(1)));
    assert!(revoked(&view, "new"));
}

#[test]
fn deltas_past_a_gap_accumulate_what_later_ones_no_longer_carry() {
    let view = RevocationView::default()
        .with_base(base(10, NOW - 600, &[]))
        .unwrap()
        .with_delta(delta(20, 25, NOW - 2, &["first"]))
        .unwrap()
        .with_delta(delta(24, 30, NOW - 1, &["second"]))
        .unwrap();
    assert!(revoked(&view, "first") && revoked(&view, "second"));
    assert_eq!(view.delta().unwrap().from_seq(), 20);
    // Once a delta reaches back to the base, it alone is the truth since the base.
    let view = view.with_delta(delta(9, 31, NOW, &["third"])).unwrap();
    assert!(revoked(&view, "third") && !revoked(&view, "first"));
    assert_eq!((view.seq(), view.age_secs(NOW)), (31, Some(0)));
}

/// While no newer base arrives (KV down), deltas past a gap accumulate; what has expired by the
/// newest one's time is dropped, so the held delta does not grow for ever.
#[test]
fn accumulated_deltas_drop_what_has_expired() {
    let short = |seq: u64, at: i64, jti: &str| {
        let list = RevocationList::builder(ISSUER, seq, at)
            .token(jti, at + 30)
            .build();
        RevocationDelta::new(seq - 1, list)
    };
    let view = RevocationView::default()
        .with_base(base(10, NOW - 600, &[]))
        .unwrap()
        .with_delta(short(21, NOW - 100, "gone-soon"))
        .unwrap()
        .with_delta(short(31, NOW - 90, "kept"))
        .unwrap();
    assert_eq!(
        view.delta().unwrap().list().len(),
        2,
        "both live at NOW - 90"
    );
    let view = view.with_delta(short(41, NOW - 65, "newest")).unwrap();
    let held = view.delta().unwrap().list();
    assert_eq!(
        held.len(),
        2,
        "the entry that expired at NOW - 70 was dropped"
    );
    assert!(revoked(&view, "kept") && revoked(&view, "newest"));
}

#[test]
fn older_deltas_and_bases_are_refused() {
    let view = RevocationView::default()
        .with_base(base(10, NOW - 10, &[]))
        .unwrap()
        .with_delta(delta(5, 12, NOW - 1, &["x"]))
        .unwrap();
    let err = view.with_delta(delta(5, 12, NOW - 2, &[])).unwrap_err();
    assert!(matches!(err, SnapshotError::Stale { .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::StaleSnapshot);
    let err = view.with_base(base(9, NOW, &[])).unwrap_err();
    assert_eq!(err.code(), ErrorCode::StaleSnapshot);
    // The same seq re-signed later is newer: it keeps the list's age honest.
    let resigned = view.with_delta(delta(5, 12, NOW, &["x"])).unwrap();
    assert_eq!(resigned.age_secs(NOW), Some(0));
}

#[test]
fn a_base_that_overtakes_the_delta_drops_it() {
    let view = RevocationView::default()
        .with_base(base(10, NOW - 10, &[]))
        .unwrap()
        .with_delta(delta(5, 12, NOW - 5, &["x"]))
        .unwrap()
        .with_base(base(12, NOW - 1, &["x"]))
        .unwrap();
    assert!(view.delta().is_none());
    assert!(revoked(&view, "x"));
    assert_eq!((view.seq(), view.age_secs(NOW)), (12, Some(1)));
}

#[test]
fn without_a_base_only_a_delta_from_zero_is_a_list() {
    let gap = RevocationView::default()
        .with_delta(delta(3, 5, NOW, &["x"]))
        .unwrap();
    assert!(!gap.is_present() && gap.age_secs(NOW).is_none());
    assert!(revoked(&gap, "x"));
    let whole = RevocationView::default()
        .with_delta(delta(0, 5, NOW, &["x"]))
        .unwrap();
    assert!(whole.is_present());
    assert_eq!((whole.seq(), whole.age_secs(NOW)), (5, Some(0)));
}

#[test]
fn a_key_revocation_travels_in_a_delta_and_survives_a_round_trip() {
    let (key, keys, opts) = setup();
    let list = RevocationList::builder(ISSUER, 3, NOW)
        .key("stolen-kid", NOW + 86_400)
        .build();
    assert!(list.revokes_key("stolen-kid") && !list.revokes_key("other-kid"));
    // Namespaced like every kind: a jti equal to the kid is not revoked by it.
    assert_eq!(list.check(&trusted(&with_jti("stolen-kid"))), None);
    let jws = RevocationDelta::new(2, list).sign(&key).unwrap();
    let delta = crate::fixture::verify_delta(&jws, &keys, &opts, NOW).unwrap();
    let view = RevocationView::default()
        .with_base(base(2, NOW - 5, &[]))
        .unwrap()
        .with_delta(delta)
        .unwrap();
    assert!(view.revokes_key("stolen-kid"));
    assert!(!view.revokes_key("other-kid"));
}

#[test]
fn a_base_signed_before_a_delta_of_the_same_seq_keeps_the_delta() {
    // The feed re-signs seq 10 every second; KV's copy of seq 10 is the hour's heartbeat.
    let view = RevocationView::default()
        .with_base(base(10, NOW - 600, &[]))
        .unwrap()
        .with_delta(delta(0, 10, NOW - 1, &[]))
        .unwrap();
    let view = view.with_base(base(10, NOW - 300, &[])).unwrap();
    assert_eq!((view.seq(), view.age_secs(NOW)), (10, Some(1)));
    assert!(view.delta().is_some());
}

/// A key that leaked and the issuer's current one, both in the key set lists are verified with.
struct TwoKeys {
    leaked: SigningKey,
    current: SigningKey,
    keys: KeySet,
    opts: SnapshotOptions,
}

impl TwoKeys {
    fn new() -> Self {
        let (leaked, _, opts) = setup();
        let (current, _, _) = setup();
        let keys = KeySet::new([leaked.verifying_jwk(), current.verifying_jwk()]);
        Self {
            leaked,
            current,
            keys,
            opts,
        }
    }

    /// `list` signed by `key` as a snapshot, and verified.
    fn signed(&self, list: &RevocationList, key: &SigningKey) -> RevocationList {
        let jws = list.sign_snapshot(key).unwrap();
        crate::fixture::verify_snapshot(&jws, &self.keys, &self.opts, NOW).unwrap()
    }
}

/// A holder of both lists (the JS package's remote verifier) never takes a list signed by a key
/// the held one revokes, whatever its seq. `replaces`, which sees only the held list's rank,
/// takes it: before, the package did, with the key still in the key set it verified with.
#[test]
fn a_list_signed_by_a_key_the_held_list_revokes_never_replaces_it() {
    let two = TwoKeys::new();
    let (leaked, current) = (&two.leaked, &two.current);
    let signed = |list: &RevocationList, key: &SigningKey| two.signed(list, key);
    let revoking = RevocationList::builder(ISSUER, 8, NOW)
        .key(leaked.kid(), NOW + 86_400)
        .build();
    let held = signed(&revoking, current);
    let forged = signed(&base(u64::MAX - 1, NOW, &[]), leaked);
    assert!(replaces(&forged, held.rank()));
    assert!(!replaces_list(&forged, &held));
    // The issuer's next list still replaces it, and it still replaces the forged one.
    assert!(replaces_list(&signed(&base(9, NOW, &[]), current), &held));
    assert!(replaces_list(&held, &forged));
    // A view holds to the same rule, by its base or by its delta, whatever verified the list.
    let by_base = RevocationView::default().with_base(held.clone()).unwrap();
    let by_delta = RevocationView::default()
        .with_delta(RevocationDelta::new(7, held))
        .unwrap();
    for view in [by_base, by_delta] {
        let err = view.with_base(forged.clone()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownKid);
        let next = view.with_base(signed(&base(9, NOW, &[]), current)).unwrap();
        assert_eq!(next.seq(), 9);
    }
}

/// A key that leaked can sign a list with a seq far above the issuer's. Once the
/// issuer revokes the key (every list it signs then names it), such a list ranks below any list
/// that names its signer: a snapshot replaces it, and a delta drops it from the view.
#[test]
fn a_list_signed_by_a_revoked_key_ranks_below_any_list_that_revokes_the_key() {
    let two = TwoKeys::new();
    let (leaked, current, keys, opts) = (&two.leaked, &two.current, &two.keys, &two.opts);
    let signed = |list: &RevocationList, key: &SigningKey| two.signed(list, key);
    let forged = signed(&base(u64::MAX - 1, NOW, &[]), leaked);
    assert_eq!(forged.signer(), leaked.kid());
    let held = RevocationView::default().with_base(forged).unwrap();
    // Before the key is revoked, the issuer's list is older, as any lower seq is; and a list that
    // revokes another key is no exception.
    for list in [
        base(7, NOW, &["x"]),
        RevocationList::builder(ISSUER, 7, NOW)
            .key("another-kid", NOW + 86_400)
            .build(),
    ] {
        let err = held.with_base(signed(&list, current)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::StaleSnapshot);
    }
    let revoking = RevocationList::builder(ISSUER, 8, NOW)
        .token("x", NOW + 900)
        .key(leaked.kid(), NOW + 86_400)
        .build();
    // Signed by the key it revokes (a replica that has not re-read its key ring, or the key's
    // holder), a list is refused: taken, an older list naming the key would replace it.
    let jws = revoking.sign_snapshot(leaked).unwrap();
    let err = crate::fixture::verify_snapshot(&jws, keys, opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownKid);
    let jws = RevocationDelta::new(7, revoking.clone())
        .sign(leaked)
        .unwrap();
    let err = crate::fixture::verify_delta(&jws, keys, opts, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownKid);
    let view = held.with_base(signed(&revoking, current)).unwrap();
    assert_eq!(view.seq(), 8);
    assert_eq!(view.base().unwrap().signer(), current.kid());
    assert!(revoked(&view, "x") && view.revokes_key(leaked.kid()));
    // The fast path: a delta naming the key drops the base, and the issuer's list is taken.
    let dropped = held
        .with_delta(RevocationDelta::new(7, revoking.clone()))
        .unwrap();
    assert!(dropped.base().is_none() && !dropped.is_present());
    assert_eq!(dropped.seq(), 0);
    assert!(revoked(&dropped, "x"), "the delta's entries stay");
    let view = dropped
        .with_base(signed(&base(8, NOW, &[]), current))
        .unwrap();
    assert_eq!(view.seq(), 8);
    // What drops the base is the revocation, not a delta's arrival.
    let kept = held.with_delta(delta(7, 8, NOW, &["y"])).unwrap();
    assert_eq!(kept.seq(), u64::MAX - 1);
    // A list the key signed below the revocation's seq is the issuer's, from before it: a delta
    // naming the key keeps it (dropping it would leave the view with no base until a read).
    let honest = signed(&base(5, NOW - 60, &["old"]), leaked);
    let view = RevocationView::default()
        .with_base(honest)
        .unwrap()
        .with_delta(RevocationDelta::new(5, revoking.clone()))
        .unwrap();
    assert_eq!(view.base().map(RevocationList::seq), Some(5));
    assert!(revoked(&view, "old") && view.is_present());
    // A forged delta (the same key, a seq the issuer will not reach) goes too once a base names
    // the key.
    let forged_delta = RevocationDelta::new(7, signed(&base(u64::MAX - 1, NOW, &[]), leaked));
    let view = RevocationView::default()
        .with_delta(forged_delta)
        .unwrap()
        .with_base(signed(&revoking, current))
        .unwrap();
    assert!(view.delta().is_none());
    assert_eq!(view.seq(), 8);
    // A delta that names the key takes nothing over from the forged delta it replaces: merged,
    // the forged one's start (0, a whole list) made the view look complete.
    let forged_whole = RevocationDelta::new(0, signed(&base(u64::MAX - 1, NOW, &["f"]), leaked));
    let view = RevocationView::default()
        .with_delta(forged_whole)
        .unwrap()
        .with_delta(RevocationDelta::new(7, revoking.clone()))
        .unwrap();
    assert_eq!(view.delta().map(RevocationDelta::from_seq), Some(7));
    assert!(!view.is_present() && !revoked(&view, "f"));
}
