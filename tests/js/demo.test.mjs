// The demo page in real headless Chromium (Debian's, driven by playwright-core), against the
// system started the way the README starts it (scripts/dev.sh, on ports of its own).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, launchChromium, root, waitFor } from './harness.mjs';

let system;
let browser;
let edge;
let origin;
let ports;

before(async () => {
  ports = { ISSUER_PORT: await freePort(), EDGE_PORT: await freePort(), ORIGIN_PORT: await freePort(), INSPECTOR_PORT: await freePort() };
  edge = `http://127.0.0.1:${ports.EDGE_PORT}`;
  origin = `http://127.0.0.1:${ports.ORIGIN_PORT}`;
  const devDir = mkdtempSync(join(tmpdir(), 'gh-dev-'));
  system = spawn('scripts/dev.sh', [], {
    cwd: root,
    detached: true,
    stdio: 'ignore',
    // On what `make test` built before this runs, as the README's command would build it.
    env: { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])), DEV_DIR: devDir, GATEHOUSE_DEV_PREBUILT: '1' },
  });
  // dev.sh exits, saying why, when the system does not come up: stop waiting then.
  const gone = new AbortController();
  system.on('exit', (code) => gone.abort(new Error(`scripts/dev.sh exited (${code}) before the edge was up`)));
  await waitFor(`${edge}/_gatehouse/health`, 300000, gone.signal);
  await waitFor(`http://127.0.0.1:${ports.ISSUER_PORT}/health/ready`, 60000);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (system) {
    try { process.kill(-system.pid, 'SIGTERM'); } catch { /* already gone */ }
  }
});

test('the demo origin refuses a request that bypassed the edge, however it spells the identity', async () => {
  const response = await fetch(`${origin}/api/whoami`, { headers: { 'x-gatehouse-sub': 'admin', 'x-gatehouse-origin-secret': 'guess' } });
  assert.equal(response.status, 403);
  // The record of requests would show the secret: off while the origin checks it.
  assert.equal((await fetch(`${origin}/__origin/requests`)).status, 403);
  // The same path through the edge, with no token: the edge's own 401, not the origin's 403.
  assert.equal((await fetch(`${edge}/api/whoami`)).status, 401);
});

test('log in, see claims and countdown, call the API, refresh, log out, get the edge 401', { timeout: 120000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${edge}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const text = (id) => page.textContent(`#${id}`);

  await page.fill('#username', 'demo-user');
  await page.fill('#password', 'plover-quartz-7');
  await page.click('#register');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Registered'));
  await page.click('#login');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Logged in'));
  const first = JSON.parse(await text('claims'));
  assert.equal(first.header.typ, 'at+jwt');
  assert.equal(first.claims.scope, 'read write');
  assert.equal(await text('verified'), 'verified');
  const countdown = await text('countdown');
  const seconds = Number(/\((\d+) s\)/.exec(countdown)?.[1]);
  assert.ok(seconds > 880 && seconds <= 900, countdown);
  await page.waitForFunction((before) => document.querySelector('#countdown').textContent !== before, countdown);

  await page.click('#call');
  await page.waitForFunction(() => document.querySelector('#api-status').textContent !== '–');
  assert.equal(await text('api-status'), '200');
  const api = JSON.parse(await text('api-body'));
  assert.equal(api.identity['x-gatehouse-sub'], first.claims.sub);
  assert.equal(api.identity['x-gatehouse-sid'], first.claims.sid);
  // The demo's `clientId`, named by the issuer in the token (RFC 9068) and handed on by the edge.
  assert.equal(first.claims.client_id, 'gatehouse-demo');
  assert.equal(api.identity['x-gatehouse-client-id'], 'gatehouse-demo');
  assert.equal(api.identity['x-gatehouse-origin-secret'], undefined, 'the origin echoed its secret');

  await page.click('#refresh');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Refreshed'));
  const second = JSON.parse(await text('claims'));
  assert.notEqual(second.claims.jti, first.claims.jti);
  assert.equal(second.claims.sid, first.claims.sid);
  assert.equal(second.claims.client_id, 'gatehouse-demo', 'a refresh keeps the session\'s client');

  await page.click('#logout');
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Logged out'));
  // The push reaches the edge within milliseconds; poll the button until the edge refuses.
  for (let i = 0; i < 50; i++) {
    await page.click('#call');
    await page.waitForTimeout(100);
    if ((await text('api-status')) === '401') break;
  }
  assert.equal(await text('api-status'), '401');
  assert.equal(JSON.parse(await text('api-body')).code, 'revoked');

  mkdirSync(join(root, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: join(root, 'test-artifacts', 'demo.png'), fullPage: true });
});

/** Whether something accepts connections on 127.0.0.1:`port`. */
const listening = (port) => new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1');
  socket.once('connect', () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

// Last: it stops the system. The README says Ctrl-C stops everything, workerd included: a
// terminal sends SIGINT to dev.sh's process group, which its setsid children are not in.
// `/proc/PID/stat`'s name, state and parent; `null` once the process is gone.
const stat = (pid) => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { name: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')), state, ppid: Number(ppid) };
  } catch {
    return null;
  }
};
// Every process below `root`, setsid children included (they keep their parent).
const descendants = (root) => {
  const all = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map((pid) => ({ pid: Number(pid), ...stat(pid) }));
  const found = [];
  for (let parents = [root]; parents.length > 0;) {
    const children = all.filter((p) => parents.includes(p.ppid));
    found.push(...children);
    parents = children.map((p) => p.pid);
  }
  return found;
};

test('Ctrl-C stops the whole system, workerd included', { timeout: 60000 }, async () => {
  // Both of wrangler dev's workerd processes (its proxy, and the worker's own on a port of its
  // choosing) among them: the ports below would not show the second one outliving the rest.
  const processes = descendants(system.pid);
  assert.ok(processes.filter((p) => p.name === 'workerd').length >= 2, JSON.stringify(processes));
  const exited = new Promise((resolve) => system.once('exit', resolve));
  process.kill(-system.pid, 'SIGINT');
  await exited;
  system = null;
  // A bound against a hang, not a speed goal. A zombie has ended (its parent gone, it waits
  // for a reaper this container may not run).
  const running = () => processes.filter((p) => {
    const now = stat(p.pid);
    return now !== null && now.state !== 'Z' && now.name === p.name;
  });
  for (let waited = 0; running().length > 0 && waited < 20000; waited += 200) {
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(running(), [], 'processes of the system outlived Ctrl-C');
  for (const [name, port] of Object.entries(ports)) {
    // A bound against a hang, not a speed goal: the children are stopped and waited for.
    let open = true;
    for (let waited = 0; open && waited < 20000; waited += 200) {
      open = await listening(port);
      if (open) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(open, false, `${name} ${port} still answers after Ctrl-C`);
  }
});

