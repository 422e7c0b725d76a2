//! End-to-end tests that drive the real pieces together, in one binary: the issuer binary on
//! PostgreSQL, the built worker in workerd (`wrangler dev`), the demo origin, Node + jose, and
//! Python's `PyJWT` and Authlib.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::too_many_lines, clippy::similar_names)]

mod attacks;
mod deploy_config;
mod edge_config;
mod edge_cookies;
mod edge_cors;
mod edge_gate;
mod edge_keys;
mod edge_paths;
mod edge_revocation;
mod faults;
mod jws_interop;
mod key_ring;
mod kv_refusals;
mod kv_writes;
mod leaked_key;
mod locations;
mod oauth_clients;
mod system;
mod wrk_output;
