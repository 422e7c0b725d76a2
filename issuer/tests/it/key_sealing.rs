//! The sealed key ring: replicas that share it through the database and one secret, the
//! secret's rotation, and a replica that cannot open the ring.

use gatehouse_issuer::config::Secret;
use gatehouse_issuer::keys::{self, KeyRing, Sealer};
use gatehouse_shared::{Algorithm, KeySet, SigningKey};
use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, me_on, str_of, write_key_file};
use crate::keys::kid_of;

pub(crate) fn secret() -> Secret {
    Secret::new(Sealer::generate_secret().unwrap())
}

/// Replicas share nothing but the database and the configuration: no key files, another data
/// directory each. The private key is sealed in its row, and a wrong secret is named.
async fn replicas_share_the_sealed_key_ring(backend: Backend) {
    let kek = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(kek.clone())).await;
    app.register("alice").await;
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    let replica = app
        .replica_with(|c| c.data_dir = elsewhere.path().to_path_buf())
        .await;
    assert_eq!(me_on(&replica, &token).await, Status::Ok);
    let (_, from_replica, _) =
        crate::common::decode(replica.get("/.well-known/jwks.json").dispatch().await).await;
    assert_eq!(
        KeySet::from_json(&from_replica.to_string())
            .unwrap()
            .kids()
            .collect::<Vec<_>>(),
        [kid_of(&token)]
    );

    let rows = app.store().run_sync(keys::list).unwrap();
    let sealed = rows[0].sealed_private_jwk.clone().unwrap();
    assert!(sealed.starts_with("xchacha20poly1305.v1."), "{sealed}");
    assert!(!sealed.contains("\"d\""), "no private JWK in the clear");

    let mut wrong = app.config.clone();
    wrong.key_encryption_key = Some(secret());
    let now = app.clock().now();
    let load = wrong.clone();
    let err = app
        .store()
        .run_sync(move |c| KeyRing::load(c, &load, now))
        .err()
        .expect("another secret cannot open the key");
    assert!(
        err.to_string().contains("GATEHOUSE_KEY_ENCRYPTION_KEY"),
        "{err}"
    );

    // `keys rotate` and `keys import` with another secret (a shell without the replicas'
    // secret) change nothing. Before, they made active a key no replica could open.
    let key_file = elsewhere.path().join("imported.jwk");
    std::fs::write(
        &key_file,
        SigningKey::generate(Algorithm::EdDsa)
            .unwrap()
            .to_private_jwk_json()
            .unwrap(),
    )
    .unwrap();
    let (rotate, import) = (wrong.clone(), wrong);
    let rotated = app.store().run_sync(move |c| keys::rotate(c, &rotate, now));
    let imported = app
        .store()
        .run_sync(move |c| keys::import_file(c, &import, &key_file, now));
    // Nor does the recovery run in a shell with no secret at all: it would seal the new active
    // key under a development default made there.
    let mut unset = app.config.clone();
    unset.key_encryption_key = None;
    let replaced = app
        .store()
        .run_sync(move |c| keys::rotate_replacing_unopenable(c, &unset, now));
    for err in [rotated.err(), imported.err(), replaced.err()] {
        let err = err.expect("refused").to_string();
        assert!(err.contains("GATEHOUSE_KEY_ENCRYPTION_KEY"), "{err}");
    }
    let after = app.store().run_sync(keys::list).unwrap();
    assert_eq!(
        after
            .iter()
            .map(|r| (&r.kid, &r.status))
            .collect::<Vec<_>>(),
        rows.iter().map(|r| (&r.kid, &r.status)).collect::<Vec<_>>(),
        "the ring is unchanged"
    );
    assert_eq!(me_on(&replica, &token).await, Status::Ok);

    // The secret is lost: the explicit recovery makes a new key under the new secret, which
    // then loads, and the old key's tokens still verify.
    let mut recovered = app.config.clone();
    recovered.key_encryption_key = Some(secret());
    let recover_secret = recovered.key_encryption_key.clone();
    let recover = recovered.clone();
    let new_key = app
        .store()
        .run_sync(move |c| keys::rotate_replacing_unopenable(c, &recover, now))
        .unwrap();
    let ring = app
        .store()
        .run_sync(move |c| KeyRing::load(c, &recovered, now))
        .expect("the ring loads under the new secret");
    let state = ring.current();
    assert_eq!(state.signer.kid(), new_key.kid());
    assert!(
        state.verifier.verify(&token, now).is_ok(),
        "the old key's tokens verify"
    );
    // The old key, retired, opens with no secret now; `keys reseal` sets it aside instead of
    // failing for it (before, it failed for good after this recovery).
    let old_kid = kid_of(&token);
    let reseal = app.config.clone();
    let report = app
        .store()
        .run_sync(move |c| {
            let mut config = reseal;
            config.key_encryption_key = recover_secret;
            keys::reseal(c, &config, now)
        })
        .unwrap();
    assert!(report.unopened.is_empty(), "{report:?}");
    assert_eq!(report.set_aside, [old_kid]);
}

