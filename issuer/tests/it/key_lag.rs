//! Tokens of a key this replica has not read yet (a rotation by the CLI or another replica):
//! revocation and introspection read the ring again before they call such a token not ours,
//! waiting out the re-read throttle rather than skipping it, and answer 503 when the ring
//! cannot be read.

use std::sync::Arc;

use base64::Engine as _;
use gatehouse_issuer::config::Secret;
use gatehouse_issuer::keys::{self, KeyRing, Sealer};
use rocket::http::Status;

use crate::common::{Backend, TestApp, header, login_on, str_of};

fn secret() -> Secret {
    Secret::new(Sealer::generate_secret().unwrap())
}

/// `token` with a `kid` no ring holds (it fails before any signature is checked).
fn with_unknown_kid(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (head, rest) = token.split_once('.').unwrap();
    let mut head: serde_json::Value = serde_json::from_slice(&b64.decode(head).unwrap()).unwrap();
    head["kid"] = "no-such-key".into();
    format!("{}.{rest}", b64.encode(head.to_string()))
}

struct Lagging {
    app: TestApp,
    /// Alice's and the admin's, signed by `app` with the first key.
    alice_old: String,
    admin: String,
    /// Alice's, signed with the rotated key by a replica that has read it.
    alice_new: String,
}

/// `app` re-reads its ring for a token of an unknown kid (its re-read throttle starts), then
/// `keys rotate` (as by the CLI) and a token of the new key from a replica: `app` may not
/// re-read again for the best part of a second.
async fn rotated_within_the_throttle(backend: Backend) -> Lagging {
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(secret())).await;
    app.register("alice").await;
    let alice_old = str_of(&app.login("alice").await, "access_token").to_owned();
    let admin = app.admin_token().await;
    let replica = app.replica().await;
    let (status, json) = app.me(&with_unknown_kid(&alice_old)).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "unknown_kid")
    );
    let (config, now) = (app.config.clone(), app.clock().now());
    app.store()
        .run_sync(move |c| keys::rotate(c, &config, now))
        .unwrap();
    let ring = replica.rocket().state::<Arc<KeyRing>>().unwrap();
    app.store().run_sync(|c| ring.refresh(c, now)).unwrap();
    let alice_new = str_of(&login_on(&replica, "alice").await, "access_token").to_owned();
    Lagging {
        app,
        alice_old,
        admin,
        alice_new,
    }
}

/// Before, the revocation answered 200 and wrote nothing: the token lived on.
async fn a_revocation_waits_for_the_ring_rather_than_skip_it(backend: Backend) {
    let l = rotated_within_the_throttle(backend).await;
    let body = format!("token={}", l.alice_new);
    let (status, json) = l
        .app
        .send("POST", "/v1/revoke", Some(&body), Some(&l.alice_old))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
    let (status, json) = l.app.me(&l.alice_new).await;
    assert_eq!(
        (status, str_of(&json, "code")),
        (Status::Unauthorized, "revoked"),
        "{json}"
    );
    // A kid still unknown once the ring has been read is no token of ours (RFC 7009: 200).
    let body = format!("token={}", with_unknown_kid(&l.alice_new));
    let (status, json) = l
        .app
        .send("POST", "/v1/revoke", Some(&body), Some(&l.alice_old))
        .await;
    assert_eq!(status, Status::Ok, "{json}");
}

/// Before, introspection answered `{"active": false}` for a valid token.
async fn introspection_waits_for_the_ring_rather_than_say_inactive(backend: Backend) {
    let l = rotated_within_the_throttle(backend).await;
    let body = format!("token={}", l.alice_new);
    let (status, json) = l
        .app
        .send("POST", "/v1/introspect", Some(&body), Some(&l.admin))
        .await;
    assert_eq!(
        (status, json["active"].as_bool()),
        (Status::Ok, Some(true)),
        "{json}"
    );
    let body = format!("token={}", with_unknown_kid(&l.alice_new));
    let (status, json) = l
        .app
        .send("POST", "/v1/introspect", Some(&body), Some(&l.admin))
        .await;
    assert_eq!(
        (status, json),
        (Status::Ok, serde_json::json!({"active": false}))
    );
}

/// A ring that cannot be re-read (here the new key is sealed under a secret `app` lacks; a
/// database that is down does the same) leaves `app` unable to tell: 503 with `Retry-After`,
/// never 200 with nothing written or `active: false`.
async fn a_ring_that_cannot_be_read_is_unavailable(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.key_encryption_key = Some(secret())).await;
    app.register("alice").await;
    let alice_old = str_of(&app.login("alice").await, "access_token").to_owned();
    let admin = app.admin_token().await;
    let mut elsewhere = app.config.clone();
    elsewhere.key_encryption_key = Some(secret());
    let (recover, now) = (elsewhere.clone(), app.clock().now());
    app.store()
        .run_sync(move |c| keys::rotate_replacing_unopenable(c, &recover, now))
        .unwrap();
    let replica = app.replica_with(|c| *c = elsewhere).await;
    let alice_new = str_of(&login_on(&replica, "alice").await, "access_token").to_owned();
    let body = format!("token={alice_new}");
    for (path, bearer) in [("/v1/revoke", &alice_old), ("/v1/introspect", &admin)] {
        let (status, json, headers) = app.send_full("POST", path, Some(&body), Some(bearer)).await;
        assert_eq!(
            (status, str_of(&json, "error")),
            (Status::ServiceUnavailable, "temporarily_unavailable"),
            "{path}: {json}"
        );
        assert!(header(&headers, "retry-after").is_some(), "{path}");
    }
}

crate::on_both_backends!(
    a_revocation_waits_for_the_ring_rather_than_skip_it,
    introspection_waits_for_the_ring_rather_than_say_inactive,
    a_ring_that_cannot_be_read_is_unavailable,
);
