// Cloudflare Workers (workerd) entry: wrangler/esbuild import a `.wasm` file as a compiled
// `WebAssembly.Module`, so the package initialises synchronously, nothing to await.
import wasm from './gatehouse_verify_bg.wasm';
import { initSync } from './gatehouse_verify.js';

initSync({ module: wasm });

export * from './index.js';
export { default } from './index.js';
