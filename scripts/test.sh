#!/usr/bin/env bash
# The one test command (`make test`, and CI through .ci/run): formatting, clippy for native and
# wasm32, and every test suite. Exits non-zero on the first failure.
set -euo pipefail
. "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

scripts/setup.sh
# Miniflare (under wrangler dev and the JS tests) would fetch Cloudflare's `cf.json` from the
# internet; nothing here reaches beyond the package registries.
export CLOUDFLARE_CF_FETCH_ENABLED=false

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy, native (all targets, all features)"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

step "clippy, wasm32 (the shared core as the edge uses it, the edge, the JS package)"
cargo clippy --locked --target wasm32-unknown-unknown -p gatehouse-shared -p gatehouse-edge -- -D warnings
cargo clippy --locked --target wasm32-unknown-unknown -p gatehouse-verify --all-targets -- -D warnings

step "build the edge worker and the JS package once (wasm32, size profile)"
scripts/build-edge.sh
scripts/build-js.sh

step "tests (unit, integration on PostgreSQL + SQLite, end-to-end with workerd, jose interop)"
cargo test --locked --workspace --all-features

step "JS package: wasm-bindgen tests under Node; node --test (the packed tarball in Node ESM/CJS, TypeScript and a wrangler-bundled Worker; the browser demo)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --locked -p gatehouse-verify --target wasm32-unknown-unknown
node --test tests/js/*.test.mjs

step "benchmark suite, smoke mode (every row runs, seconds each; the full run is make bench)"
scripts/bench.sh --smoke

step "all checks passed"
