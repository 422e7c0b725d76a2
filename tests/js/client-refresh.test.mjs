// GatehouseClient in Node, from the packed tarball: refreshes (a lost answer, a hung or failed
// one, the retry schedule), the refresh lock between tabs, and unknown_kid after a key revocation,
// against issuers this file fakes (and, for the lock, a simulated Web Locks: Node has none).
// Options, errors and tabs: client-node.test.mjs.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { b64, settled, tokenBody } from './client-fakes.mjs';
import { installPacked } from './harness.mjs';

let app;
before(() => {
  ({ app } = installPacked());
});

test('GatehouseClient: a refresh whose answer was lost on the way back is asked again at once, inside the grace window', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  const tokens = (n) => tokenBody(n, 600);
  // The issuer: rotates r1 to r2 once, and within its grace hands r2 back to a retry of r1. The
  // first rotation's answer is lost (a connection dropped after the commit).
  const calls = [];
  const issuer = async (url, init) => {
    const form = new URLSearchParams(init.body);
    calls.push([Date.now(), form.get('refresh_token')]);
    if (form.get('grant_type') === 'password') return new Response(JSON.stringify(tokens(1)));
    if (calls.length === 2) throw new TypeError('connection reset');
    return new Response(JSON.stringify(tokens(2)));
  };
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
  try {
    await client.login('alice', 'pw');
    await client.refresh();
    assert.equal(client.accessToken, tokens(2).access_token);
    assert.deepEqual(calls.slice(1).map(([, token]) => token), ['r1', 'r1']);
    const gap = calls[2][0] - calls[1][0];
    assert.ok(gap < 3000, `asked again after ${gap} ms, inside the issuer's 5 s grace`);
    // The same when the answer's status came and its body was cut off. Before, that read as a
    // 200 without tokens (`invalid_response`), asked again only 5 s later: taken for theft.
    const cut = [];
    const cutting = new GatehouseClient({
      issuer: 'https://i.test',
      autoRefresh: false,
      fetch: async (url, init) => {
        cut.push([Date.now(), new URLSearchParams(init.body).get('grant_type')]);
        if (cut.length !== 2) return new Response(JSON.stringify(tokens(cut.length)));
        return new Response(new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"access_token":"'));
            c.error(new TypeError('terminated'));
          },
        }));
      },
    });
    await cutting.login('alice', 'pw');
    await cutting.refresh();
    assert.equal(cutting.accessToken, tokens(3).access_token);
    assert.deepEqual(cut.map(([, grant]) => grant), ['password', 'refresh_token', 'refresh_token']);
    assert.ok(cut[2][0] - cut[1][0] < 3000, 'the cut-off answer was asked again at once');
    // A logout's 200 cut off after its status: the issuer revoked, and the logout says so
    // (it rejected with logout_failed before, the body being read).
    cut.length = 1;
    await cutting.logout();
    cutting.close();
    // A `fetch` of the app's own answering as node-fetch does, with a Node stream for a body
    // (no `cancel`): the logout resolves.
    const { Readable } = await import('node:stream');
    const nodeFetchLike = new GatehouseClient({
      issuer: 'https://i.test',
      autoRefresh: false,
      fetch: async (url) => (url.endsWith('/v1/revoke')
        ? { ok: true, status: 200, headers: new Headers(), body: Readable.from([]) }
        : new Response(JSON.stringify(tokens(1)))),
    });
    await nodeFetchLike.login('alice', 'pw');
    await nodeFetchLike.logout();
    nodeFetchLike.close();
    // A client closed (an app unmounting) while its refresh was out still retries it, as
    // close() lets a refresh already sent finish, and keeps the successor. Before, the retry
    // was dropped, the rotated-out token kept (and stored), and its next use, past the grace,
    // taken for theft. One closed before sending its refresh sends nothing.
    calls.length = 0;
    let fail = true;
    const closing = new GatehouseClient({
      issuer: 'https://i.test',
      autoRefresh: false,
      fetch: async (url, init) => {
        const form = new URLSearchParams(init.body);
        calls.push(form.get('grant_type'));
        if (form.get('grant_type') === 'refresh_token' && fail) {
          fail = false;
          closing.close();
          throw new TypeError('connection reset');
        }
        return new Response(JSON.stringify(tokens(calls.length === 1 ? 1 : 3)));
      },
    });
    await closing.login('alice', 'pw');
    await closing.refresh();
    assert.deepEqual(calls, ['password', 'refresh_token', 'refresh_token'], 'the retry after close()');
    assert.equal(closing.accessToken, tokens(3).access_token);
    calls.length = 0;
    const unsent = new GatehouseClient({
      issuer: 'https://i.test',
      autoRefresh: false,
      fetch: async (url, init) => {
        calls.push(new URLSearchParams(init.body).get('grant_type'));
        return new Response(JSON.stringify(tokens(3)));
      },
    });
    await unsent.login('alice', 'pw');
    const refreshing = unsent.refresh();
    unsent.close();
    // And says so, rather than resolving as if the token had been rotated.
    await assert.rejects(refreshing, (e) => e.code === 'closed');
    assert.deepEqual(calls, ['password'], 'a refresh after close() was sent');

    // An opaque origin (a sandboxed frame, a `file:` page) whose Web Locks refuse: the refresh
    // runs without the lock. Before, every refresh rejected with the DOMException (code 18).
    assert.equal(globalThis.navigator, undefined, 'Node 20 has no navigator to stub over');
    globalThis.navigator = { locks: { request: async () => { throw new DOMException('opaque origin', 'SecurityError'); } } };
    try {
      const sandboxed = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
      await sandboxed.login('alice', 'pw');
      const before = sandboxed.accessToken;
      await sandboxed.refresh();
      assert.notEqual(sandboxed.accessToken, before, 'refreshed without Web Locks');
      sandboxed.close();
      // Web Locks failing otherwise: the refresh's failure, with its code, the first time as
      // while it backs off. Before, the first rejection was the DOMException (its `code` 11).
      globalThis.navigator = { locks: { request: async () => { throw new DOMException('lock gone', 'InvalidStateError'); } } };
      const unlocked = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
      await unlocked.login('alice', 'pw');
      for (const attempt of ['first', 'backing off']) {
        await assert.rejects(unlocked.refresh(), (e) => e.code === 'refresh_failed' && /lock gone/.test(e.message), attempt);
      }
      unlocked.close();
    } finally {
      delete globalThis.navigator;
    }
  } finally {
    client.close();
  }
});

