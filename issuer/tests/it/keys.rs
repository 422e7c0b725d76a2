//! Key rotation, the sealed key ring replicas share, imported key files, scheduled rotation,
//! and password rehash on parameter change.

use std::sync::Arc;

use gatehouse_issuer::keys::{self, KeyRing};
use gatehouse_issuer::revoker::Revoker;
use gatehouse_shared::{
    Algorithm, KeySet, RevocationReason, SigningKey, SnapshotOptions, UntrustedToken, Verifier,
    VerifierOptions,
};
use rocket::http::Status;

use crate::common::{Backend, PASSWORD, TestApp, str_of, write_key_file};
use crate::key_sealing::secret;

pub(crate) fn kid_of(token: &str) -> String {
    UntrustedToken::parse(token, 8192)
        .unwrap()
        .header()
        .key_id
        .clone()
        .unwrap()
}

pub(crate) async fn published_kids(app: &TestApp) -> Vec<String> {
    let (_, jwks) = app.send("GET", "/.well-known/jwks.json", None, None).await;
    let set = KeySet::from_json(&jwks.to_string()).unwrap();
    set.kids().map(str::to_owned).collect()
}

pub(crate) fn refresh_ring(app: &TestApp) {
    let ring = app.client.rocket().state::<Arc<KeyRing>>().unwrap();
    let now = app.clock().now();
    app.store().run_sync(|c| ring.refresh(c, now)).unwrap();
}

async fn rotation_keeps_old_tokens_valid_until_they_expire(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let old = str_of(&app.login("alice").await, "access_token").to_owned();
    let now = app.clock().now();
    let new_key = app
        .store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    refresh_ring(&app);

    let new = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&new), new_key.kid());
    assert_ne!(kid_of(&old), kid_of(&new));
    assert_eq!(
        app.me(&old).await.0,
        Status::Ok,
        "the retired key still verifies"
    );
    assert_eq!(app.me(&new).await.0, Status::Ok);
    let kids = published_kids(&app).await;
    assert!(
        kids.contains(&kid_of(&old)) && kids.contains(&kid_of(&new)),
        "{kids:?}"
    );

    // Another replica may sign with the old key until it re-reads the ring, at most two
    // maintenance periods later; that token lives its lifetime plus leeway. Until then the key
    // stays.
    let last_token_expires = 900 + 30 + 2 * i64::from(app.config.cleanup_interval_secs);
    app.clock().advance(900 + 31);
    refresh_ring(&app);
    assert!(published_kids(&app).await.contains(&kid_of(&old)));
    app.clock().advance(last_token_expires - (900 + 31) + 1);
    refresh_ring(&app);
    assert_eq!(published_kids(&app).await, [new_key.kid()]);
    let listed = app.store().run_sync(keys::list).unwrap();
    assert_eq!(listed.iter().filter(|k| k.status == "active").count(), 1);

    // A restart keeps signing with the rotated key.
    let app = app.restart(|_| {}).await;
    let again = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&again), new_key.kid());
}

