#!/usr/bin/env bash
# Fuzzes the shared core with cargo fuzz (libFuzzer): token parsing/verification, JWKS parsing,
# snapshot decoding, and Ed25519 against ed25519-dalek (differential).
# Usage: scripts/fuzz.sh [seconds per target, default 600] [target...]
# Exits non-zero if any target finds a crash; a planted crash checks that first (self-check).
# A crash leaves its input in shared/fuzz/artifacts/<target>/; copy it to shared/fuzz/regressions/<target>/ when fixing, so
# `make test` replays it forever. The build uses the stable toolchain rust-toolchain.toml pins;
# cargo fuzz needs nightly flags (sanitizers), which RUSTC_BOOTSTRAP=1 allows on it.
set -euo pipefail
cd "$(dirname "$0")/../shared/fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token jwks snapshot ed25519)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
mkdir -p artifacts
# Self-check: the planted target crashes on its seed. If this run does not fail, a crash would
# not fail the real runs either, so the script stops here.
echo "== self-check: a planted crash must fail the run"
if cargo fuzz run planted seeds/planted -- -runs=10 -artifact_prefix=artifacts/planted- \
    >artifacts/planted.log 2>&1; then
  echo "!! the planted crash was not detected: see shared/fuzz/artifacts/planted.log"
  exit 2
fi
grep -q "planted crash" artifacts/planted.log || {
  echo "!! the planted target failed for another reason: see shared/fuzz/artifacts/planted.log"
  exit 2
}
echo "   detected, as it must be"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="artifacts/$t.log"
  mkdir -p artifacts
  echo "== fuzzing $t for ${secs}s"
  if cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 \
      >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs" "$log" || true
  else
    echo "!! $t failed: see shared/fuzz/$log"
    grep -E "panicked|SUMMARY|Test unit written" "$log" || tail -20 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: no crashes in ${targets[*]}"
