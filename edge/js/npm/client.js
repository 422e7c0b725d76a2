// GatehouseClient: what a browser app needs around its tokens, as auth SDKs provide it: log in,
// keep the tokens, refresh ahead of expiry, one refresh at a time across calls and tabs, a
// `fetch` that attaches the token and retries once when the edge says it expired, logout, and
// events. It talks to the issuer's OAuth2 endpoints (`/v1/token`, `/v1/logout`).
//
// Storage: by default the tokens live only in memory (nothing for an XSS payload to read from
// storage after the fact); tabs of one origin share them over a BroadcastChannel, and a new tab
// asks the others for them. Pass `storage` (sessionStorage, localStorage or any
// getItem/setItem/removeItem object) to keep them across reloads, knowing what that exposes.
//
// Refreshes: the issuer rotates the refresh token on every use and treats a second rotation
// of one token after its grace window as theft, ending the session. So a refresh runs under a
// Web Lock (`navigator.locks`) shared by every tab; a tab that finds the lock held waits for the
// holder's broadcast tokens and does not call the issuer. Without Web Locks, refreshes are
// single-flight within a tab, and two tabs racing fall inside the issuer's grace window, which
// hands both the same successor.

const LOCK = 'gatehouse-refresh';
// A tab that got the refresh lock at once still lets messages already on their way arrive.
const SETTLE_MS = 20;
// A tab that had to wait for the lock waits this long for the holder's new tokens.
const HANDOVER_MS = 2000;

export class GatehouseClient {
  #issuer;
  #fetch;
  #storage;
  #refreshAhead;
  #autoRefresh;
  #channel;
  #tokens = null;
  #refreshing = null;
  #timer = null;
  #listeners = new Map();
  #waiters = new Set();

  constructor(options = {}) {
    this.#issuer = (options.issuer ?? '').replace(/\/$/, '');
    this.#fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.#storage = options.storage ?? null;
    this.#refreshAhead = options.refreshAheadSeconds ?? 60;
    this.#autoRefresh = options.autoRefresh ?? true;
    const name = options.channelName ?? 'gatehouse';
    this.#channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(name) : null;
    this.#channel?.addEventListener('message', (e) => this.#onMessage(e.data));
    const stored = this.#storage?.getItem(`${name}:tokens`);
    this.storageKey = `${name}:tokens`;
    if (stored) this.#set(JSON.parse(stored), null);
    /** Resolves once other tabs had a moment to hand over a session they hold. */
    this.ready = this.#tokens ? Promise.resolve() : this.#askOtherTabs();
  }

  /** The current access token, or `undefined` when signed out. */
  get accessToken() {
    return this.#tokens?.accessToken;
  }

  get signedIn() {
    return this.#tokens !== null;
  }