async fn production_key_file(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = write_key_file(dir.path(), "signing.jwk", Algorithm::EdDsa);
    let app = TestApp::start_with(backend, |c| c.signing_key_file = Some(path.clone())).await;
    app.register("alice").await;
    let token = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&token), key.kid());
    assert_eq!(published_kids(&app).await, [key.kid()]);
    // Imported at startup: a file removed later does not stop the ring's refreshes (which
    // bring rotations done elsewhere).
    let moved = dir.path().join("moved.jwk");
    std::fs::rename(&path, &moved).unwrap();
    let ring = app.client.rocket().state::<Arc<KeyRing>>().unwrap();
    let now = app.clock().now();
    app.store().run_sync(|c| ring.refresh(c, now)).unwrap();
    std::fs::rename(&moved, &path).unwrap();
    // `keys rotate` works with a key file too, and a restart that still reads the old file
    // does not take the active key back (the file is imported once, by kid).
    let now = app.clock().now();
    let rotated = app
        .store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    let app = app.restart(|_| {}).await;
    let after_restart = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&after_restart), rotated.kid());

    // Replacing the file and restarting retires the old key but keeps it published.
    let next = SigningKey::generate(Algorithm::EdDsa).unwrap();
    std::fs::write(&path, next.to_private_jwk_json().unwrap()).unwrap();
    let app = app.restart(|_| {}).await;
    let token2 = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&token2), next.kid());
    assert_eq!(app.me(&token).await.0, Status::Ok);
    let mut kids = published_kids(&app).await;
    kids.sort();
    let mut want = vec![
        key.kid().to_owned(),
        rotated.kid().to_owned(),
        next.kid().to_owned(),
    ];
    want.sort();
    assert_eq!(kids, want);

    // Other key material under a kid the ring holds is refused loudly, not ignored while the
    // old key goes on signing.
    let other = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let mut jwk: serde_json::Value =
        serde_json::from_str(&other.to_private_jwk_json().unwrap()).unwrap();
    jwk["kid"] = next.kid().into();
    std::fs::write(&path, jwk.to_string()).unwrap();
    let now = app.clock().now();
    let err = app
        .store()
        .run_sync(|c| KeyRing::load(c, &app.config, now))
        .map(drop)
        .expect_err("a second key under one kid");
    assert!(err.to_string().contains("another key with kid"), "{err}");
    // A key the ring holds, under another kid (its file re-imported with the kid edited):
    // refused too. Before, it was imported and signed, and had it been revoked, its revocation
    // named the old kid only.
    let mut renamed: serde_json::Value =
        serde_json::from_str(&key.to_private_jwk_json().unwrap()).unwrap();
    renamed["kid"] = "renamed".into();
    std::fs::write(&path, renamed.to_string()).unwrap();
    let err = app
        .store()
        .run_sync(|c| KeyRing::load(c, &app.config, now))
        .map(drop)
        .expect_err("a held key under a new kid");
    assert!(
        err.to_string()
            .contains(&format!("already holds this key, as {}", key.kid())),
        "{err}"
    );
    // A running replica's refresh goes on without it: failing, it would freeze the ring (no
    // rotation from elsewhere seen, none scheduled).
    let ring = app.client.rocket().state::<Arc<KeyRing>>().unwrap();
    let elsewhere = app
        .store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    app.store()
        .run_sync(|c| ring.refresh(c, now))
        .expect("the refresh, without the file");
    assert_eq!(
        ring.current().signer.kid(),
        elsewhere.kid(),
        "a rotation elsewhere is seen"
    );
}

/// A `keys rotate` whose activation fails (here: it cannot take the activations' table lock
/// within `db_timeout_ms` while another writer holds the table) leaves no key behind. It
/// stored the new key first, in a statement of its own, so the failed rotation left a
/// scheduled key that a replica's scheduled rotation would promote later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_fails_leaves_no_scheduled_key() {
    use diesel::RunQueryDsl as _;
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.key_encryption_key = Some(secret());
        c.db_timeout_ms = 1000;
    })
    .await;
    let ring = |app: &TestApp| -> Vec<(String, String)> {
        let rows = app.store().run_sync(keys::list).unwrap();
        rows.into_iter().map(|r| (r.kid, r.status)).collect()
    };
    let before = ring(&app);
    let (held, wait_held) = std::sync::mpsc::channel::<()>();
    let (let_go, wait_let_go) = std::sync::mpsc::channel::<()>();
    let db = app.store().clone();
    // A writer of the table (an UPDATE takes ROW EXCLUSIVE, which a plain INSERT does not wait
    // for, and the activation's SHARE ROW EXCLUSIVE does), held open.
    let writer = std::thread::spawn(move || {
        db.run_sync(move |c| {
            gatehouse_issuer::store::write_tx(c, |c| {
                diesel::sql_query("UPDATE signing_keys SET status = status WHERE false")
                    .execute(c)?;
                held.send(()).unwrap();
                wait_let_go.recv().unwrap();
                Ok(())
            })
        })
        .unwrap();
    });
    wait_held.recv().unwrap();
    let (config, now) = (app.config.clone(), app.clock().now());
    let rotated = app.store().run_sync(move |c| keys::rotate(c, &config, now));
    let_go.send(()).unwrap();
    writer.join().unwrap();
    let refused = rotated.map(|key| key.kid().to_owned()).unwrap_err();
    assert_eq!(refused.code(), "temporarily_unavailable", "{refused}");
    assert_eq!(
        ring(&app),
        before,
        "the ring as it was, the same key active"
    );
}