/// Rotating the key-encryption key on a live ring: replicas given the new secret with the old
/// one as a fallback open every key and seal new ones under the new secret; `keys reseal` moves
/// the rest, after which the new secret alone opens the ring.
async fn the_key_encryption_key_rotates_through_fallbacks_and_reseal(backend: Backend) {
    let (old, new) = (secret(), secret());
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(old.clone())).await;
    app.register("alice").await;
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    let first = kid_of(&token);

    let mut rotated = app.config.clone();
    rotated.key_encryption_key = Some(new.clone());
    rotated.key_encryption_key_fallbacks = Some(Secret::new(format!("{},", old.expose())));
    let replica = app.replica_with(|c| *c = rotated.clone()).await;
    assert_eq!(me_on(&replica, &token).await, Status::Ok);
    let now = app.clock().now();
    // A shell still set up the other way round (the old secret current, the new one its
    // fallback) opens the ring too, but the replica on the new secret has forgotten the old
    // one: a key sealed under it would stop every replica once the fallbacks go.
    let mut backwards = app.config.clone();
    backwards.key_encryption_key_fallbacks = Some(Secret::new(new.expose().to_owned()));
    let refused = app
        .store()
        .run_sync(move |c| keys::rotate(c, &backwards, now))
        .expect_err("a secret being rotated away from seals nothing");
    assert!(
        refused.to_string().contains("no replica runs with"),
        "{refused}"
    );
    let second = app
        .store()
        .run_sync(|c| keys::rotate(c, &rotated, now))
        .unwrap()
        .kid()
        .to_owned();
    let mut only_new = rotated.clone();
    only_new.key_encryption_key_fallbacks = None;
    let load = |config: &gatehouse_issuer::config::Config| {
        let config = config.clone();
        app.store()
            .run_sync(move |c| KeyRing::load(c, &config, now))
            .map(|ring| ring.current().signer.kid().to_owned())
    };
    // The new key is sealed under the new secret: the old one alone no longer opens the ring.
    let err = load(&app.config).expect_err("the old secret cannot open the new key");
    assert!(err.to_string().contains(&second), "{err}");

    let report = app
        .store()
        .run_sync(|c| keys::reseal(c, &rotated, now))
        .unwrap();
    assert_eq!(report.resealed, std::slice::from_ref(&first));
    assert_eq!((report.current, report.unopened.len()), (1, 0));
    let again = app
        .store()
        .run_sync(|c| keys::reseal(c, &rotated, now))
        .unwrap();
    assert_eq!((again.resealed.len(), again.current), (0, 2), "idempotent");

    assert_eq!(load(&only_new).unwrap(), second);
    let sealer = Sealer::from_secret(new.expose()).unwrap();
    for row in app.store().run_sync(keys::list).unwrap() {
        let sealed = row.sealed_private_jwk.unwrap();
        assert!(sealer.open(&row.kid, &sealed).is_ok(), "{}", row.kid);
    }

    // Keys no configured secret opens are named by kid, never resealed or dropped (the secret
    // here one a replica has run with, as a replica of another ring would have).
    let mut stranger = only_new.clone();
    let stranger_secret = secret();
    let stranger_sealer = Sealer::from_secret(stranger_secret.expose()).unwrap();
    app.store()
        .run_sync(|c| keys::witness::record(c, &stranger_sealer, now))
        .unwrap();
    stranger.key_encryption_key = Some(stranger_secret);
    let report = app
        .store()
        .run_sync(|c| keys::reseal(c, &stranger, now))
        .unwrap();
    assert_eq!((report.resealed.len(), report.current), (0, 0));
    // The active key is reported (the command fails); the retired one is set aside, since it
    // never signs again.
    assert_eq!(report.unopened.len(), 1, "{report:?}");
    assert!(report.unopened[0].contains(&second), "{report:?}");
    assert_eq!(report.set_aside, std::slice::from_ref(&first));
    assert_eq!(load(&only_new).unwrap(), second, "nothing was lost");
}

