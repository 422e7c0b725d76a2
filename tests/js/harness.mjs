// Shared by the Node tests: start the real issuer binary on SQLite in a temp dir.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const PASSWORD = 'plover-quartz-7';

// Ports are taken in turn from below the kernel's ephemeral range (32768-60999), as the Rust
// testkit's `free_port` does: a port the kernel hands out for :0 is free again once released
// here, and any :0 listener (wrangler's, workerd's, Chromium's) could take it before the server
// it is meant for binds it.
const FIRST_PORT = 12000;
const PORT_SPAN = 20000;
let nextPort = (process.pid * 7919) % PORT_SPAN;

function bindable(port) {
  return new Promise((ok) => {
    const srv = createServer();
    srv.on('error', () => ok(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)));
  });
}

export async function freePort() {
  for (let tries = 0; tries < PORT_SPAN; tries += 1) {
    const port = FIRST_PORT + (nextPort % PORT_SPAN);
    nextPort += 1;
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${FIRST_PORT}..${FIRST_PORT + PORT_SPAN}`);
}

export async function waitFor(url, timeoutMs = 30000, signal = undefined) {
  const start = Date.now();
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    // Whoever was to serve it is gone: stop polling (a pending loop keeps node --test alive).
    signal?.throwIfAborted();
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The issuer binary (target/debug/gatehouse-issuer) on SQLite; call stop() when done. */
export async function startIssuer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gh-issuer-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const bin = join(resolve(root, process.env.CARGO_TARGET_DIR ?? 'target'), 'debug', 'gatehouse-issuer');
  const childEnv = {
    PATH: process.env.PATH,
    GATEHOUSE_PORT: String(port),
    GATEHOUSE_ISSUER: url,
    GATEHOUSE_AUDIENCE: 'gatehouse-js',
    GATEHOUSE_OPEN_REGISTRATION: 'true',
    GATEHOUSE_PASSWORD__M_COST: '256',
    GATEHOUSE_PASSWORD__T_COST: '1',
    ...env,
  };
  const child = spawn(bin, ['serve'], {
    cwd: dir,
    env: childEnv,
    stdio: ['ignore', 'ignore', openSync(join(dir, 'issuer.log'), 'w')],
  });
  // A binary that is missing, or that exits, stops the wait at once; one that never gets ready
  // is killed: a live child would keep `node --test` running after the failure.
  const gone = new AbortController();
  child.on('error', (e) => gone.abort(new Error(`cannot start ${bin}: ${e.message} (run cargo build -p gatehouse-issuer)`)));
  child.on('exit', (code, signal) => gone.abort(new Error(`the issuer exited (${code ?? signal})`)));
  try {
    await waitFor(`${url}/health/ready`, 30000, gone.signal);
  } catch (e) {
    child.kill('SIGKILL');
    let log = '';
    try { log = readFileSync(join(dir, 'issuer.log'), 'utf8').slice(-4000); } catch { /* none */ }
    throw new Error(`${gone.signal.reason?.message ?? e.message}\n${log}`);
  }
  return {
    url,
    stop: () => child.kill('SIGKILL'),
    /** Runs the issuer's command line (`keys rotate`, say) on its database, as an operator would. */
    cli: (args) => execFileSync(bin, args, { cwd: dir, env: childEnv, encoding: 'utf8', stdio: 'pipe' }),
    /** Registers `name` (unless `register` is false) and logs in: the token response. */
    async user(name, { register = true } = {}) {
      if (register) {
        const reg = await fetch(`${url}/v1/users`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: name, password: PASSWORD }),
        });
        if (reg.status !== 201) throw new Error(`register: ${reg.status}`);
      }
      const res = await fetch(`${url}/v1/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'password', username: name, password: PASSWORD }),
      });
      return res.json();
    },
  };
}

/** `npm pack` of the built package (edge/js/pkg), installed from that tarball into a fresh app
 * directory, as a user's `npm install` would. Returns the app directory and the packed files. */
export function installPacked() {
  const run = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: 'pipe' });
  const packDir = mkdtempSync(join(tmpdir(), 'gh-pack-'));
  const [info] = JSON.parse(run(['pack', join(root, 'edge/js/pkg'), '--pack-destination', packDir, '--json'], root));
  const app = mkdtempSync(join(tmpdir(), 'gh-app-'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'gh-app', version: '0.0.0', private: true, type: 'module' }));
  run(['install', '--no-audit', '--no-fund', '--loglevel=error', join(packDir, info.filename)], app);
  return { app, packed: info.files.map((f) => f.path) };
}

/** An issuer token, the same token with its signature changed, and what verifying needs. */
export async function tokenInput(issuer, username) {
  const jwks = await (await fetch(`${issuer.url}/.well-known/jwks.json`)).json();
  const { access_token: token } = await issuer.user(username);
  const last = token.at(-2) === 'A' ? 'Q' : 'A';
  const tampered = `${token.slice(0, -2)}${last}${token.at(-1)}`;
  return { jwks, token, tampered, issuer: issuer.url, audience: 'gatehouse-js' };
}

/** Debian's Chromium, headless, driven by playwright-core (it never downloads a browser). */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

const MEDIA_TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };

/** Answers with `file` and its media type (`.wasm` as `application/wasm`), or a 404. */
export function sendFile(res, file, headers = {}) {
  let content;
  try {
    content = readFileSync(file);
  } catch {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': MEDIA_TYPES[extname(file)] ?? 'application/octet-stream', ...headers }).end(content);
}