/// Scheduled rotation: the next key is published ahead of use, signs once its time comes, and
/// the previous one stays published for its tokens' lifetime.
async fn scheduled_rotation_publishes_the_next_key_first(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.key_rotation_days = 1;
        c.key_publish_ahead_secs = 3600;
    })
    .await;
    app.register("alice").await;
    let first = kid_of(str_of(&app.login("alice").await, "access_token"));
    app.clock().advance(86_400 - 3600 - 10);
    refresh_ring(&app);
    assert_eq!(
        published_kids(&app).await,
        std::slice::from_ref(&first),
        "not due yet"
    );

    app.clock().advance(20);
    refresh_ring(&app);
    let kids = published_kids(&app).await;
    assert_eq!(kids.len(), 2, "the next key is published: {kids:?}");
    let next = kids.iter().find(|k| **k != first).unwrap().clone();
    app.clock().advance(3600 - 30);
    refresh_ring(&app);
    let old = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&old), first, "but does not sign yet");

    app.clock().advance(30);
    refresh_ring(&app);
    let new = str_of(&app.login("alice").await, "access_token").to_owned();
    assert_eq!(kid_of(&new), next);
    assert_eq!(
        app.me(&old).await.0,
        Status::Ok,
        "the previous key stays published"
    );
    let listed = app.store().run_sync(keys::list).unwrap();
    assert_eq!(listed.iter().filter(|k| k.status == "active").count(), 1);
}

async fn login_rehashes_outdated_parameters(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.register("alice").await;
    let stored = || {
        app.store()
            .run_sync(|c| gatehouse_issuer::store::users::by_username(c, "alice"))
            .unwrap()
            .unwrap()
            .password_hash
    };
    let before = stored();
    assert!(before.contains("t=1"), "{before}");
    let app = app.restart(|c| c.password.t_cost = 2).await;
    let body = format!("grant_type=password&username=alice&password={PASSWORD}");
    assert_eq!(
        app.send("POST", "/v1/token", Some(&body), None).await.0,
        Status::Ok
    );
    let after = app
        .store()
        .run_sync(|c| gatehouse_issuer::store::users::by_username(c, "alice"))
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(after.contains("t=2"), "{after}");
    assert_eq!(
        app.send("POST", "/v1/token", Some(&body), None).await.0,
        Status::Ok
    );
}

/// The edge and `@gatehouse/verify` verify Ed25519 only: a P-256 key would sign tokens that every
/// verifier refuses, so the issuer refuses to start with one.
async fn a_key_the_edge_cannot_verify_is_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_key_file(dir.path(), "p256.jwk", Algorithm::Es256);
    let mut config = app.config.clone();
    config.signing_key_file = Some(path);
    let now = app.clock().now();
    let err = app
        .store()
        .run_sync(move |c| KeyRing::load(c, &config, now))
        .err()
        .expect("an ES256 signing key is refused");
    assert!(err.to_string().contains("Ed25519"), "{err}");
}

