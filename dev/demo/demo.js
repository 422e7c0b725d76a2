// The demo page's logic: plain DOM; the package's GatehouseClient holds and refreshes the tokens
// (in memory, shared with other tabs), its wasm core decodes, verifies and counts down.
import init, { GatehouseClient, Verifier, decodeUnverified, expiresIn, GatehouseError } from '/pkg/index.js';

const $ = (id) => document.getElementById(id);
const audience = document.querySelector('meta[name="gatehouse-audience"]').content;
// The issuer is reached through the origin's `/issuer/*` proxy: same origin, no CORS.
const client = new GatehouseClient({ issuer: '/issuer', clientId: 'gatehouse-demo' });
let verifier = null;
// After logout the demo keeps the last access token, to show the edge refusing it.
let loggedOutToken = null;

function say(text, good = true) {
  $('status').textContent = text;
  $('status').className = good ? 'ok' : 'bad';
}

async function loadVerifier() {
  const meta = await (await fetch('/issuer/.well-known/oauth-authorization-server')).json();
  const jwks = await (await fetch('/issuer/.well-known/jwks.json')).json();
  verifier = new Verifier(jwks, { issuer: meta.issuer, audience });
}

function show() {
  const token = client.accessToken;
  if (!token) return;
  const { header, claims } = decodeUnverified(token);
  $('claims').textContent = JSON.stringify({ header, claims }, null, 2);
  try {
    verifier.verify(token);
    $('verified').textContent = 'verified';
    $('verified').className = 'ok';
  } catch (e) {
    $('verified').textContent = e instanceof GatehouseError ? `invalid (${e.code})` : String(e);
    $('verified').className = 'bad';
  }
  for (const id of ['refresh', 'logout', 'call']) $(id).disabled = false;
}

function tick() {
  if (!client.accessToken) return;
  const left = Math.max(0, expiresIn(client.accessToken));
  $('countdown').textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} (${left} s)`;
}

$('register').onclick = async () => {
  const { status, body } = await fetch('/issuer/v1/users', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: $('username').value, password: $('password').value }),
  }).then(async (r) => ({ status: r.status, body: await r.json() }));
  say(status === 201 ? `Registered ${body.username}.` : `Registration failed: ${body.error_description}`, status === 201);
};

$('login').onclick = async () => {
  try {
    await client.login($('username').value, $('password').value);
  } catch (e) {
    return say(`Login failed: ${e.message}`, false);
  }
  loggedOutToken = null;
  say(`Logged in as ${$('username').value}.`);
  show();
  tick();
};

$('refresh').onclick = async () => {
  try {
    await client.refresh();
  } catch (e) {
    return say(`Refresh failed: ${e.message}`, false);
  }
  say('Refreshed: new access and refresh tokens.');
};

$('logout').onclick = async () => {
  loggedOutToken = client.accessToken;
  await client.logout();
  say('Logged out. The old access token is kept to show the edge refusing it.');
  $('refresh').disabled = true;
  $('logout').disabled = true;
};

$('call').onclick = async () => {
  let res;
  try {
    res = client.signedIn
      ? await client.fetch('/api/whoami')
      : await fetch('/api/whoami', { headers: { authorization: `Bearer ${loggedOutToken}` } });
  } catch (e) {
    // The client's own refusal: `session_revoked` when the issuer refused the refresh that a
    // `revoked` answer asked for, `network_error` when it could not be reached.
    $('api-status').textContent = e.code ?? String(e);
    $('api-status').className = 'bad';
    return;
  }
  $('api-status').textContent = String(res.status);
  $('api-status').className = res.ok ? 'ok' : 'bad';
  $('api-body').textContent = JSON.stringify(await res.json(), null, 2);
};

// Refreshes by the client's timer, or by another tab, show up here too.
client.on('refreshed', () => { show(); tick(); });
client.on('sessionRevoked', () => say('The session was revoked.', false));

await init();
await loadVerifier();
await client.ready;
if (client.signedIn) show();
setInterval(tick, 1000);
document.body.dataset.ready = 'true';
