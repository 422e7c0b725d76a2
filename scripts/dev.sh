#!/usr/bin/env bash
# The one run command (`make dev`): the issuer on SQLite (:8000), the edge worker under
# `wrangler dev` (:8787) in front of the demo origin (:8788), and the issuer pushing revocation
# snapshots to the worker. Ctrl-C stops everything, workerd included.
set -euo pipefail
. "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
issuer_bin="${CARGO_TARGET_DIR:-$root/target}/debug/gatehouse-issuer"

# `make test`'s browser test runs this on what the test build made (GATEHOUSE_DEV_PREBUILT=1),
# rather than build the issuer, the worker and the package a second time.
if [ "${GATEHOUSE_DEV_PREBUILT:-0}" = 1 ]; then
  for built in "$issuer_bin" edge/build/index.js edge/js/pkg/index.js; do
    [ -e "$built" ] || { echo "dev.sh: GATEHOUSE_DEV_PREBUILT=1 but $built is missing" >&2; exit 1; }
  done
else
  # What running needs (not the test services: Chromium, wrk, PostgreSQL).
  scripts/setup.sh --dev
  cargo build --locked -p gatehouse-issuer
  scripts/build-edge.sh
  scripts/build-js.sh
fi

# Ports and the state directory can be moved (the browser test runs a second system this way).
ISSUER_PORT="${ISSUER_PORT:-8000}" EDGE_PORT="${EDGE_PORT:-8787}" ORIGIN_PORT="${ORIGIN_PORT:-8788}"
DEV_DIR="${DEV_DIR:-.dev}"
mkdir -p "$DEV_DIR"
export GATEHOUSE_DATABASE_URL="${GATEHOUSE_DATABASE_URL:-sqlite://$DEV_DIR/gatehouse.db}"
export GATEHOUSE_DATA_DIR="${GATEHOUSE_DATA_DIR:-$DEV_DIR/data}"
export GATEHOUSE_PORT=$ISSUER_PORT
export GATEHOUSE_ISSUER="http://127.0.0.1:${ISSUER_PORT}"
# Ctrl-C stops at once: no balancer here to drain for.
export GATEHOUSE_DRAIN_SECS="${GATEHOUSE_DRAIN_SECS:-0}"
# Development conveniences: anyone may register (production refuses this unless told it is meant).
export GATEHOUSE_OPEN_REGISTRATION="${GATEHOUSE_OPEN_REGISTRATION:-true}"
export GATEHOUSE_EDGE_SYNC_URLS="http://127.0.0.1:${EDGE_PORT}/_gatehouse/sync"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

# The worker is built once above; wrangler runs it without its own [build] step (a [build]
# section makes wrangler dev build twice at start).
sed -e '/^\[build\]/,/^watch_dir/d' -e "s|^main = \"|main = \"$root/|" \
  -e "s|127.0.0.1:8788|127.0.0.1:${ORIGIN_PORT}|" -e "s|127.0.0.1:8000|127.0.0.1:${ISSUER_PORT}|g" \
  wrangler.toml > "$DEV_DIR/wrangler.toml"
# The health route's details need a secret; wrangler dev reads secrets from .dev.vars beside
# the config. Made once, kept across runs.
# ORIGIN_SECRET too: the edge sends it with every request, and the demo origin refuses one
# without it, as a production origin should.
for secret in HEALTH_TOKEN ORIGIN_SECRET; do
  if ! grep -qs "^$secret=" "$DEV_DIR/.dev.vars"; then
    echo "$secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >> "$DEV_DIR/.dev.vars"
  fi
done
HEALTH_TOKEN=$(sed -n 's/^HEALTH_TOKEN=//p' "$DEV_DIR/.dev.vars")
ORIGIN_SECRET=$(sed -n 's/^ORIGIN_SECRET=//p' "$DEV_DIR/.dev.vars")

# A port another program holds would fail one service while the checks below met that program.
for port in "$ISSUER_PORT" "$EDGE_PORT" "$ORIGIN_PORT" "${INSPECTOR_PORT:-9229}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "dev.sh: port $port is taken (set ISSUER_PORT, EDGE_PORT, ORIGIN_PORT or INSPECTOR_PORT)" >&2
    exit 1
  fi
done

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
# Ctrl-C (or a TERM) is a clean stop, not a service that died.
trap 'stop; exit 0' INT TERM

ORIGIN_ISSUER_URL="$GATEHOUSE_ISSUER" ORIGIN_SECRET="$ORIGIN_SECRET" setsid node dev/origin.mjs "$ORIGIN_PORT" &
pids+=($!)
setsid "$issuer_bin" serve &
pids+=($!)
setsid "$root/node_modules/.bin/wrangler" dev --config "$DEV_DIR/wrangler.toml" --ip 127.0.0.1 \
  --port "$EDGE_PORT" --persist-to "$DEV_DIR/wrangler-state" --test-scheduled --log-level warn \
  --inspector-port "${INSPECTOR_PORT:-9229}" &
pids+=($!)

# Bounded: a half-started server that takes the connection and never answers must not hang it.
up() { curl -sf -m 2 "$1" >/dev/null 2>&1; }
# Up to three minutes (wrangler starts slowly on a busy machine), but no longer than every
# service is still running.
deadline=$((SECONDS + 180))
while [ "$SECONDS" -lt "$deadline" ]; do
  up "http://127.0.0.1:${EDGE_PORT}/_gatehouse/health" && up "http://127.0.0.1:${ISSUER_PORT}/health/ready" && break
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done
  sleep 0.3
done
for service in "edge http://127.0.0.1:${EDGE_PORT}/_gatehouse/health" "issuer http://127.0.0.1:${ISSUER_PORT}/health/ready"; do
  up "${service#* }" || { echo "dev.sh: the ${service%% *} did not come up (${service#* })" >&2; exit 1; }
done
# Seed the edge with the current snapshot (the cron would, within a minute).
up "http://127.0.0.1:${EDGE_PORT}/__scheduled?cron=*+*+*+*+*" || echo "dev.sh: seeding the edge failed; its cron will" >&2

cat <<MSG

  issuer   http://127.0.0.1:${ISSUER_PORT}   SQLite ${GATEHOUSE_DATABASE_URL#sqlite://}, keys sealed in it (secret in ${GATEHOUSE_DATA_DIR})
  edge     http://127.0.0.1:${EDGE_PORT}   wrangler dev (workerd), health: /_gatehouse/health
           details: curl -H 'Authorization: Bearer ${HEALTH_TOKEN}' http://127.0.0.1:${EDGE_PORT}/_gatehouse/health
  origin   http://127.0.0.1:${ORIGIN_PORT}   demo origin, only through the edge (it checks ORIGIN_SECRET): / is public, /api/* needs a token
  demo     http://127.0.0.1:${EDGE_PORT}/   log in, see the claims and countdown, call the API, refresh, log out

  Try:
    curl -X POST localhost:${ISSUER_PORT}/v1/users -H 'content-type: application/json' \\
         -d '{"username":"alice","password":"plover-quartz-7"}'
    curl -X POST localhost:${ISSUER_PORT}/v1/token -d 'grant_type=password&username=alice&password=plover-quartz-7'
    curl localhost:${EDGE_PORT}/api/whoami -H "Authorization: Bearer \$ACCESS_TOKEN"

  Ctrl-C stops everything.
MSG
# Any service that stops ends the run (and the trap stops the others), rather than leave a
# system that looks up and is not.
wait -n
echo "dev.sh: a service stopped; stopping the others" >&2
exit 1
