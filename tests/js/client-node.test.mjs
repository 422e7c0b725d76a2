// GatehouseClient in Node, from the packed tarball as an app installs it: its options and errors,
// its tokens across tabs (BroadcastChannel, which Node has), timers and close(), against issuers
// this file fakes. Refreshes and retries: client-refresh.test.mjs. In a browser, against the real
// issuer: client.test.mjs.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { b64, settled, tokenBody } from './client-fakes.mjs';
import { installPacked } from './harness.mjs';

let app;
before(() => {
  ({ app } = installPacked());
});

test('GatehouseClient: a 200 without tokens is invalid_response, a refusing storage still reaches the other tabs, another issuer takes nothing', { timeout: 60000 }, async () => {
  const { GatehouseClient, createRemoteVerifier, GatehouseError } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const issuer = async () => new Response(JSON.stringify({
    access_token: `${b64({ alg: 'none' })}.${b64({ sid: 's1' })}.x`,
    refresh_token: 'r1',
    expires_in: 60,
    token_type: 'Bearer',
  }));
  // A host that answers every path with its app page.
  const page = async () => new Response('<!doctype html><title>app</title>', { headers: { 'content-type': 'text/html' } });
  const lost = new GatehouseClient({ issuer: 'https://i.test', fetch: page, autoRefresh: false });
  await assert.rejects(lost.login('alice', 'pw'), (e) => e.code === 'invalid_response');
  assert.equal(lost.signedIn, false);
  lost.close();

  // A caller's own mistake in the options is theirs (`invalid_key`, as for a local Verifier),
  // found before any fetch, not the issuer's keys being unavailable.
  let fetched = 0;
  const keys = async () => {
    fetched += 1;
    return new Response('{"keys":[]}');
  };
  await assert.rejects(createRemoteVerifier('https://i.test/jwks', { issuer: 'i', audience: 'a', leeway: 120, fetch: keys }),
    (e) => e instanceof GatehouseError && e.code === 'invalid_key');
  assert.equal(fetched, 0);

  globalThis.document = {};
  const full = { getItem: () => null, setItem: () => { throw new Error('QuotaExceededError'); }, removeItem() {} };
  const tabA = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false, storage: full });
  const tabB = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
  const stranger = new GatehouseClient({ issuer: 'https://other.test', fetch: issuer, autoRefresh: false });
  const named = new GatehouseClient({ issuer: 'https://other.test', fetch: issuer, autoRefresh: false, channelName: tabA.storageKey.replace(/:tokens$/, '') });
  try {
    await Promise.all([tabA.ready, tabB.ready, stranger.ready, named.ready]);
    await tabA.login('alice', 'pw');
    for (let waited = 0; tabB.accessToken !== tabA.accessToken && waited < 5000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(tabB.accessToken, tabA.accessToken, 'the other tab got the tokens the full storage refused');
    assert.equal(stranger.signedIn, false, "a client of another issuer took this one's tokens");
    assert.equal(named.signedIn, false, "a client of another issuer on the same channel took this one's tokens");
  } finally {
    for (const client of [tabA, tabB, stranger, named]) client.close();
    delete globalThis.document;
  }
});

