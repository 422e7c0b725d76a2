// Serves one worker module in workerd through Miniflare, with nothing in between: the benchmark
// runs every worker this way, so each is measured on the same runtime without `wrangler dev`'s
// proxy in front (which capped even a do-nothing worker at about 3k req/s on the 2-core box).
// Usage: node bench/edge/serve.mjs '{"script": "...", "port": 8931, "vars": {...}, "bundle": false}'
// `"kv": false` leaves the GATEHOUSE_KV binding out (a deploy that forgot it).
// `"kv": {"failPuts": {"<key>": n}, "failGets": {"<key>": n}}` is a SIMULATION of KV refusing
// writes or reads: the first n puts (gets, by `get` or `getWithMetadata`) of each named key throw, as they do on Cloudflare when
// KV is down or its limit of one write per second per key is exceeded; everything else goes to
// a real local KV namespace. It does not model KV's own error messages or a write that fails
// after it was stored. `"kv": {..., "persist": "<dir>"}` keeps KV in that directory, so a later
// start on it is a new isolate beside what an earlier one stored.
// `bundle` runs esbuild first, for workers that import npm packages (the jose baseline).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';

const config = JSON.parse(process.argv[2]);
let script = config.script;
if (config.bundle) {
  script = join(mkdtempSync(join(tmpdir(), 'gatehouse-bench-')), 'worker.mjs');
  await build({
    entryPoints: [config.script],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    outfile: script,
    logLevel: 'warning',
  });
}
const FLAKY_KV = `
export default function (env) {
  const left = { ...env.FAIL_PUTS };
  const gets = { ...env.FAIL_GETS };
  const store = env.STORE;
  return {
    get(key, ...rest) {
      if (gets[key] > 0) {
        gets[key] -= 1;
        throw new Error('simulated KV failure: the get of ' + key + ' was refused');
      }
      return store.get(key, ...rest);
    },
    getWithMetadata(key, ...rest) {
      if (gets[key] > 0) {
        gets[key] -= 1;
        throw new Error('simulated KV failure: the get of ' + key + ' was refused');
      }
      return store.getWithMetadata(key, ...rest);
    },
    list: (...args) => store.list(...args),
    delete: (...args) => store.delete(...args),
    async put(key, ...rest) {
      if (left[key] > 0) {
        left[key] -= 1;
        throw new Error('simulated KV failure: the put of ' + key + ' was refused');
      }
      return store.put(key, ...rest);
    },
  };
}`;
const worker = {
  modules: true,
  scriptPath: script,
  modulesRoot: dirname(script),
  modulesRules: [
    { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
  ],
  compatibilityDate: '2026-04-01',
  bindings: config.vars,
};
const workers = [worker];
if (config.kv === false) {
  worker.kvNamespaces = [];
} else if (config.kv?.failPuts || config.kv?.failGets) {
  const bindings = { FAIL_PUTS: config.kv.failPuts ?? {}, FAIL_GETS: config.kv.failGets ?? {} };
  worker.wrappedBindings = { GATEHOUSE_KV: { scriptName: 'flaky-kv', bindings } };
  workers.push({ name: 'flaky-kv', modules: true, script: FLAKY_KV, kvNamespaces: ['STORE'] });
} else {
  worker.kvNamespaces = ['GATEHOUSE_KV'];
}
// `cf: false`: no fetch of Cloudflare's `cf.json` from the internet.
const mf = new Miniflare({ cf: false, workers, host: '127.0.0.1', port: config.port, kvPersist: config.kv?.persist });
const url = await mf.ready;
console.log(`serving ${config.script} at ${url.href}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
