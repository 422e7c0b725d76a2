// GatehouseClient in headless Chromium, from the packed tarball: two tabs of one app against the
// real issuer, behind a same-origin proxy that counts refresh-token rotations. The issuer has no
// grace window here, so a second rotation of one refresh token would end the session.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join, normalize } from 'node:path';

import { PASSWORD, freePort, installPacked, launchChromium, root, sendFile, startIssuer } from './harness.mjs';

// Long enough that a loaded machine's slow page calls stay within one token's life (4 s was
// not), short enough that waiting one out keeps the suite quick.
const ACCESS_TTL_SECS = 10;
let pkgDir;
let browser;
let site;
const sites = [];

/** The real issuer behind a same-origin proxy that also serves the app page and the package. */
async function startSite(issuerEnv, { skewSeconds = 600 } = {}) {
  const issuer = await startIssuer({
    GATEHOUSE_ACCESS_TOKEN_TTL_SECS: String(ACCESS_TTL_SECS),
    GATEHOUSE_LEEWAY_SECS: '0',
    ...issuerEnv,
  });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const seen = { refreshGrants: 0, revokes: [], lastRefreshToken: null };
  const server = createServer(async (req, res) => {
    const path = normalize(new URL(req.url, base).pathname).replace(/^(\.\.[/\\])+/, '');
    if (path.startsWith('/v1/')) {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const body = Buffer.concat(chunks);
      if (body.includes('grant_type=refresh_token')) seen.refreshGrants += 1;
      const upstream = await fetch(`${issuer.url}${req.url}`, {
        method: req.method,
        headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host')),
        body: req.method === 'GET' ? undefined : body,
      });
      let text = await upstream.text();
      if (path === '/v1/revoke') seen.revokes.push(upstream.status);
      // The app's clock runs ten minutes behind: it believes tokens live longer than they do,
      // so the edge's `expired` (here the issuer's, same contract) is what tells it.
      if (path === '/v1/token' && upstream.ok) {
        const json = JSON.parse(text);
        seen.lastRefreshToken = json.refresh_token;
        json.expires_in += skewSeconds;
        text = JSON.stringify(json);
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' }).end(text);
      return;
    }
    const file = path === '/client.html' ? join(root, 'tests/js/bundlers/client.html') : join(pkgDir, path.replace(/^\/pkg\//, ''));
    sendFile(res, file);
  });
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  const started = { issuer, base, seen, close: () => { server.close(); issuer.stop(); } };
  sites.push(started);
  return started;
}

before(async () => {
  pkgDir = join(installPacked().app, 'node_modules/@gatehouse/verify');
  // No grace window: a second rotation of one refresh token ends the session.
  site = await startSite({ GATEHOUSE_REFRESH_GRACE_SECS: '0' });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const s of sites) s.close();
});

async function tab(context, query = '', at = site) {
  const page = await context.newPage();
  await page.goto(`${at.base}/client.html${query}`);
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
  return page;
}

const me = (page) => page.evaluate(async () => {
  const r = await window.client.fetch('/v1/me');
  return { status: r.status, body: await r.json() };
});

test('two tabs: one login, one rotation for two simultaneous refreshes, a retry on expired, a revoked session signs both out', { timeout: 120000 }, async () => {
  // Registered through the issuer itself; the tabs only log in.
  await site.issuer.user('two-tabs');
  const context = await browser.newContext();
  const [a, b] = [await tab(context), await tab(context)];

  await a.evaluate(([u, p]) => window.client.login(u, p), ['two-tabs', PASSWORD]);
  await b.waitForFunction(() => window.client.signedIn);
  const first = await a.evaluate(() => window.client.accessToken);
  assert.equal(await b.evaluate(() => window.client.accessToken), first, 'the second tab got the session');

  // Both tabs refresh at the same moment (2 s ahead, so a slow evaluate still starts in time).
  const at = Date.now() + 2000;
  await Promise.all([a, b].map((page) => page.evaluate(async (when) => {
    await new Promise((r) => setTimeout(r, when - Date.now()));
    await window.client.refresh();
  }, at)));
  assert.equal(site.seen.refreshGrants, 1, 'exactly one rotation at the issuer');
  const second = await a.evaluate(() => window.client.accessToken);
  assert.notEqual(second, first);
  assert.equal(await b.evaluate(() => window.client.accessToken), second);
  for (const page of [a, b]) assert.equal((await me(page)).status, 200, 'both tabs stay signed in');
  const withRequest = await a.evaluate(async () => (await window.client.fetch(new Request('/v1/me', { headers: { accept: 'application/json' } }))).status);
  assert.equal(withRequest, 200, 'a Request object keeps its headers and gets the token');

  // The app thinks its token is good for ten more minutes; the issuer says expired.
  await new Promise((r) => setTimeout(r, (ACCESS_TTL_SECS + 1) * 1000));
  const retried = await b.evaluate(async () => {
    const r = await window.client.fetch('/v1/me');
    return { status: r.status, body: await r.json() };
  });
  assert.equal(retried.status, 200, JSON.stringify(retried.body));
  assert.equal(site.seen.refreshGrants, 2, 'one refresh for the expired answer, then one retry');
  assert.equal(await a.evaluate(() => window.client.accessToken), await b.evaluate(() => window.client.accessToken));

  // Concurrent callers in one tab share one refresh.
  await a.evaluate(() => Promise.all([window.client.refresh(), window.client.refresh(), window.client.refresh()]));
  assert.equal(site.seen.refreshGrants, 3, 'three concurrent refresh() calls, one rotation');

  // The user signs out everywhere from another device: both tabs learn it.
  const other = await site.issuer.user('two-tabs', { register: false });
  const cut = await fetch(`${site.issuer.url}/v1/logout/all`, { method: 'POST', headers: { authorization: `Bearer ${other.access_token}` } });
  assert.equal(cut.status, 200);
  // The edge's `revoked` is tried with a refresh first, which the issuer refuses.
  const after = await a.evaluate(() => window.client.fetch('/v1/me').then((r) => r.status, (e) => e.code));
  assert.equal(after, 'session_revoked');
  await b.waitForFunction(() => !window.client.signedIn);
  for (const page of [a, b]) {
    assert.equal(await page.evaluate(() => window.client.accessToken), undefined);
    const events = await page.evaluate(() => window.events);
    assert.deepEqual(events, ['signedIn', 'refreshed', 'refreshed', 'refreshed', 'sessionRevoked'], 'events in each tab');
  }
  await context.close();
});

test('two tabs with the refresh timer: it fires in both, one rotation; logout signs both out', { timeout: 120000 }, async () => {
  // The app's clock right and tokens of 10 s: the timer is due halfway, 5 s after login, in
  // both tabs at once. No grace window: a second rotation would end the session.
  const timed = await startSite({ GATEHOUSE_REFRESH_GRACE_SECS: '0' }, { skewSeconds: 0 });
  await timed.issuer.user('timers');
  const context = await browser.newContext();
  const [a, b] = [await tab(context, '?ahead=60', timed), await tab(context, '?ahead=60', timed)];
  // Counts each tab's refreshes by their requests for Chromium's refresh lock, which only a
  // refresh takes: a tab that merely receives the other's tokens asks for none.
  for (const page of [a, b]) {
    await page.evaluate(() => {
      const locks = navigator.locks;
      const request = locks.request.bind(locks);
      window.refreshLockRequests = 0;
      locks.request = (name, ...rest) => {
        if (String(name).endsWith(':refresh')) window.refreshLockRequests += 1;
        return request(name, ...rest);
      };
    });
  }
  await a.evaluate(([u, p]) => window.client.login(u, p), ['timers', PASSWORD]);
  await b.waitForFunction(() => window.client.signedIn);
  const before = timed.seen.refreshGrants;
  const first = await a.evaluate(() => window.client.accessToken);
  await a.waitForFunction((t) => window.client.accessToken !== t, first, { timeout: 15000 });
  await b.waitForFunction((t) => window.client.accessToken !== t, first, { timeout: 15000 });
  assert.equal(timed.seen.refreshGrants, before + 1, 'one rotation');
  for (const page of [a, b]) {
    assert.ok(await page.evaluate(() => window.refreshLockRequests) >= 1, "a tab's timer did not fire");
  }
  assert.equal(await a.evaluate(() => window.client.accessToken), await b.evaluate(() => window.client.accessToken));

  // Clients of another issuer on this origin (a second app on the page, say), with the default
  // channel name or this one's, take none of these tokens: their `fetch` would send them to
  // their own API origins, and their refresh to their own issuer.
  const taken = await b.evaluate(async () => {
    const name = window.client.storageKey.replace(/:tokens$/, '');
    const others = [
      new window.GatehouseClient({ issuer: 'https://other-issuer.example', autoRefresh: false }),
      new window.GatehouseClient({ issuer: 'https://other-issuer.example', autoRefresh: false, channelName: name }),
    ];
    await Promise.all(others.map((c) => c.ready));
    const signedIn = others.map((c) => c.signedIn);
    others.forEach((c) => c.close());
    return signedIn;
  });
  assert.deepEqual(taken, [false, false], "a client of another issuer took this session's tokens");
  const lastToken = await b.evaluate(() => window.client.accessToken);
  await b.evaluate(() => window.client.logout());
  await a.waitForFunction(() => !window.client.signedIn);
  const revoked = await fetch(`${timed.issuer.url}/v1/me`, { headers: { authorization: `Bearer ${lastToken}` } });
  assert.equal(revoked.status, 401, 'the issuer ended the session');
  for (const page of [a, b]) {
    const events = await page.evaluate(() => window.events);
    assert.equal(events.at(-1), 'signedOut', events.join(' '));
    assert.ok(events.includes('refreshed'), events.join(' '));
  }
  const grantsAfterLogout = timed.seen.refreshGrants;
  // Past the next refresh a timer would have made (halfway through a token's life).
  await new Promise((r) => setTimeout(r, (ACCESS_TTL_SECS / 2 + 1) * 1000));
  assert.equal(timed.seen.refreshGrants, grantsAfterLogout, 'no timer outlives the logout');
  await context.close();
});

test('a revoked access token alone is replaced through a refresh, and the session goes on', { timeout: 120000 }, async () => {
  await site.issuer.user('one-token');
  const context = await browser.newContext();
  const page = await tab(context);
  await page.evaluate(([u, p]) => window.client.login(u, p), ['one-token', PASSWORD]);
  const first = await page.evaluate(() => window.client.accessToken);
  // The user revokes this token alone (RFC 7009), as a leaked-key revocation would too.
  const revoked = await fetch(`${site.issuer.url}/v1/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${first}` },
    body: new URLSearchParams({ token: first }),
  });
  assert.equal(revoked.status, 200);
  const grants = site.seen.refreshGrants;
  const answer = await me(page);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(site.seen.refreshGrants, grants + 1, 'one refresh, then the request again');
  assert.notEqual(await page.evaluate(() => window.client.accessToken), first);
  assert.deepEqual(await page.evaluate(() => window.events), ['signedIn', 'refreshed'], 'still signed in');
  await context.close();
});

