#!/usr/bin/env bash
# The benchmark suite (`make bench`): Gatehouse against the tools a user would pick instead,
# side by side in one run, written to docs/benchmarks.md and docs/benchmarks.svg.
# `--smoke` runs every row in seconds with tiny N on the artifacts `make test` already built
# (debug issuer) and writes target/bench-smoke/ instead; make test runs it so the suite cannot rot.
set -euo pipefail
. "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--smoke" ]; then
  # The binaries as `make test`'s `cargo test` built them, dev-dependency features included
  # (a `cargo build --bins` would build the issuer again without them): nothing compiles again.
  cargo test --locked --workspace --all-features --no-run
  exec "${CARGO_TARGET_DIR:-target}/debug/bench" --smoke
fi

scripts/setup.sh
cargo build --locked --release -p gatehouse-issuer
scripts/build-edge.sh
scripts/build-js.sh
GATEHOUSE_ISSUER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/gatehouse-issuer" \
  exec cargo run --locked --release -p gatehouse-tests --bin bench