test('GatehouseClient.fetch: unknown_kid on a token held past the edge key refetch cooldown refreshes (its key was revoked), on a newer one it does not', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let issued = 0;
  // The edge knows none of the tokens' keys but the third's (and later none).
  let known = `Bearer ${tokenBody(3).access_token}`;
  const fetch = async (input) => {
    if (String(input.url ?? input).endsWith('/v1/token')) {
      issued += 1;
      return new Response(JSON.stringify(tokenBody(issued, 900)));
    }
    return input.headers.get('authorization') === known
      ? new Response('{}')
      : new Response('{"code":"unknown_kid"}', { status: 401 });
  };
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch, autoRefresh: false });
  const realNow = Date.now;
  try {
    await client.login('alice', 'pw');
    // Just received: a key the edge has not fetched yet, which a refresh would not mend.
    assert.equal((await client.fetch('https://i.test/api')).status, 401);
    assert.equal(issued, 1, 'a fresh token was refreshed for an unknown kid');
    await client.refresh();
    // Held past the cooldown: its key is gone; the refreshed token passes.
    Date.now = () => realNow() + 31000;
    assert.equal((await client.fetch('https://i.test/api')).status, 200);
    assert.equal(issued, 3, 'one refresh, then the request again');
    // The edge never learns the current key (stale pinned keys): one refresh finds that out,
    // and later calls do not rotate each time.
    known = 'none';
    Date.now = () => realNow() + 62000;
    assert.equal((await client.fetch('https://i.test/api')).status, 401);
    assert.equal(issued, 4, 'one refresh');
    Date.now = () => realNow() + 93000;
    assert.equal((await client.fetch('https://i.test/api')).status, 401);
    assert.equal(issued, 4, 'no refresh for a key the edge refused after one');
    // Not for good: the edge may have refused it inside its own cooldown. Ten cooldowns later
    // a refresh is tried again (before, never again while the client lived).
    Date.now = () => realNow() + 62000 + 301000;
    assert.equal((await client.fetch('https://i.test/api')).status, 401);
    assert.equal(issued, 5, 'tried again after 10 cooldowns');
  } finally {
    Date.now = realNow;
    client.close();
  }
});