test('a logout the issuer did not hear of can be retried, so the session is not left alive there', { timeout: 120000 }, async () => {
  await site.issuer.user('retry-logout');
  const context = await browser.newContext();
  const page = await tab(context);
  const result = await page.evaluate(async ([u, p]) => {
    let offline = true;
    const client = new window.GatehouseClient({
      shareAcrossTabs: false,
      fetch: (input, init) => (String(input).endsWith('/v1/revoke') && offline
        ? Promise.reject(new TypeError('offline'))
        : fetch(input, init)),
    });
    await client.login(u, p);
    const error = await client.logout().then(() => null, (e) => e);
    offline = false;
    await error.retry();
    return { code: error.code, signedIn: client.signedIn };
  }, ['retry-logout', PASSWORD]);
  assert.deepEqual(result, { code: 'logout_failed', signedIn: false });
  const after = await fetch(`${site.issuer.url}/v1/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: site.seen.lastRefreshToken }),
  });
  assert.equal(after.status, 400, 'the retried logout ended the session at the issuer');
  await context.close();
});

test('a logout after the access token expired ends the session at the issuer, with no refresh first, and after close() in every tab', { timeout: 120000 }, async () => {
  // The app's clock right, no refresh timer: the token of 10 s is stale when the user logs out.
  const idle = await startSite({}, { skewSeconds: 0 });
  await idle.issuer.user('idle');
  const context = await browser.newContext();
  const page = await tab(context, '', idle);
  const other = await tab(context, '', idle);
  await page.evaluate(([u, p]) => window.client.login(u, p), ['idle', PASSWORD]);
  await other.waitForFunction(() => window.client.signedIn);
  await new Promise((r) => setTimeout(r, (ACCESS_TTL_SECS + 1) * 1000));
  // Closed first (an app tearing its client down as the user signs out): the logout still
  // signs the other tab out. Before, it did not, the channel being closed.
  await page.evaluate(async () => {
    window.client.close();
    await window.client.logout();
  });
  await other.waitForFunction(() => !window.client.signedIn, undefined, { timeout: 5000 });
  assert.deepEqual(idle.seen.revokes, [200], 'the issuer took the logout');
  assert.equal(idle.seen.refreshGrants, 0, 'the refresh token alone ends the session');
  assert.equal(await page.evaluate(() => window.client.signedIn), false);
  const after = await fetch(`${idle.issuer.url}/v1/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: idle.seen.lastRefreshToken }),
  });
  assert.equal(after.status, 400, 'the session ended at the issuer');
  await context.close();
});

