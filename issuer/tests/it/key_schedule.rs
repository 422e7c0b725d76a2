//! The scheduled key and the key import, against the sealed ring: a key no replica could open is
//! never sealed, promoted or signed with, and an import cut off midway is finished.

use std::sync::Arc;

use gatehouse_issuer::keys::{self, KeyRing, SealedUnder, Sealer};
use gatehouse_shared::Algorithm;

use crate::common::{Backend, TestApp, write_key_file};
use crate::key_sealing::secret;

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

/// A key scheduled while rotation was on leaves the ring once it is turned off
/// (`key_rotation_days = 0`) and its promotion is overdue: it never signed, and nothing new is
/// scheduled; the active key signs on. Before, it stayed published as the next key for good: a
/// key every verifier takes, which never signed.
async fn turning_rotation_off_drops_the_scheduled_key(backend: Backend) {
    let app = TestApp::start(backend).await;
    let now = app.clock().now();
    let next = schedule_now(&app, &app.config, now);
    let statuses = || {
        let rows = app.store().run_sync(keys::list).unwrap();
        rows.into_iter()
            .map(|r| (r.kid, r.status))
            .collect::<Vec<_>>()
    };
    let before = statuses();
    assert!(
        before.contains(&(next.clone(), "next".into())),
        "{before:?}"
    );
    // Turned off with the lead the key was scheduled with: overdue two maintenance periods
    // after it was due, and not a second sooner (a replica that rotates may promote it).
    let mut off = app.config.clone();
    off.key_rotation_days = 0;
    off.key_publish_ahead_secs = 86_400;
    let overdue = 86_400 + 2 * i64::from(off.cleanup_interval_secs);
    let load_off = |at: i64| {
        let off = off.clone();
        app.store()
            .run_sync(move |c| KeyRing::load(c, &off, at).map(drop))
            .unwrap();
    };
    for at in [now + 1, now + overdue - 1] {
        load_off(at);
        assert_eq!(statuses(), before, "left to be promoted at {at}");
    }
    load_off(now + overdue);
    let after = statuses();
    let unchanged: Vec<_> = before.into_iter().filter(|(kid, _)| *kid != next).collect();
    assert_eq!(
        after, unchanged,
        "the scheduled key is gone, nothing else changed"
    );
    let details: Vec<String> = app
        .store()
        .run_sync(|c| {
            use diesel::prelude::*;
            use gatehouse_issuer::db::schema::audit_events as events;
            let rows = events::table.filter(events::kind.eq("key_unscheduled"));
            Ok(rows.select(events::detail).load(c)?)
        })
        .unwrap();
    let expected = serde_json::json!({"kids": [next], "why": "key_rotation_days is 0"});
    assert_eq!(details, [expected.to_string()]);
}

/// Replicas that disagree on `key_rotation_days` (one rotates, one has it off: a rolling
/// deploy, a mistyped value) rotate: the one with rotation off leaves a scheduled key to the
/// other until it is overdue, and the other promotes it when due. Before, the one with rotation
/// off dropped it at its next tick, the other scheduled a new one at its own, and no key was
/// ever promoted.
async fn replicas_that_disagree_on_rotation_rotate(backend: Backend) {
    let app = TestApp::start(backend).await;
    let now = app.clock().now();
    let mut rotating = app.config.clone();
    rotating.key_rotation_days = 1;
    let mut off = app.config.clone();
    off.key_rotation_days = 0;
    let load = |config: &gatehouse_issuer::config::Config, at: i64| {
        let config = config.clone();
        app.store()
            .run_sync(move |c| KeyRing::load(c, &config, at).map(drop))
            .unwrap();
    };
    let status_of = |kid: &str| {
        let rows = app.store().run_sync(keys::list).unwrap();
        rows.into_iter().find(|r| r.kid == kid).map(|r| r.status)
    };
    // Due a day after the first key: scheduled `key_publish_ahead_secs` before.
    let ahead = i64::from(rotating.key_publish_ahead_secs);
    let scheduled_at = now + 86_400 - ahead;
    load(&rotating, scheduled_at);
    let rows = app.store().run_sync(keys::list).unwrap();
    let next = rows
        .into_iter()
        .find(|r| r.status == "next")
        .map(|r| r.kid)
        .expect("a key is scheduled");
    load(&off, scheduled_at + 1);
    assert_eq!(
        status_of(&next).as_deref(),
        Some("next"),
        "left to the other"
    );
    load(&rotating, scheduled_at + ahead);
    assert_eq!(
        status_of(&next).as_deref(),
        Some("active"),
        "promoted when due"
    );
    load(&off, scheduled_at + ahead + 1);
    assert_eq!(status_of(&next).as_deref(), Some("active"));
}

