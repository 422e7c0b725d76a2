//! The sealed key ring: replicas that share it through the database and one secret, the
//! secret's rotation, and a replica that cannot open the ring.

use std::sync::Arc;

use gatehouse_issuer::config::Secret;
use gatehouse_issuer::keys::{self, KeyRing, SealedUnder, Sealer};
use gatehouse_shared::{Algorithm, KeySet, SigningKey};
use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, me_on, str_of};
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
    let (status, json) = app.send("POST", "/v1/token", Some(&body), None).await;
    assert_eq!(
        (status, str_of(&json, "error")),
        (Status::ServiceUnavailable, "temporarily_unavailable"),
        "{json}"
    );
    assert_eq!(
        app.store().run_sync(session_count).unwrap(),
        sessions_before,
        "no session was started"
    );
    // A request that is wrong in itself is told so all the same (before, it got the 503).
    for (body, error) in [
        ("grant_type=client_credentials", "unsupported_grant_type"),
        ("username=alice", "invalid_request"),
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
    let key_file = dir.path().join("k.jwk");
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    std::fs::write(&key_file, key.to_private_jwk_json().unwrap()).unwrap();
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

/// Schedules the next key at once (sealed under `config`'s secret), returning its kid.
fn schedule_now(app: &TestApp, config: &gatehouse_issuer::config::Config, now: i64) -> String {
    let mut scheduling = config.clone();
    scheduling.key_rotation_days = 1;
    scheduling.key_publish_ahead_secs = 86_400;
    app.store()
        .run_sync(move |c| KeyRing::load(c, &scheduling, now).map(drop))
        .unwrap();
    let rows = app.store().run_sync(keys::list).unwrap();
    rows.into_iter()
        .find(|r| r.status == "next")
        .map(|r| r.kid)
        .expect("a key is scheduled")
}

/// The key's sealed private part, as its row holds it.
fn sealed_of(app: &TestApp, kid: &str) -> String {
    let rows = app.store().run_sync(keys::list).unwrap();
    rows.into_iter()
        .find(|r| r.kid == kid)
        .and_then(|r| r.sealed_private_jwk)
        .expect("the key is sealed in its row")
}

/// Replaces the key's sealed part (`None`: none, as in a row from before keys lived there).
fn set_sealed(app: &TestApp, kid: &str, sealed: Option<&str>) {
    use diesel::RunQueryDsl as _;
    let value = sealed.map_or_else(|| "NULL".to_owned(), |s| format!("'{s}'"));
    let update =
        format!("UPDATE signing_keys SET sealed_private_jwk = {value} WHERE kid = '{kid}'");
    app.store()
        .run_sync(move |c| Ok(diesel::sql_query(update).execute(c)?))
        .unwrap();
}

/// A scheduled key sealed under a secret no replica has (as a version before 2026-12-05 sealed
/// one under a mistyped secret) stops the start, by kid: it would have failed on every replica
/// at once when it came to sign; and a replica does not promote it, but keeps signing with the
/// active key. Before, only the active key was opened at start, and any replica promoted it.
async fn a_scheduled_key_that_does_not_open_stops_the_start(backend: Backend) {
    let current = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(current.clone())).await;
    let now = app.clock().now();
    let next = schedule_now(&app, &app.config, now);
    let real = Sealer::from_secret(current.expose()).unwrap();
    let (private, _) = real.open_any(&next, &sealed_of(&app, &next)).unwrap();
    let elsewhere = Sealer::from_secret(secret().expose()).unwrap();
    set_sealed(&app, &next, Some(&elsewhere.seal(&private).unwrap()));

    let config = app.config.clone();
    let refused = app
        .store()
        .run_sync(move |c| KeyRing::load(c, &config, now).map(drop))
        .expect_err("the scheduled key does not open with the replicas' secret");
    let refused = refused.to_string();
    assert!(
        refused.contains("scheduled signing key") && refused.contains(&next),
        "{refused}"
    );

    // Due (published for `key_publish_ahead_secs`), it is not promoted here.
    let due = now + i64::from(app.config.key_publish_ahead_secs) + 1;
    let ring = app.client.rocket().state::<Arc<KeyRing>>().unwrap();
    let active = ring.current().signer.kid().to_owned();
    app.store().run_sync(|c| ring.refresh(c, due)).unwrap();
    let rows = app.store().run_sync(keys::list).unwrap();
    let status = |kid: &str| rows.iter().find(|r| r.kid == kid).unwrap().status.clone();
    assert_eq!(status(&next), "next");
    assert_eq!(status(&active), "active");
    assert_eq!(ring.current().signer.kid(), active);
}