test('without Web Locks: two tabs refreshing at once both stay signed in, inside the issuer grace window', { timeout: 120000 }, async () => {
  // The issuer's default: a repeated rotation within 5 s gets the same successor.
  const graceful = await startSite({});
  await graceful.issuer.user('no-locks');
  const context = await browser.newContext();
  const [a, b] = [await tab(context, '?nolocks', graceful), await tab(context, '?nolocks', graceful)];
  assert.equal(await a.evaluate(() => navigator.locks), undefined);
  await a.evaluate(([u, p]) => window.client.login(u, p), ['no-locks', PASSWORD]);
  await b.waitForFunction(() => window.client.signedIn);
  const at = Date.now() + 500;
  await Promise.all([a, b].map((page) => page.evaluate(async (when) => {
    await new Promise((r) => setTimeout(r, when - Date.now()));
    await window.client.refresh();
  }, at)));
  // Both tabs call the issuer, unless one saw the other's new tokens during its short settle.
  assert.ok([1, 2].includes(graceful.seen.refreshGrants), `${graceful.seen.refreshGrants} rotations`);
  for (const page of [a, b]) {
    assert.equal(await page.evaluate(() => window.client.signedIn), true);
    assert.equal((await me(page)).status, 200, 'both tabs stay signed in');
  }
  // The session survived: its next rotation works.
  await a.evaluate(() => window.client.refresh());
  assert.equal((await me(b)).status, 200);
  await context.close();
});

