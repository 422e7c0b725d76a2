// The browser entry before `init()`: every entry point that needs the wasm refuses with the
// package's own error and code, not the glue's TypeError. Its own process (node --test runs
// each file in one), so nothing has loaded the wasm yet.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as browser from '../../edge/js/pkg/index.js';

const notInitialized = (e) => e instanceof browser.GatehouseError && e.code === 'not_initialized' && /await init\(\)/.test(e.message);

test('the browser entry refuses before init() with not_initialized', async () => {
  assert.throws(() => new browser.Verifier('{"keys":[]}', { issuer: 'i', audience: 'a' }), notInitialized);
  assert.throws(() => browser.RevocationList.fromSnapshot('x', '{"keys":[]}', 'i'), notInitialized);
  assert.throws(() => browser.decodeUnverified('a.b.c'), notInitialized);
  assert.throws(() => browser.expiresIn('a.b.c'), notInitialized);
  assert.throws(() => browser.isExpired('a.b.c'), notInitialized);
  assert.throws(() => browser.errorCodes(), notInitialized);
  assert.throws(() => browser.keySetFetchDefaults(), notInitialized);
  assert.throws(() => browser.revocationListFetchDefaults(), notInitialized);

  // Once loaded, the same names work, and a Verifier is still the class the guards know.
  const { readFile } = await import('node:fs/promises');
  browser.initSync({ module: await readFile(new URL('../../edge/js/pkg/gatehouse_verify_bg.wasm', import.meta.url)) });
  assert.ok(browser.errorCodes().includes('expired'));
  const verifier = new browser.Verifier('{"keys":[]}', { issuer: 'i', audience: 'a' });
  assert.ok(verifier instanceof browser.Verifier);
  assert.throws(() => verifier.verifyNotRevoked('a.b.c', {}), (e) => e.code === 'invalid_argument');
  assert.throws(() => browser.decodeUnverified('not a token'), (e) => e instanceof browser.GatehouseError && e.code !== 'not_initialized');
});
