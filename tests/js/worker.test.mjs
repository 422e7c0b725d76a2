// @gatehouse/verify inside a Worker (workerd, through Miniflare).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as jose from 'jose';
import { Miniflare } from 'miniflare';

import { root } from './harness.mjs';

let mf;
before(() => {
  mf = new Miniflare({
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
});
