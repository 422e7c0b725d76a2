//! What every row measures against: one Ed25519 key, a valid access token, and revocation lists
//! that do not contain it (the common, valid-request path), as the edge and jose see them.

use gatehouse_shared::{
    Algorithm, Audience, RevocationList, SigningKey, TokenClaims, Verifier, VerifierOptions,
    sign_access_token,
};
use serde_json::json;

pub const ISSUER: &str = "https://issuer.bench.invalid";
pub const AUDIENCE: &str = "gatehouse-bench";

pub struct Fixture {
    pub key: SigningKey,
    pub jwks: String,
    pub claims: TokenClaims,
    pub token: String,
    /// A token whose `jti` is in every list: the revoked path.
    pub revoked_token: String,
    pub now: i64,
}

/// A list of `n` live entries (70% tokens, 25% sessions, 5% user cut-offs) and the same ids as
/// the JSON the jose worker keeps in KV.
pub struct Revocations {
    pub list: RevocationList,
    pub snapshot: String,
    pub jose_json: serde_json::Value,
}

impl Fixture {
    pub fn new() -> Self {
        let key = SigningKey::generate(Algorithm::EdDsa).expect("key");
        let jwks = format!(
            "{{\"keys\":[{}]}}",
            key.verifying_jwk().to_json().expect("jwk")
        );
        let now = gatehouse_tests::unix_now();
        let claims = TokenClaims {
            iss: ISSUER.into(),
            sub: "user-4f1c2a9e".into(),
            aud: Audience::single(AUDIENCE),
            exp: now + 3600,
            iat: now,
            nbf: Some(now),
            jti: "at-0b7e3c55d2a94e21".into(),
            sid: "sid-6a0f51c8b3d24e77".into(),
            scope: "read write".into(),
            client_id: None,
        };
        let token = sign_access_token(&key, &claims).expect("sign");
        let revoked = TokenClaims {
            jti: "revoked-jti-0".into(),
            ..claims.clone()
        };
        let revoked_token = sign_access_token(&key, &revoked).expect("sign");
        Self {
            key,
            jwks,
            claims,
            token,
            revoked_token,
            now,
        }
    }

    /// A valid token that differs from the fixture's only in its `jti`.
    pub fn token_with_jti(&self, jti: &str) -> String {
        let claims = TokenClaims {
            jti: jti.into(),
            ..self.claims.clone()
        };
        sign_access_token(&self.key, &claims).expect("sign")
    }

    pub fn verifier(&self) -> Verifier {
        let keys = gatehouse_shared::KeySet::from_json(&self.jwks).expect("jwks");
        Verifier::new(keys, VerifierOptions::new(ISSUER, AUDIENCE))
    }

    pub fn revocations(&self, n: usize, seq: u64) -> Revocations {
        self.revocations_at(n, seq, self.now)
    }

    /// The same list signed at `issued_at`: a list pushed to an edge whose KV holds none must be
    /// under a minute old (the edge's guard against replayed snapshots).
    pub fn revocations_at(&self, n: usize, seq: u64, issued_at: i64) -> Revocations {
        let expires = self.now + 3600;
        let mut builder = RevocationList::builder(ISSUER, seq, issued_at);
        let (mut jti, mut sid, mut users) = (Vec::new(), Vec::new(), serde_json::Map::new());
        for i in 0..n {
            match i % 20 {
                0..=13 => {
                    let id = format!("revoked-jti-{i}");
                    builder = builder.token(&id, expires);
                    jti.push(id);
                }
                14..=18 => {
                    let id = format!("revoked-sid-{i}");
                    builder = builder.session(&id, expires);
                    sid.push(id);
                }
                _ => {
                    let id = format!("revoked-user-{i}");
                    builder = builder.user(&id, self.now, expires);
                    users.insert(id, json!(self.now));
                }
            }
        }
        let list = builder.build();
        let snapshot = list.sign_snapshot(&self.key).expect("snapshot");
        Revocations {
            list,
            snapshot,
            jose_json: json!({"jti": jti, "sid": sid, "users": users}),
        }
    }
}
