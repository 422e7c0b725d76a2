// @gatehouse/verify as its users get it: `npm pack` of the built package, installed from that
// tarball (never a path) into a fresh app, then used from Node ESM (`import`), Node CommonJS
// (`require`), TypeScript in strict mode (the exports map's types, no path mapping), and a
// Worker bundled by wrangler (esbuild) and run in workerd. Browser bundlers: bundlers.test.mjs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Miniflare } from 'miniflare';

import { installPacked, root, startIssuer, tokenInput } from './harness.mjs';

const bin = (name) => join(root, 'node_modules/.bin', name);
const run = (cmd, args, cwd, env = {}) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: 'pipe' });

let issuer;
let app;
let packed;
let input;
before(async () => {
  ({ app, packed } = installPacked());
  issuer = await startIssuer();
  input = await tokenInput(issuer, 'packed');
});
after(() => issuer?.stop());

test('the tarball holds every file its exports map names, the license and nothing else', () => {
  const manifest = JSON.parse(readFileSync(join(app, 'node_modules/@gatehouse/verify/package.json'), 'utf8'));
  const targets = new Set();
  const walk = (v) => (typeof v === 'string' ? targets.add(v.replace(/^\.\//, '')) : Object.values(v).forEach(walk));
  walk(manifest.exports);
  for (const t of targets) assert.ok(packed.includes(t), `exports names ${t}, the tarball lacks it`);
  for (const f of ['LICENSE', 'README.md', 'index.d.cts', 'node.cjs', 'workerd.js']) assert.ok(packed.includes(f), f);
  assert.ok(!packed.some((f) => /\.(rs|toml|map)$|node-cjs\.js$/.test(f)), packed.join(' '));
  assert.equal(manifest.publishConfig.access, 'public');
  // index.js guards the classes' methods when it loads (guards.js): a bundler must keep it.
  assert.deepEqual(manifest.sideEffects, ['./index.js', './node.js', './node.cjs', './workerd.js']);
  assert.equal(manifest.engines.node, '>=20', 'engines names the Node that CI tests');
});

const script = (name, text) => {
  writeFileSync(join(app, name), text);
  return JSON.parse(run(process.execPath, [name], app, { GH_INPUT: JSON.stringify(input) }));
};

const body = `
const { jwks, token, tampered, issuer, audience } = JSON.parse(process.env.GH_INPUT);
const verifier = new Verifier(jwks, { issuer, audience });
let code;
try { verifier.verify(tampered); } catch (e) { code = e instanceof GatehouseError ? e.code : String(e); }
console.log(JSON.stringify({ sub: verifier.verify(token).sub, code, resolved }));
`;

test('Node ESM: import works with no init call', () => {
  const out = script('esm.mjs', `import { Verifier, GatehouseError } from '@gatehouse/verify';
const resolved = import.meta.resolve('@gatehouse/verify');${body}`);
  assert.equal(out.code, 'bad_signature');
  assert.match(out.sub, /^[A-Za-z0-9_-]+$/);
  assert.match(out.resolved, /\/node\.js$/, 'the node/import condition');
});

test('the client alone: `@gatehouse/verify/client` loads no wasm', () => {
  const out = script('client.mjs', `import { GatehouseClient } from '@gatehouse/verify/client';
const client = new GatehouseClient({ issuer: 'https://issuer.test' });
client.close();
console.log(JSON.stringify({ resolved: import.meta.resolve('@gatehouse/verify/client'), signedIn: client.signedIn }));`);
  assert.match(out.resolved, /\/client\.js$/);
  assert.equal(out.signedIn, false);
});

test('Node CommonJS: the client alone, with require', () => {
  const out = script('client.cjs', `const { GatehouseClient, GatehouseClientError } = require('@gatehouse/verify/client');
const client = new GatehouseClient({ issuer: 'https://issuer.test' });
client.close();
console.log(JSON.stringify({ resolved: require.resolve('@gatehouse/verify/client'), signedIn: client.signedIn, error: new GatehouseClientError('x', 'y').code }));`);
  assert.match(out.resolved, /\/client\.cjs$/);
  assert.deepEqual([out.signedIn, out.error], [false, 'x']);
});

test('Node CommonJS: both entries hand out the same client classes', () => {
  const out = script('same-client.cjs', `const main = require('@gatehouse/verify');
const alone = require('@gatehouse/verify/client');
console.log(JSON.stringify({
  client: main.GatehouseClient === alone.GatehouseClient,
  error: new alone.GatehouseClientError('x', 'y') instanceof main.GatehouseClientError,
}));`);
  assert.deepEqual(out, { client: true, error: true });
  // One index in the bundle (remote.js imports it too): its guards wrap each method once.
  const bundle = readFileSync(join(app, 'node_modules/@gatehouse/verify/node.cjs'), 'utf8');
  assert.equal(bundle.match(/^guardObjectArguments\(/gm)?.length, 1);
});

test('a server bundle without the wasm beside it: both Node entries say what to do', () => {
  const dir = join(app, 'bundled-without-wasm');
  cpSync(join(app, 'node_modules/@gatehouse/verify'), dir, { recursive: true });
  rmSync(join(dir, 'gatehouse_verify_bg.wasm'));
  for (const entry of ['node.js', 'node.cjs']) {
    const load = entry.endsWith('.cjs') ? `require(${JSON.stringify(join(dir, entry))})` : `await import(${JSON.stringify(join(dir, entry))})`;
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url); ${load};`], { encoding: 'utf8' });
    assert.notEqual(out.status, 0, entry);
    assert.match(out.stderr, /keep the package external in a server bundle/, `${entry}: ${out.stderr}`);
  }
});

test('Node CommonJS: require works with no init call', () => {
  const out = script('cjs.cjs', `const { Verifier, GatehouseError } = require('@gatehouse/verify');
const resolved = require.resolve('@gatehouse/verify');${body}`);
  assert.equal(out.code, 'bad_signature');
  assert.match(out.sub, /^[A-Za-z0-9_-]+$/);
  assert.match(out.resolved, /\/node\.cjs$/, 'the node/require condition');
});

test('TypeScript strict, from the tarball: the types check, misuse fails, nothing public is any', () => {
  copyFileSync(join(root, 'tests/js/types/consumer.ts'), join(app, 'consumer.ts'));
  copyFileSync(join(root, 'tests/js/pack/consumer.cts'), join(app, 'consumer.cts'));
  const tsconfig = (module, moduleResolution, files) => JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module, moduleResolution, strict: true, noEmit: true, skipLibCheck: false,
      lib: ['ES2022', 'ESNext.Disposable', 'DOM'], types: [],
    },
    files,
  });
  writeFileSync(join(app, 'tsconfig.json'), tsconfig('ES2022', 'bundler', ['consumer.ts']));
  writeFileSync(join(app, 'tsconfig.node.json'), tsconfig('Node16', 'Node16', ['consumer.cts']));
  for (const project of ['tsconfig.json', 'tsconfig.node.json']) {
    try {
      run(bin('tsc'), ['-p', project], app);
    } catch (e) {
      assert.fail(`tsc -p ${project}:\n${e.stdout}${e.stderr}`);
    }
  }
  for (const entry of ['consumer.ts', 'consumer.cts']) {
    const { seen, offenders } = JSON.parse(run(process.execPath, [join(root, 'tests/js/pack/no-any.mjs'), app, entry], root));
    assert.ok(seen >= 8, `only ${seen} exports seen through ${entry}`);
    assert.deepEqual(offenders, [], `${entry}: public API typed any`);
  }
  // The check itself: a stand-in package with an `any` planted in each kind of export.
  const planted = mkdtempSync(join(tmpdir(), 'gh-any-'));
  const fake = join(planted, 'node_modules/@gatehouse/verify');
  mkdirSync(fake, { recursive: true });
  writeFileSync(join(fake, 'package.json'), JSON.stringify({ name: '@gatehouse/verify', version: '0.0.0', types: 'index.d.ts' }));
  writeFileSync(join(fake, 'index.d.ts'), `export interface Claims { sub: string; extra: any }
export type Options = { issuer: string; hook: (x: any) => void };
export declare const anything: any;
export declare function verify(token: string): any;
export declare class Verifier { check(claims: any): boolean }
`);
  writeFileSync(join(planted, 'consumer.ts'), "import * as verify from '@gatehouse/verify';\nexport { verify };\n");
  const { offenders } = JSON.parse(run(process.execPath, [join(root, 'tests/js/pack/no-any.mjs'), planted, 'consumer.ts'], root));
  assert.deepEqual(offenders.sort(), [
    'Claims.extra: any', 'Options.hook(x: any)', 'Verifier.check(claims: any)', 'anything: any', 'verify(): any',
  ], 'the any check misses what was planted');
});

test('a Worker that imports the package, bundled by wrangler, verifies in workerd', async () => {
  writeFileSync(join(app, 'worker.mjs'), `import { Verifier, GatehouseError } from '@gatehouse/verify';
export default {
  async fetch(request) {
    const { jwks, token, issuer, audience } = await request.json();
    try {
      return Response.json({ sub: new Verifier(jwks, { issuer, audience }).verify(token).sub });
    } catch (e) {
      return Response.json({ code: e instanceof GatehouseError ? e.code : String(e) });
    }
  },
};
`);
  writeFileSync(join(app, 'wrangler.toml'), 'name = "gh-app"\nmain = "worker.mjs"\ncompatibility_date = "2026-04-01"\n');
  const dist = join(app, 'dist');
  run(bin('wrangler'), ['deploy', '--dry-run', '--outdir', dist], app,
    { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', NO_COLOR: '1' });
  const bundle = readdirSync(dist);
  assert.ok(bundle.some((f) => f.endsWith('.wasm')), `wrangler emitted the wasm module: ${bundle}`);
  const main = bundle.find((f) => f.endsWith('.js'));
  const mf = new Miniflare({
    // No fetch of Cloudflare's `cf.json`: the tests reach only the package registries.
    cf: false,
    modules: true,
    scriptPath: join(dist, main),
    modulesRoot: dist,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-01',
  });
  try {
    const call = async (token) => (await mf.dispatchFetch('http://app/', { method: 'POST', body: JSON.stringify({ ...input, token }) })).json();
    assert.match((await call(input.token)).sub ?? '', /^[A-Za-z0-9_-]+$/);
    assert.equal((await call(input.tampered)).code, 'bad_signature');
  } finally {
    await mf.dispose();
  }
});

test('createRemoteVerifier: cached keys, one refetch for a new kid, a cooldown against floods', async () => {
  // Against the package as installed; the JWK set is served by a fetch the test controls.
  const { createRemoteVerifier, GatehouseError } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const jose = await import('jose');
  const key = async (kid) => {
    const { publicKey, privateKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    return { kid, privateKey, jwk: { ...(await jose.exportJWK(publicKey)), kid, alg: 'EdDSA' } };
  };
  const [a, b] = [await key('a'), await key('b')];
  const sign = (k) => {
    const now = Math.floor(Date.now() / 1000);
    return new jose.SignJWT({ iss: 'https://i.test', sub: `user-${k.kid}`, aud: 'app', exp: now + 60, iat: now, jti: k.kid, sid: 's' })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: k.kid }).sign(k.privateKey);
  };
  let published = [a.jwk];
  let up = true;
  const fetched = [];
  const fetchKeys = async (url) => {
    fetched.push(url);
    return up ? new Response(JSON.stringify({ keys: published })) : new Response('down', { status: 503 });
  };
  const remote = await createRemoteVerifier('https://i.test/.well-known/jwks.json',
    { issuer: 'https://i.test', audience: 'app', fetch: fetchKeys, refetchCooldownSeconds: 0.3 });
  for (let i = 0; i < 5; i++) assert.equal((await remote.verify(await sign(a))).sub, 'user-a');
  assert.equal(fetched.length, 1, 'verification never fetches while the keys are fresh');

  published = [a.jwk, b.jwk];
  await new Promise((r) => setTimeout(r, 350));
  const tokenB = await sign(b);
  const [first, second] = await Promise.all([remote.verify(tokenB), remote.verify(tokenB)]);
  assert.equal(first.sub, 'user-b');
  assert.equal(second.sub, 'user-b');
  assert.equal(fetched.length, 2, 'a new kid: one refetch, shared by concurrent callers');

  const made = await key('made-up');
  const flood = await Promise.all(Array.from({ length: 20 }, async () => {
    try {
      await remote.verify(await sign(made));
      return 'accepted';
    } catch (e) {
      return e instanceof GatehouseError ? e.code : String(e);
    }
  }));
  assert.deepEqual(new Set(flood), new Set(['unknown_kid']));
  assert.ok(fetched.length <= 3, `a flood of unknown kids within the cooldown: ${fetched.length} fetches`);

  // A set with no usable key is not installed: the keys held stay.
  published = [];
  await new Promise((r) => setTimeout(r, 350));
  let before = fetched.length;
  await assert.rejects(remote.verify(await sign(made)), (e) => e.code === 'unknown_kid');
  assert.equal(fetched.length, before + 1, 'the unknown kid refetched the (empty) set');
  assert.equal((await remote.verify(await sign(a))).sub, 'user-a', 'an empty set keeps the keys held');
  published = [a.jwk, b.jwk];

  up = false;
  await new Promise((r) => setTimeout(r, 350));
  before = fetched.length;
  await assert.rejects(remote.verify(await sign(made)), (e) => e.code === 'unknown_kid');
  assert.equal(fetched.length, before + 1, 'the unknown kid tried the unreachable issuer');
  assert.equal((await remote.verify(await sign(a))).sub, 'user-a', 'an unreachable issuer keeps the keys held');
  await assert.rejects(createRemoteVerifier('https://i.test/jwks', { issuer: 'i', audience: 'a', fetch: fetchKeys }),
    (e) => e instanceof GatehouseError && e.code === 'keys_unavailable');
  // An error page's JSON, with no `keys`: the keys are unavailable, not the caller's key invalid.
  const errorPage = async () => new Response(JSON.stringify({ error: 'maintenance' }));
  await assert.rejects(createRemoteVerifier('https://i.test/jwks', { issuer: 'i', audience: 'a', fetch: errorPage }),
    (e) => e instanceof GatehouseError && e.code === 'keys_unavailable');

  // A `fetch` that throws at once (not a rejected promise) leaves the verifier able to refetch.
  let throwing = false;
  const sometimesThrows = (url, init) => {
    if (throwing) throw new TypeError('synchronous failure');
    return fetchKeys(url, init);
  };
  up = true;
  published = [a.jwk];
  const fragile = await createRemoteVerifier('https://i.test/.well-known/jwks.json',
    { issuer: 'https://i.test', audience: 'app', fetch: sometimesThrows, refetchCooldownSeconds: 0.1 });
  throwing = true;
  await assert.rejects(fragile.verify(tokenB), (e) => e.code === 'unknown_kid');
  throwing = false;
  published = [a.jwk, b.jwk];
  await new Promise((r) => setTimeout(r, 150));
  assert.equal((await fragile.verify(tokenB)).sub, 'user-b', 'the next refetch runs');

  // A replaced key set, and one refused as empty, are freed at once: on Workers no finalizer
  // may ever run, and each refetch would leave a wasm object behind.
  const { Verifier } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const free = Verifier.prototype.free;
  let freed = 0;
  Verifier.prototype.free = function () {
    freed += 1;
    return free.call(this);
  };
  try {
    published = [a.jwk];
    const churning = await createRemoteVerifier('https://i.test/.well-known/jwks.json',
      { issuer: 'https://i.test', audience: 'app', fetch: fetchKeys, ttlSeconds: 0, refetchCooldownSeconds: 0 });
    freed = 0;
    for (let i = 0; i < 3; i++) {
      const kept = [];
      await churning.verify(await sign(a), undefined, { waitUntil: (p) => kept.push(p) });
      await kept[0];
    }
    assert.equal(freed, 3, 'each replaced key set was freed');
    published = [];
    const kept = [];
    await churning.verify(await sign(a), undefined, { waitUntil: (p) => kept.push(p) });
    await kept[0];
    assert.equal(freed, 4, 'an empty set was freed');
    assert.equal((await churning.verify(await sign(a))).sub, 'user-a', 'the held keys still verify');
  } finally {
    Verifier.prototype.free = free;
  }

  // A fetch that never settles, whatever its signal (on Workers, a background fetch whose
  // request has ended): callers are answered after its limit, and a later refetch runs.
  let hanging = false;
  const sometimesHangs = (url, init) => (hanging ? new Promise(() => {}) : fetchKeys(url, init));
  published = [a.jwk];
  const stuck = await createRemoteVerifier('https://i.test/.well-known/jwks.json', {
    issuer: 'https://i.test', audience: 'app', fetch: sometimesHangs,
    ttlSeconds: 0, refetchCooldownSeconds: 0, fetchTimeoutSeconds: 0.2,
  });
  hanging = true;
  assert.equal((await stuck.verify(await sign(a))).sub, 'user-a', 'a background refetch starts');
  const within = (promise, ms) => Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)),
  ]);
  const kept = [];
  await stuck.verify(await sign(a), undefined, { waitUntil: (p) => kept.push(p) });
  assert.equal(kept.length, 0, 'the hung refetch is still in flight: none started');
  await assert.rejects(within(stuck.verify(tokenB), 3000), (e) => e.code === 'unknown_kid');
  hanging = false;
  published = [a.jwk, b.jwk];
  assert.equal((await within(stuck.verify(tokenB), 3000)).sub, 'user-b', 'the hung fetch is given up on');
  // Past the TTL (0 here), a background refetch goes to the request's waitUntil (Workers).
  await stuck.verify(await sign(a), undefined, { waitUntil: (p) => kept.push(p) });
  assert.equal(kept.length, 1, 'the background refetch was handed to ctx.waitUntil');
  await kept[0];
});

test('createRemoteVerifier: options it cannot use, keys from anywhere but https, a token that is none, a first fetch that hangs', async () => {
  const { createRemoteVerifier, GatehouseError } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const jose = await import('jose');
  const { publicKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'a', alg: 'EdDSA' }] });
  let fetched = 0;
  let lastInit;
  const serve = (url = '', redirected = false) => async (_, init) => {
    fetched += 1;
    lastInit = init;
    // What `fetch` gives after redirects: the final URL, and whether it was redirected.
    return { ok: true, status: 200, url, redirected, text: async () => jwks };
  };
  const base = { issuer: 'https://i.test', audience: 'app' };
  const refused = (promise, code) => assert.rejects(promise, (e) => e instanceof GatehouseError && e.code === code);
  // The defaults come from the shared core, the edge's own (KEYS_TTL_SECS, JWKS_REFETCH_COOLDOWN_SECS,
  // its key fetch's limit, the 1 MiB key set), as the README documents them.
  const { keySetFetchDefaults } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  assert.deepEqual({ ...keySetFetchDefaults() }, { ttlSeconds: 300, refetchCooldownSeconds: 30, fetchTimeoutSeconds: 5, maxBytes: 1048576 });
  // The caller's mistakes, before any fetch: `Number(process.env.UNSET)` is NaN, which would stop
  // every refetch; plain http would let anyone on the path choose the keys; a key set kept over
  // an hour (the edge's bound) would verify a key the issuer stopped publishing that long.
  // A cooldown past the TTL holds the keys past it (the refresh waits for the cooldown), and one
  // of `Infinity` stopped every refetch, the one for an unknown kid too; before, both passed.
  for (const options of [{ ttlSeconds: NaN }, { ttlSeconds: 3601 }, { ttlSeconds: Infinity }, { refetchCooldownSeconds: -1 }, { refetchCooldownSeconds: null }, { refetchCooldownSeconds: Infinity }, { refetchCooldownSeconds: 'Infinity' }, { refetchCooldownSeconds: 301 }, { ttlSeconds: 60, refetchCooldownSeconds: 120 }, { fetchTimeoutSeconds: 0 }, { fetchTimeoutSeconds: 1e9 }]) {
    await refused(createRemoteVerifier('https://i.test/jwks', { ...base, ...options, fetch: serve() }), 'invalid_key');
  }
  await refused(createRemoteVerifier('http://i.test/jwks', { ...base, fetch: serve() }), 'invalid_key');
  await refused(createRemoteVerifier('not a url', { ...base, fetch: serve() }), 'invalid_key');
  await refused(createRemoteVerifier('https://i.test/jwks'), 'invalid_key');
  // Options that are no object, a fetch that is no function, a member the verifier does not know
  // (a destructuring TypeError, `keys_unavailable` after the attempt, and ignored, before).
  await refused(createRemoteVerifier('https://i.test/jwks', null), 'invalid_key');
  await refused(createRemoteVerifier('https://i.test/jwks', { ...base, fetch: 'no' }), 'invalid_key');
  await refused(createRemoteVerifier('https://i.test/jwks', { ...base, ttl: 60, fetch: serve() }), 'invalid_key');
  assert.equal(fetched, 0);
  // A redirect to plain http is no key set, nor one to https elsewhere (through a plain-http hop
  // or an open redirect, which the final URL does not show), nor one back to the same URL.
  for (const [url, redirected] of [['http://evil.test/jwks', false], ['https://evil.test/jwks', false], ['https://i.test/jwks', true]]) {
    await refused(createRemoteVerifier('https://i.test/jwks', { ...base, fetch: serve(url, redirected) }), 'keys_unavailable');
  }
  // The URL given, with a fragment a fetch leaves out of `response.url`, is not a redirect.
  const fragment = await createRemoteVerifier('https://i.test/jwks#keys', { ...base, fetch: serve('https://i.test/jwks') });
  assert.deepEqual(fragment.kids, ['a']);
  // Freed: its keys are released, and a later call is the caller's mistake, with a code.
  fragment.free();
  assert.throws(() => fragment.kids, (e) => e instanceof GatehouseError && e.code === 'invalid_argument');
  await refused(fragment.verify('x.y.z'), 'invalid_argument');
  assert.equal(typeof fragment[Symbol.dispose], 'function');
  // http to this machine is development, and allowed.
  const remote = await createRemoteVerifier('http://127.0.0.1:9/jwks', { ...base, fetch: serve('http://127.0.0.1:9/jwks') });
  assert.deepEqual(remote.kids, ['a']);
  assert.equal(lastInit.redirect, 'manual', 'redirects are not followed: an http hop could send the fetch anywhere');
  // A Workers var is text: seconds as text are read as seconds. A TTL of "0" (and no cooldown)
  // refetches in the background at the next verification; "600" does not.
  for (const [ttl, fetches] of [['600', 1], ['3600', 1], ['0', 2]]) {
    fetched = 0;
    const held = await createRemoteVerifier('https://i.test/jwks', { ...base, ttlSeconds: ttl, refetchCooldownSeconds: '0', fetch: serve() });
    const kept = [];
    await assert.rejects(held.verify('x.y.z', undefined, { waitUntil: (p) => kept.push(p) }), (e) => e.code === 'malformed');
    await Promise.all(kept);
    assert.equal(fetched, fetches, `ttlSeconds ${JSON.stringify(ttl)}`);
  }
  // A TTL under the default cooldown (30 s) is not stretched to it: the refresh waits for a
  // cooldown no longer than the TTL. Before, a ttlSeconds of 10 (or 0) refreshed every 30 s.
  fetched = 0;
  const short = await createRemoteVerifier('https://i.test/jwks', { ...base, ttlSeconds: 0, fetch: serve() });
  const shortKept = [];
  await assert.rejects(short.verify('x.y.z', undefined, { waitUntil: (p) => shortKept.push(p) }), (e) => e.code === 'malformed');
  await Promise.all(shortKept);
  assert.equal(fetched, 2, 'refetched at once, as its TTL of 0 asks');
  // What an app passes when there is no Authorization header, and a token past the limit: the
  // package's own codes, not a TypeError from the wasm glue.
  await refused(remote.verify(undefined), 'malformed');
  await refused(remote.verify('x'.repeat(9000)), 'too_large');
  // A body that goes on without a Content-Length is cut at 1 MiB, not read whole first.
  let pulled = 0;
  const endless = async () => new Response(new ReadableStream({
    pull(controller) {
      pulled += 1;
      controller.enqueue(new Uint8Array(64 * 1024).fill(32));
    },
  }));
  await assert.rejects(createRemoteVerifier('https://i.test/jwks', { ...base, fetch: endless, fetchTimeoutSeconds: 30 }),
    (e) => e instanceof GatehouseError && e.code === 'keys_unavailable' && /over 1 MiB/.test(e.message));
  assert.ok(pulled <= 20, `${pulled} chunks of 64 KiB read`);
  // The same from a `fetch` whose body is a Node stream (node-fetch's).
  pulled = 0;
  const nodeStyle = async () => ({
    ok: true,
    status: 200,
    headers: new Headers(),
    body: Readable.from((function* chunks() {
      for (;;) {
        pulled += 1;
        yield Buffer.alloc(64 * 1024, 32);
      }
    })()),
    text: () => new Promise(() => {}),
  });
  await assert.rejects(createRemoteVerifier('https://i.test/jwks', { ...base, fetch: nodeStyle, fetchTimeoutSeconds: 30 }),
    (e) => e instanceof GatehouseError && e.code === 'keys_unavailable' && /over 1 MiB/.test(e.message));
  assert.ok(pulled <= 20, `${pulled} chunks of 64 KiB read from the Node stream`);
  // A first fetch that never settles and ignores its signal: the caller is answered.
  const hung = () => new Promise(() => {});
  await refused(createRemoteVerifier('https://i.test/jwks', { ...base, fetch: hung, fetchTimeoutSeconds: 0.05 }), 'keys_unavailable');
});