test('GatehouseClient off a page: no tab channel, relative origins ignored, bounded token calls, a failed timer refresh retried', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const tokens = (n) => tokenBody(n, 2);
  let issued = 0;
  let down = false;
  let refusedWhileDown = 0;
  const issuer = async (url, init) => {
    if (down) {
      refusedWhileDown += 1;
      throw new TypeError('fetch failed');
    }
    issued += 1;
    return new Response(JSON.stringify(tokens(issued)), { headers: { 'content-type': 'application/json' } });
  };

  // Server-side rendering: a relative issuer does not throw, and instances share nothing.
  const relative = new GatehouseClient({ issuer: '/issuer' });
  relative.close();

  // Tabs (a document and a BroadcastChannel, which Node has): a late broadcast of an older
  // session's tokens, as a tab that was frozen sends, does not switch a tab back to it.
  globalThis.document = {};
  const tabA = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false, channelName: 'late' });
  const late = new BroadcastChannel('late');
  try {
    await tabA.login('alice', 'pw');
    const older = `${b64({ alg: 'none' })}.${b64({ sid: 'older' })}.x`;
    const now = Date.now();
    const stale = { accessToken: older, refreshToken: 'old', expiresAt: now + 60000, receivedAt: now - 60000, sid: 'older' };
    const taken = [];
    tabA.on('refreshed', (tokens) => taken.push(tokens.sid));
    late.postMessage({ type: 'tokens', tokens: stale, issuer: 'https://i.test', event: 'refreshed' });
    // Then a later session's tokens from the same sender, which arrive after the stale ones:
    // once the tab has taken these, it has handled the stale message too.
    const later = `${b64({ alg: 'none' })}.${b64({ sid: 'later' })}.x`;
    const fresh = { accessToken: later, refreshToken: 'later', expiresAt: now + 120000, receivedAt: now + 1000, sid: 'later' };
    late.postMessage({ type: 'tokens', tokens: fresh, issuer: 'https://i.test', event: 'refreshed' });
    assert.ok(await settled(() => tabA.accessToken === later), 'the later session was taken');
    assert.deepEqual(taken, ['later'], 'switched back to an older session');
  } finally {
    // Open channels would keep the test process alive.
    late.close();
    tabA.close();
    delete globalThis.document;
  }

  // A tab closed (unmounted) while its refresh is out still hands the new tokens to the other
  // tabs: before, its channel closed at once, and the others kept the rotated-out token, whose
  // next refresh the issuer would take for theft.
  globalThis.document = {};
  let answer;
  const slow = async (url, init) => {
    if (new URLSearchParams(init.body).get('grant_type') === 'refresh_token') await new Promise((r) => (answer = r));
    return issuer(url, init);
  };
  const leaving = new GatehouseClient({ issuer: 'https://i.test', fetch: slow, autoRefresh: false, channelName: 'leaving' });
  const staying = new GatehouseClient({ issuer: 'https://i.test', fetch: slow, autoRefresh: false, channelName: 'leaving' });
  try {
    await leaving.login('alice', 'pw');
    assert.ok(await settled(() => staying.accessToken === leaving.accessToken), 'the tabs share the session');
    const refreshing = leaving.refresh();
    while (!answer) await new Promise((r) => setTimeout(r, 5));
    leaving.close();
    answer();
    await refreshing;
    assert.ok(await settled(() => staying.accessToken === leaving.accessToken), 'the other tab has the rotated tokens');
  } finally {
    leaving.close();
    staying.close();
    delete globalThis.document;
  }
  issued = 0;

  // Off a page the timer is off unless asked for.
  const idle = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, refreshAheadSeconds: 1 });
  await idle.login('alice', 'pw');
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(issued, 1, 'a client off a page refreshed on a timer nobody asked for');
  idle.close();
  issued = 0;
  const first = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, refreshAheadSeconds: 1, autoRefresh: true });
  // Closed whatever happens: its refresh timers would keep the test process alive.
  try {
    await first.login('alice', 'pw');
    // Down before the timer's refresh (1 s before the 2 s expiry) is due.
    down = true;
    const second = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
    await second.ready;
    assert.equal(second.signedIn, false, "another instance in this process got the first one's tokens");
    second.close();

    // A token request that never answers fails with network_error after requestTimeoutSeconds.
    const hung = new GatehouseClient({
      issuer: 'https://i.test',
      requestTimeoutSeconds: 0.2,
      fetch: (url, init) => new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason))),
    });
    await assert.rejects(hung.login('alice', 'pw'), (e) => e.code === 'network_error');
    hung.close();

    // The timer's refresh meets the issuer down, and is tried again.
    const refreshed = new Promise((resolve) => first.on('refreshed', resolve));
    assert.ok(await settled(() => refusedWhileDown >= 1), 'the timer refresh was tried');
    assert.equal(issued, 1, 'the timer refresh failed');
    down = false;
    await refreshed;
    assert.equal(first.accessToken, tokens(2).access_token);
  } finally {
    first.close();
  }
});