/// `keys revoke` from another process: the bearer check refuses the key's tokens within
/// `auth_cache_ms` (at once with 0), while the key is still in this replica's key ring and
/// JWKS, which only its next refresh (up to `cleanup_interval_secs`) would change. Before this,
/// a stolen and revoked key's tokens were accepted here until that refresh.
async fn a_revoked_keys_tokens_are_refused_before_the_ring_refresh(backend: Backend) {
    for cache_ms in [300, 0] {
        let app = TestApp::start_with(backend, |c| c.auth_cache_ms = cache_ms).await;
        app.register("alice").await;
        let token = str_of(&app.login("alice").await, "access_token").to_owned();
        let kid = kid_of(&token);
        assert_eq!(
            app.me(&token).await.0,
            Status::Ok,
            "the view now holds alice"
        );
        let now = app.clock().now();
        app.store()
            .run_sync(|c| keys::rotate(c, &app.config, now))
            .unwrap();
        Revoker::for_command(app.store().clone(), app.config.clone())
            .run_sync(now, |r| keys::revoke(r, &kid))
            .unwrap();
        let revoked_at = std::time::Instant::now();
        let refused = loop {
            let (status, body) = app.me(&token).await;
            if status != Status::Ok {
                break (status, body);
            }
            assert!(
                cache_ms > 0 && revoked_at.elapsed() < std::time::Duration::from_secs(2),
                "cache {cache_ms} ms: the revoked key's token is still accepted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(refused.0, Status::Unauthorized);
        assert_eq!(refused.1["code"], "revoked", "{}", refused.1);
        assert!(
            published_kids(&app).await.contains(&kid),
            "the ring has not refreshed: the bearer check refused it"
        );
    }
}

/// Two active keys (what two rotations at once leave) settle on the newest. A key scheduled by
/// then stays scheduled and published: settling promotes nothing, so it must not drop the key
/// every verifier is fetching ahead of its use.
async fn settling_two_active_keys_keeps_the_scheduled_key(backend: Backend) {
    use diesel::prelude::*;
    use gatehouse_issuer::db::schema::signing_keys;
    let app = TestApp::start_with(backend, |c| {
        c.key_rotation_days = 1;
        c.key_publish_ahead_secs = 3600;
    })
    .await;
    let first = app.store().run_sync(keys::list).unwrap()[0].kid.clone();
    app.clock().advance(10);
    let now = app.clock().now();
    let second = app
        .store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap()
        .kid()
        .to_owned();
    app.store()
        .run_sync(|c| {
            Ok(diesel::update(signing_keys::table.find(&first))
                .set((
                    signing_keys::status.eq("active"),
                    signing_keys::retired_at.eq(None::<i64>),
                ))
                .execute(c)?)
        })
        .unwrap();
    // The second key is due for scheduled rotation: this refresh schedules the next key, then
    // settles the two active ones.
    app.clock().advance(86_400 - 3600 + 10);
    refresh_ring(&app);
    let listed = app.store().run_sync(keys::list).unwrap();
    let status = |kid: &str| &listed.iter().find(|k| k.kid == kid).unwrap().status;
    assert_eq!(
        (status(&first).as_str(), status(&second).as_str()),
        ("retired", "active")
    );
    let next: Vec<&str> = listed
        .iter()
        .filter(|k| k.status == "next")
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(
        next.len(),
        1,
        "the scheduled key survives settling: {listed:?}"
    );
    assert!(published_kids(&app).await.iter().any(|k| k == next[0]));
}

/// A retired key stays published for the longest token lifetime any replica announced, not
/// this replica's own: after `access_token_ttl_secs` was lowered from 3600 to 900, a token
/// signed before with the old key lives on for an hour. It was dropped after 990 s, and its
/// tokens refused as `unknown_kid` everywhere.
async fn a_retired_key_outlives_the_longest_announced_token_lifetime(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.access_token_ttl_secs = 3600).await;
    app.register("alice").await;
    let long = str_of(&app.login("alice").await, "access_token").to_owned();
    let app = app.restart(|c| c.access_token_ttl_secs = 900).await;
    let now = app.clock().now();
    app.store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    refresh_ring(&app);
    let grace = 3600 + 30 + 2 * i64::from(app.config.cleanup_interval_secs);
    app.clock().advance(1100);
    refresh_ring(&app);
    assert!(published_kids(&app).await.contains(&kid_of(&long)));
    assert_eq!(app.me(&long).await.0, Status::Ok, "an hour-long token");
    app.clock().advance(grace - 1100);
    refresh_ring(&app);
    assert!(!published_kids(&app).await.contains(&kid_of(&long)));
}

/// A token of a retired key gets a revocation entry while any verifier may still take it (the
/// longest leeway, on a clock 30 s behind), also once the key has left the JWKS: an edge keeps
/// the key set it fetched for minutes. Before, the key was unknown by then, and `/v1/revoke`
/// answered 200 with nothing written.
async fn a_retired_keys_token_is_revoked_while_any_verifier_takes_it(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.leeway_secs = 30;
        c.cleanup_interval_secs = 5;
    })
    .await;
    app.register("alice").await;
    let old = str_of(&app.login("alice").await, "access_token").to_owned();
    let old_keys = app.verifier().await.keys().clone();
    let now = app.clock().now();
    app.store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    // 75 s past `exp`: the key left the JWKS 35 s ago (900 + 30 + two 5 s periods).
    app.clock().advance(900 + 75);
    refresh_ring(&app);
    assert!(!published_kids(&app).await.contains(&kid_of(&old)));
    let (status, json) = app
        .send("POST", "/v1/revoke", Some(&format!("token={old}")), None)
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    let lenient = VerifierOptions {
        leeway_secs: VerifierOptions::MAX_LEEWAY_SECS,
        ..VerifierOptions::new("https://issuer.test", "https://api.test")
    };
    let behind = app.clock().now() - i64::from(SnapshotOptions::MAX_CLOCK_AHEAD_SECS);
    let claims = Verifier::new(old_keys, lenient)
        .verify(&old, behind)
        .unwrap();
    let list = app
        .snapshot(app.verifier().await.keys(), app.clock().now())
        .await;
    assert_eq!(list.check(&claims), Some(RevocationReason::Token));
}

