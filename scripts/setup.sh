#!/usr/bin/env bash
# Idempotent setup shared by `make dev` and `make test`: installs only what is missing.
# Everything comes from the package registries (crates.io, npm, Debian); nothing from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# `--build`: only what building and deploying the worker needs; `--dev`: that, and what building
# and running the issuer needs (`make dev`). Neither installs the test services (Chromium, wrk,
# PostgreSQL) or the linters.
mode=${1:-all}
case "$mode" in all | --build | --dev) ;; *) log "unknown option $mode (--build, --dev)"; exit 2 ;; esac

# Debian packages need root: as root, through sudo, or a clear stop.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "needs root (or sudo) to run: $*"; exit 1
  fi
}
apt_install() {
  command -v apt-get >/dev/null || { log "install $1 with your package manager (no apt-get here)"; exit 1; }
  # Non-interactive: a package that asks (tzdata, with PostgreSQL) would wait for an answer
  # nobody sees, its output being hidden.
  # A fresh VM's apt-daily may hold dpkg's lock for a while: wait for it rather than fail.
  local wait=(-o DPkg::Lock::Timeout=600)
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get "${wait[@]}" install -y "$1")
  as_root "${apt[@]}" >/dev/null || {
    as_root apt-get "${wait[@]}" update >/dev/null && as_root "${apt[@]}" >/dev/null
  }
}

locked_version() { # the version of crate $1 in Cargo.lock
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock
}

# 0. What the builds need of the system, each only if missing: rustup, npm and Node 20.19 or
#    later (vite, rolldown and miniflare's undici need it; Debian 12's own nodejs is 18), and a
#    C toolchain (Rust links build scripts with `cc`); for the issuer (`--dev` and the tests),
#    pkg-config with libpq and SQLite (diesel links the system libraries) and curl (dev.sh's
#    readiness checks); for the tests, rustup's rustfmt and clippy.
for tool in rustup cargo npm; do
  command -v "$tool" >/dev/null || { log "$tool is needed (Rust by rustup, Node.js with npm); install it, then run this again"; exit 1; }
done
# The toolchain rust-toolchain.toml pins, from rustup's server as its components come, if
# missing: rustup installs it on first use too, unless its auto-install is turned off.
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
: "${pinned:?rust-toolchain.toml names no channel}"
# grep reads a variable, not a pipe: under pipefail, `grep -q` closing the pipe early would
# fail the command that writes to it, and read as "missing".
if ! grep -q "^$pinned-" <<<"$(rustup toolchain list)"; then
  log "installing Rust $pinned (rust-toolchain.toml)"
  rustup toolchain install "$pinned" --profile minimal --component rustfmt --component clippy \
    --target wasm32-unknown-unknown
fi
command -v cc >/dev/null || { log "installing build-essential (Debian package)"; apt_install build-essential; }
if [ "$mode" != --build ]; then
  command -v pkg-config >/dev/null || { log "installing pkg-config (Debian package)"; apt_install pkg-config; }
  pkg-config --exists libpq || { log "installing libpq-dev (Debian package)"; apt_install libpq-dev; }
  pkg-config --exists sqlite3 || { log "installing libsqlite3-dev (Debian package)"; apt_install libsqlite3-dev; }
  command -v curl >/dev/null || { log "installing curl (Debian package)"; apt_install curl; }
fi
if [ "$mode" = all ]; then
  for component in rustfmt clippy; do
    if ! grep -q "^$component" <<<"$(rustup component list --installed)"; then
      log "adding rustup component $component"
      rustup component add "$component"
    fi
  done
fi
node_version=$(node -v 2>/dev/null | tr -d v || true)
if ! printf '20.19.0\n%s\n' "${node_version:-0}" | sort -V -C; then
  log "Node.js 20.19 or later is needed (have: ${node_version:-none}); install it, then run this again"
  exit 1
fi

# 1. The wasm32 target for the edge worker and the JS package.
if ! grep -qx wasm32-unknown-unknown <<<"$(rustup target list --installed)"; then
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

if [ "$mode" != all ]; then exit 0; fi

# 4. Debian's Chromium for the browser test (playwright-core drives it; it never downloads one).
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (Debian package)"
  apt_install chromium
fi

