// The built @gatehouse/verify package under Node: tokens from the real issuer and from jose,
// and every failure code the package can produce.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as jose from 'jose';

import { root, startIssuer } from './harness.mjs';

const pkg = await import(`${root}/edge/js/pkg/node.js`);
const { Verifier, RevocationList, GatehouseError, createRemoteVerifier, decodeUnverified, expiresIn, isExpired, errorCodes, revocationListFetchDefaults } = pkg;

let issuer;
let jwks;
before(async () => {
  issuer = await startIssuer();
  jwks = await (await fetch(`${issuer.url}/.well-known/jwks.json`)).json();
});
after(() => issuer?.stop());

/** Verifies `token` every 100 ms until it is refused, for at most 10 s: the refusal's code, or
 * 'verified' if it never was. */
const firstRefusal = async (remote, token) => {
  let code;
  for (const started = Date.now(); Date.now() - started < 10000; await new Promise((r) => setTimeout(r, 100))) {
    code = await remote.verify(token).then(() => 'verified', (e) => e.code);
    if (code !== 'verified') break;
  }
  return code;
};

const codeOf = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GatehouseError, `a GatehouseError, got ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'GatehouseError');
    return e.code;
  }
  assert.fail('expected a GatehouseError');
};

test('tokens from the real issuer verify, and its snapshot revokes them', async () => {
  const tokens = await issuer.user('alice');
  const verifier = new Verifier(jwks, { issuer: issuer.url, audience: 'gatehouse-js' });
  assert.deepEqual(verifier.kids, jwks.keys.map((k) => k.kid));
  const claims = verifier.verify(tokens.access_token);
  assert.equal(claims.iss, issuer.url);
  assert.equal(claims.scope, 'read write');
  assert.equal(typeof claims.exp, 'number');
  assert.equal(Object.getPrototypeOf(claims), Object.prototype, 'a plain object');

  const { header, claims: raw } = decodeUnverified(tokens.access_token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(raw.sid, claims.sid);
  const left = expiresIn(tokens.access_token);
  assert.ok(left > 890 && left <= 900, `${left}`);
  assert.equal(expiresIn(tokens.access_token, claims.exp - 10), 10);
  assert.equal(isExpired(tokens.access_token), false);

  const before = RevocationList.fromSnapshot(await (await fetch(`${issuer.url}/v1/revocations`)).text(), jwks, issuer.url);
  await fetch(`${issuer.url}/v1/logout`, { method: 'POST', headers: { authorization: `Bearer ${tokens.access_token}` } });
  const snapshot = await (await fetch(`${issuer.url}/v1/revocations`)).text();
  const list = RevocationList.fromSnapshot(snapshot, JSON.stringify(jwks), issuer.url);
  // Which list replaces which: the edge's rule.
  assert.equal(list.replaces(before), true);
  assert.equal(before.replaces(list), false);
  assert.equal(list.replaces(list), false);
  assert.equal(codeOf(() => list.replaces({})), 'invalid_argument');
  before.free();
  assert.ok(list.seq >= 1);
  assert.equal(list.size, 1);
  assert.equal(list.check(tokens.access_token, verifier), 'session');
  const fromBytes = RevocationList.fromSnapshot(new TextEncoder().encode(snapshot), jwks, issuer.url);
  assert.equal(fromBytes.check(tokens.access_token, verifier), 'session', 'bytes load the same list');
  assert.equal(fromBytes.seq, list.seq);
  assert.equal(codeOf(() => RevocationList.fromSnapshot(42, jwks, issuer.url)), 'malformed');
  assert.equal(codeOf(() => RevocationList.fromSnapshot(new Uint8Array([0xff, 0xfe]), jwks, issuer.url)), 'malformed');
  assert.equal(codeOf(() => verifier.verifyNotRevoked(tokens.access_token, list)), 'revoked');
  const other = await issuer.user('alice-2');
  assert.equal(verifier.verifyNotRevoked(other.access_token, list).sid, verifier.verify(other.access_token).sid);
  assert.equal(codeOf(() => RevocationList.fromSnapshot(tokens.access_token, jwks, issuer.url)), 'wrong_type');
  // A missing header (`undefined`) and an unset key variable get the package's codes, not the
  // wasm glue's TypeError or its unwrap message.
  assert.equal(codeOf(() => list.check(undefined, verifier)), 'malformed');
  // Another object where the package wants its own: the glue's plain Error had no code.
  for (const bad of [{}, undefined, list]) {
    assert.equal(codeOf(() => list.check(tokens.access_token, bad)), 'invalid_argument');
  }
  for (const bad of [{}, null, verifier]) {
    assert.equal(codeOf(() => verifier.verifyNotRevoked(tokens.access_token, bad)), 'invalid_argument');
  }
  assert.equal(codeOf(() => list.check('x'.repeat(9000), verifier)), 'too_large');
  // Objects used after `free()` (or a `using` block): the glue's plain Error had no code.
  const freedList = RevocationList.fromSnapshot(snapshot, jwks, issuer.url);
  const freedVerifier = new Verifier(jwks, { issuer: issuer.url, audience: 'gatehouse-js' });
  freedList.free();
  freedVerifier.free();
  freedList.free(); // twice does nothing (the glue's threw a bare Error)
  assert.equal(codeOf(() => verifier.verifyNotRevoked(tokens.access_token, freedList)), 'invalid_argument');
  assert.equal(codeOf(() => list.check(tokens.access_token, freedVerifier)), 'invalid_argument');
  assert.equal(codeOf(() => freedVerifier.verify(tokens.access_token)), 'invalid_argument');
  assert.equal(codeOf(() => freedList.check(tokens.access_token, verifier)), 'invalid_argument');
  assert.equal(codeOf(() => freedList.seq), 'invalid_argument');
  assert.equal(codeOf(() => freedVerifier.kids), 'invalid_argument');
  // A `using` block's end after `free()` does nothing too, and another class's object is no
  // `this` (its pointer went into the wasm as the other type).
  assert.ok(Symbol.dispose, 'Node has Symbol.dispose');
  freedVerifier[Symbol.dispose]();
  assert.equal(codeOf(() => Verifier.prototype.verify.call(list, tokens.access_token)), 'invalid_argument');
  // The receivers of a refused freed argument are still usable.
  assert.equal(list.check(tokens.access_token, verifier), 'session');
  assert.ok(verifier.verifyNotRevoked(other.access_token, list).sid);
  // A verifier of another issuer: its tokens' ids mean nothing in this list (a quiet
  // "not revoked" before).
  const stranger = new Verifier(jwks, { issuer: 'https://other.test', audience: 'gatehouse-js' });
  assert.equal(codeOf(() => list.check(tokens.access_token, stranger)), 'invalid_argument');
  assert.equal(codeOf(() => stranger.verifyNotRevoked(tokens.access_token, list)), 'invalid_argument');
  // A key set over 1 MiB is refused, as text or object, with the key's code. (That the length
  // is now checked before the copy into the wasm is not observable here: the check after the
  // copy gave the same code.)
  const huge = { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(1 << 20) }] };
  for (const big of [huge, JSON.stringify(huge)]) {
    assert.equal(codeOf(() => new Verifier(big, { issuer: issuer.url, audience: 'gatehouse-js' })), 'invalid_key');
  }
  assert.equal(codeOf(() => new Verifier(undefined, { issuer: issuer.url, audience: 'gatehouse-js' })), 'invalid_key');
  assert.equal(codeOf(() => RevocationList.fromSnapshot(snapshot, undefined, issuer.url)), 'invalid_key');
  // An issuer that is no string: a number or an object trapped in the glue's allocator (a
  // RuntimeError, the module's state unknown after it), `undefined` threw its TypeError.
  for (const bad of [42, undefined, {}, new URL(issuer.url), '']) {
    assert.equal(codeOf(() => RevocationList.fromSnapshot(snapshot, jwks, bad)), 'invalid_argument', String(bad));
  }
  // `Date.now()`'s milliseconds are not taken for seconds (every token was `expired`).
  assert.equal(codeOf(() => verifier.verify(tokens.access_token, Date.now())), 'invalid_argument');
  assert.equal(codeOf(() => new Verifier(jwks, { issuer: issuer.url, audience: 'gatehouse-js', clockTolerance: 60 })), 'invalid_key');
  // Claims that are JSON but no object are malformed, as the type promises an object.
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  for (const payload of [null, 1, []]) {
    assert.equal(codeOf(() => decodeUnverified(`${b64({ alg: 'EdDSA' })}.${b64(payload)}.AAAA`)), 'malformed', JSON.stringify(payload));
  }
});

test('createRemoteVerifier with revocationsUrl: a logout reaches it within its period, a failing issuer keeps the list until it is stale', { timeout: 60000 }, async () => {
  const rejects = (promise, code) => assert.rejects(promise, (e) => e instanceof GatehouseError && e.code === code, code);
  assert.deepEqual({ ...revocationListFetchDefaults() }, { ttlSeconds: 10, maxAgeSeconds: 5400, maxBytes: 8388608 });
  const jwksUrl = `${issuer.url}/.well-known/jwks.json`;
  const revocationsUrl = `${issuer.url}/v1/revocations`;
  const options = { issuer: issuer.url, audience: 'gatehouse-js', revocationsUrl };
  // The list's issuer is down, or cut off, when `down` is set; with `behind`, it answers with a
  // list signed before the logout below, as an issuer replica that is behind would.
  let down = false;
  let hang = false;
  let behind = null;
  let listFetches = 0;
  const fetchWith = (url, init) => {
    if (url === revocationsUrl) {
      listFetches += 1;
      if (down) return Promise.reject(new TypeError('fetch failed'));
      // A fetch that never settles, whatever its signal says.
      if (hang) return new Promise(() => {});
      if (behind) return Promise.resolve(new Response(behind));
    }
    return fetch(url, init);
  };
  const listBeforeLogout = await (await fetch(revocationsUrl)).text();
  const remote = await createRemoteVerifier(jwksUrl, { ...options, revocationsTtlSeconds: 1, maxListAgeSeconds: 70, fetch: fetchWith });
  const held = remote.revocations;
  assert.equal(typeof held.seq, 'number');
  assert.ok(Math.abs(held.issuedAt - Date.now() / 1000) < 30, `issued at ${held.issuedAt}`);

  const dave = await issuer.user('dave');
  const erin = await issuer.user('erin');
  assert.equal((await remote.verify(dave.access_token)).sid, decodeUnverified(dave.access_token).claims.sid);
  const logout = await fetch(`${issuer.url}/v1/logout`, { method: 'POST', headers: { authorization: `Bearer ${dave.access_token}` } });
  assert.equal(logout.status, 200);
  // A verify past the period asks for the list in the background; a later one sees it.
  assert.equal(await firstRefusal(remote, dave.access_token), 'revoked', 'the logout reached the remote verifier');
  assert.ok(remote.revocations.seq > held.seq);
  assert.ok((await remote.verify(erin.access_token)).sub);

  // An older list is not taken (`list.replaces`, the edge's rule): the logout stays.
  const seen = remote.revocations.seq;
  behind = listBeforeLogout;
  await new Promise((r) => setTimeout(r, 1100));
  const fetched = listFetches;
  assert.ok((await remote.verify(erin.access_token)).sub);
  for (const started = Date.now(); listFetches === fetched && Date.now() - started < 5000;) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(listFetches, fetched + 1, 'the older list was fetched');
  assert.equal(remote.revocations.seq, seen);
  await rejects(remote.verify(dave.access_token), 'revoked');
  behind = null;

  // The issuer unreachable: the list held is used, asked for again once per period, not per token.
  down = true;
  await new Promise((r) => setTimeout(r, 1100));
  const before = listFetches;
  for (let i = 0; i < 20; i += 1) assert.ok((await remote.verify(erin.access_token)).sub);
  assert.equal(listFetches - before, 1, 'one background fetch for twenty tokens');
  await rejects(remote.verify(dave.access_token), 'revoked');
  // Signed over maxListAgeSeconds ago (a clock 120 s on): a token it would pass is refused; one
  // it names is still revoked (refusing is always safe).
  const later = Math.floor(Date.now() / 1000) + 120;
  await rejects(remote.verify(erin.access_token, later), 'revocation_list_stale');
  await rejects(remote.verify(dave.access_token, later), 'revoked');
  remote.free();
  assert.throws(() => remote.revocations, (e) => e.code === 'invalid_argument');

  // An idle server: the first token after a quiet spell waits for the list, not only the next.
  down = false;
  const quiet = await createRemoteVerifier(jwksUrl, { ...options, revocationsTtlSeconds: 1, fetchTimeoutSeconds: 1, fetch: fetchWith });
  const frank = await issuer.user('frank');
  assert.ok((await quiet.verify(frank.access_token)).sub);
  await fetch(`${issuer.url}/v1/logout`, { method: 'POST', headers: { authorization: `Bearer ${frank.access_token}` } });
  // Past its period and a fetch's limit (1 s + 2 s).
  await new Promise((r) => setTimeout(r, 3200));
  await rejects(quiet.verify(frank.access_token), 'revoked');
  // The issuer hangs after another quiet spell: the first token waits for the fetch's limit and
  // is checked against the list held; the next one does not wait (the fetch failed meanwhile).
  hang = true;
  await new Promise((r) => setTimeout(r, 3200));
  const waited = Date.now();
  assert.ok((await quiet.verify(erin.access_token)).sub);
  assert.ok(Date.now() - waited >= 1500, `the first token waited ${Date.now() - waited} ms for the hung fetch`);
  const next = await Promise.race([quiet.verify(erin.access_token), new Promise((r) => setTimeout(() => r('waited'), 1000))]);
  assert.notEqual(next, 'waited', 'the next token must not wait for the issuer that hangs');
  assert.equal(next.sub, decodeUnverified(erin.access_token).claims.sub);
  hang = false;
  quiet.free();

  // Without a list to start from there is nothing to check against.
  await rejects(createRemoteVerifier(jwksUrl, { ...options, revocationsUrl: `${issuer.url}/v1/nothing-here` }), 'revocation_list_missing');
  await rejects(createRemoteVerifier(jwksUrl, { ...options, revocationsUrl: jwksUrl }), 'revocation_list_missing');
  down = true;
  await rejects(createRemoteVerifier(jwksUrl, { ...options, fetch: fetchWith }), 'revocation_list_missing');
  // Options it cannot use, before anything is fetched.
  down = false;
  const fetchesBefore = listFetches;
  for (const bad of [
    { revocationsUrl: 'http://example.com/v1/revocations' },
    { revocationsUrl: 'not a url' },
    { revocationsTtlSeconds: 0 },
    { revocationsTtlSeconds: 'soon' },
    { maxListAgeSeconds: 60 },
    // Never stale: before, `Infinity` passed and turned the check off.
    { maxListAgeSeconds: Infinity },
    { revocationsUrl: undefined, maxListAgeSeconds: 6000 },
  ]) {
    await rejects(createRemoteVerifier(jwksUrl, { ...options, fetch: fetchWith, ...bad }), 'invalid_key');
  }
  assert.equal(listFetches, fetchesBefore);
  // Without revocationsUrl, as before: no list, a revoked token verifies.
  const keysOnly = await createRemoteVerifier(jwksUrl, { issuer: issuer.url, audience: 'gatehouse-js' });
  assert.equal(keysOnly.revocations, undefined);
  assert.ok((await keysOnly.verify(dave.access_token)).sub);
  keysOnly.free();
});

test('createRemoteVerifier with revocationsUrl: a list signed by a key it does not hold yet (a rotation) is taken after one refetch of the keys', { timeout: 30000 }, async () => {
  // Its own issuer, whose replicas take a rotated key within a second: the other tests hold
  // the shared issuer's key set.
  const rotating = await startIssuer({ GATEHOUSE_CLEANUP_INTERVAL_SECS: '1' });
  try {
    const jwksUrl = `${rotating.url}/.well-known/jwks.json`;
    let keyFetches = 0;
    const fetchWith = (url, init) => {
      if (url === jwksUrl) keyFetches += 1;
      return fetch(url, init);
    };
    const remote = await createRemoteVerifier(jwksUrl, {
      issuer: rotating.url, audience: 'gatehouse-js', revocationsUrl: `${rotating.url}/v1/revocations`,
      revocationsTtlSeconds: 1, refetchCooldownSeconds: 1, fetch: fetchWith,
    });
    const held = remote.revocations.seq;
    // A token signed by the old key, which the verifier holds, so the token path never
    // refetches the keys: only the list's can.
    const hana = await rotating.user('hana');
    const oldKid = decodeUnverified(hana.access_token).header.kid;
    assert.ok((await remote.verify(hana.access_token)).sub);
    assert.match(rotating.cli(['keys', 'rotate']), /is active/);
    const signingKid = async () => (await (await fetch(`${rotating.url}/health/ready`)).json()).signing_kid;
    for (const started = Date.now(); (await signingKid()) === oldKid; await new Promise((r) => setTimeout(r, 100))) {
      assert.ok(Date.now() - started < 10000, 'the issuer took the new key');
    }
    // The logout's list is signed by the new key.
    const logout = await fetch(`${rotating.url}/v1/logout`, { method: 'POST', headers: { authorization: `Bearer ${hana.access_token}` } });
    assert.equal(logout.status, 200);
    assert.equal(await firstRefusal(remote, hana.access_token), 'revoked', 'the list the new key signed was taken');
    assert.ok(remote.revocations.seq > held);
    assert.equal(keyFetches, 2, 'the first fetch and one refetch for the new kid');
    remote.free();
  } finally {
    rotating.stop();
  }
});

test('tokens signed by jose verify, and every failure has its code', async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const kid = 'jose-key';
  const set = { keys: [{ ...(await jose.exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }] };
  const now = Math.floor(Date.now() / 1000);
  const base = { iss: 'https://iss.test', sub: 'u1', aud: 'app', exp: now + 300, iat: now, jti: 'j1', sid: 's1', scope: 'read' };
  const sign = (claims, header = {}) => new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid, ...header }).sign(privateKey);
  const verifier = new Verifier(set, { issuer: 'https://iss.test', audience: 'app', leeway: 5 });
  const good = await sign(base);
  assert.equal(verifier.verify(good).sub, 'u1');

  const { sid, ...noSid } = base;
  const [h, p, s] = good.split('.');
  const tampered = `${h}.${p}.${s.slice(0, -1)}${s.endsWith('A') ? 'Q' : 'A'}`;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const cases = {
    malformed: 'not.a.token',
    too_large: 'a'.repeat(9000),
    unsupported_header: `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid, crit: ['x'] })}.${p}.${s}`,
    unknown_kid: await sign(base, { kid: 'other' }),
    alg_mismatch: `${b64({ alg: 'HS256', typ: 'at+jwt', kid })}.${p}.${s}`,
    bad_signature: tampered,
    wrong_type: await sign(base, { typ: 'JWT' }),
    expired: await sign({ ...base, exp: now - 60 }),
    not_yet_valid: await sign({ ...base, nbf: now + 60 }),
    wrong_issuer: await sign({ ...base, iss: 'https://evil.test' }),
    wrong_audience: await sign({ ...base, aud: ['other'] }),
    missing_claim: await sign(noSid),
  };
  const seen = new Set();
  for (const [code, token] of Object.entries(cases)) {
    assert.equal(codeOf(() => verifier.verify(token)), code, code);
    seen.add(code);
  }
  assert.equal(codeOf(() => new Verifier('{"nope":1}', { issuer: 'i', audience: 'a' })), 'invalid_key');
  seen.add('invalid_key');
  // A leeway past the time revocation entries outlive exp would take revoked tokens back.
  assert.equal(codeOf(() => new Verifier(set, { issuer: 'i', audience: 'a', leeway: 61 })), 'invalid_key');
  assert.ok(new Verifier(set, { issuer: 'i', audience: 'a', leeway: 60 }));
  assert.equal(codeOf(() => expiresIn('eyJhbGciOiJub25lIn0.e30')), 'malformed');
  assert.equal(codeOf(() => isExpired(cases.expired.replace(/\.[^.]*\./, `.${b64({ sub: 'x' })}.`))), 'missing_claim');
  assert.equal(isExpired(cases.expired), true);
  assert.equal(isExpired(cases.expired, 3600), false);
  // A time passed where the leeway goes (`isExpired(token, Date.now() / 1000)`) would read
  // every token as never expired.
  assert.equal(codeOf(() => isExpired(cases.expired, Date.now() / 1000)), 'invalid_argument');
  assert.equal(isExpired(cases.expired, 86400), false);

  // Every code the package itself can raise was raised above; the rest belong to the edge and
  // the issuer (and `revoked` is what RevocationList.check reports).
  const serverOnly = new Set(['revoked', 'stale_snapshot', 'signing_failed', 'missing_token', 'insufficient_scope']);
  const codes = errorCodes();
  assert.ok(codes.length >= seen.size + serverOnly.size, `errorCodes() lists ${codes.length}`);
  for (const code of codes) {
    assert.ok(seen.has(code) || serverOnly.has(code), `code ${code} is covered`);
  }
});
