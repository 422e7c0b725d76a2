//! Real OAuth 2.0 client libraries live a public client's life against the real issuer:
//! Python's Authlib (tests/py/interop.py) and npm's openid-client, on panva's oauth4webapi
//! (tests/js/openid-client.mjs). Each discovers the endpoints (RFC 8414), logs in with the
//! password grant, has the access token checked against the published JWKS (`PyJWT`, jose) and
//! by the library's RFC 9068 validator, refreshes, revokes the refresh token (RFC 7009) and is
//! refused a refresh after it.

use gatehouse_tests::{Issuer, node_json, python_json};
use serde_json::{Value, json};

use crate::system::{AUDIENCE, PASSWORD};

/// Runs one client's script against a fresh issuer signing under `alg` (its `jws_alg`) with a
/// fresh user; its report and the issuer. `client_id` is the name the script gives its client;
/// `client_auth` how it sends it (RFC 7591's `token_endpoint_auth_method`, Authlib's only).
async fn a_clients_life(
    run: fn(&Value) -> Value,
    client_id: &str,
    (alg, client_auth): (&str, &str),
) -> (Value, Issuer) {
    let issuer = Issuer::start(&[("GATEHOUSE_JWS_ALG", alg)]).await;
    issuer.register("oauth-client", PASSWORD).await;
    let input = json!({"op": "oauth", "issuer": issuer.url, "audience": AUDIENCE, "alg": alg,
                       "username": "oauth-client", "password": PASSWORD, "scope": "read",
                       "client_auth": client_auth});
    let out = tokio::task::spawn_blocking(move || run(&input))
        .await
        .unwrap();
    assert_lived(&out, &issuer, client_id, alg);
    (out, issuer)
}

/// What both libraries must have seen, of an issuer signing under `alg`.
fn assert_lived(out: &Value, issuer: &Issuer, client_id: &str, alg: &str) {
    assert_eq!(out["metadata_issuer"], issuer.url.as_str(), "{out}");
    // RFC 6749 §5.1: the type is case-insensitive (oauth4webapi lowercases it).
    let token_type = out["first"]["token_type"].as_str().unwrap();
    assert!(token_type.eq_ignore_ascii_case("bearer"), "{out}");
    assert_eq!(out["first"]["scope"], "read", "{out}");
    assert!(out["first"]["expires_in"].as_i64().unwrap() > 0, "{out}");
    // The library's JWKS client found the key by `kid` in the published set.
    assert_eq!(out["first_header"]["kid"], issuer.key.kid(), "{out}");
    assert_eq!(out["first_header"]["typ"], "at+jwt", "{out}");
    assert_eq!(out["first_header"]["alg"], alg, "{out}");
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
        ("EdDSA", "none"),
    )
    .await;
    // RFC 7009 §2.2: 200 for a revocation.
    assert_eq!(out["revoke_status"], 200, "{out}");
    assert_authlibs_validator_refused("EdDSA", &out);
}

/// Authlib set up as a confidential client (`client_secret_basic`, its default with a secret):
/// its client id and a secret in `Authorization: Basic`, at the token and the revocation
/// endpoints. The secret is not checked (no client registry), and the client named in the header
/// is in every token of the session (before 2026-12-07 a Basic header was not read).
#[tokio::test]
async fn authlib_as_a_client_secret_basic_client() {
    let (out, _issuer) = a_clients_life(
        |input| python_json("tests/py/interop.py", input),
        "interop-python",
        ("EdDSA", "client_secret_basic"),
    )
    .await;
    assert_eq!(out["revoke_status"], 200, "{out}");
    assert_eq!(out["client_auth"], "client_secret_basic", "{out}");
}

/// What the README says of Authlib's RFC 9068 validator (`JWTBearerTokenValidator`): on joserfc
/// it takes only the algorithms joserfc recommends (HS256, RS256, ES256), so it refuses every
/// Gatehouse token, under either name of Ed25519, before its claims.
fn assert_authlibs_validator_refused(alg: &str, out: &Value) {
    for refused in out["rfc9068"].as_array().unwrap() {
        assert_eq!(refused["ok"], false, "{out}");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("'{alg}' is not recommended")),
            "{out}"
        );
    }
    assert_eq!(out["rfc9068"].as_array().map(Vec::len), Some(2), "{out}");
}

#[tokio::test]
async fn openid_client_lives_a_public_clients_life_against_the_issuer() {
    let (out, _issuer) = a_clients_life(
        |input| node_json("tests/js/openid-client.mjs", input),
        "interop-node",
        ("EdDSA", "none"),
    )
    .await;
    assert_oauth4webapi_took_them(&out);
}

/// oauth4webapi's verdicts, whatever the issuer's `jws_alg`.
fn assert_oauth4webapi_took_them(out: &Value) {
    // oauth4webapi throws on anything but a 200 to a revocation.
    assert_eq!(out["revoked"], true, "{out}");
    // A resource server validating by RFC 9068 to the letter (`typ`, `iss`, `exp`, `aud`,
    // `sub`, `iat`, `jti`, `client_id`), as oauth4webapi's `validateJwtAccessToken` does it,
    // takes the tokens of a login and of its refresh.
    let taken = json!({"ok": true, "client_id": "interop-node"});
    assert_eq!(out["rfc9068"], json!([taken, taken]), "{out}");
}

/// With `jws_alg = "Ed25519"` (RFC 9864's fully specified name), joserfc takes the tokens when
/// told the algorithm, Authlib's validator refuses them as it refuses `EdDSA`, and `PyJWT`
/// refuses the name: `PyJWT` 2.x knows only `EdDSA`, which is why it is the default.
#[tokio::test]
async fn python_clients_with_tokens_named_ed25519() {
    let (out, _issuer) = a_clients_life(
        |input| python_json("tests/py/interop.py", input),
        "interop-python",
        ("Ed25519", "none"),
    )
    .await;
    assert_eq!(out["revoke_status"], 200, "{out}");
    assert_authlibs_validator_refused("Ed25519", &out);
    assert_eq!(out["pyjwt"]["ok"], false, "{out}");
    let refusal = out["pyjwt"]["message"].as_str().unwrap();
    // Its JWKS client finds no key it can use in a set naming them `Ed25519`.
    assert!(refusal.contains("did not contain any usable keys"), "{out}");
}

/// openid-client's side: jose and oauth4webapi's RFC 9068 validator take tokens named
/// `Ed25519` as they take `EdDSA`.
#[tokio::test]
async fn openid_client_takes_tokens_named_ed25519() {
    let (out, _issuer) = a_clients_life(
        |input| node_json("tests/js/openid-client.mjs", input),
        "interop-node",
        ("Ed25519", "none"),
    )
    .await;
    assert_oauth4webapi_took_them(&out);
}