test('GatehouseClient: options it cannot use, a fetch that needs its own this, handlers that throw, bodies that are no object, an expiry past setTimeout, a storage that refuses a later write', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let issued = 0;
  let expiresIn = 60;
  // As a browser's fetch does: called on anything but the global object, it throws.
  function strictFetch(url, init) {
    if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
    issued += 1;
    return Promise.resolve(new Response(JSON.stringify(tokenBody(issued, expiresIn))));
  }
  // Misspelt names and switches that are no switch too: before, `refreshAhead: 10` kept the
  // default without a word, and any text turned `autoRefresh` on. `'true'` and `'false'` (an
  // environment variable's text) are taken below.
  for (const options of [{ refreshAheadSeconds: NaN }, { refreshAheadSeconds: 'sixty' }, { requestTimeoutSeconds: 0 }, { requestTimeoutSeconds: Infinity }, { fetch: 'https://i.test' }, { refreshAhead: 10 }, { requestTimeout: 2 }, { autoRefresh: 'no' }, { shareAcrossTabs: 0 }, { clientId: '' }, { clientId: null }, { clientId: 5 }]) {
    assert.throws(() => new GatehouseClient({ issuer: 'https://i.test', ...options }), (e) => e.code === 'invalid_options', JSON.stringify(options));
  }
  // On a page, an apiOrigins entry that is no URL (a bare "Invalid URL" TypeError before).
  globalThis.location = { origin: 'https://app.test', href: 'https://app.test/' };
  try {
    assert.throws(() => new GatehouseClient({ issuer: 'https://i.test', apiOrigins: ['https://'] }), (e) => e.code === 'invalid_options');
  } finally {
    delete globalThis.location;
  }

  new GatehouseClient({ issuer: 'https://i.test', refreshAheadSeconds: '30' }).close();
  new GatehouseClient({ issuer: 'https://i.test', autoRefresh: 'false', shareAcrossTabs: 'true' }).close();
  const reported = [];
  globalThis.reportError = (e) => reported.push(e);
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch: strictFetch, autoRefresh: false });
  try {
    let seen;
    client.on('signedIn', (tokens) => {
      seen = tokens;
      throw new Error('a bug of the app');
    });
    await client.login('alice', 'pw');
    assert.equal(client.signedIn, true);
    assert.deepEqual(reported.map((e) => e.message), ['a bug of the app']);
    assert.ok(Object.isFrozen(seen), 'a handler cannot change the tokens held');
  } finally {
    client.close();
    delete globalThis.reportError;
  }

  // JSON that is no object, from the issuer and from an API.
  const answering = (text, status) => async () => new Response(text, { status });
  for (const text of ['null', '[]', '"x"']) {
    const refused = new GatehouseClient({ issuer: 'https://i.test', fetch: answering(text, 400), autoRefresh: false });
    await assert.rejects(refused.login('alice', 'pw'), (e) => e.code === 'login_failed', text);
    refused.close();
  }
  const api = new GatehouseClient({
    issuer: 'https://i.test',
    autoRefresh: false,
    fetch: (input) => (String(input.url ?? input).includes('/v1/token') ? strictFetch() : answering('null', 401)()),
  });
  await api.login('alice', 'pw');
  assert.equal((await api.fetch('https://i.test/api')).status, 401);
  api.close();

  // An expiry past setTimeout's limit (about 24.8 days) must not fire the refresh timer at once,
  // which rotated the token in a loop.
  expiresIn = 3e6;
  issued = 0;
  const long = new GatehouseClient({ issuer: 'https://i.test', fetch: strictFetch, autoRefresh: true });
  try {
    await long.login('alice', 'pw');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(issued, 1, 'rotations right after the login');
  } finally {
    long.close();
  }

  // A storage that took the first set and refuses the next holds neither: the one it held has a
  // rotated refresh token, which a reload would use again.
  expiresIn = 60;
  const kept = new Map();
  let writes = 0;
  const storage = {
    getItem: (k) => kept.get(k) ?? null,
    setItem: (k, v) => {
      writes += 1;
      if (writes > 1) throw new Error('QuotaExceededError');
      kept.set(k, v);
    },
    removeItem: (k) => kept.delete(k),
  };
  const stored = new GatehouseClient({ issuer: 'https://i.test', fetch: strictFetch, autoRefresh: false, storage });
  await stored.login('alice', 'pw');
  assert.equal(kept.size, 1);
  await stored.refresh();
  assert.equal(kept.size, 0, 'the rotated set is left in storage');
  stored.close();

  // A reload reads the stored set without writing it back, so a storage that refuses writes
  // keeps it; a set without its times (another version's) is not taken.
  const now = Date.now();
  const set = { accessToken: 'a.b.c', refreshToken: 'r', expiresAt: now + 60000, receivedAt: now, sid: 's1' };
  const readOnly = (value) => {
    const held = new Map([['gatehouse:https://i.test:tokens', JSON.stringify(value)]]);
    return { held, getItem: (k) => held.get(k) ?? null, setItem: () => { throw new Error('QuotaExceededError'); }, removeItem: (k) => held.delete(k) };
  };
  const full = readOnly(set);
  const reloaded = new GatehouseClient({ issuer: 'https://i.test', fetch: strictFetch, autoRefresh: false, storage: full });
  assert.equal(reloaded.accessToken, 'a.b.c');
  assert.equal(full.held.size, 1, 'the stored set was dropped at reload');
  reloaded.close();
  const { receivedAt, ...timeless } = set;
  const old = new GatehouseClient({ issuer: 'https://i.test', fetch: strictFetch, storage: readOnly(timeless) });
  assert.equal(old.signedIn, false);
  old.close();
});

