//! In-process figures: native verify against `jsonwebtoken` (row 10), the wasm build against
//! native (row 2) and against `jose` under Node (row 3), the 100k-entry list (row 6), raw
//! argon2id throughput (row 7's baseline) and the `jsonwebtoken` floor for `/v1/me` (row 9).

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_shared::{AccessClaims, RevocationList, SnapshotOptions, TokenClaims};
use serde::Deserialize;
use serde_json::json;

use crate::fixture::{AUDIENCE, Fixture, ISSUER};

/// OWASP's argon2id minimum (m = 19 MiB, t = 2, p = 1); the issuer runs with the same numbers.
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// Calls `op` until `secs` have passed; returns calls per second.
pub fn rate(secs: f64, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            op();
        }
        n += 16;
        if start.elapsed() >= budget {
            return n as f64 / start.elapsed().as_secs_f64();
        }
    }
}

pub fn gatehouse_verify(fix: &Fixture, list: &RevocationList, secs: f64) -> f64 {
    let verifier = fix.verifier();
    rate(secs, || {
        let claims = verifier
            .verify(black_box(&fix.token), fix.now)
            .expect("valid");
        assert!(list.check(&claims).is_none());
        black_box(claims);
    })
}

/// The same claims as `AccessClaims`, for `jsonwebtoken` to deserialize.
#[derive(Deserialize)]
#[allow(dead_code)] // read by serde, compared by nobody
struct JwtClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: String,
    sid: String,
    scope: Option<String>,
}

pub fn jsonwebtoken_verify(fix: &Fixture, secs: f64) -> f64 {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let jwk: serde_json::Value = serde_json::from_str(&fix.jwks).expect("jwks");
    let x = jwk["keys"][0]["x"].as_str().expect("x");
    let key = DecodingKey::from_ed_components(x).expect("key");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    rate(secs, || {
        let data = decode::<JwtClaims>(black_box(&fix.token), &key, &validation).expect("valid");
        // jsonwebtoken does not check `typ`; the same check as the verifier's, by hand.
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
        black_box(data.claims);
    })
}

/// argon2id hashes per second of the issuer's parameters on every core (one thread per core).
pub fn argon2_raw(secs: f64) -> f64 {
    use argon2::{Algorithm, Argon2, Params, Version};
    let cores = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per_thread: Vec<f64> = thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|i| {
                s.spawn(move || {
                    let params =
                        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).expect("params");
                    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    let salt = [i as u8; 16];
                    let mut out = [0u8; 32];
                    rate(secs, || {
                        argon
                            .hash_password_into(b"plover-quartz-7", &salt, &mut out)
                            .expect("hash");
                        black_box(&out);
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    per_thread.iter().sum()
}

pub struct ListFigures {
    pub snapshot_bytes: f64,
    pub refresh_ms: Vec<f64>,
    pub lookup_ns: f64,
}

/// Row 6, natively: the signed snapshot's size, verify + load time, and lookups of tokens that
/// are not in the list (every lookup hashes three ids and runs three binary searches).
pub fn list_figures(fix: &Fixture, snapshot: &str, repeats: usize, secs: f64) -> ListFigures {
    let keys = fix.verifier().keys().clone();
    let options = SnapshotOptions::new(ISSUER);
    let refresh_ms = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            let list =
                RevocationList::verify_snapshot(black_box(snapshot), &keys, &options, fix.now)
                    .expect("snapshot");
            black_box(list);
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let list =
        RevocationList::verify_snapshot(snapshot, &keys, &options, fix.now).expect("snapshot");
    let probes: Vec<AccessClaims> = (0..1024)
        .map(|i| {
            AccessClaims::unverified_for_tests(
                TokenClaims {
                    jti: format!("at-live-{i}"),
                    sid: format!("sid-live-{i}"),
                    sub: format!("user-live-{i}"),
                    ..fix.claims.clone()
                },
                &format!("kid-live-{i}"),
            )
        })
        .collect();
    let mut i = 0;
    let per_sec = rate(secs, || {
        i = (i + 1) % probes.len();
        assert!(list.check(black_box(&probes[i])).is_none());
    });
    ListFigures {
        snapshot_bytes: snapshot.len() as f64,
        refresh_ms,
        lookup_ns: 1e9 / per_sec,
    }
}

/// What the Node script measured, each a sample per repeat.
pub struct NodeFigures {
    pub wasm_checked_us: Vec<f64>,
    pub wasm_verify_per_sec: Vec<f64>,
    pub jose_verify_per_sec: Vec<f64>,
    pub wasm_refresh_ms: Vec<f64>,
}

/// Rows 2, 3 and 6 in the built `@gatehouse/verify` wasm under Node, beside `jose`.
pub fn node(fix: &Fixture, small: &str, big: &str, repeats: usize, secs: f64) -> NodeFigures {
    let out = gatehouse_tests::node_json(
        "bench/node/verify.mjs",
        &json!({
            "jwks": fix.jwks, "token": fix.token, "issuer": ISSUER, "audience": AUDIENCE,
            "snapshot": small, "big_snapshot": big, "now": fix.now,
            "repeats": repeats, "secs": secs,
        }),
    );
    let floats = |k: &str| -> Vec<f64> {
        out[k]
            .as_array()
            .unwrap_or_else(|| panic!("node printed no {k}: {out}"))
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    };
    NodeFigures {
        wasm_checked_us: floats("wasm_checked_us"),
        wasm_verify_per_sec: floats("wasm_verify_per_sec"),
        jose_verify_per_sec: floats("jose_verify_per_sec"),
        wasm_refresh_ms: floats("wasm_refresh_ms"),
    }
}
