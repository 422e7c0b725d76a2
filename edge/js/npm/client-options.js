// GatehouseClient's options, read and checked once: the issuer, where the access token may be
// sent, the timings, and whether tabs share the session.

import { GatehouseClientError } from './issuer-api.js';

// A request to the issuer is given up after this: with the quick retry, under its 5 s grace window.
const DEFAULT_TIMEOUT_SECONDS = 4;
/** Seconds from an option (a number or its text, as a build's environment variable is),
 * checked: a NaN from an unset variable would refresh in a loop. */
const seconds = (name, value, fallback, { min = 0, max = Infinity } = {}) => {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : (value ?? fallback);
  if (typeof n !== 'number' || !(n >= min && n <= max)) {
    throw new GatehouseClientError('invalid_options', `${name} must be a number of seconds from ${min} to ${max}`);
  }
  return n;
};

// Every option: a misspelt one (`refreshAhead`) would otherwise keep its default without a word.
const NAMES = ['issuer', 'clientId', 'apiOrigins', 'fetch', 'storage', 'refreshAheadSeconds', 'autoRefresh', 'requestTimeoutSeconds', 'shareAcrossTabs', 'channelName'];
/** A switch: true, false, or their text (`'false'` is not true). */
const flag = (name, value, fallback) => {
  const text = String(value ?? fallback);
  if (text !== 'true' && text !== 'false') throw new GatehouseClientError('invalid_options', `${name} must be true or false`);
  return text === 'true';
};

/** The client's settings from `options` (README.md, "GatehouseClient"); `invalid_options` for
 * one that cannot be used. */
export function readOptions(options) {
  for (const name of Object.keys(options)) {
    if (!NAMES.includes(name)) throw new GatehouseClientError('invalid_options', `${name} is not an option`);
  }
  // A bare `auth.example.com` would be a path of the page: the password would go there. A path
  // must stay on the page's host once the client's own paths follow it (`${issuer}/v1/token`):
  // `//auth`, `/\auth` or `/\t/auth` (URL parsing drops tabs and line breaks) name the host
  // `auth`, and `//` (`/` once its trailing slash goes) or `/\t` the host `v1`. No URL needs
  // whitespace or a control character: any is refused.
  const issuer = String(options.issuer ?? '').replace(/\/$/, '');
  const onPage = (text) => {
    try {
      return new URL(text, 'https://page.invalid').host === 'page.invalid';
    } catch {
      return false; // `//a b`: no URL at all
    }
  };
  const path = issuer.startsWith('/') && onPage(`${issuer}/v1/token`);
  if (/[\s\0-\x1f\x7f]/.test(issuer) || (issuer && !path && !/^https?:\/\//i.test(issuer))) {
    throw new GatehouseClientError('invalid_options', `issuer: ${issuer} is no http(s) URL or /path`);
  }
  // Where `fetch` may send the access token: this page's origin, the issuer's, and those the
  // app names. Any other origin would receive a bearer token it could replay.
  const here = globalThis.location?.origin;
  const origin = (text, base) => {
    try {
      return new URL(text, base).origin;
    } catch {
      return 'null';
    }
  };
  // The issuer may be relative to the page (same origin); off a page (server-side rendering)
  // a relative issuer names no origin and is left out. `apiOrigins` are absolute: a bare
  // `api.example.com` would otherwise be read as a path of this page.
  if (here && here !== 'null' && issuer && origin(issuer, here) === 'null') {
    throw new GatehouseClientError('invalid_options', `issuer: ${issuer} is not a URL`);
  }
  const allowed = [here, issuer && origin(issuer, here)].filter((o) => o && o !== 'null');
  for (const o of options.apiOrigins ?? []) {
    const absolute = origin(String(o));
    if (!/^https?:\/\//.test(absolute)) throw new GatehouseClientError('invalid_options', `apiOrigins: ${o} is not an absolute http(s) URL`);
    allowed.push(absolute);
  }
  const origins = new Set(allowed);
  // Called as a plain function: a browser's `fetch` called on another object (this client)
  // throws "Illegal invocation".
  const fetchWith = options.fetch;
  if (fetchWith !== undefined && typeof fetchWith !== 'function') throw new GatehouseClientError('invalid_options', 'fetch must be a function');
  const fetch = fetchWith ? (...args) => fetchWith(...args) : (...args) => globalThis.fetch(...args);
  const storage = options.storage ?? null;
  const refreshAhead = seconds('refreshAheadSeconds', options.refreshAheadSeconds, 60);
  // On by default on a page only (no `document`: Node, Deno, a Web Worker): on a server a
  // client's timer would keep Node running, and a client made per request and never closed
  // would rotate its user's token for as long as the process lives. `getAccessToken()`
  // refreshes when needed either way.
  const autoRefresh = flag('autoRefresh', options.autoRefresh, typeof globalThis.document !== 'undefined');
  // Under the issuer's default grace window (5 s): a rotation whose answer is lost is asked
  // again once this runs out, and only an ask within the window gets the same successor.
  const requestTimeoutMs = seconds('requestTimeoutSeconds', options.requestTimeoutSeconds, DEFAULT_TIMEOUT_SECONDS, { min: 0.001, max: 3600 }) * 1000;
  const share = flag('shareAcrossTabs', options.shareAcrossTabs, true);
  // Only its type here (an unset build variable's `''` would quietly name no client); its
  // characters by the issuer (a login under one it cannot take is `invalid_request`): the
  // browser entry's bytes are budgeted (docs/performance.md, row 4).
  const { clientId } = options;
  if (clientId !== undefined && !(typeof clientId === 'string' && clientId)) throw new GatehouseClientError('invalid_options', 'clientId must be a string');
  // Two apps of one origin under different client ids keep apart: a session is bound to its
  // client, and one app refreshing the other's would be refused and sign every tab out.
  const name = options.channelName ?? `gatehouse:${issuer || here || ''}${clientId ? ` client:${clientId}` : ''}`;

  // Tabs only: on a server (Node has BroadcastChannel too) a channel would keep the process
  // alive and hand one user's tokens to another instance.
  const tabs = share && typeof BroadcastChannel === 'function' && typeof globalThis.document !== 'undefined';
  return { issuer, clientId, origins, fetch, storage, refreshAhead, autoRefresh, requestTimeoutMs, name, tabs };
}
