// The demo page's logic: plain DOM, the wasm package for decoding, verifying and the countdown.
import init, { Verifier, decodeUnverified, expiresIn, GatehouseError } from '/pkg/index.js';

const $ = (id) => document.getElementById(id);
const audience = document.querySelector('meta[name="gatehouse-audience"]').content;
let tokens = null;
let verifier = null;

function say(text, good = true) {
  $('status').textContent = text;
  $('status').className = good ? 'ok' : 'bad';
}

async function form(path, fields, bearer) {
  const headers = bearer ? { authorization: `Bearer ${bearer}` } : {};
  const res = await fetch(`/issuer${path}`, { method: 'POST', headers, body: fields ? new URLSearchParams(fields) : undefined });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

async function loadVerifier() {
  const meta = await (await fetch('/issuer/.well-known/oauth-authorization-server')).json();
  const jwks = await (await fetch('/issuer/.well-known/jwks.json')).json();
  verifier = new Verifier(jwks, { issuer: meta.issuer, audience });
}

function show() {
  const { header, claims } = decodeUnverified(tokens.access_token);
  $('claims').textContent = JSON.stringify({ header, claims }, null, 2);
  try {
    verifier.verify(tokens.access_token);
    $('verified').textContent = 'verified';
    $('verified').className = 'ok';
  } catch (e) {
    $('verified').textContent = e instanceof GatehouseError ? `invalid (${e.code})` : String(e);
    $('verified').className = 'bad';
  }
  for (const id of ['refresh', 'logout', 'call']) $(id).disabled = false;
}

function tick() {
  if (!tokens) return;
  const left = Math.max(0, expiresIn(tokens.access_token));
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
  const { status, body } = await form('/v1/token', { grant_type: 'password', username: $('username').value, password: $('password').value });
  if (status !== 200) return say(`Login failed: ${body.error_description}`, false);
  tokens = body;
  say(`Logged in as ${$('username').value}.`);
  show();
  tick();
};

$('refresh').onclick = async () => {
  const { status, body } = await form('/v1/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  if (status !== 200) return say(`Refresh failed: ${body.error_description}`, false);
  tokens = body;
  say('Refreshed: new access and refresh tokens.');
  show();
  tick();
};

$('logout').onclick = async () => {
  const { status } = await form('/v1/logout', null, tokens.access_token);
  say(status === 200 ? 'Logged out. The old access token is kept to show the edge refusing it.' : `Logout failed (${status})`, status === 200);
  $('refresh').disabled = true;
  $('logout').disabled = true;
};

$('call').onclick = async () => {
  const res = await fetch('/api/whoami', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  $('api-status').textContent = String(res.status);
  $('api-status').className = res.ok ? 'ok' : 'bad';
  $('api-body').textContent = JSON.stringify(await res.json(), null, 2);
};

await init();
await loadVerifier();
setInterval(tick, 1000);
document.body.dataset.ready = 'true';
