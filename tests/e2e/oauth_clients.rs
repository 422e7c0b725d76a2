//! Real OAuth 2.0 client libraries live a public client's life against the real issuer:
//! Python's Authlib (tests/py/interop.py) and npm's openid-client, on panva's oauth4webapi
//! (tests/js/openid-client.mjs). Each discovers the endpoints (RFC 8414), logs in with the
//! password grant, has the access token checked against the published JWKS (`PyJWT`, jose) and
//! by the library's RFC 9068 validator, refreshes, revokes the refresh token (RFC 7009) and is
//! refused a refresh after it.

use gatehouse_tests::{Issuer, node_json, python_json};
use serde_json::{Value, json};

use crate::system::{AUDIENCE, PASSWORD};

/// Runs one client's script against a fresh issuer with a fresh user; its report and the issuer.
/// `client_id` is the name the script gives its client.
async fn a_clients_life(run: fn(&Value) -> Value, client_id: &str) -> (Value, Issuer) {
    let issuer = Issuer::start(&[]).await;
    issuer.register("oauth-client", PASSWORD).await;
    let input = json!({"op": "oauth", "issuer": issuer.url, "audience": AUDIENCE,
                       "username": "oauth-client", "password": PASSWORD, "scope": "read"});
    let out = tokio::task::spawn_blocking(move || run(&input))
        .await
        .unwrap();
    assert_lived(&out, &issuer, client_id);
    (out, issuer)
}

/// What both libraries must have seen.
fn assert_lived(out: &Value, issuer: &Issuer, client_id: &str) {
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
    // RFC 9068 §2.2: the client the library named, in every token of its session.
    assert_eq!(first["client_id"], client_id, "{out}");
    assert_eq!(second["client_id"], client_id, "{out}");
    assert_eq!(out["rotated"], true, "{out}");
    // RFC 6749 §5.2: a revoked session's refresh token, like a wrong password, is
    // `invalid_grant`, which both libraries read out of the error body.
    assert_eq!(out["after_revoke"]["ok"], false, "{out}");
    assert_eq!(out["after_revoke"]["error"], "invalid_grant", "{out}");
    assert_eq!(out["wrong_password"]["error"], "invalid_grant", "{out}");
}

#[tokio::test]
async fn authlib_lives_a_public_clients_life_against_the_issuer() {
    let (out, _issuer) = a_clients_life(
        |input| python_json("tests/py/interop.py", input),
        "interop-python",
    )
    .await;
    // RFC 7009 §2.2: 200 for a revocation.
    assert_eq!(out["revoke_status"], 200, "{out}");
    // What the README says of Authlib's RFC 9068 validator (`JWTBearerTokenValidator`): on
    // joserfc, it takes only the algorithms joserfc recommends, and RFC 9864 deprecated the
    // name `EdDSA` the issuer signs under, so it refuses every token for that, before its
    // claims.
    for refused in out["rfc9068"].as_array().unwrap() {
        assert_eq!(refused["ok"], false, "{out}");
        let message = refused["message"].as_str().unwrap();
        assert!(message.contains("'EdDSA' is not recommended"), "{out}");
    }
    assert_eq!(out["rfc9068"].as_array().map(Vec::len), Some(2), "{out}");
}

#[tokio::test]
async fn openid_client_lives_a_public_clients_life_against_the_issuer() {
    let (out, _issuer) = a_clients_life(
        |input| node_json("tests/js/openid-client.mjs", input),
        "interop-node",
    )
    .await;
    // oauth4webapi throws on anything but a 200 to a revocation.
    assert_eq!(out["revoked"], true, "{out}");
    // A resource server validating by RFC 9068 to the letter (`typ`, `iss`, `exp`, `aud`,
    // `sub`, `iat`, `jti`, `client_id`), as oauth4webapi's `validateJwtAccessToken` does it,
    // takes the tokens of a login and of its refresh.
    let taken = json!({"ok": true, "client_id": "interop-node"});
    assert_eq!(out["rfc9068"], json!([taken, taken]), "{out}");
}
