#!/usr/bin/env bash
# Builds the edge worker once into edge/build/ (index.js + index_bg.wasm), with the size
# profile, offline: every tool comes from the package registries (scripts/setup.sh).
#
# The same steps as worker-build's module build (cargo, wasm-bindgen with its state-reset
# function and abort handler, esbuild), with two differences:
# - the entry module is edge/shim.mjs, not worker-build's: that one builds Proxies and an
#   async wrapper for every request, about 15 µs of CPU per request (docs/performance.md);
# - wasm-opt runs without `--debuginfo`: worker-build always keeps the function-names section,
#   115 KB raw and 31 KB gzipped of the worker. The handlers answer errors themselves and never
#   panic on client input, so the deployed build goes without names; `GATEHOUSE_WASM_NAMES=1`
#   keeps them (for twiggy, or for reading a trap in `wrangler tail`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/target-dir.sh"
out="$root/edge/build"
wasm="${CARGO_TARGET_DIR:-$root/target}/wasm32-unknown-unknown/wasm-edge/gatehouse_edge.wasm"

# A panic's location names its source file, for crates from the registry under CARGO_HOME's
# path (47 of them, 60 bytes of prefix each): written as `<crate>-<version>/src/...`, the worker
# is about 80 B smaller gzipped, and the same size wherever CARGO_HOME is. Added to the
# caller's RUSTFLAGS (with `--target`, they reach only the wasm); a path with a space is left
# as it is, since RUSTFLAGS splits on spaces.
remap=()
for index in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  case "$index" in *" "*) ;; *) [ -d "$index" ] && remap+=("--remap-path-prefix=$index=") ;; esac
done
# worker-build sets this for the `worker` crate's macros: futures through `js_sys::futures`.
(cd "$root/edge" && WASM_BINDGEN_USE_JS_SYS=1 \
  RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }${remap[*]:-}" cargo build --locked --lib \
  --profile wasm-edge --target wasm32-unknown-unknown)

rm -rf "$out" && mkdir -p "$out"
"${WASM_BINDGEN_BIN:-wasm-bindgen}" "$wasm" --out-dir "$out" --out-name index \
  --target module --no-typescript --experimental-reset-state-function --force-enable-abort-handler

# The features worker-build enables for workerd: rustc's wasm32 defaults plus the exception
# handling of wasm-bindgen's catch wrappers; nothing newer than workerd runs.
features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue
  reference-types exception-handling)
# `--low-memory-unused`: binaryen may fold a pointer's constant offset into the load or store
# (Emscripten's default), assuming nothing lives in the first KiB of memory. Rust's wasm puts
# its 1 MiB stack first, growing down towards 0, so only a stack within a KiB of overflowing
# would reach it (past 0 it wraps and traps): about 770 B less gzipped.
args=(-O --low-memory-unused --strip-producers)
for feature in "${features[@]}"; do args+=("--enable-$feature"); done
if [ "${GATEHOUSE_WASM_NAMES:-0}" = 1 ]; then args+=(--debuginfo); fi
"${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}" "$out/index_bg.wasm" "${args[@]}" \
  -o "$out/index_bg.wasm"

# Workers import a wasm module with a plain `import` (wasm-bindgen writes the source-phase
# `import source`); the bundle inlines wasm-bindgen's JS and its snippets into index.js.
sed -i 's/^import source /import /' "$out/index.js"
cp "$root/edge/shim.mjs" "$out/shim.mjs"
(cd "$out" && "${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}" ./shim.mjs --bundle --format=esm \
  --external:./index_bg.wasm '--external:cloudflare:*' --minify --log-level=warning \
  --outfile=index.js --allow-overwrite)
rm -rf "$out/shim.mjs" "$out/snippets"
echo '*' > "$out/.gitignore"
