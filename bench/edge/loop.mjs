// A finer microscope than row 1c, for iterating on the worker's own per-request cost: each
// worker's fetch handler is called N times in a loop inside ONE request to one workerd, and
// the CPU of that workerd's processes (from /proc) is divided by N. The runtime's own work per
// incoming HTTP request (parsing, dispatch, writing the answer) is left out, and so is the load
// generator's scheduling noise. Not part of the suite (row 1c is the measure that counts); see
// docs/performance.md. The forwarded scenarios make N real subrequests to a local origin.
//
// Usage: node bench/edge/loop.mjs FIXTURE.json [n=2000] [rounds=5]
// (FIXTURE.json: `target/release/bench --fixture > FIXTURE.json`, made just before: its signed
// list must be under a minute old, as an edge whose KV holds none takes no older one). LOOP_ONLY=<part of a
// scenario's name> runs one scenario; LOOP_PROFILE=ours|jose also records V8's sampling profile
// of that worker over the scenario's rounds (through workerd's inspector) and prints where the
// time goes, per call. The loop keeps the isolate busy, so the samples are all work.
// LOOP_BUILDS='label=DIR,…' also runs other builds of ours (a DIR as scripts/build-edge.sh leaves
// edge/build, copied away) in the same rounds, each reported against ours: a change and its
// alternative measured side by side, not in two runs a VM's drift apart.
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';
import WebSocket from 'ws';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const n = Number(process.argv[3] ?? 2000);
const rounds = Number(process.argv[4] ?? 5);
const dir = join(root, 'target', 'bench-loop');
mkdirSync(dir, { recursive: true });

await build({
  entryPoints: [join(root, 'bench/edge/jose-worker.mjs')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  conditions: ['workerd', 'worker', 'browser'],
  mainFields: ['module', 'main'],
  outfile: join(dir, 'jose.mjs'),
  logLevel: 'warning',
});
writeFileSync(join(dir, 'nothing.mjs'), readFileSync(join(root, 'tests/soak/trivial-worker.mjs')));
writeFileSync(join(dir, 'floor.mjs'), readFileSync(join(root, 'bench/edge/floor-worker.mjs')));

// The wrapper: `/_loop` runs the scenario's requests through the wrapped worker's handler.
const wrapper = (importPath) => `
import target from ${JSON.stringify(importPath)};
const handler = (env, ctx) =>
  typeof target === 'function' ? new target(ctx, env) : target;
export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname !== '/_loop') return handler(env, ctx).fetch(request, env, ctx);
    const { n, path, tokens } = await request.json();
    const statuses = {};
    for (let i = 0; i < n; i++) {
      const token = tokens.length ? tokens[i % tokens.length] : null;
      const req = new Request('http://edge.bench' + path, token ? { headers: { authorization: 'Bearer ' + token } } : {});
      const res = await handler(env, ctx).fetch(req, env, ctx);
      await res.arrayBuffer();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
    return Response.json(statuses);
  },
};`;
writeFileSync(join(dir, 'ours-loop.mjs'), wrapper('../../edge/build/index.js'));
writeFileSync(join(dir, 'jose-loop.mjs'), wrapper('./jose.mjs'));
writeFileSync(join(dir, 'nothing-loop.mjs'), wrapper('./nothing.mjs'));
writeFileSync(join(dir, 'floor-loop.mjs'), wrapper('./floor.mjs'));
const builds = (process.env.LOOP_BUILDS ?? '')
  .split(',')
  .filter(Boolean)
  .map((entry) => {
    const [label, path] = entry.split('=');
    if (!label || !path || ['ours', 'jose', 'nothing', 'floor'].includes(label)) {
      throw new Error(`LOOP_BUILDS: ${entry} is not label=DIR (a label other than ours, jose, nothing, floor)`);
    }
    // The wrapper imports it relative to itself, under the modules' root.
    const copy = join(dir, 'builds', label);
    mkdirSync(copy, { recursive: true });
    for (const file of ['index.js', 'index_bg.wasm']) writeFileSync(join(copy, file), readFileSync(join(path, file)));
    writeFileSync(join(dir, `${label}-loop.mjs`), wrapper(`./builds/${label}/index.js`));
    return label;
  });
const names = ['ours', 'jose', 'nothing', 'floor', ...builds];

const origin = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('{"ok":true}'));
});
await new Promise((ok) => origin.listen(0, '127.0.0.1', ok));
const vars = {
  ORIGIN_URL: `http://127.0.0.1:${origin.address().port}`,
  ISSUER_URL: 'http://127.0.0.1:9',
  EXPECTED_ISSUER: fixture.issuer,
  EXPECTED_AUDIENCE: fixture.audience,
  JWKS: fixture.jwks,
  KV_REFRESH_SECS: '5',
  DELTA_POLL_MS: '0',
};

