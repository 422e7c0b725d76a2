// Shared by the Node tests: start the real issuer binary on SQLite in a temp dir.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const PASSWORD = 'plover-quartz-7';

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

export async function waitFor(url, timeoutMs = 30000) {
  const start = Date.now();
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The issuer binary (target/debug/gatehouse-issuer) on SQLite; call stop() when done. */
export async function startIssuer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'gh-issuer-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'gatehouse-issuer');
  const child = spawn(bin, ['serve'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_ISSUER: url,
      GATEHOUSE_AUDIENCE: 'gatehouse-js',
      GATEHOUSE_OPEN_REGISTRATION: 'true',
      GATEHOUSE_PASSWORD__M_COST: '256',
      GATEHOUSE_PASSWORD__T_COST: '1',
      ...env,
    },
    stdio: 'ignore',
  });
  child.on('error', (e) => { throw new Error(`cannot start ${bin}: ${e.message} (run cargo build -p gatehouse-issuer)`); });
  await waitFor(`${url}/health/ready`);
  return {
    url,
    stop: () => child.kill('SIGKILL'),
    async user(name) {
      const reg = await fetch(`${url}/v1/users`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: name, password: PASSWORD }),
      });
      if (reg.status !== 201) throw new Error(`register: ${reg.status}`);
      const res = await fetch(`${url}/v1/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'password', username: name, password: PASSWORD }),
      });
      return res.json();
    },
  };
}