test("GatehouseClient (simulated Web Locks): tabs waiting on the refresh lock take the issuer's refusal of the holder's refresh, and try the token themselves after its network failure", { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let issued = 0;
  let mode = 'answer';
  const presented = [];
  const issuer = async (url, init) => {
    const form = new URLSearchParams(init.body);
    if (form.get('grant_type') === 'refresh_token') {
      presented.push(form.get('refresh_token'));
      if (mode === 'refuse') {
        return new Response('{"error":"temporarily_unavailable"}', { status: 503, headers: { 'retry-after': '7' } });
      }
      // A connection that drops: the issuer may have rotated the token before it did.
      if (mode === 'drop') throw new TypeError('fetch failed');
    }
    issued += 1;
    // Each login a session of its own (`s1`, `s2`), which the other tab takes as newer.
    const sid = form.get('grant_type') === 'password' ? `s${issued}` : 's1';
    return new Response(JSON.stringify({ ...tokenBody(issued), access_token: `${b64({ alg: 'none' })}.${b64({ sid, n: issued })}.x` }));
  };
  // SIMULATION of Web Locks (Node 20 has none), shared by the two "tabs" of this process: one
  // holder per name, `ifAvailable` answered with no lock, waiters queued. It does not prove the
  // browser's own lock manager; client.test.mjs runs the client on Chromium's.
  const held = new Map();
  const locks = {
    async request(name, options, callback) {
      if (typeof options === 'function') [callback, options] = [options, {}];
      if (options.ifAvailable && held.has(name)) return callback(null);
      while (held.has(name)) await held.get(name).promise;
      const lock = {};
      lock.promise = new Promise((resolve) => { lock.resolve = resolve; });
      held.set(name, lock);
      try {
        return await callback({ name });
      } finally {
        held.delete(name);
        lock.resolve();
      }
    },
  };
  assert.equal(globalThis.navigator, undefined, 'Node 20 has no navigator to stub over');
  globalThis.navigator = { locks };
  globalThis.document = {};
  const options = { issuer: 'https://i.test', fetch: issuer, autoRefresh: false, channelName: 'gatehouse:failing-holder' };
  const tabA = new GatehouseClient(options);
  const tabB = new GatehouseClient(options);
  // Tab A takes the lock (it waits 20 ms for messages on their way first), tab B then waits.
  const both = async () => {
    const holding = tabA.refresh();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(held.size, 1, 'tab A holds the refresh lock');
    return [holding, tabB.refresh()];
  };
  try {
    await Promise.all([tabA.ready, tabB.ready]);
    await tabA.login('alice', 'pw');
    for (let waited = 0; tabB.accessToken !== tabA.accessToken && waited < 5000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(tabB.accessToken, tabA.accessToken, 'the other tab got the tokens');

    // The issuer refuses (nothing rotated): tab B takes that answer at once, and sends nothing.
    // Before, it waited 2 s for tokens that would never come and asked again, before the
    // issuer's Retry-After.
    mode = 'refuse';
    const started = Date.now();
    let [holding, waiting] = await both();
    await assert.rejects(holding, (e) => e.code === 'temporarily_unavailable' && e.retryAfter === 7);
    await assert.rejects(waiting, (e) => e.code === 'temporarily_unavailable' && e.retryAfter === 7 && /another tab/.test(e.message));
    assert.ok(Date.now() - started < 1500, `tab B waited ${Date.now() - started} ms`);
    assert.deepEqual(presented, ['r1']);

    // Both tabs now wait out the issuer's Retry-After for r1: a refresh asks nothing.
    await assert.rejects(tabB.refresh(), (e) => e.code === 'temporarily_unavailable' && e.retryAfter > 0 && e.retryAfter <= 7);
    assert.deepEqual(presented, ['r1']);

    // A new session, whose refresh meets a dropped connection (the issuer may have rotated r2):
    // tab B, 2 s later, tries r2 itself, which inside the issuer's grace window gets the
    // successor. An earlier refusal is no answer for it.
    mode = 'answer';
    await tabA.login('alice', 'pw');
    for (let waited = 0; tabB.accessToken !== tabA.accessToken && waited < 5000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    mode = 'drop';
    [holding, waiting] = await both();
    await assert.rejects(holding, (e) => e.code === 'network_error');
    await assert.rejects(waiting, (e) => e.code === 'network_error' && !/another tab/.test(e.message));
    assert.deepEqual(presented, ['r1', 'r2', 'r2', 'r2', 'r2'], "each tab's request and its quick retry");
    // A second later (the back-off after a network failure), still inside the issuer's grace
    // window, a refresh asks again and is answered.
    mode = 'answer';
    await new Promise((r) => setTimeout(r, 1100));
    await tabB.refresh();
    assert.deepEqual(presented.slice(5), ['r2']);
  } finally {
    tabA.close();
    tabB.close();
    delete globalThis.navigator;
    delete globalThis.document;
  }
});

test('GatehouseClient: a tab takes the rotated tokens of its session even when the clock stepped back', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let issued = 0;
  const issuer = async () => {
    issued += 1;
    return new Response(JSON.stringify(tokenBody(issued, 600)));
  };
  globalThis.document = {};
  const options = { issuer: 'https://i.test', fetch: issuer, autoRefresh: false, channelName: 'gatehouse:clock' };
  const tabA = new GatehouseClient(options);
  const tabB = new GatehouseClient(options);
  const realNow = Date.now;
  try {
    await Promise.all([tabA.ready, tabB.ready]);
    await tabA.login('alice', 'pw');
    assert.ok(await settled(() => tabB.accessToken === tabA.accessToken), 'the other tab got the tokens');
    // NTP steps the clock back a minute; tab A then rotates r1.
    Date.now = () => realNow() - 60000;
    await tabA.refresh();
    assert.equal(tabA.accessToken.split('.')[1], b64({ sid: 's1', n: 2 }));
    assert.ok(await settled(() => tabB.accessToken === tabA.accessToken),
      'tab B kept the rotated-out refresh token, which its next refresh would reuse');
  } finally {
    Date.now = realNow;
    tabA.close();
    tabB.close();
    delete globalThis.document;
  }
});

test("GatehouseClient: after a failed refresh the app's calls keep the valid token and ask the issuer no sooner than it said", { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  // Tokens valid 4 s: due for a refresh after 2 s (half their life). The client's clock is
  // held still and moved by hand, so a slow machine cannot move it past a back-off.
  let answer = 'tokens';
  const refreshes = [];
  const issuer = async (url, init) => {
    const form = new URLSearchParams(init.body);
    if (form.get('grant_type') === 'refresh_token') {
      refreshes.push(answer);
      if (answer === 'down') throw new TypeError('fetch failed');
      if (answer === 'busy') return new Response('{"error":"rate_limited"}', { status: 429, headers: { 'retry-after': '30' } });
      // A proxy's idea of a back-off: held to 5 minutes.
      if (answer === 'proxy') return new Response('{"error":"temporarily_unavailable"}', { status: 503, headers: { 'retry-after': '1000000' } });
    }
    return new Response(JSON.stringify(tokenBody(refreshes.length + 1, 4)));
  };
  const realNow = Date.now;
  let now = realNow();
  Date.now = () => now;
  try {
    for (const [failure, code, sentPerFailure, most] of [['busy', 'rate_limited', 1, 30], ['proxy', 'temporarily_unavailable', 1, 300], ['down', 'network_error', 2, 1]]) {
      refreshes.length = 0;
      answer = 'tokens';
      const client = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
      try {
        await client.login('alice', 'pw');
        const held = client.accessToken;
        now += 2100;
        answer = failure;
        // Ten calls of an app while its token is due and the issuer refuses or is down.
        for (let i = 0; i < 10; i += 1) assert.equal(await client.getAccessToken(), held, `${failure}: the valid token`);
        assert.equal(refreshes.length, sentPerFailure, `${failure}: refreshes sent ${JSON.stringify(refreshes)}`);
        // An explicit refresh inside the back-off sends nothing and says how long is left.
        await assert.rejects(client.refresh(), (e) => e.code === code && e.retryAfter > 0 && e.retryAfter <= most);
        assert.equal(refreshes.length, sentPerFailure, `${failure}: refresh() sent during the back-off`);
        // Once it has passed, the next call asks again, and the issuer answers.
        answer = 'tokens';
        now += most * 1000 + 1;
        await client.refresh();
        assert.equal(refreshes.length, sentPerFailure + 1, `${failure}: asked again after ${most} s`);
      } finally {
        client.close();
      }
    }
  } finally {
    Date.now = realNow;
  }
});

test('GatehouseClient: gives up a hung token request after 4 s by default, inside the issuer grace window', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  // A fetch that aborts on the signal, and one of the app's own that drops it (which hung the
  // call, and under the refresh lock every tab's refreshes, before).
  const honours = (url, init) => new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
  const ignores = () => new Promise(() => {});
  // A 200 whose body never ends, from a fetch that drops the signal: the body was not bounded
  // before, only the answer's headers.
  const bodyHangs = async () => new Response(new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('{"access_token"')); } }));
  for (const hung of [honours, ignores, bodyHangs]) {
    const client = new GatehouseClient({ issuer: 'https://i.test', fetch: hung, autoRefresh: false });
    const started = Date.now();
    await assert.rejects(client.login('alice', 'pw'), (e) => e.code === 'network_error');
    const waited = Date.now() - started;
    // The bound, not a speed: under the 5 s grace, a retry that follows is still inside it.
    assert.ok(waited >= 3900 && waited < 5000, `${hung.name}: gave up after ${waited} ms`);
    client.close();
  }
});

