// Node entry: initialises the wasm synchronously from the file next to this one, so that
// `import { Verifier } from '@gatehouse/verify'` is ready to use at once.
import { readFileSync } from 'node:fs';
import { initSync } from './gatehouse_verify.js';

let module;
try {
  module = readFileSync(new URL('./gatehouse_verify_bg.wasm', import.meta.url));
} catch (e) {
  // A server bundle (esbuild for a Lambda, Vite SSR with `noExternal`) copies no asset.
  throw new Error(`@gatehouse/verify: cannot read gatehouse_verify_bg.wasm beside this module (${e?.message ?? e}): keep the package external in a server bundle, or copy that file next to the bundle`);
}
initSync({ module });

export * from './index.js';
export { default } from './index.js';
