// @gatehouse/verify in browser apps, installed from its packed tarball: a Vite production
// build, the Vite dev server and a webpack 5 build, each loaded in headless Chromium, each
// verifying an issuer token and showing the result (tests/js/bundlers/ is the app).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, normalize } from 'node:path';
import webpack from 'webpack';

import { freePort, installPacked, launchChromium, root, sendFile, startIssuer, tokenInput, waitFor } from './harness.mjs';

let issuer;
let app;
let input;
let browser;
const cleanups = [];

before(async () => {
  ({ app } = installPacked());
  for (const f of ['index.html', 'main.js', 'vite.config.mjs', 'webpack.config.cjs']) {
    cpSync(join(root, 'tests/js/bundlers', f), join(app, f));
  }
  issuer = await startIssuer();
  input = await tokenInput(issuer, 'bundled');
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const cleanup of cleanups) cleanup();
  issuer?.stop();
});

/** A static server for a build's output directory; `headers` go on every answer (a CSP, say). */
async function serve(dir, headers = {}) {
  const port = await freePort();
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    sendFile(res, join(dir, path === '/' ? 'index.html' : path), headers);
  });
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  cleanups.push(() => server.close());
  return `http://127.0.0.1:${port}/`;
}

/** Opens the app in Chromium and returns what it shows, failing on any 404 it met. */
async function resultAt(url) {
  const page = await browser.newPage();
  const missing = [];
  page.on('response', (r) => { if (r.status() >= 400) missing.push(`${r.status()} ${r.url()}`); });
  try {
    await page.goto(`${url}#${encodeURIComponent(JSON.stringify(input))}`);
    await page.waitForSelector('body[data-result]', { timeout: 60000 });
    const result = JSON.parse(await page.getAttribute('body', 'data-result'));
    return { result, missing };
  } finally {
    await page.close();
  }
}

function assertVerified({ result, missing }) {
  assert.deepEqual(missing, []);
  assert.equal(result.error, undefined, result.error);
  assert.match(result.sub, /^[A-Za-z0-9_-]+$/);
  assert.equal(result.remoteSub, result.sub, 'createRemoteVerifier before init()');
  assert.equal(result.code, 'bad_signature');
}

const vite = join(root, 'node_modules/.bin/vite');
const runVite = (args) => new Promise((ok, fail) => {
  const child = spawn(vite, args, { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  child.on('exit', (code) => (code === 0 ? ok(log) : fail(new Error(`vite ${args.join(' ')}: ${code}\n${log}`))));
});

test('a Vite production build verifies in Chromium', { timeout: 180000 }, async () => {
  await runVite(['build', '--outDir', 'dist-vite']);
  assertVerified(await resultAt(await serve(join(app, 'dist-vite'))));
});

test('the Vite dev server verifies in Chromium', { timeout: 180000 }, async () => {
  const port = await freePort();
  const child = spawn(vite, ['--port', String(port), '--strictPort', '--host', '127.0.0.1'], { cwd: app, stdio: 'ignore', detached: true });
  cleanups.push(() => { try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ } });
  await waitFor(`http://127.0.0.1:${port}/`, 60000);
  assertVerified(await resultAt(`http://127.0.0.1:${port}/`));
});

test('a webpack 5 build verifies in Chromium', { timeout: 180000 }, async () => {
  const config = (await import(join(app, 'webpack.config.cjs'))).default;
  const stats = await new Promise((ok, fail) => webpack(config, (err, s) => (err ? fail(err) : ok(s))));
  assert.ok(!stats.hasErrors(), stats.toString('errors-only'));
  const dist = join(app, 'dist-webpack');
  writeFileSync(join(dist, 'index.html'), '<!doctype html><meta charset="utf-8"><script src="main.js"></script>');
  assertVerified(await resultAt(await serve(dist)));
});

test('a strict CSP: the README\'s \'wasm-unsafe-eval\' is what it takes, and enough', { timeout: 180000 }, async () => {
  // The Vite build from the first test, served with the policy the package README gives.
  const dist = join(app, 'dist-vite');
  const policy = (wasm) => ({ 'content-security-policy': `default-src 'none'; script-src 'self'${wasm}; connect-src 'self'` });
  assertVerified(await resultAt(await serve(dist, policy(" 'wasm-unsafe-eval'"))));
  const refused = await resultAt(await serve(dist, policy('')));
  assert.match(refused.result.error ?? '', /CompileError|WebAssembly|Content Security Policy|unsafe-eval/i, JSON.stringify(refused.result));
});
