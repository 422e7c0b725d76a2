/** The package's WebAssembly module, for runtimes that import `.wasm` files as modules. */
declare const wasm: WebAssembly.Module;
export default wasm;
