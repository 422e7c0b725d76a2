// Node entry: initialises the wasm synchronously from the file next to this one, so that
// `import { Verifier } from '@gatehouse/verify'` is ready to use at once.
import { readFileSync } from 'node:fs';
import { initSync } from './gatehouse_verify.js';

initSync({ module: readFileSync(new URL('./gatehouse_verify_bg.wasm', import.meta.url)) });

export * from './index.js';
export { default } from './index.js';
