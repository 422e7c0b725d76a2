#!/usr/bin/env bash
# Idempotent setup shared by `make dev` and `make test`: installs only what is missing.
# Everything comes from the package registries (crates.io, npm, Debian); nothing from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

locked_version() { # the version of crate $1 in Cargo.lock
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock
}

# 1. The wasm32 target for the edge worker and the JS package.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen-cli at exactly the wasm-bindgen version Cargo.lock pins (a mismatch fails the
#    build). `--locked` does not resolve for wasm-bindgen-cli, so it is left out on purpose.
#    (worker-build is not needed: scripts/build-edge.sh runs its steps with our entry module.)
want_bindgen=$(locked_version wasm-bindgen)
have_bindgen=$(wasm-bindgen --version 2>/dev/null | awk '{print $NF}' || true)
if [ "$have_bindgen" != "$want_bindgen" ]; then
  log "installing wasm-bindgen-cli $want_bindgen (have: ${have_bindgen:-none}); takes minutes cold"
  cargo install wasm-bindgen-cli --version "$want_bindgen" --force
fi

# 3. npm packages from the committed lock file (wrangler, binaryen's wasm-opt, jose, ...).
#    A stamp of the lock file's hash makes this a no-op when nothing changed.
stamp=node_modules/.gatehouse-lock-sha256
want_lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_lock" ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want_lock" > "$stamp"
fi

# 4. Debian's Chromium for the browser test (playwright-core drives it; it never downloads one).
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (Debian package)"
  apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi

# 5. wrk, the load generator of the benchmark suite (its smoke mode runs in `make test`).
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

# 6. PostgreSQL for the issuer's tests: start it if it is not accepting connections.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { log "PostgreSQL did not start"; exit 1; }
fi