  /** `on('signedIn' | 'refreshed' | 'signedOut' | 'sessionRevoked', handler)`; returns an unsubscribe. */
  on(event, handler) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(handler);
    return () => this.#listeners.get(event)?.delete(handler);
  }

  async login(username, password, scope) {
    const form = { grant_type: 'password', username, password };
    if (scope) form.scope = scope;
    const response = await this.#token(form);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new GatehouseClientError(body.error ?? 'login_failed', body.error_description ?? `HTTP ${response.status}`);
    this.#set(tokensOf(body), 'signedIn');
  }

  /** A fresh access token: refreshed first when it expires within `refreshAheadSeconds`. */
  async getAccessToken() {
    const tokens = this.#tokens;
    if (!tokens) return undefined;
    if (Date.now() >= tokens.expiresAt - this.#refreshAhead * 1000) await this.refresh();
    return this.#tokens?.accessToken;
  }

  /** Rotates the refresh token once, however many callers and tabs ask at the same moment. */
  refresh() {
    const stale = this.#tokens?.refreshToken;
    if (!stale) return Promise.reject(new GatehouseClientError('signed_out', 'no session to refresh'));
    this.#refreshing ??= this.#exclusive(async (contended) => {
      // Another tab held the lock: it was refreshing this very token, so wait for its tokens.
      await this.#changed(stale, contended ? HANDOVER_MS : SETTLE_MS);
      if (this.#tokens?.refreshToken !== stale) return; // another tab refreshed (or signed out)
      const response = await this.#token({ grant_type: 'refresh_token', refresh_token: stale });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        this.#set(tokensOf(body), 'refreshed');
      } else if (body.error === 'invalid_grant') {
        this.#end('sessionRevoked');
        throw new GatehouseClientError('session_revoked', body.error_description ?? 'the session has ended');
      } else {
        throw new GatehouseClientError(body.error ?? 'refresh_failed', body.error_description ?? `HTTP ${response.status}`);
      }
    }).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /**
   * `fetch` with `Authorization: Bearer`. On the edge's `expired` answer it refreshes and sends
   * the request once more (so its body must be replayable: a string, FormData, a Blob); on
   * `revoked` the session ends in every tab.
   */
  async fetch(input, init = {}) {
    const send = (token) => {
      const headers = new Headers(init.headers);
      if (token) headers.set('authorization', `Bearer ${token}`);
      return this.#fetch(input, { ...init, headers });
    };
    const token = await this.getAccessToken();
    const response = await send(token);
    if (response.status !== 401 || !token) return response;
    const code = await response.clone().json().then((b) => b.code, () => undefined);
    if (code === 'revoked') this.#end('sessionRevoked');
    if (code !== 'expired') return response;
    if (this.#tokens?.accessToken === token) await this.refresh();
    return send(this.#tokens?.accessToken);
  }

  /** Ends the session at the issuer and in every tab. */
  async logout() {
    const token = this.#tokens?.accessToken;
    this.#end('signedOut');
    if (token) {
      await this.#fetch(`${this.#issuer}/v1/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
        .catch(() => {});
    }
  }

  /** Stops timers and leaves the tab channel (the tokens stay where they are). */
  close() {
    clearTimeout(this.#timer);
    this.#channel?.close();
  }

  #token(form) {
    return this.#fetch(`${this.#issuer}/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  /** Runs `task(contended)` under the tabs' lock; `contended` if another tab held it first. */
  async #exclusive(task) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return task(false);
    const done = await locks.request(LOCK, { ifAvailable: true }, async (lock) => (lock ? { value: await task(false) } : null));
    return done ? done.value : locks.request(LOCK, () => task(true));
  }

  /** Resolves when the refresh token is no longer `stale`, or after `ms`. */
  #changed(stale, ms) {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const check = () => this.#tokens?.refreshToken !== stale && finish();
      const timer = setTimeout(finish, ms);
      this.#waiters.add(check);
      check();
    });
  }

  #set(tokens, event, broadcast = true) {
    this.#tokens = tokens;
    for (const check of [...this.#waiters]) check();
    this.#storage?.setItem(this.storageKey, JSON.stringify(tokens));
    this.#schedule();
    if (broadcast) this.#channel?.postMessage({ type: 'tokens', tokens, event });
    if (event) this.#emit(event, tokens);
  }

  #end(event, broadcast = true) {
    if (!this.#tokens) return;
    this.#tokens = null;
    for (const check of [...this.#waiters]) check();
    clearTimeout(this.#timer);
    this.#storage?.removeItem(this.storageKey);
    if (broadcast) this.#channel?.postMessage({ type: 'end', event });
    this.#emit(event);
  }

  #schedule() {
    clearTimeout(this.#timer);
    if (!this.#autoRefresh || !this.#tokens) return;
    const due = this.#tokens.expiresAt - this.#refreshAhead * 1000 - Date.now();
    this.#timer = setTimeout(() => this.refresh().catch(() => {}), Math.max(0, due));
  }

  #emit(event, detail) {
    for (const handler of this.#listeners.get(event) ?? []) handler(detail);
  }

  #onMessage(message) {
    if (message?.type === 'tokens') {
      // Every tab answers a new tab's hello; the same tokens twice are one event.
      if (message.tokens.refreshToken === this.#tokens?.refreshToken) return;
      this.#set(message.tokens, this.#tokens ? message.event : 'signedIn', false);
    } else if (message?.type === 'end') {
      this.#end(message.event, false);
    } else if (message?.type === 'hello' && this.#tokens) {
      this.#channel.postMessage({ type: 'tokens', tokens: this.#tokens, event: 'signedIn' });
    }
  }

  #askOtherTabs() {
    if (!this.#channel) return Promise.resolve();
    this.#channel.postMessage({ type: 'hello' });
    return new Promise((r) => setTimeout(r, 200));
  }
}

/** A failure of the client itself (login refused, session ended), with an OAuth2-style code. */
export class GatehouseClientError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'GatehouseClientError';
    this.code = code;
  }
}

function tokensOf(body) {
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + Number(body.expires_in) * 1000,
    scope: body.scope,
  };
}
