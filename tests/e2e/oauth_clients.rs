//! Real OAuth 2.0 client libraries live a public client's life against the real issuer:
//! Python's Authlib (tests/py/interop.py) and npm's openid-client, on panva's oauth4webapi
//! (tests/js/openid-client.mjs). Each discovers the endpoints (RFC 8414), logs in with the
//! password grant, has the access token checked against the published JWKS (`PyJWT`, jose),
//! refreshes, revokes the refresh token (RFC 7009) and is refused a refresh after it.

use gatehouse_tests::{Issuer, node_json, python_json};
use serde_json::{Value, json};

use crate::system::{AUDIENCE, PASSWORD};

/// Runs one client's script against a fresh issuer with a fresh user; its report and the issuer.
async fn a_clients_life(run: fn(&Value) -> Value) -> (Value, Issuer) {
    let issuer = Issuer::start(&[]).await;
    issuer.register("oauth-client", PASSWORD).await;
    let input = json!({"op": "oauth", "issuer": issuer.url, "audience": AUDIENCE,
                       "username": "oauth-client", "password": PASSWORD, "scope": "read"});
    let out = tokio::task::spawn_blocking(move || run(&input))
        .await
        .unwrap();
    assert_lived(&out, &issuer);
    (out, issuer)
}

/// What both libraries must have seen.
fn assert_lived(out: &Value, issuer: &Issuer) {
    assert_eq!(out["metadata_issuer"], issuer.url.as_str(), "{out}");
    // RFC 6749 §5.1: the type is case-insensitive (oauth4webapi lowercases it).
    let token_type = out["first"]["token_type"].as_str().unwrap();
    assert!(token_type.eq_ignore_ascii_case("bearer"), "{out}");
    assert_eq!(out["first"]["scope"], "read", "{out}");
    assert!(out["first"]["expires_in"].as_i64().unwrap() > 0, "{out}");
    // The library's JWKS client found the key by `kid` in the published set.
    assert_eq!(out["first_header"]["kid"], issuer.key.kid(), "{out}");
    assert_eq!(out["first_header"]["typ"], "at+jwt", "{out}");
    let (first, second) = (&out["first_claims"], &out["second_claims"]);
    assert_eq!(first["iss"], issuer.url.as_str(), "{out}");
    assert_eq!(first["scope"], "read", "{out}");
    assert_eq!(second["sub"], first["sub"], "{out}");
    assert_eq!(
        second["sid"], first["sid"],
        "a refresh stays in its session: {out}"
    );
    assert_ne!(second["jti"], first["jti"], "{out}");
    assert_eq!(out["rotated"], true, "{out}");
    // RFC 6749 §5.2: a revoked session's refresh token, like a wrong password, is
    // `invalid_grant`, which both libraries read out of the error body.
    assert_eq!(out["after_revoke"]["ok"], false, "{out}");
    assert_eq!(out["after_revoke"]["error"], "invalid_grant", "{out}");
    assert_eq!(out["wrong_password"]["error"], "invalid_grant", "{out}");
}

#[tokio::test]
async fn authlib_lives_a_public_clients_life_against_the_issuer() {
    let (out, _issuer) = a_clients_life(|input| python_json("tests/py/interop.py", input)).await;
    // RFC 7009 §2.2: 200 for a revocation.
    assert_eq!(out["revoke_status"], 200, "{out}");
}

#[tokio::test]
async fn openid_client_lives_a_public_clients_life_against_the_issuer() {
    let (out, _issuer) =
        a_clients_life(|input| node_json("tests/js/openid-client.mjs", input)).await;
    // oauth4webapi throws on anything but a 200 to a revocation.
    assert_eq!(out["revoked"], true, "{out}");
    // What the README says of RFC 9068: its `client_id` claim is not in Gatehouse's tokens, so
    // a resource server validating by RFC 9068 to the letter (oauth4webapi's
    // `validateJwtAccessToken`) refuses them, naming that claim.
    assert_eq!(out["rfc9068"]["ok"], false, "{out}");
    let message = out["rfc9068"]["message"].as_str().unwrap();
    assert!(message.contains("client_id"), "{out}");
}