# 4b. /bin/kill (procps), which the tests signal servers' process groups with: not in a
#     minimal Debian image.
if [ ! -x /bin/kill ] && [ ! -x /usr/bin/kill ]; then
  log "installing procps (Debian package) for kill"
  apt_install procps
fi

# 5. wrk, the load generator of the benchmark suite (its smoke mode runs in `make test`).
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  apt_install wrk
fi

# 5b. Python's PyJWT and Authlib, for the interop tests (tests/py/), in a virtualenv of their own
#     (.venv-interop/) at the versions tests/py/requirements.txt pins, from PyPI. A stamp of the
#     file's hash and of the Python it was made with makes this a no-op when neither changed
#     (a Python upgraded since leaves the old virtualenv's interpreter dangling: remade whole).
py_stamp=.venv-interop/.gatehouse-requirements-sha256
want_py() { { cat tests/py/requirements.txt; python3 -VV 2>/dev/null || true; } | sha256sum | cut -d' ' -f1; }
if [ "$(cat "$py_stamp" 2>/dev/null || true)" != "$(want_py)" ]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    log "installing python3-venv (Debian package)"
    apt_install python3-venv
    python3 -c 'import venv, ensurepip' 2>/dev/null || {
      log "$(command -v python3 || echo python3) cannot make a virtualenv with pip (no venv or ensurepip module); install Python 3 with them, then run this again"
      exit 1
    }
  fi
  log "installing PyJWT and Authlib (PyPI) into .venv-interop"
  python3 -m venv --clear .venv-interop
  .venv-interop/bin/pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt
  want_py > "$py_stamp"
fi

# 6. PostgreSQL for the issuer's tests, as user postgres on 127.0.0.1:5432 without a password.
#    Installed if absent; only a cluster installed here gets that trust line (an existing
#    cluster's authentication is the machine owner's to set). A marker says which that is, so
#    a rerun after a run that stopped between the install and the line still adds it.
# A server already on the port (a service container) needs only the client tools: without
# `pg_isready` it would look down, and a second server be installed beside it.
if ! command -v pg_isready >/dev/null && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  log "installing the PostgreSQL client (Debian package): a server answers on 127.0.0.1:5432"
  apt_install postgresql-client
fi
pg_marker=/var/lib/gatehouse-setup/installed-postgresql
trust_line='host all postgres 127.0.0.1/32 trust'
if ! pg_isready -q -h 127.0.0.1 -p 5432 && { [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql)" ]; }; then
  log "installing PostgreSQL (Debian package), trusting user postgres on 127.0.0.1 only"
  as_root mkdir -p "$(dirname "$pg_marker")"
  as_root touch "$pg_marker"
  apt_install postgresql
fi
# The cluster on port 5432 ("version name"), else the newest: with two versions installed, the
# newest may listen elsewhere.
cluster_5432() {
  local on_port
  on_port=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 { print $1, $2; exit }')
  echo "${on_port:-$(ls /etc/postgresql | sort -V | tail -n1) main}"
}
if [ -e "$pg_marker" ]; then
  read -r version cluster <<<"$(cluster_5432)"
  hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
  if ! as_root grep -qxF "$trust_line" "$hba"; then
    as_root sed -i "1i $trust_line" "$hba"
    # With systemd the package started the cluster before the line was there.
    if pg_isready -q -h 127.0.0.1 -p 5432; then as_root pg_ctlcluster "$version" "$cluster" reload; fi
  fi
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  read -r version cluster <<<"$(cluster_5432)"
  # Not when it runs already (starting up, or recovering, it rejects connections a while):
  # `pg_ctlcluster start` then exits 2, and the wait below is what it needs.
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" -v c="$cluster" \
      '$1 == v && $2 == c && $4 ~ /^online/ { found = 1 } END { exit !found }'; then
    log "starting PostgreSQL $version/$cluster"
    # As the cluster's owner if this user is one, else as root.
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>/dev/null ||
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start ||
      log "pg_ctlcluster could not start $version/$cluster; waiting for port 5432 all the same"
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { log "PostgreSQL did not start"; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -w -Atc 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password; the tests need"
  log "a pg_hba.conf line such as: host all postgres 127.0.0.1/32 trust"
  exit 1
fi