test('GatehouseClient: its clientId goes with every login and refresh, and without one none does; two clients keep apart', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  // One origin's apps under different client ids share no tokens: their sessions are bound to
  // their clients.
  const keys = [undefined, 'web', 'admin'].map((clientId) => {
    const client = new GatehouseClient({ issuer: 'https://i.test', clientId, autoRefresh: false });
    client.close();
    return client.storageKey;
  });
  assert.equal(new Set(keys).size, 3, keys.join(' | '));
  assert.equal(keys[0], 'gatehouse:https://i.test:tokens', 'unchanged without a clientId');
  for (const clientId of ['my app', 'c'.repeat(255), undefined]) {
    const sent = [];
    const fetch = async (url, init) => {
      sent.push(Object.fromEntries(new URLSearchParams(init.body)));
      return new Response(JSON.stringify(tokenBody(sent.length)));
    };
    const client = new GatehouseClient({ issuer: 'https://i.test', clientId, fetch, autoRefresh: false });
    try {
      await client.login('alice', 'pw');
      await client.refresh();
      assert.deepEqual(sent.map((form) => [form.grant_type, form.client_id]), [['password', clientId], ['refresh_token', clientId]]);
    } finally {
      client.close();
    }
  }
});

test('GatehouseClient: a locked account is locked_out, with its Retry-After', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const fetch = async () => new Response(JSON.stringify({
    error: 'invalid_grant', code: 'locked_out', error_description: 'too many failed attempts',
  }), { status: 400, headers: { 'retry-after': '42' } });
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch, autoRefresh: false });
  try {
    await assert.rejects(client.login('alice', 'pw'), (e) => e.code === 'locked_out' && e.retryAfter === 42);
  } finally {
    client.close();
  }
});

test('GatehouseClient: the Retry-After of a 429 or 503 reaches the app as retryAfter', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const answer = (status, headers) => async () => new Response(JSON.stringify({ error: status === 429 ? 'rate_limited' : 'temporarily_unavailable' }), { status, headers });
  for (const [status, headers, expected] of [
    [429, { 'retry-after': '7' }, 7],
    [503, { 'retry-after': '0' }, 0],
    [503, {}, undefined],
    [429, { 'retry-after': 'soon' }, undefined],
  ]) {
    const client = new GatehouseClient({ issuer: 'https://i.test', fetch: answer(status, headers), autoRefresh: false });
    await assert.rejects(client.login('alice', 'pw'), (e) => e.name === 'GatehouseClientError' && e.retryAfter === expected);
    client.close();
  }
});

