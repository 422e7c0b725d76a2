//! Integration tests of the public API of `gatehouse-shared`, in one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cache;
mod delta;
mod ed25519_vectors;
mod fixture;
mod fuzz_regressions;
mod rfc8037;
mod snapshot;
mod strictness;
mod tamper;
mod validation;