test('GatehouseClient: after a network failure refreshes are asked again each second for 4 s, then every 5 s', { timeout: 60000 }, async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let down = false;
  let sent = 0;
  const issuer = async (url, init) => {
    const form = new URLSearchParams(init.body);
    if (form.get('grant_type') === 'refresh_token') {
      sent += 1;
      if (down) throw new TypeError('fetch failed');
    }
    return new Response(JSON.stringify(tokenBody(1, 600)));
  };
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false });
  try {
    await client.login('alice', 'pw');
    down = true;
    const attempt = () => client.refresh().catch((e) => e.code);
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 2, 'the request and its quick retry');
    offset += 500;
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 2, 'held back inside the second');
    // Inside the issuer's grace window (4 s of the first failure), each second.
    offset += 700;
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 4, 'asked again after a second');
    offset += 3200;
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 6, 'asked again, now past the window');
    // Past it no ask can get the successor: every 5 s, as the timer (1.6 requests a second
    // per tab for as long as the issuer is down, otherwise).
    offset += 1100;
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 6, 'held back for 5 s');
    offset += 4000;
    assert.equal(await attempt(), 'network_error');
    assert.equal(sent, 8);
  } finally {
    Date.now = realNow;
    client.close();
  }
});

test('the retry schedule: quick inside the grace window, then doubling with jitter up to a minute, Retry-After as the issuer says', async () => {
  const { nextTry, RETRY_MS, MAX_RETRY_MS, NETWORK_BACKOFF_MS } = await import('../../edge/js/npm/client-retry.js');
  const down = { code: 'temporarily_unavailable' };
  // Failures in a row without Retry-After: each wait between half its ceiling and the ceiling,
  // the ceiling doubling from RETRY_MS to MAX_RETRY_MS.
  for (const [random, share] of [[() => 0, 0.5], [() => 1, 1]]) {
    let held = null;
    let now = 0;
    const waits = [];
    for (let i = 0; i < 7; i += 1) {
      held = nextTry(held, down, now, random);
      waits.push(held.until - now);
      now = held.until;
    }
    const ceilings = [5, 10, 20, 40, 60, 60, 60].map((s) => s * 1000);
    assert.equal(RETRY_MS, ceilings[0]);
    assert.equal(MAX_RETRY_MS, ceilings.at(-1));
    assert.deepEqual(waits, ceilings.map((c) => c * share));
  }
  // Two pages failing together wait differently.
  const a = nextTry(null, down, 0, () => 0.1).until;
  const b = nextTry(null, down, 0, () => 0.9).until;
  assert.ok(a < b, `${a} ${b}`);

  // A network failure: a second apart for 4 s from the first, then the slow schedule.
  const lost = { code: 'network_error' };
  let held = nextTry(null, lost, 0, () => 1);
  assert.equal(held.until, NETWORK_BACKOFF_MS);
  held = nextTry(held, lost, 3000, () => 1);
  assert.equal(held.until, 3000 + NETWORK_BACKOFF_MS);
  held = nextTry(held, lost, 4000, () => 1);
  assert.equal(held.until, 4000 + RETRY_MS);
  held = nextTry(held, lost, 9000, () => 1);
  assert.equal(held.until, 9000 + 2 * RETRY_MS);

  // Retry-After wins, within 1 s and 5 minutes, and never shortens a wait already set.
  assert.equal(nextTry(null, { code: 'rate_limited', retryAfter: 7 }, 0).until, 7000);
  assert.equal(nextTry(null, { code: 'rate_limited', retryAfter: 0 }, 0).until, 1000);
  assert.equal(nextTry(null, { code: 'rate_limited', retryAfter: 1e6 }, 0).until, 300_000);
  assert.equal(nextTry({ until: 50_000 }, { code: 'rate_limited', retryAfter: 1 }, 0).until, 50_000);
});

