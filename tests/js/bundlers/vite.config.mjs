// What an app would write: nothing about the package (Vite serves and bundles its wasm as is).
export default {
  build: { target: 'es2022' },
  logLevel: 'warn',
};
