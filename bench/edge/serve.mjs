// Serves one worker module in workerd through Miniflare, with nothing in between: the benchmark
// runs every worker this way, so each is measured on the same runtime without `wrangler dev`'s
// proxy in front (which capped even a do-nothing worker at about 3k req/s on the 2-core box).
// Usage: node bench/edge/serve.mjs '{"script": "...", "port": 8931, "vars": {...}, "bundle": false}'
// `"kv": false` leaves the GATEHOUSE_KV binding out (a deploy that forgot it).
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
const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: dirname(script),
  modulesRules: [
    { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
  ],
  compatibilityDate: '2026-04-01',
  bindings: config.vars,
  kvNamespaces: config.kv === false ? [] : ['GATEHOUSE_KV'],
  host: '127.0.0.1',
  port: config.port,
});
const url = await mf.ready;
console.log(`serving ${config.script} at ${url.href}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
