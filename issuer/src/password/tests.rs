use super::*;

/// The queue holds 32 hashes per worker; one more answers 503 at once instead of waiting.
#[tokio::test(flavor = "current_thread")]
async fn a_full_hash_queue_answers_unavailable() {
    let hasher = Arc::new(
        Hasher::new(
            HashPolicy::fast_for_tests(),
            1,
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(std::sync::Mutex::new(held));
    let mut queued = Vec::new();
    for _ in 0..32 {
        let (hasher, held) = (Arc::clone(&hasher), Arc::clone(&held));
        queued.push(tokio::spawn(async move {
            // Released by the test, or by the timer if an assertion failed first.
            let wait = move || {
                let _ = held
                    .lock()
                    .map(|rx| rx.recv_timeout(std::time::Duration::from_secs(10)));
            };
            hasher.run(wait).await
        }));
    }
    for _ in 0..1000 {
        if hasher.queue.available_permits() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let refused = hasher.verify("password".into(), None).await;
    assert!(
        matches!(refused, Err(ApiError::Unavailable { .. })),
        "{refused:?}"
    );
    for _ in 0..32 {
        let _ = release.send(());
    }
    for job in queued {
        assert!(job.await.unwrap().is_ok());
    }
    assert!(!hasher.verify("password".into(), None).await.unwrap());
}

#[test]
fn an_m_cost_beyond_a_gibibyte_is_refused_by_name() {
    let policy = HashPolicy {
        m_cost: MAX_M_COST_KIB + 1,
        ..HashPolicy::fast_for_tests()
    };
    let refused = Hasher::new(policy, 1, Arc::new(Metrics::default()));
    assert!(
        matches!(&refused, Err(ApiError::Internal(why)) if why.contains("GATEHOUSE_PASSWORD__M_COST")),
        "{:?}",
        refused.err()
    );
}

#[test]
fn policy_round_trip_and_upgrade_detection() {
    let fast = HashPolicy::fast_for_tests();
    let stored = fast.hash("correct horse battery").unwrap();
    assert!(fast.verify("correct horse battery", &stored));
    assert!(!fast.verify("correct horse batterz", &stored));
    assert!(!fast.requires_upgrade(&stored));
    let stronger = HashPolicy { t_cost: 2, ..fast };
    assert!(stronger.requires_upgrade(&stored));
    // Verification follows the parameters recorded in the hash.
    assert!(stronger.verify("correct horse battery", &stored));
    assert!(fast.requires_upgrade("$2b$12$not-an-argon2-hash"));
    assert!(!fast.verify("x", "garbage"));
}

/// Verification in reused memory answers exactly as argon2's own `verify_password`, for
/// other variants, versions and sizes too, and a smaller hash after a larger one.
#[test]
fn reused_memory_verification_agrees_with_argon2() {
    use argon2::password_hash::PasswordVerifier as _;
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let mut stored = Vec::new();
    for (alg, version, m, t, len) in [
        (Algorithm::Argon2id, Version::V0x13, 256, 2, 32),
        (Algorithm::Argon2i, Version::V0x13, 64, 1, 16),
        (Algorithm::Argon2d, Version::V0x10, 128, 3, 64),
        (Algorithm::Argon2id, Version::V0x13, 64, 1, 32),
    ] {
        let params = Params::new(m, t, 1, Some(len)).unwrap();
        let argon = Argon2::new(alg, version, params);
        stored.push(argon.hash_password(b"right", &salt).unwrap().to_string());
    }
    for phc in &stored {
        let parsed = PasswordHash::new(phc).unwrap();
        for attempt in ["right", "wrong", ""] {
            let theirs = Argon2::default()
                .verify_password(attempt.as_bytes(), &parsed)
                .is_ok();
            let ours = HashPolicy::fast_for_tests().verify(attempt, phc);
            assert_eq!(ours, theirs, "{phc} with {attempt:?}");
            assert_eq!(ours, attempt == "right");
        }
    }
}

#[test]
fn password_policy() {
    assert!(check_password_policy("short", "u").is_err());
    assert!(check_password_policy(&"x".repeat(1025), "u").is_err());
    assert!(check_password_policy("Password1", "u").is_err(), "common");
    assert!(check_password_policy("alice-the-user", "alice-the-user").is_err());
    assert!(check_password_policy("plover-quartz-7", "u").is_ok());
    // Length counts characters, not bytes.
    assert!(check_password_policy("ééééééé", "u").is_err());
}

#[test]
fn passwords_are_compared_in_nfkc() {
    let policy = HashPolicy::fast_for_tests();
    let (composed, decomposed) = ("caf\u{e9}-plover-7", "cafe\u{301}-plover-7");
    let stored = policy.hash(composed).unwrap();
    assert!(policy.verify(composed, &stored));
    assert!(policy.verify(decomposed, &stored));
    assert!(!policy.verify("cafe-plover-7", &stored));
    // Fullwidth forms, as East Asian input methods type them, are their ASCII letters.
    let ascii = policy.hash("plover-quartz-7").unwrap();
    assert!(policy.verify("\u{ff50}lover-quartz-\u{ff17}", &ascii));
    assert!(
        check_password_policy("\u{ff50}assword1", "u").is_err(),
        "common"
    );
    // A hash made before normalisation, of a decomposed password as typed, still takes it.
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let legacy = policy
        .argon2()
        .unwrap()
        .hash_password(decomposed.as_bytes(), &salt)
        .unwrap()
        .to_string();
    assert_eq!(policy.matching(decomposed, &legacy), Match::AsTyped);
    assert_eq!(policy.matching(composed, &legacy), Match::No);
    assert_eq!(policy.matching(decomposed, &stored), Match::Normalized);
    assert!(!policy.verify("cafe-plover-7", &legacy));
    // Over 1024 characters as typed, 609 in NFKC: taken at registration, so at login too.
    let long = format!("{}-plover-7", "e\u{301}".repeat(600));
    assert!(check_password_policy(&long, "u").is_ok());
    assert!(may_be_a_password(&long));
}

#[test]
fn usernames_are_normalised() {
    assert_eq!(normalize_username("  Alice.Smith ").unwrap(), "alice.smith");
    assert!(normalize_username("ab").is_err());
    assert!(normalize_username("a b c").is_err());
    assert!(normalize_username("robert'); drop table users;--").is_err());
}
