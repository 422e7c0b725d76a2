#!/usr/bin/env bash
# Builds the npm package @gatehouse/verify into edge/js/pkg: the verification core compiled to
# wasm32 (size profile), bound with wasm-bindgen (web target: ESM, async init and initSync),
# shrunk with binaryen's wasm-opt, plus the entries (browser/default, Node ESM and CommonJS,
# workerd), types, README and LICENSE from edge/js/npm/. `npm pack edge/js/pkg` makes the
# tarball that would be published.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=edge/js/pkg
cargo build --locked -p gatehouse-verify --target wasm32-unknown-unknown --profile wasm-release
rm -rf "$out"
"${WASM_BINDGEN_BIN:-wasm-bindgen}" "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm-release/gatehouse_verify.wasm" \
  --target web --out-dir "$out" --out-name gatehouse_verify
wasm_opt=${WASM_OPT_BIN:-node_modules/.bin/wasm-opt}
esbuild=${ESBUILD_BIN:-node_modules/.bin/esbuild}
"$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$out/gatehouse_verify_bg.wasm" -o "$out/gatehouse_verify_bg.wasm"
cp edge/js/npm/package.json edge/js/npm/README.md edge/js/npm/node.js edge/js/npm/workerd.js edge/js/npm/remote.js \
  edge/js/npm/client.d.ts edge/js/npm/guards.js \
  edge/js/npm/index.d.ts edge/js/npm/wasm.d.ts LICENSE "$out/"
# The client, written as modules (client.js, client-options.js, issuer-api.js), ships as one file
# for each entry: one request for a browser, not minified; esbuild drops most `//` comments but
# keeps the `/** */` ones, which count against the browser entry's budget (performance.md, row 4).
# Its CommonJS types are re-exported from the CommonJS declarations below.
for format in esm cjs; do
  "$esbuild" edge/js/npm/client.js --bundle --format=$format --platform=neutral \
    --log-level=warning --outfile="$out/client.$([ $format = esm ] && echo js || echo cjs)"
done
errors=$(cd "$out" && ls snippets/*/npm/errors.js)
cat > "$out/index.js" <<JS
import * as glue from './gatehouse_verify.js';
import { GatehouseError } from './${errors}';
import { guardObjectArguments, loadOnce, requireInit } from './guards.js';

guardObjectArguments(glue, GatehouseError);
// These names shadow the glue's in the star export below (an explicit export wins).
export const {
  Verifier, decodeUnverified, expiresIn, isExpired, errorCodes, keySetFetchDefaults, revocationListFetchDefaults,
} = requireInit(glue, GatehouseError);
const { init, initSync } = loadOnce(glue, GatehouseError);
export { init as default, initSync };

export * from './gatehouse_verify.js';
export { GatehouseError } from './${errors}';
export { createRemoteVerifier } from './remote.js';
export { GatehouseClient, GatehouseClientError } from './client.js';
JS
# CommonJS for `require`: the same glue bundled by esbuild. Its default async init would need
# `import.meta.url`, which CommonJS lacks; the entry initialises synchronously instead. The
# client stays `client.cjs`, required, not bundled a second time: `require('@gatehouse/verify')`
# and `require('@gatehouse/verify/client')` then hand out the same classes (`instanceof`). The
# bundle is made from a copy of the package whose index names `./client.cjs`, so that every
# module importing the index (remote.js too) gets that one index.
cjs=$(mktemp -d)
cp -r "$out"/. "$cjs"/
sed -i "s|from './client.js'|from './client.cjs'|" "$cjs/index.js"
cp edge/js/npm/node-cjs.js "$cjs/"
"$esbuild" "$cjs/node-cjs.js" --bundle --format=cjs --platform=node --external:./client.cjs \
  --log-override:empty-import-meta=silent --log-level=warning --outfile="$out/node.cjs"
rm -rf "$cjs"
sed "s|from './index.js'|from './index.cjs'|" edge/js/npm/client.d.ts >"$out/client.d.cts"
# Its types: CommonJS declarations cannot re-export the ESM ones, so they are a copy.
{ cat "$out/gatehouse_verify.d.ts"; grep -v "^export \* from\|^export { default }\|^import type" edge/js/npm/index.d.ts; } \
  >"$out/index.d.cts"
printf 'built %s: wasm %s bytes, %s gzipped\n' "$out" \
  "$(wc -c < "$out/gatehouse_verify_bg.wasm")" "$(gzip -9 -c "$out/gatehouse_verify_bg.wasm" | wc -c)"
