#!/usr/bin/env bash
# Fuzzes the shared core with cargo fuzz (libFuzzer, nightly): token parsing/verification, JWKS
# parsing and snapshot decoding. Usage: scripts/fuzz.sh [seconds per target, default 600] [target...]
# A crash leaves its input in shared/fuzz/artifacts/<target>/; copy it to
# shared/fuzz/regressions/<target>/ when fixing, so `make test` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/../shared/fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token jwks snapshot)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzzing $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)" || true
done
