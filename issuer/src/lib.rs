//! The Gatehouse issuer: users, argon2id login at an OAuth2 token endpoint, EdDSA access tokens,
//! rotating refresh tokens, revocation, JWKS and signed revocation snapshots, on PostgreSQL or
//! SQLite through one Diesel query path.
//!
//! Each area exposes a `stage()`; [`rocket`] only assembles them.

pub mod auth_cache;
mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod credentials;
pub mod db;
pub mod drain;
pub mod error;
pub mod ids;
pub mod keys;
pub mod log_gate;
pub mod maintenance;
pub mod metrics;
pub mod password;
pub mod ratelimit;
mod request_id;
pub mod revoker;
mod routes;
pub mod store;
pub mod sync;

use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

/// The issuer on the given configuration.
pub fn rocket_with(figment: Figment) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(Arc::new(clock::Clock::default()))
        .attach(config::stage())
        .attach(metrics::stage())
        .attach(request_id::stage())
        .attach(drain::stage())
        .attach(db::stage())
        .attach(keys::stage())
        .attach(password::stage())
        .attach(ratelimit::stage())
        .attach(sync::stage())
        .attach(auth_cache::stage())
        .attach(revoker::stage())
        .attach(routes::stage())
        .attach(maintenance::stage())
}

/// The issuer on defaults < `gatehouse.toml` < `GATEHOUSE_*` environment.
pub fn rocket() -> Rocket<Build> {
    rocket_with(config::figment())
}
