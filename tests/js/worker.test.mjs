// @gatehouse/verify inside a Worker (workerd, through Miniflare).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import * as jose from 'jose';
import { Miniflare } from 'miniflare';

import { root } from './harness.mjs';

let mf;
before(() => {
  mf = new Miniflare({
    // No fetch of Cloudflare's `cf.json`: the tests reach only the package registries.
    cf: false,
    modules: true,
    scriptPath: join(root, 'tests/js/worker/entry.mjs'),
    modulesRoot: root,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-04-01',
  });
});
after(() => mf?.dispose());

test('the package verifies in workerd, with the same codes', async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwks = { keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'k', alg: 'EdDSA' }] };
  const now = Math.floor(Date.now() / 1000);
  const token = await new jose.SignJWT({ iss: 'https://i.test', sub: 'worker-user', aud: 'app', exp: now + 60, iat: now, jti: 'j', sid: 's' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k' }).sign(privateKey);
  const call = async (t) => (await mf.dispatchFetch('http://worker/', {
    method: 'POST', body: JSON.stringify({ jwks, token: t, issuer: 'https://i.test', audience: 'app' }),
  })).json();
  const ok = await call(token);
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.equal(ok.claims.sub, 'worker-user');
  const bad = await call(`${token.slice(0, -2)}${token.endsWith('AA') ? 'QQ' : 'AA'}`);
  assert.equal(bad.code, 'bad_signature');

  // createRemoteVerifier with workerd's own fetch (whose `redirect` takes only "follow" and
  // "manual"): the set from a local server, and a URL that redirects to it refused.
  const server = createServer((req, res) => {
    if (req.url === '/moved') res.writeHead(302, { location: '/jwks' }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    const remote = async (path) => (await mf.dispatchFetch('http://worker/', {
      method: 'POST', body: JSON.stringify({ jwksUrl: `${base}${path}`, token, issuer: 'https://i.test', audience: 'app' }),
    })).json();
    const fetched = await remote('/jwks');
    assert.equal(fetched.ok, true, JSON.stringify(fetched));
    assert.equal(fetched.claims.sub, 'worker-user');
    assert.equal((await remote('/moved')).code, 'keys_unavailable');
  } finally {
    server.close();
  }
});