function childrenOf(pid) {
  const out = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(p), ...childrenOf(Number(p)));
    } catch {}
  }
  return out;
}
const tick = 100; // USER_HZ
function cpuSecs(pids) {
  let total = 0;
  for (const p of pids) {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {}
  }
  return total;
}

const profiled = process.env.LOOP_PROFILE;
const inspectorPort = 9229 + Math.floor(Math.random() * 500);
const workers = {};
for (const name of names) {
  const before = new Set(childrenOf(process.pid));
  const mf = new Miniflare({
    // No fetch of Cloudflare's `cf.json` from the internet.
    cf: false,
    modules: true,
    scriptPath: join(dir, `${name}-loop.mjs`),
    modulesRoot: root,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-04-01',
    // LOOP_OURS_VARS='{"SERVER_TIMING":"on"}' tries a setting of ours.
    bindings: name === 'ours' || builds.includes(name) ? { ...vars, ...JSON.parse(process.env.LOOP_OURS_VARS ?? '{}') } : vars,
    kvNamespaces: ['GATEHOUSE_KV'],
    host: '127.0.0.1',
    port: 0,
    ...(name === profiled ? { inspectorPort } : {}),
  });
  const url = (await mf.ready).href.replace(/\/$/, '');
  const pids = childrenOf(process.pid).filter((p) => !before.has(p));
  workers[name] = { mf, url, pids };
}
const post = (url, body) => fetch(url, { method: 'POST', body });
for (const name of ['ours', ...builds]) {
  if ((await post(`${workers[name].url}/_gatehouse/sync`, fixture.snapshot)).status !== 200) {
    throw new Error('sync refused: make the fixture again, its list must be under a minute old');
  }
}
if ((await post(`${workers.jose.url}/_bench/revocations`, JSON.stringify(fixture.jose_revocations))).status !== 200) {
  throw new Error('jose list');
}

const scenarios = [
  { name: 'fresh token, verify-only', path: '/_gatehouse/check', tokens: fixture.fresh_tokens, status: 200 },
  { name: 'repeated token (cache hit)', path: '/_gatehouse/check', tokens: [fixture.token], status: 200 },
  { name: 'tampered token (401)', path: '/_gatehouse/check', tokens: fixture.tampered_tokens, status: 401 },
  { name: 'no token (401)', path: '/_gatehouse/check', tokens: [], status: 401 },
  { name: 'fresh token, forwarded', path: '/api/bench', tokens: fixture.fresh_tokens, status: 200 },
  { name: 'repeated token (cache hit), forwarded', path: '/api/bench', tokens: [fixture.token], status: 200 },
];
const only = process.env.LOOP_ONLY;

