//! Replicas and the key ring: a rotation made elsewhere, several rotations or key files at
//! once, a first deploy on an empty database, and the ring's re-read a request causes.

use std::sync::Arc;

use gatehouse_issuer::keys::{self, KeyRing};
use gatehouse_shared::{Algorithm, KeySet, SigningKey};
use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, me_on, str_of, write_key_file};
use crate::key_sealing::secret;
use crate::keys::{kid_of, published_kids, refresh_ring};

/// After `keys rotate` (the CLI, or another replica), a replica that has not refreshed its ring
/// yet still takes the new key's tokens: an unknown `kid` re-reads the ring once. Before, it
/// answered 401 `unknown_kid`, and `/v1/revoke` answered 200 while revoking nothing.
async fn a_replica_behind_a_rotation_takes_the_new_keys_tokens(backend: Backend) {
    let (app, access) = signed_after_a_rotation_elsewhere(backend).await;
    // `app` has not refreshed its ring since the rotation. Requests that arrive together all
    // pass: those that come while one re-reads the ring wait for it (before, they got 401).
    let (a, b, c, d) = tokio::join!(
        app.me(&access),
        app.me(&access),
        app.me(&access),
        app.me(&access)
    );
    for (status, json) in [a, b, c, d] {
        assert_eq!(status, Status::Ok, "{json}");
    }
    let body = format!("token={access}");
    let (status, _) = app
        .send("POST", "/v1/revoke", Some(&body), Some(&access))
        .await;
    assert_eq!(status, Status::Ok);
    let (status, json) = app.me(&access).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked")
    );
}

/// A rotation by the CLI makes its key active at once; a replica that has refreshed signs with
/// it while another has not yet. The other's JWKS lists it all the same (its copy of the ring
/// is at most a second old when it answers), so a verifier sent there by an unknown `kid` finds
/// the key. Before, that JWKS lacked it until its own refresh, up to 60 s later.
async fn every_replicas_jwks_lists_the_key_another_signs_with(backend: Backend) {
    let (app, access) = signed_after_a_rotation_elsewhere(backend).await;
    // The guarantee is a copy at most a second old; `app` read its ring before the rotation.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, jwks) = app.send("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(status, Status::Ok);
    let kids = KeySet::from_json(&jwks.to_string()).unwrap();
    assert!(kids.get(&kid_of(&access)).is_some(), "{jwks}");
}

/// `keys rotate` (as by the CLI), then an access token from a replica that has refreshed its
/// ring since, and `app`, which has not.
async fn signed_after_a_rotation_elsewhere(backend: Backend) -> (TestApp, String) {
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(secret())).await;
    app.register("alice").await;
    let replica = app.replica().await;
    let now = app.clock().now();
    let config = app.config.clone();
    let db = app.store().clone();
    db.run_sync(move |c| keys::rotate(c, &config, now)).unwrap();
    let ring = replica.rocket().state::<Arc<KeyRing>>().unwrap();
    db.run_sync(|c| ring.refresh(c, now)).unwrap();
    let response = replica
        .post("/v1/token")
        .header(rocket::http::ContentType::Form)
        .body(format!(
            "grant_type=password&username=alice&password={PASSWORD}"
        ))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    let tokens: serde_json::Value = response.into_json().await.unwrap();
    let access = str_of(&tokens, "access_token").to_owned();
    (app, access)
}

/// Two rotations at once (two operators, or two replicas' CLIs): every replica settles on the
/// same signing key and exactly one stays active.
async fn concurrent_rotations_settle_on_one_key(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(secret())).await;
    app.register("alice").await;
    let replica = app.replica().await;
    let now = app.clock().now();
    let (a, b) = (app.config.clone(), app.config.clone());
    let (db_a, db_b) = (
        app.store().clone(),
        replica
            .rocket()
            .state::<gatehouse_issuer::db::Db>()
            .unwrap()
            .clone(),
    );
    let (ka, kb) = tokio::join!(
        db_a.run(move |c| keys::rotate(c, &a, now)),
        db_b.run(move |c| keys::rotate(c, &b, now))
    );
    // Serialised: both run, and the later one signs.
    let winners: Vec<String> = [ka, kb]
        .into_iter()
        .map(|k| k.unwrap().kid().to_owned())
        .collect();
    refresh_ring(&app);
    let ring = replica.rocket().state::<Arc<KeyRing>>().unwrap();
    db_b.run_sync(|c| ring.refresh(c, now)).unwrap();
    let listed = app.store().run_sync(keys::list).unwrap();
    let active: Vec<_> = listed
        .iter()
        .filter(|k| k.status == "active")
        .map(|k| k.kid.clone())
        .collect();
    assert_eq!(active.len(), 1, "{listed:?}");
    assert!(winners.contains(&active[0]), "{winners:?} {active:?}");
    assert_eq!(
        app.client
            .rocket()
            .state::<Arc<KeyRing>>()
            .unwrap()
            .current()
            .signer
            .kid(),
        active[0]
    );
    assert_eq!(ring.current().signer.kid(), active[0]);
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&token), active[0]);
    assert_eq!(me_on(&replica, &token).await, Status::Ok);
}

