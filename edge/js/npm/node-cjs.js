// Source of `node.cjs`, the CommonJS entry (`require('@gatehouse/verify')`): scripts/build-js.sh
// bundles it with esbuild into CommonJS. It reads the wasm next to itself by path, as the ESM
// entry does by URL, and initialises synchronously.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initSync } from './gatehouse_verify.js';

// eslint-disable-next-line no-undef -- CommonJS after bundling
initSync({ module: readFileSync(join(__dirname, 'gatehouse_verify_bg.wasm')) });

export * from './index.js';
export { default } from './index.js';