/// V8's sampling profiler on the profiled worker's isolate, through the inspector protocol.
async function profiler() {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((ok, fail) => {
    ws.once('open', ok);
    ws.once('error', fail);
  });
  let id = 0;
  const pending = new Map();
  ws.on('message', (m) => {
    const msg = JSON.parse(m);
    pending.get(msg.id)?.(msg);
  });
  const call = (method, params = {}) =>
    new Promise((ok) => {
      pending.set(++id, ok);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 50 });
  await call('Profiler.start');
  return async (calls) => {
    const { result } = await call('Profiler.stop');
    ws.close();
    const { nodes, samples, timeDeltas } = result.profile;
    const byId = new Map(nodes.map((node) => [node.id, node]));
    const label = ({ callFrame: f }) =>
      `${f.functionName || '(anonymous)'}${f.url ? ` ${f.url.split('/').pop()}:${f.lineNumber + 1}` : ''}`;
    const self = new Map();
    samples.forEach((nodeId, i) => {
      const l = label(byId.get(nodeId));
      self.set(l, (self.get(l) ?? 0) + (timeDeltas[i] ?? 0));
    });
    const rows = [...self].filter(([l]) => l !== '(idle)').sort((a, b) => b[1] - a[1]);
    const sum = rows.reduce((a, [, v]) => a + v, 0);
    console.log(`  profile of ${profiled}: ${(sum / calls).toFixed(1)} µs sampled per call; self time per call:`);
    for (const [l, us] of rows.slice(0, 30)) console.log(`  ${(us / calls).toFixed(2).padStart(8)} µs  ${l.slice(0, 150)}`);
  };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const s of scenarios.filter((s) => !only || s.name.includes(only))) {
  const us = Object.fromEntries(names.map((name) => [name, []]));
  let stopProfile;
  for (let round = -1; round < rounds; round++) {
    if (round === 0 && profiled) stopProfile = await profiler();
    for (const name of names) {
      const w = workers[name];
      // Fresh tokens are never reused across rounds (the verified-token cache would hit).
      const tokens = s.tokens.length > 1 ? s.tokens.slice((round + 1) * n, (round + 2) * n) : s.tokens;
      if (s.tokens.length > 1 && tokens.length < n) throw new Error('the fixture has too few fresh tokens');
      const body = JSON.stringify({ n, path: s.path, tokens });
      const before = cpuSecs(w.pids);
      const res = await post(`${w.url}/_loop`, body);
      const statuses = await res.json();
      const used = cpuSecs(w.pids) - before;
      const want = name === 'nothing' ? 200 : s.status;
      if (statuses[want] !== n) console.error(`${name} ${s.name}: statuses ${JSON.stringify(statuses)}`);
      if (round >= 0) us[name].push((used * 1e6) / n);
    }
  }
  if (stopProfile) await stopProfile(n * rounds);
  const m = Object.fromEntries(Object.entries(us).map(([k, v]) => [k, median(v)]));
  const ratios = us.ours.map((o, i) => (o - us.nothing[i]) / (us.jose[i] - us.nothing[i]));
  console.log(
    `${s.name.padEnd(28)} ours ${m.ours.toFixed(1)} µs, jose ${m.jose.toFixed(1)}, nothing ${m.nothing.toFixed(1)}; ` +
      `above nothing: ours ${(m.ours - m.nothing).toFixed(1)}, jose ${(m.jose - m.nothing).toFixed(1)}; ` +
      `ratio of what each adds ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}); ` +
      `the floor (signature only, then forward as it came; bench/edge/floor-worker.mjs) adds ${(m.floor - m.nothing).toFixed(1)}`,
  );
  for (const label of builds) {
    // Per round, against ours in the same round.
    const deltas = us[label].map((b, i) => b - us.ours[i]);
    console.log(
      `${''.padEnd(28)} ${label}: adds ${(m[label] - m.nothing).toFixed(1)} µs above nothing; ` +
        `${label} − ours per round ${median(deltas).toFixed(1)} µs (${Math.min(...deltas).toFixed(1)} to ${Math.max(...deltas).toFixed(1)})`,
    );
  }
}
for (const w of Object.values(workers)) await w.mf.dispose();
origin.close();
