#!/usr/bin/env bash
# Quick issuer load run on PostgreSQL (release build, OWASP argon2id, wrk on loopback sharing the
# machine's cores with the issuer and PostgreSQL). Prints logins/s, refresh rotations/s,
# GET /v1/me requests/s, latency and the issuer's RSS. Usage: scripts/bench-issuer.sh [seconds]
set -euo pipefail
. "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
PORT=8199
SCHEMA=gatehouse_bench
BASE="http://127.0.0.1:${PORT}"
export BENCH_PASSWORD="plover-quartz-7"

scripts/setup.sh
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cargo build --release --locked -p gatehouse-issuer

PGOPTIONS="-c client_min_messages=warning" psql -q -h 127.0.0.1 -U postgres -d postgres \
  -c "DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE" -c "CREATE SCHEMA ${SCHEMA}"
work=$(mktemp -d)
GATEHOUSE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D${SCHEMA}" \
GATEHOUSE_PORT=$PORT GATEHOUSE_ISSUER=$BASE GATEHOUSE_DATA_DIR="$work" \
GATEHOUSE_TOKEN_RATE_PER_MINUTE=1000000000 GATEHOUSE_LOG=warn GATEHOUSE_OPEN_REGISTRATION=true GATEHOUSE_DRAIN_SECS=0 \
  "${CARGO_TARGET_DIR:-target}/release/gatehouse-issuer" serve >"$work/issuer.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "$BASE/health/ready" >/dev/null && break; sleep 0.1; done

for user in bench bench1 bench2; do
  curl -sf -X POST "$BASE/v1/users" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"$BENCH_PASSWORD\"}" >/dev/null
done
login() { curl -sf -X POST "$BASE/v1/token" -d "grant_type=password&username=bench&password=$BENCH_PASSWORD"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
rss_mb() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$pid/status"; }
peak_mb() { awk '/^VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status"; }

run_wrk() { # name, wrk args...
  local name=$1; shift
  local out; out=$(wrk --latency -d "${DURATION}s" "$@")
  local rps; rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  local p50; p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  local p99; p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  local bad; bad=$(awk '/Non-2xx/{print $5}' <<<"$out")
  printf '| %-22s | %10s | %8s | %8s | %6s | %6s MB |\n' "$name" "$rps" "$p50" "$p99" "${bad:-0}" "$(rss_mb)"
}

echo "issuer quick load: ${DURATION}s per row, $(nproc) cores shared by wrk, the issuer and PostgreSQL"
echo
echo "| what                   |  req/s     |   p50    |   p99    | non-2xx | RSS after |"
echo "| ---------------------- | ---------- | -------- | -------- | ------ | --------- |"
run_wrk "POST /v1/token password" -t2 -c4 -s bench/issuer/login.lua "$BASE/v1/token"
access=$(login | field access_token)
run_wrk "GET /v1/me" -t2 -c32 -H "Authorization: Bearer $access" "$BASE/v1/me"
for i in 1 2 3 4 5 6 7 8; do export "RT$i=$(login | field refresh_token)"; done
run_wrk "POST /v1/token refresh" -t8 -c8 -s bench/issuer/refresh.lua "$BASE/v1/token"
echo
echo "peak RSS of the issuer: $(peak_mb) MB"