test('GatehouseClient: fetch gives up on its signal while the token it needs is refreshed, and the refresh goes on', async () => {
  const { GatehouseClient } = await import(join(app, 'node_modules/@gatehouse/verify/node.js'));
  let release;
  const released = new Promise((r) => { release = r; });
  let apiCalls = 0;
  const issuer = async (input, init) => {
    const request = new Request(input, init);
    if (new URL(request.url).pathname.startsWith('/api/')) {
      apiCalls += 1;
      return new Response('{}');
    }
    const form = new URLSearchParams(await request.text());
    if (form.get('grant_type') === 'password') return new Response(JSON.stringify(tokenBody(1, 1)));
    await released;
    return new Response(JSON.stringify(tokenBody(2, 600)));
  };
  const client = new GatehouseClient({ issuer: 'https://i.test', fetch: issuer, autoRefresh: false, shareAcrossTabs: false });
  try {
    await client.login('alice', 'pw');
    const first = client.accessToken;
    // Expired: the next call must refresh before it can send.
    await new Promise((r) => setTimeout(r, 1100));
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(client.fetch('https://i.test/api/x', { signal: aborted.signal }), (e) => e.name === 'AbortError');
    const later = new AbortController();
    const pending = client.fetch('https://i.test/api/x', { signal: later.signal });
    setTimeout(() => later.abort(), 50);
    await assert.rejects(pending, (e) => e.name === 'AbortError');
    assert.equal(client.accessToken, first, 'still refreshing');
    release();
    assert.ok(await settled(() => client.accessToken !== first), 'the refresh went on');
    assert.equal(apiCalls, 0, 'nothing sent for an aborted call');
    assert.equal((await client.fetch('https://i.test/api/x')).status, 200);
  } finally {
    client.close();
  }
});