/// A rotation in the second the snapshot was signed: the list re-signed by the new key is
/// newer than the one an edge holds (a later `issued_at`), not the same `(seq, issued_at)`
/// signed by another key, which the edge refused as not newer (409) until the cache expired.
async fn a_list_re_signed_by_a_new_key_is_newer_than_the_last(backend: Backend) {
    let app = TestApp::start(backend).await;
    let snapshot = || async {
        let keys = app.verifier().await.keys().clone();
        let list = app.snapshot(&keys, app.clock().now()).await;
        (list.seq(), list.issued_at())
    };
    let before = snapshot().await;
    let now = app.clock().now();
    app.store()
        .run_sync(|c| keys::rotate(c, &app.config, now))
        .unwrap();
    refresh_ring(&app);
    let after = snapshot().await;
    assert!(
        gatehouse_shared::is_newer(after, before),
        "{after:?} after {before:?}"
    );
}

/// The `alg` in a compact JWS's header.
fn alg_of(jws: &str) -> String {
    use base64::Engine as _;
    let header = jws.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

/// `jws_alg = "Ed25519"` (RFC 9864's fully specified name): access tokens and the signed lists
/// carry it, the JWKS names the keys by it, and the issuer's own checks and the shared verifier
/// take them. By default, `EdDSA` everywhere.
async fn jws_alg_names_ed25519_in_tokens_lists_and_the_jwks(backend: Backend) {
    use gatehouse_shared::Ed25519Name;
    for (name, alg) in [
        (Ed25519Name::EdDsa, "EdDSA"),
        (Ed25519Name::Ed25519, "Ed25519"),
    ] {
        let app = TestApp::start_with(backend, |c| c.jws_alg = name).await;
        app.register("alice").await;
        let session = app.login("alice").await;
        let access = str_of(&session, "access_token");
        assert_eq!(alg_of(access), alg);
        let (_, jwks) = app.send("GET", "/.well-known/jwks.json", None, None).await;
        assert_eq!(jwks["keys"][0]["alg"], alg, "{jwks}");
        assert_eq!(app.me(access).await.0, Status::Ok);
        let verifier = app.verifier().await;
        let claims = verifier.verify(access, app.clock().now()).unwrap();
        let (status, _) = app.send("POST", "/v1/logout", None, Some(access)).await;
        assert_eq!(status, Status::Ok);
        let (_, snapshot) = app.send("GET", "/v1/revocations", None, None).await;
        assert_eq!(alg_of(snapshot.as_str().unwrap()), alg);
        let list = app.snapshot(verifier.keys(), app.clock().now()).await;
        assert_eq!(list.check(&claims), Some(RevocationReason::Session));
    }
}

crate::on_both_backends!(
    jws_alg_names_ed25519_in_tokens_lists_and_the_jwks,
    a_retired_keys_token_is_revoked_while_any_verifier_takes_it,
    a_list_re_signed_by_a_new_key_is_newer_than_the_last,
    a_retired_key_outlives_the_longest_announced_token_lifetime,
    settling_two_active_keys_keeps_the_scheduled_key,
    a_revoked_keys_tokens_are_refused_before_the_ring_refresh,
    rotation_keeps_old_tokens_valid_until_they_expire,
    a_key_the_edge_cannot_verify_is_refused,
    production_key_file,
    scheduled_rotation_publishes_the_next_key_first,
    login_rehashes_outdated_parameters,
);