test('near the end of its session the refresh timer stops instead of looping', { timeout: 120000 }, async () => {
  // Sessions of 8 s, access tokens of 4 s, the app's clock right: each refresh is due halfway
  // through a token's life, and the issuer caps the last token at the session's end.
  const short = await startSite({ GATEHOUSE_SESSION_TTL_SECS: '8', GATEHOUSE_ACCESS_TOKEN_TTL_SECS: '4' }, { skewSeconds: 0 });
  await short.issuer.user('short-session');
  const context = await browser.newContext();
  const page = await tab(context, '?ahead=60', short);
  await page.evaluate(([u, p]) => window.client.login(u, p), ['short-session', PASSWORD]);
  // The session ends after 8 s; the bound only guards a hang.
  await page.waitForFunction(() => !window.client.signedIn, null, { timeout: 60000 });
  // Every 2 s until the token capped at the session's end, then once when it has expired: the
  // issuer refuses that one and the tab signs out (before, it kept the expired token, signed in).
  // Four or five: the issuer counts whole seconds, so a login late in its second gets lives of
  // 4, 4, 3, 2, 1 s, none shrunk enough to read as capped. A loop would make dozens.
  const grants = short.seen.refreshGrants;
  assert.ok(grants >= 2 && grants <= 6, `${grants} refreshes in a session of 8 s`);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(short.seen.refreshGrants, grants, 'no refresh after signing out');
  await context.close();
});

test('the token goes only to this origin, the issuer and apiOrigins: another origin gets nothing', { timeout: 120000 }, async () => {
  // Two servers on other origins (CORS open), recording the Authorization header they get.
  const received = [];
  const listen = async () => {
    const server = createServer((req, res) => {
      const cors = { 'access-control-allow-origin': site.base, 'access-control-allow-headers': 'authorization' };
      if (req.method !== 'OPTIONS') received.push({ port: server.address().port, authorization: req.headers.authorization });
      res.writeHead(req.method === 'OPTIONS' ? 204 : 200, cors).end();
    });
    await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
    return server;
  };
  const [api, stranger] = [await listen(), await listen()];
  const originOf = (server) => `http://127.0.0.1:${server.address().port}`;
  try {
    await site.issuer.user('origins');
    const context = await browser.newContext();
    const page = await tab(context, `?api=${encodeURIComponent(originOf(api))}`);
    await page.evaluate(([u, p]) => window.client.login(u, p), ['origins', PASSWORD]);
    const token = await page.evaluate(() => window.client.accessToken);

    const call = (url) => page.evaluate(async (u) => {
      try {
        return { status: (await window.client.fetch(u)).status };
      } catch (e) {
        return { code: e.code };
      }
    }, url);
    assert.deepEqual(await call(`${originOf(stranger)}/collect`), { code: 'origin_not_allowed' });
    assert.deepEqual(await call(`${originOf(api)}/items`), { status: 200 });
    assert.equal((await me(page)).status, 200, 'this origin still gets the token');
    assert.deepEqual(received, [{ port: api.address().port, authorization: `Bearer ${token}` }], 'only the listed API was called');
    await context.close();
  } finally {
    api.close();
    stranger.close();
  }
});
