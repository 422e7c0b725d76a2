#!/usr/bin/env bash
# Builds the edge worker once into edge/build/ (index.js + index_bg.wasm), with the size
# profile and the offline overrides: worker-build must not download wasm-bindgen or esbuild from
# GitHub, so it gets the installed ones.
#
# wasm-opt runs here, not in worker-build (edge/Cargo.toml turns its run off): worker-build
# always keeps the function-names section, 115 KB raw and 31 KB gzipped of the worker, for
# readable stack traces. The worker's handlers answer errors themselves and never panic on
# client input, so the deployed build goes without names; `GATEHOUSE_WASM_NAMES=1` keeps them
# (for twiggy, or for reading a trap in `wrangler tail`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}"
cd "$root/edge"
worker-build --profile wasm-release

# The features worker-build enables for workerd: rustc's wasm32 defaults plus the exception
# handling of wasm-bindgen's catch wrappers; nothing newer than workerd runs.
features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue
  reference-types exception-handling)
args=(-O --strip-producers)
for feature in "${features[@]}"; do args+=("--enable-$feature"); done
if [ "${GATEHOUSE_WASM_NAMES:-0}" = 1 ]; then args+=(--debuginfo); fi
"${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}" build/index_bg.wasm "${args[@]}" \
  -o build/index_bg.wasm