/// A key file imported at a replica's start is sealed under the active key's secret too: a
/// replica started with a mistyped secret (the real one as the fallback) and a new
/// `GATEHOUSE_SIGNING_KEY_FILE` sealed it under the typo, and every other replica would have
/// failed to open the key it made the signing key.
async fn an_imported_key_file_is_sealed_under_the_active_keys_secret(backend: Backend) {
    let real = secret();
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(real.clone())).await;
    let now = app.clock().now();
    let dir = tempfile::tempdir().unwrap();
    let (key_file, key) = write_key_file(dir.path(), "new.jwk", Algorithm::EdDsa);
    let typo = secret();
    let mut mistyped = app.config.clone();
    mistyped.key_encryption_key = Some(typo.clone());
    mistyped.key_encryption_key_fallbacks = Some(real.clone());
    mistyped.signing_key_file = Some(key_file);
    app.store()
        .run_sync(move |c| KeyRing::load(c, &mistyped, now).map(drop))
        .unwrap();
    let rows = app.store().run_sync(keys::list).unwrap();
    let imported = rows.iter().find(|r| r.kid == key.kid()).unwrap();
    assert_eq!(imported.status, "active");
    let sealed = sealed_of(&app, key.kid());
    let real_sealer = Sealer::from_secret(real.expose()).unwrap();
    assert!(
        matches!(
            real_sealer.open_any(key.kid(), &sealed),
            Ok((_, SealedUnder::Current))
        ),
        "sealed under the active key's secret"
    );
    let typo_sealer = Sealer::from_secret(typo.expose()).unwrap();
    assert!(typo_sealer.open_any(key.kid(), &sealed).is_err());
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
    let (key_file, key) = write_key_file(dir.path(), "imported.jwk", Algorithm::EdDsa);
    let import = |app: &TestApp| {
        let (config, file) = (app.config.clone(), key_file.clone());
        app.store()
            .run_sync(move |c| keys::import_file(c, &config, &file, now))
            .unwrap()
            .1
            == keys::Imported::Signing
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

/// An import is one transaction: one whose activation could not run (the activations' lock
/// held elsewhere past the statement timeout) leaves no scheduled key, which the rotation
/// schedule would have made the signing key later although `keys import` said it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_import_leaves_no_scheduled_key() {
    use diesel::{Connection as _, PgConnection, connection::SimpleConnection as _};
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.key_encryption_key = Some(secret());
        c.db_timeout_ms = 500;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (key_file, key) = write_key_file(dir.path(), "imported.jwk", Algorithm::EdDsa);
    // A writer's lock on the ring, as an open UPDATE holds it: an INSERT passes it, the
    // activations' lock waits for it.
    let mut writer = PgConnection::establish(&app.db.url).unwrap();
    writer
        .batch_execute("BEGIN; LOCK TABLE signing_keys IN ROW EXCLUSIVE MODE")
        .unwrap();
    let (config, now) = (app.config.clone(), app.clock().now());
    let imported = app
        .store()
        .run_sync(move |c| keys::import_file(c, &config, &key_file, now));
    writer.batch_execute("COMMIT").unwrap();
    let refused = imported.map(|_| ()).unwrap_err();
    assert_eq!(
        refused.code(),
        "temporarily_unavailable",
        "the activation timed out: {refused}"
    );
    let rows = app.store().run_sync(keys::list).unwrap();
    assert!(
        rows.iter().all(|r| r.kid != key.kid()),
        "nothing of the failed import is left: {:?}",
        rows.iter().map(|r| (&r.kid, &r.status)).collect::<Vec<_>>()
    );
}

crate::on_both_backends!(
    an_imported_key_file_is_sealed_under_the_active_keys_secret,
    turning_rotation_off_drops_the_scheduled_key,
    replicas_that_disagree_on_rotation_rotate,
    a_scheduled_key_that_does_not_open_stops_the_start,
    a_scheduled_key_is_sealed_under_the_active_keys_secret,
    a_scheduled_key_with_no_sealed_part_needs_its_file_at_start,
    an_import_left_scheduled_is_finished_by_the_next,
);
