//! The issuer's integration suite: the real `rocket()` through Rocket's local client, every test
//! on both PostgreSQL and SQLite, each in its own schema or file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Scenario tests read top to bottom; splitting them or renaming bindings would not help.
#![allow(
    clippy::too_many_lines,
    clippy::similar_names,
    clippy::items_after_statements
)]

mod common;

mod account_operations;
mod accounts;
mod admin;
mod audit_log;
mod bad_input;
mod binary;
mod cleanup;
mod cli;
mod clients;
mod commands;
mod credentials;
mod cut_offs;
mod db_errors;
mod held;
mod key_lag;
mod key_replicas;
mod key_schedule;
mod key_sealing;
mod keys;
mod lockout;
mod lockout_clients;
mod refresh;
mod revocation;
mod revocation_bounds;
mod shutdown;
mod sync;
mod token_lifetimes;
