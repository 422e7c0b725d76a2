// The browser entry's `init()` loads the wasm once, however many callers ask at once: the
// glue's own `init()` started a second load, whose instance then replaced the first under
// objects made from it. Its own process (node --test runs each file in one), so the wasm is
// loaded here first.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import * as jose from 'jose';

import * as browser from '../../edge/js/pkg/index.js';

const wasm = new URL('../../edge/js/pkg/gatehouse_verify_bg.wasm', import.meta.url);

test('init() called twice at once loads one wasm, and objects made between keep working', async () => {
  const bytes = await readFile(wasm);
  // A failed load can be tried again.
  await assert.rejects(browser.default({ module_or_path: new Uint8Array([0, 1, 2]) }));

  const first = browser.default({ module_or_path: bytes });
  const second = browser.default({ module_or_path: bytes });
  // `initSync` cannot wait for the load in flight: refused, with a code.
  assert.throws(() => browser.initSync({ module: bytes }), (e) => e instanceof browser.GatehouseError && e.code === 'invalid_argument');

  const { publicKey, privateKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const set = { keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'k', alg: 'EdDSA', use: 'sig' }] };
  const now = Math.floor(Date.now() / 1000);
  const token = await new jose.SignJWT({ iss: 'i', sub: 'u1', aud: 'a', exp: now + 300, iat: now, jti: 'j', sid: 's', scope: 'read' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k' }).sign(privateKey);

  const loaded = await first;
  const verifier = new browser.Verifier(set, { issuer: 'i', audience: 'a' });
  assert.equal(await second, loaded, 'one instance');
  assert.equal(await browser.default(), loaded, 'a later call loads nothing');
  assert.equal(browser.initSync({ module: bytes }), loaded, 'nor does initSync once loaded');
  for (let i = 0; i < 100; i += 1) assert.equal(verifier.verify(token).sub, 'u1');
  verifier.free();
});
