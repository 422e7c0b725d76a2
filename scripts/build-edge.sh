#!/usr/bin/env bash
# Builds the edge worker once into edge/build/ (worker/shim.mjs + index.wasm), with the size
# profile and the offline overrides: worker-build must not download wasm-bindgen, wasm-opt or
# esbuild from GitHub, so it gets the installed ones.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$HOME/.cargo/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}"
cd "$root/edge"
worker-build --profile wasm-release
