// The worker's entry module: hands each event straight to the Rust handlers that wasm-bindgen
// exports (`fetch` in edge/src/lib.rs, which answers settled requests without a promise, and
// `#[event(scheduled)]`). scripts/build-edge.sh bundles it with the wasm-bindgen output in place
// of worker-build's shim.
//
// Why our own: worker-build's shim wraps the entrypoint class in a Proxy and builds a new Proxy,
// a class instance and an extra async function for every request, to re-create them after a
// crash. That cost about 15 µs of CPU per request here (docs/performance.md), a third of what
// the worker adds on a verified-token cache hit. Crash recovery does not depend on it: the
// `worker` crate's abort hook schedules a reset, and wasm-bindgen's glue (built with
// `--experimental-reset-state-function --force-enable-abort-handler`) re-instantiates the module
// before the next call into it. tests/e2e/edge_gate.rs (`the_worker_recovers_from_a_wasm_trap`)
// checks that a panic does not take the isolate's later requests down with it.
import * as wasm from "./index.js";

export default {
  fetch: wasm.fetch,
  scheduled: wasm.scheduled,
};