/// A replica left on an old key-encryption key cannot open the key another replica rotated
/// in, so its ring refreshes fail. It used to go on signing with the retired key, which the
/// other replicas drop from their JWKS after its grace, and to answer ready. Once its ring is
/// older than two maintenance periods it re-reads it before signing, and refuses (503) when
/// that fails, before a session starts; readiness says why.
async fn a_replica_that_cannot_read_its_ring_stops_signing(backend: Backend) {
    let old = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(old.clone())).await;
    app.register("alice").await;
    app.login("alice").await;
    let mut elsewhere = app.config.clone();
    elsewhere.key_encryption_key = Some(secret());
    elsewhere.key_encryption_key_fallbacks = Some(Secret::new(format!("{},", old.expose())));
    // Another replica, already on the new secret, rotates a key in under it.
    let _replica = app.replica_with(|c| *c = elsewhere.clone()).await;
    let now = app.clock().now();
    app.store()
        .run_sync(move |c| keys::rotate(c, &elsewhere, now))
        .unwrap();
    let sessions_before = app.store().run_sync(session_count).unwrap();

    // Within two periods the ring in hand still signs (the grace counts on that). The test
    // clock runs on from real time: 5 s of room.
    app.clock()
        .advance(2 * i64::from(app.config.cleanup_interval_secs) - 5);
    app.login("alice").await;
    let sessions_before = sessions_before + 1;
    assert_eq!(
        app.store().run_sync(session_count).unwrap(),
        sessions_before
    );

    app.clock().advance(6);
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    app.token_unavailable(&body).await;
    assert_eq!(
        app.store().run_sync(session_count).unwrap(),
        sessions_before,
        "no session was started"
    );
    // A request that is wrong in itself is told so all the same (before, it got the 503; and
    // before 2026-12-07 so did a grant without its required fields).
    let overlong = format!("grant_type=refresh_token&refresh_token={}", "x".repeat(600));
    for (body, error) in [
        ("grant_type=client_credentials", "unsupported_grant_type"),
        ("username=alice", "invalid_request"),
        ("grant_type=password&username=alice", "invalid_request"),
        ("grant_type=password&password=x", "invalid_request"),
        ("grant_type=refresh_token", "invalid_request"),
        (overlong.as_str(), "invalid_grant"),
    ] {
        let (status, json) = app.send("POST", "/v1/token", Some(body), None).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::BadRequest, error),
            "{body}: {json}"
        );
    }
    let (status, ready) = app.send("GET", "/health/ready", None, None).await;
    assert_eq!(status, Status::ServiceUnavailable, "{ready}");
    assert_eq!(
        (ready["database"].as_bool(), ready["signing_keys"].as_bool()),
        (Some(true), Some(false)),
        "{ready}"
    );
    assert_eq!(
        str_of(&ready, "error"),
        "temporarily_unavailable",
        "{ready}"
    );
    // Nor does it sign revocation lists with that key.
    for path in ["/v1/revocations", "/v1/revocations/delta"] {
        let (status, json) = app.send("GET", path, None, None).await;
        assert_eq!(status, Status::ServiceUnavailable, "{path}: {json}");
    }
}

fn session_count(
    conn: &mut gatehouse_issuer::db::DbConn,
) -> Result<i64, gatehouse_issuer::error::ApiError> {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::sessions;
    Ok(sessions::table.count().get_result(conn)?)
}

/// A shell whose new secret is mistyped, with the real one as the fallback: the ring opens (by
/// the fallback), so the ring's own check passes, but keys sealed under the mistyped secret
/// would open on no replica. `keys reseal`, `keys rotate` and `keys import` refuse it, since no
/// replica has run with it (lately), and change nothing.
async fn a_secret_no_replica_holds_seals_nothing(backend: Backend) {
    let real = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(real.clone())).await;
    let typo = secret();
    let mut mistyped = app.config.clone();
    mistyped.key_encryption_key = Some(typo.clone());
    mistyped.key_encryption_key_fallbacks = Some(real.clone());
    let now = app.clock().now();
    let before = app.store().run_sync(keys::list).unwrap();
    let shell = mistyped.clone();
    let dir = tempfile::tempdir().unwrap();
    let (key_file, _) = write_key_file(dir.path(), "k.jwk", Algorithm::EdDsa);
    let (a, b, c) = (mistyped.clone(), mistyped.clone(), mistyped);
    let refusals = [
        app.store()
            .run_sync(move |conn| keys::reseal(conn, &a, now).map(drop))
            .err(),
        app.store()
            .run_sync(move |conn| keys::rotate(conn, &b, now).map(drop))
            .err(),
        app.store()
            .run_sync(move |conn| keys::import_file(conn, &c, &key_file, now).map(drop))
            .err(),
    ];
    for refusal in refusals {
        let refusal = refusal.expect("refused").to_string();
        assert!(refusal.contains("no replica runs with"), "{refusal}");
    }
    // A replica ran with the mistyped secret an hour ago (fixed since), and the replicas have
    // recorded theirs since: it no longer counts. Before, any secret ever recorded did.
    let (typo, real) = (
        Sealer::from_secret(typo.expose()).unwrap(),
        Sealer::from_secret(real.expose()).unwrap(),
    );
    app.store()
        .run_sync(|c| keys::witness::record(c, &typo, now - 3600))
        .unwrap();
    app.store()
        .run_sync(|c| keys::witness::record(c, &real, now))
        .unwrap();
    let refusal = app
        .store()
        .run_sync(move |conn| keys::rotate(conn, &shell, now).map(drop))
        .expect_err("a secret no replica ran with lately seals nothing")
        .to_string();
    assert!(refusal.contains("no replica runs with"), "{refusal}");
    let after = app.store().run_sync(keys::list).unwrap();
    let ring = |rows: &[keys::KeyRecord]| {
        rows.iter()
            .map(|r| {
                (
                    r.kid.clone(),
                    r.status.clone(),
                    r.sealed_private_jwk.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(ring(&after), ring(&before), "the ring is unchanged");
}

crate::on_both_backends!(
    replicas_share_the_sealed_key_ring,
    the_key_encryption_key_rotates_through_fallbacks_and_reseal,
    a_secret_no_replica_holds_seals_nothing,
    a_replica_that_cannot_read_its_ring_stops_signing,
);
