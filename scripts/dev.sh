#!/usr/bin/env bash
# The one run command (`make dev`): the issuer on SQLite, the worker under `wrangler dev`, and a
# demo origin. The worker and the demo origin land with the edge issue; until then this runs the
# issuer alone and says so. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

cargo build --locked -p gatehouse-issuer
mkdir -p .dev
export GATEHOUSE_DATABASE_URL="${GATEHOUSE_DATABASE_URL:-sqlite://.dev/gatehouse.db}"
export GATEHOUSE_DATA_DIR="${GATEHOUSE_DATA_DIR:-.dev/data}"
export GATEHOUSE_PORT="${GATEHOUSE_PORT:-8000}"
export GATEHOUSE_ISSUER="${GATEHOUSE_ISSUER:-http://127.0.0.1:${GATEHOUSE_PORT}}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

setsid target/debug/gatehouse-issuer serve &
pids+=($!)

cat <<MSG

  issuer   ${GATEHOUSE_ISSUER}  (SQLite: ${GATEHOUSE_DATABASE_URL#sqlite://}, keys: ${GATEHOUSE_DATA_DIR}/keys)
           try: curl -X POST ${GATEHOUSE_ISSUER}/v1/users -H 'content-type: application/json' \\
                  -d '{"username":"alice","password":"plover-quartz-7"}'
  edge     not built yet (the edge issue adds the worker under wrangler dev on :8787)
  origin   not built yet (arrives with the edge)

  Ctrl-C stops everything.
MSG
wait