/// A first deploy: several replicas ignite at once on an empty database. Migrations take turns
/// instead of racing, the first key is made once, and every replica signs with it. PostgreSQL
/// only: replicas share PostgreSQL; SQLite is the single-process development store (production
/// refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_igniting_at_once_on_an_empty_postgres_agree() {
    let seen = tokio::task::block_in_place(|| {
        TestApp::start_many(Backend::Postgres, 4, |replica| {
            let signing = replica
                .rocket()
                .state::<Arc<KeyRing>>()
                .unwrap()
                .current()
                .signer
                .kid()
                .to_owned();
            let listed = replica
                .rocket()
                .state::<gatehouse_issuer::db::Db>()
                .unwrap()
                .run_sync(keys::list)
                .unwrap();
            let active = listed.iter().filter(|k| k.status == "active").count();
            (signing, active)
        })
    });
    assert!(seen.iter().all(|s| s.0 == seen[0].0), "{seen:?}");
    assert!(
        seen.iter().all(|s| s.1 == 1),
        "one key made, active: {seen:?}"
    );
}

async fn replicas_starting_with_one_new_key_file_agree(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_key_file(dir.path(), "signing.jwk", Algorithm::EdDsa);
    let app = TestApp::start_with(backend, |c| c.signing_key_file = Some(path.clone())).await;
    // A new key file, and several issuers igniting on it at once: every one starts, and the
    // database ends with exactly that key active.
    let next = SigningKey::generate(Algorithm::EdDsa).unwrap();
    std::fs::write(&path, next.to_private_jwk_json().unwrap()).unwrap();
    let replicas = rocket::futures::future::join_all((0..4).map(|_| app.replica())).await;
    assert_eq!(replicas.len(), 4);
    let listed = app.store().run_sync(keys::list).unwrap();
    let active: Vec<_> = listed
        .iter()
        .filter(|k| k.status == "active")
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(active, [next.kid()]);
    assert_eq!(listed.len(), 2);
}

/// A re-read a request causes (here a JWKS fetch, more than a second after the last) reads the
/// ring and writes nothing: anyone can cause one a second per replica. It used to run the
/// maintenance refresh (the witness record, scheduling, promotion, the key file's import), a
/// write and, with an unreadable key file, an error line, each time.
async fn a_request_rereads_the_ring_without_writing(backend: Backend) {
    use diesel::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct Seen {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_seen: i64,
    }
    let last_seen = |app: &TestApp| {
        app.store()
            .run_sync(|c| {
                Ok(
                    diesel::sql_query("SELECT max(last_seen) AS last_seen FROM sealing_secrets")
                        .get_result::<Seen>(c)?
                        .last_seen,
                )
            })
            .unwrap()
    };
    let app = TestApp::start(backend).await;
    app.clock().advance(100);
    // A rotation by the CLI, which only a re-read shows this replica.
    let now = app.clock().now();
    let rotated = app
        .store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let kids = published_kids(&app).await;
    assert!(
        kids.iter().any(|k| k == rotated.kid()),
        "the JWKS fetch re-read the ring: {kids:?}"
    );
    // Compared with the re-read's time, not with the record before it: that once read one
    // second more than the record after it (a write of the start's settling late, on SQLite).
    let seen = last_seen(&app);
    assert!(
        seen < now,
        "the re-read wrote: last seen {seen}, re-read at {now} or later"
    );
    // The maintenance refresh still records the secret.
    refresh_ring(&app);
    assert_eq!(last_seen(&app), app.clock().now());
}

crate::on_both_backends!(
    a_request_rereads_the_ring_without_writing,
    replicas_starting_with_one_new_key_file_agree,
    concurrent_rotations_settle_on_one_key,
    a_replica_behind_a_rotation_takes_the_new_keys_tokens,
    every_replicas_jwks_lists_the_key_another_signs_with,
);
