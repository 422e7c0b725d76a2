// Source of `node.cjs`, the CommonJS entry (`require('@gatehouse/verify')`): scripts/build-js.sh
// bundles it with esbuild into CommonJS. It reads the wasm next to itself by path, as the ESM
// entry does by URL, and initialises synchronously.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initSync } from './gatehouse_verify.js';

let module;
try {
  // eslint-disable-next-line no-undef -- CommonJS after bundling
  module = readFileSync(join(__dirname, 'gatehouse_verify_bg.wasm'));
} catch (e) {
  // A server bundle copies no asset; see node.js.
  throw new Error(`@gatehouse/verify: cannot read gatehouse_verify_bg.wasm beside this module (${e?.message ?? e}): keep the package external in a server bundle, or copy that file next to the bundle`);
}
initSync({ module });

export * from './index.js';
export { default } from './index.js';