test('GatehouseClient on a server: no refresh timer keeps Node running, a relative URL is origin_not_allowed, a stream body is sent once', { timeout: 60000 }, async () => {
  const entry = join(app, 'node_modules/@gatehouse/verify/node.js');
  // A script that signs in (a token for an hour: the refresh is 59 minutes away) and never
  // closes its client. Before, the refresh timer kept the process alive until the harness
  // killed it.
  const script = `
    const { GatehouseClient } = await import(${JSON.stringify(entry)});
    const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const fetch = async () => new Response(JSON.stringify({
      access_token: b64({ alg: 'none' }) + '.' + b64({ sid: 's1' }) + '.x',
      refresh_token: 'r1', expires_in: 3600, token_type: 'Bearer',
    }));
    const client = new GatehouseClient({ issuer: 'https://i.test', fetch });
    await client.login('alice', 'pw');
    console.log(client.signedIn ? 'signed in' : 'not signed in');
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.deepEqual([run.signal, run.status, run.stdout.trim()], [null, 0, 'signed in'], run.stderr);

  const { GatehouseClient } = await import(entry);
  let issued = 0;
  const sent = [];
  const fetch = async (input, init) => {
    const url = String(input.url ?? input);
    if (url.endsWith('/v1/token')) {
      issued += 1;
      return new Response(JSON.stringify(tokenBody(issued)));
    }
    sent.push(await input.text());
    return new Response('{"code":"expired"}', { status: 401 });
  };
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch, autoRefresh: false });
  try {
    await client.login('alice', 'pw');
    // Off a page, a relative URL has no origin: refused with the client's code, nothing sent.
    await assert.rejects(client.fetch('/api/items'), (e) => e.code === 'origin_not_allowed');
    assert.deepEqual(sent, []);
    // A string body is sent again after the refresh the `expired` answer asks for.
    assert.equal((await client.fetch('https://i.test/api', { method: 'POST', body: 'again' })).status, 401);
    assert.deepEqual([sent, issued], [['again', 'again'], 2]);
    // A stream is sent once, and its 401 answered as it came: no refresh, no second send.
    sent.length = 0;
    const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('upload')); c.close(); } });
    const response = await client.fetch('https://i.test/api', { method: 'POST', body: stream, duplex: 'half' });
    assert.equal(response.status, 401);
    assert.deepEqual([sent, issued], [['upload'], 2]);
  } finally {
    client.close();
  }
});

test('GatehouseClient: apiOrigins are absolute http(s) URLs, read without URL.canParse (older browsers)', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const canParse = URL.canParse;
  globalThis.location = { origin: 'https://app.test', href: 'https://app.test/' };
  delete URL.canParse;
  try {
    const calls = [];
    const client = new GatehouseClient({
      issuer: '/issuer',
      apiOrigins: ['https://api.test/v1'],
      autoRefresh: false,
      shareAcrossTabs: false,
      fetch: async (request) => {
        calls.push(new URL(request.url ?? request).origin);
        return new Response('{}');
      },
    });
    // Signed out: sent without a token (a TypeError before, reading the tokens not held).
    await client.fetch('https://api.test/x');
    await client.fetch('https://app.test/y');
    await assert.rejects(client.fetch('https://other.test/'), (e) => e.code === 'origin_not_allowed');
    assert.deepEqual(calls, ['https://api.test', 'https://app.test']);
    client.close();
    for (const entry of ['api.example.com', 'localhost:3000', 'javascript:alert(1)', 'ftp://files.test']) {
      assert.throws(() => new GatehouseClient({ issuer: 'https://i.test', apiOrigins: [entry] }), (e) => e.code === 'invalid_options', entry);
    }
  } finally {
    URL.canParse = canParse;
    delete globalThis.location;
  }
});

test('GatehouseClient: closed, it rotates nothing, and says so once its token has expired; an issuer that is no URL or path is refused', { timeout: 30000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let issued = 0;
  const signIn = async (expiresIn) => {
    const fetch = async () => {
      issued += 1;
      return new Response(JSON.stringify(tokenBody(issued, expiresIn)));
    };
    // Due for a refresh at once: the token lives less than refreshAheadSeconds.
    const client = new GatehouseClient({ issuer: 'https://i.test', fetch, autoRefresh: false, refreshAheadSeconds: 60 });
    await client.login('alice', 'pw');
    client.close();
    return client;
  };
  const valid = await signIn(30);
  const held = valid.accessToken;
  await assert.rejects(valid.refresh(), (e) => e.name === 'GatehouseClientError' && e.code === 'closed');
  // Still valid: handed out as a failed refresh's caller gets it.
  assert.equal(await valid.getAccessToken(), held);
  assert.equal(issued, 1, 'nothing was rotated');

  // The edge's `expired` (its clock ahead): a closed client hands that answer back.
  const edgeSays = async (request) => (String(request.url ?? request).endsWith('/v1/token')
    ? new Response(JSON.stringify(tokenBody(++issued, 30)))
    : new Response('{"code":"expired"}', { status: 401 }));
  const answering = new GatehouseClient({ issuer: 'https://i.test', fetch: edgeSays, autoRefresh: false });
  await answering.login('alice', 'pw');
  answering.close();
  assert.equal((await answering.fetch('https://i.test/api')).status, 401);
  assert.equal(issued, 2, 'nothing was rotated');

  // A refresh already sent when the client closes is joined, not refused.
  let answer;
  const slow = async (url, init) => {
    issued += 1;
    if (new URLSearchParams(init.body).get('grant_type') === 'refresh_token') await new Promise((r) => { answer = r; });
    return new Response(JSON.stringify(tokenBody(issued, 30)));
  };
  const sending = new GatehouseClient({ issuer: 'https://i.test', fetch: slow, autoRefresh: false });
  await sending.login('alice', 'pw');
  const sent = sending.refresh();
  assert.ok(await settled(() => answer), 'the refresh was sent');
  sending.close();
  const joined = sending.refresh();
  answer();
  await Promise.all([sent, joined]);
  assert.equal(sending.accessToken, tokenBody(issued, 30).access_token);

  const lapsed = await signIn(1);
  await new Promise((r) => setTimeout(r, 1100));
  // Before, the expired token came back, and a request went out with it.
  await assert.rejects(lapsed.getAccessToken(), (e) => e.code === 'closed');
  await assert.rejects(lapsed.fetch('https://i.test/api'), (e) => e.code === 'closed');
  assert.equal(issued, 5, 'nothing was rotated');

  // A bare host would be a path of the page, and the password posted there; a path with its
  // slash doubled would name a host.
  for (const issuer of ['auth.example.com', 'localhost:8000', 'javascript:alert(1)', '//auth', '/\\auth', '/\t/auth', '/\n/auth', '//a b', '//', '/\t', '/\n', 'https://auth.example\t']) {
    assert.throws(() => new GatehouseClient({ issuer, autoRefresh: false }), (e) => e.code === 'invalid_options', issuer);
  }
  for (const issuer of ['/auth', 'http://127.0.0.1:8000/', new URL('https://i.test/')]) {
    new GatehouseClient({ issuer, autoRefresh: false }).close();
  }
});

test('GatehouseClient: a login over a held session ends it in every tab, then at the issuer; a late copy of it is refused', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const issuer = 'https://i.test';
  const revoked = [];
  let logins = 0;
  const fetch = async (url, init) => {
    const form = new URLSearchParams(init.body);
    if (url.endsWith('/v1/revoke')) {
      revoked.push(form.get('token'));
      return new Response('', { status: 200 });
    }
    logins += 1;
    // Each login its own session; the third logs in to the session held (a hand-over, say).
    const sid = logins === 3 ? 's2' : `s${logins}`;
    return new Response(JSON.stringify({
      access_token: `${b64({ alg: 'none' })}.${b64({ sid })}.x`, refresh_token: `r${logins}`, expires_in: 600, token_type: 'Bearer',
    }));
  };
  const sidOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sid;
  const heard = [];
  const channel = new BroadcastChannel(`gatehouse:${issuer}`);
  channel.onmessage = (e) => heard.push(e.data);
  // On a page: tabs share their sessions.
  globalThis.document = {};
  const tabA = new GatehouseClient({ issuer, fetch, autoRefresh: false });
  const tabB = new GatehouseClient({ issuer, fetch, autoRefresh: false });
  try {
    await Promise.all([tabA.ready, tabB.ready]);
    await tabA.login('alice', 'pw');
    assert.ok(await settled(() => tabB.signedIn));
    assert.deepEqual(revoked, [], 'nothing held before');
    const first = heard.find((m) => m.type === 'tokens').tokens;
    const events = [];
    tabB.on('signedOut', () => events.push('signedOut'));
    tabB.on('signedIn', () => events.push('signedIn'));
    await tabA.login('bob', 'pw');
    assert.ok(await settled(() => revoked.length === 1 && sidOf(tabB.accessToken ?? 'a.e30.c') === 's2'));
    assert.deepEqual(revoked, ['r1']);
    assert.deepEqual(events, ['signedOut', 'signedIn']);
    // A frozen tab's copy of the ended session, however recent it claims to be, is refused.
    channel.postMessage({ type: 'tokens', issuer, event: 'refreshed', tokens: { ...first, receivedAt: Date.now() + 60_000 } });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([sidOf(tabA.accessToken), sidOf(tabB.accessToken)], ['s2', 's2']);
    await tabA.login('bob', 'pw');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(revoked, ['r1'], 'the same session is not ended');
    assert.equal(tabA.signedIn && tabB.signedIn, true);
  } finally {
    channel.close();
    tabA.close();
    tabB.close();
    delete globalThis.document;
  }
});