/// A scheduled key is sealed under the secret the active key is sealed under: a replica with a
/// mistyped new secret (the real one as fallback) used to seal it under its own, which no other
/// replica opens, and its promotion stopped them all signing. Mid-rotation of the secret, that
/// is the old one, which every replica holds, until `keys reseal` moves every key.
async fn a_scheduled_key_is_sealed_under_the_active_keys_secret(backend: Backend) {
    let real = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(real.clone())).await;
    let now = app.clock().now();
    let typo = secret();
    let typo_sealer = Sealer::from_secret(typo.expose()).unwrap();
    app.store()
        .run_sync(|c| keys::witness::record(c, &typo_sealer, now))
        .unwrap();
    let mut mistyped = app.config.clone();
    mistyped.key_encryption_key = Some(typo);
    mistyped.key_encryption_key_fallbacks = Some(real.clone());
    let next = schedule_now(&app, &mistyped, now);
    let sealed = sealed_of(&app, &next);
    let real_sealer = Sealer::from_secret(real.expose()).unwrap();
    assert!(
        matches!(
            real_sealer.open_any(&next, &sealed),
            Ok((_, SealedUnder::Current))
        ),
        "sealed under the active key's secret"
    );
    assert!(typo_sealer.open_any(&next, &sealed).is_err());
}

/// A scheduled key recorded before keys lived in the database (no sealed part in its row) is
/// opened at start as it will be when it signs: from the data directory's file of that time,
/// then sealed into its row; with no file, the start stops, naming it. Before, a scheduled key
/// with no sealed part passed the start and failed on every replica when it came to sign.
async fn a_scheduled_key_with_no_sealed_part_needs_its_file_at_start(backend: Backend) {
    let current = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(current.clone())).await;
    let now = app.clock().now();
    let kid = schedule_now(&app, &app.config, now);
    let sealer = Sealer::from_secret(current.expose()).unwrap();
    let (private, _) = sealer.open_any(&kid, &sealed_of(&app, &kid)).unwrap();
    set_sealed(&app, &kid, None);

    let config = app.config.clone();
    let refused = app
        .store()
        .run_sync(move |c| KeyRing::load(c, &config, now).map(drop))
        .expect_err("the scheduled key has no private part anywhere")
        .to_string();
    assert!(
        refused.contains("scheduled signing key") && refused.contains(&kid),
        "{refused}"
    );

    let legacy = app.config.data_dir.join("keys");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(
        legacy.join(format!("{kid}.jwk")),
        private.to_private_jwk_json().unwrap(),
    )
    .unwrap();
    let config = app.config.clone();
    app.store()
        .run_sync(move |c| KeyRing::load(c, &config, now).map(drop))
        .expect("the legacy file opens the scheduled key");
    let rows = app.store().run_sync(keys::list).unwrap();
    let resealed = rows.iter().find(|r| r.kid == kid).unwrap();
    let reopened = resealed
        .sealed_private_jwk
        .as_deref()
        .expect("sealed into its row");
    assert_eq!(sealer.open_any(&kid, reopened).unwrap().0.kid(), kid);
}

/// An import cut off between its insert and its activation (past its deadline, or
/// interrupted) left the key scheduled; importing the file again finishes it. Before, the rerun
/// reported the key as imported before, and it never signed.
async fn an_import_left_scheduled_is_finished_by_the_next(backend: Backend) {
    use diesel::RunQueryDsl as _;
    let current = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(current.clone())).await;
    let now = app.clock().now();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("imported.jwk");
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    std::fs::write(&key_file, key.to_private_jwk_json().unwrap()).unwrap();
    let import = |app: &TestApp| {
        let (config, file) = (app.config.clone(), key_file.clone());
        app.store()
            .run_sync(move |c| keys::import_file(c, &config, &file, now))
            .unwrap()
            .1
    };
    let before = app.store().run_sync(keys::list).unwrap();
    let was_active = before
        .iter()
        .find(|r| r.status == "active")
        .unwrap()
        .kid
        .clone();
    assert!(import(&app));
    // As the cut-off import left the ring: the key scheduled, the one before still active.
    let undo = format!(
        "UPDATE signing_keys SET status = 'next' WHERE kid = '{}'; \
         UPDATE signing_keys SET status = 'active', retired_at = NULL WHERE kid = '{was_active}'",
        key.kid()
    );
    app.store()
        .run_sync(move |c| {
            for statement in undo.split("; ") {
                diesel::sql_query(statement).execute(c)?;
            }
            Ok(())
        })
        .unwrap();

    assert!(import(&app), "the rerun finished the import");
    let rows = app.store().run_sync(keys::list).unwrap();
    let status = |kid: &str| rows.iter().find(|r| r.kid == kid).unwrap().status.clone();
    assert_eq!(status(key.kid()), "active");
    assert_eq!(status(&was_active), "retired");
    assert!(!import(&app), "imported once, never again");
}

crate::on_both_backends!(
    a_scheduled_key_that_does_not_open_stops_the_start,
    an_import_left_scheduled_is_finished_by_the_next,
    a_scheduled_key_is_sealed_under_the_active_keys_secret,
    a_scheduled_key_with_no_sealed_part_needs_its_file_at_start,
    replicas_share_the_sealed_key_ring,
    the_key_encryption_key_rotates_through_fallbacks_and_reseal,
    a_secret_no_replica_holds_seals_nothing,
    a_replica_that_cannot_read_its_ring_stops_signing,
);
