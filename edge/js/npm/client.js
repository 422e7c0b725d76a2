// GatehouseClient, a browser app's tokens against the issuer's `/v1/token` and `/v1/revoke`:
// README.md, "GatehouseClient".
//
// Which tokens win: every token set carries its session (`sid`, from the access token), how many
// refreshes it is from the login, and when it was received. A tab keeps the newest set it has
// seen (of one session, the most rotated; of two, the later received), never takes back a
// session it saw end, and acts on an answer (new tokens, a refusal) only if it still holds the tokens it asked
// with, so a late reply can neither undo a logout nor end a newer session.

import {
  GatehouseClientError, bodyOf, codeOf, isObject, payloadOf, postForm, retryAfterOf, textOf, tokensOf,
} from './issuer-api.js';
import { readOptions } from './client-options.js';
import { RETRY_MS, nextTry } from './client-retry.js';

export { GatehouseClientError };

// A tab that got the refresh lock at once still lets messages already on their way arrive.
const SETTLE_MS = 20;
// A tab that had to wait for the lock waits this long for the holder's new tokens.
const HANDOVER_MS = 2000;
// The edge refetches its key set for an unknown `kid` at most this often (its default
// `JWKS_REFETCH_COOLDOWN_SECS`): a token held longer whose key it does not know has a key the
// issuer no longer publishes.
const KEY_REFETCH_COOLDOWN_MS = 30_000;
// How long a key the edge refused after a refresh is not taken for a dropped one again: the
// edge may have refused it inside its key refetch cooldown, and knows it later.
const KEY_REFUSAL_MEMORY_MS = 10 * KEY_REFETCH_COOLDOWN_MS;
// A refresh whose request failed is tried once more after this: at once, as the issuer's grace
// window (`refresh_grace_secs`, 5 s by default) counts from its rotation.
const QUICK_RETRY_DELAY_MS = 250;
// setTimeout's longest delay (about 24.8 days); a longer one fires at once.
const MAX_DELAY_MS = 2 ** 31 - 1;
// A token set as this client keeps it; anything else (written by another version or program,
// broadcast by an old tab) is ignored: without its times the refresh timer could not be set.
const isTokenSet = (t) => isObject(t) && typeof t.refreshToken === 'string' && typeof t.accessToken === 'string'
  && Number.isFinite(t.expiresAt) && Number.isFinite(t.receivedAt);
// Whether token set `a` is newer than `b`: within one session by its rotations, since a clock
// stepped back (NTP, a resumed VM) would otherwise have a tab keep a refresh token the issuer
// rotated, and its next refresh taken for theft; across sessions (or sets without the count,
// kept by an older version) by when they were received.
const isNewer = (a, b) => (a.sid !== undefined && a.sid === b.sid
  && Number.isInteger(a.rotations) && Number.isInteger(b.rotations)
  ? a.rotations > b.rotations
  : a.receivedAt > b.receivedAt);
const closedError = () => new GatehouseClientError('closed', 'the client was closed');

export class GatehouseClient {
  #issuer;
  #clientId;
  #origins;
  #fetch;
  #storage;
  #refreshAhead;
  #autoRefresh;
  #requestTimeoutMs;
  #channel;
  /** The tab channel's name while the client shares with other tabs, else null. */
  #channelName;
  #lock;
  #tokens = null;
  #ended = new Set();
  #refreshing = null;
  #timer = null;
  #closed = false;
  /** The tab channel after `close()`, while a refresh already sent settles. */
  #closing = null;
  #listeners = new Map();
  #waiters = new Set();
  /** The last refresh failure a tab reported, `{ n, token, error }`: the `n`th so far. */
  #failure = null;
  /** The `kid`s the edge still refused after a refresh for `unknown_kid`, and when. */
  #keysTheEdgeRefused = new Map();
  /** After a refresh failed, `{ token, until, error }`: no caller asks the issuer to rotate
   * `token` again before `until` (see `#backOff`). */
  #backoff = null;

  constructor(options = {}) {
    let name;
    let tabs;
    ({
      issuer: this.#issuer,
      clientId: this.#clientId,
      origins: this.#origins,
      fetch: this.#fetch,
      storage: this.#storage,
      refreshAhead: this.#refreshAhead,
      autoRefresh: this.#autoRefresh,
      requestTimeoutMs: this.#requestTimeoutMs,
      name,
      tabs,
    } = readOptions(options));
    this.storageKey = `${name}:tokens`;
    this.#channelName = tabs ? name : null;
    this.#channel = tabs ? new BroadcastChannel(name) : null;
    // A client that shares with no tab waits for no other's refresh: on a server (Node has Web
    // Locks too), one lock for every user's client would queue their refreshes behind each other.
    this.#lock = tabs ? `${name}:refresh` : `${name}:refresh:${Math.random()}`;
    this.#channel?.addEventListener('message', (e) => this.#onMessage(e.data));
    // Stored tokens may be older than another tab's: kept quietly, and the tabs are asked. What
    // is not a token set (written by something else) is ignored.
    const stored = this.#stored();
    if (stored) this.#set(stored, null, false, false);
    // Versions before 2026-12-04 kept every issuer's tokens under one key: not left behind.
    if (options.channelName === undefined) this.#forget('gatehouse:tokens');
    /** Resolves once other tabs had a moment to hand over a session they hold. */
    this.ready = this.#askOtherTabs();
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

  /** Signs in; a session held before (another account's, say) ends in every tab, then at the
   * issuer (best effort: it expires anyway). */
  async login(username, password, scope) {
    const form = { grant_type: 'password', username, password };
    if (scope) form.scope = scope;
    const { response, body } = await this.#token(form);
    if (!response.ok) throw new GatehouseClientError(codeOf(body, 'login_failed'), textOf(body, `HTTP ${response.status}`), retryAfterOf(response));
    const tokens = tokensOf(body);
    const replaced = this.#tokens;
    if (replaced && replaced.sid !== tokens.sid) {
      // Over in every tab before the new session arrives, so that no late refresh of it (nor a
      // frozen tab's set) takes it back; then at the issuer.
      this.#end('signedOut');
      this.#revoke(replaced.refreshToken).catch(() => {});
    }
    this.#set(tokens, 'signedIn');
  }

  /**
   * A usable access token: refreshed first when it is due. If that refresh fails for a reason
   * other than the session ending, the current token is returned while it is still valid.
   */
  async getAccessToken() {
    await this.ready;
    const tokens = this.#tokens;
    if (!tokens || !this.#due(tokens)) return tokens?.accessToken;
    try {
      await this.refresh();
    } catch (e) {
      if (e.code === 'session_revoked' || Date.now() >= tokens.expiresAt) throw e;
    }
    return this.#tokens?.accessToken;
  }

  /** Rotates the refresh token once, however many callers and tabs ask at the same moment. */
  async refresh() {
    await this.ready;
    // Closed, the tabs would not hear of a new rotation (see `close`); one sent is joined.
    if (this.#closed) return this.#refreshing ?? Promise.reject(closedError());
    const stale = this.#tokens?.refreshToken;
    if (!stale) throw new GatehouseClientError('signed_out', 'no session to refresh');
    // An app's calls (`getAccessToken`, `fetch`) ask too, each time the token is due: after a
    // failure they wait as the timer does, or every call would be another request to an issuer
    // that is down or asked for time.
    const backoff = this.#backoff;
    if (backoff?.token === stale && Date.now() < backoff.until) {
      const { code, message } = backoff.error;
      throw new GatehouseClientError(code, message, Math.ceil((backoff.until - Date.now()) / 1000));
    }
    const failuresBefore = this.#failure?.n ?? 0;
    const failedMeanwhile = () => this.#failure?.token === stale && this.#failure.n > failuresBefore;
    this.#refreshing ??= this.#exclusive(async (contended) => {
      // Another tab held the lock: it was refreshing this very token, so wait for its tokens,
      // or for its failure.
      await this.#changed(stale, contended ? HANDOVER_MS : SETTLE_MS, failedMeanwhile);
      if (this.#closed) throw closedError();
      // Another tab refreshed (or signed out): nothing is sent.
      if (this.#tokens?.refreshToken !== stale) return;
      // The issuer refused this very token to another tab (a 429, a 503): its answer is this
      // refresh's, rather than asking again before its `Retry-After`.
      if (failedMeanwhile()) throw this.#failure.error;
      await this.#rotateAndTake(stale);
    }).catch((e) => {
      // Every refusal carries a code, the first as those the back-off repeats: a failure of
      // the runtime's own (Web Locks, say) is `refresh_failed`.
      const error = e instanceof GatehouseClientError ? e : new GatehouseClientError('refresh_failed', `the refresh failed: ${e?.message ?? e}`);
      // Not the session's end, after which there is nothing to refresh, nor the client's.
      if (error.code !== 'session_revoked' && error.code !== 'closed') this.#backOff(stale, error);
      throw error;
    }).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** When `stale` may be asked again, for the timer and the app's calls alike (`nextTry`). */
  #backOff(stale, error) {
    if (this.#tokens?.refreshToken !== stale) return;
    const held = this.#backoff?.token === stale ? this.#backoff : null;
    // One refusal heard twice (another tab's, then this tab's wait for it) counts once.
    if (held?.error === error) return;
    this.#backoff = { token: stale, error, ...nextTry(held, error, Date.now()) };
  }

  /** One rotation of `stale`, its answer taken: new tokens, or the session's end. */
  async #rotateAndTake(stale) {
    const answer = await this.#rotate(stale);
    if (!answer) return;
    const { response, body } = answer;
    // A logout (here or in another tab) while the request was out: the answer is moot.
    if (this.#tokens?.refreshToken !== stale) return;
    if (response.ok) {
      // One rotation further than the set it replaces: what tells the tabs which set of a
      // session is newer, whatever the clock did meanwhile.
      const rotations = (this.#tokens.rotations ?? 0) + 1;
      this.#set({ ...tokensOf(body), rotations }, 'refreshed');
    } else if (body.error === 'invalid_grant') {
      this.#end('sessionRevoked');
      throw new GatehouseClientError('session_revoked', textOf(body, 'the session has ended'));
    } else {
      const refused = new GatehouseClientError(codeOf(body, 'refresh_failed'), textOf(body, `HTTP ${response.status}`), retryAfterOf(response));
      // The issuer answered and rotated nothing: the tabs waiting for this token take the answer.
      // Not a network failure, after which the issuer may have rotated the token: a waiting
      // tab's own try, if soon enough for the grace window, is then what keeps the session.
      this.#post({ type: 'refreshFailed', token: stale, code: refused.code, message: refused.message, retryAfter: refused.retryAfter });
      throw refused;
    }
  }

  /**
   * `POST /v1/token` for `stale`. A network failure may come after the issuer rotated the token
   * (a connection dropped on the way back, before or during the answer's body): asked again
   * within its grace window, the issuer
   * hands back the same successor, while the timer's retry 5 s later would be taken for theft
   * and end the session. So a failure is tried once more at once: never later than the timer's
   * retry, and in time whenever the failure came soon after the rotation, even once closed
   * (`close()` lets a sent refresh finish). `null` when the tokens changed meanwhile.
   */
  async #rotate(stale) {
    const form = { grant_type: 'refresh_token', refresh_token: stale };
    try {
      return await this.#token(form);
    } catch (e) {
      if (e.code !== 'network_error') throw e;
    }
    await new Promise((r) => setTimeout(r, QUICK_RETRY_DELAY_MS));
    if (this.#tokens?.refreshToken !== stale) return null;
    return this.#token(form);
  }

  /**
   * `fetch` with `Authorization: Bearer`, only to this page's origin, the issuer's and
   * `apiOrigins` (anything else rejects with `origin_not_allowed`, nothing sent). On the edge's
   * `expired` or `revoked` answer (or `unknown_kid` on a token held over 30 s, its key gone) it
   * refreshes and sends the request once more with the new
   * token (a `Request` is cloned, so its body is sent again; a `ReadableStream` body in `init`
   * is sent once, without the retry); when the issuer refuses the refresh, the session ends in
   * every tab and this rejects with `session_revoked`.
   */
  async fetch(input, init) {
    // Off a page (server-side rendering) a relative URL has no origin to allow.
    if (!globalThis.location && !(input instanceof Request)) {
      try {
        new URL(String(input));
      } catch {
        throw new GatehouseClientError('origin_not_allowed', `${input} names no origin the access token is sent to (a relative URL off a page)`);
      }
    }
    const request = new Request(input, init);
    const { origin } = new URL(request.url);
    if (!this.#origins.has(origin)) {
      throw new GatehouseClientError('origin_not_allowed', `${origin} is not among the origins the access token is sent to (apiOrigins)`);
    }
    // A stream can be sent once: a copy kept for a retry would hold the whole upload in memory.
    const once = typeof ReadableStream === 'function' && init?.body instanceof ReadableStream;
    const send = (token) => {
      const attempt = once ? request : request.clone();
      if (token) attempt.headers.set('authorization', `Bearer ${token}`);
      return this.#fetch(attempt);
    };
    // The caller's signal ends the waits for a token too (the refresh goes on for the others).
    const { signal } = request;
    signal.throwIfAborted();
    const token = await abortable(this.getAccessToken(), signal);
    // Signed out, `token` is undefined (sent without one), and so is `#tokens`.
    const received = token && this.#tokens?.accessToken === token ? this.#tokens.receivedAt : Date.now();
    const response = await send(token);
    if (response.status !== 401 || !token || once) return response;
    const { code } = await bodyOf(response.clone());
    // `unknown_kid` on a token held past the edge's key refetch cooldown: its signing key was
    // revoked or dropped, and a refresh gets one signed by the current key. On a newer token
    // it is a key the edge has not fetched yet, which no refresh mends.
    // Not for a key the edge refused after such a refresh too (pinned keys, another
    // deployment's JWKS): a refresh would not mend it, and every call would rotate.
    const keyGone = code === 'unknown_kid' && Date.now() - received > KEY_REFETCH_COOLDOWN_MS
      && Date.now() - (this.#keysTheEdgeRefused.get(payloadOf(token, 0).kid) ?? -Infinity) >= KEY_REFUSAL_MEMORY_MS;
    if (code !== 'expired' && code !== 'revoked' && !keyGone) return response;
    // `revoked` may name this token alone, not the session: a refresh tells (the issuer
    // refuses it once the session has ended, and the session ends in every tab).
    // Closed, the answer is the edge's.
    if (this.#tokens?.accessToken === token && !this.#closed) await abortable(this.refresh(), signal);
    const next = this.#tokens?.accessToken;
    if (!next || next === token) return response;
    const retried = await send(next);
    if (keyGone && retried.status === 401 && (await bodyOf(retried.clone())).code === 'unknown_kid') {
      this.#keysTheEdgeRefused.set(payloadOf(next, 0).kid, Date.now());
    }
    return retried;
  }

  /**
   * Ends the session in every tab, and at the issuer by revoking the refresh token (RFC 7009:
   * it needs no access token, so an idle tab's expired one costs no refresh first, and a token
   * another tab rotated meanwhile still names the session). Signed out locally whatever happens;
   * rejects with `logout_failed` if the issuer could not be told, so the app can say so.
   */
  async logout() {
    // A new tab may still be asking the others for the session.
    await this.ready;
    const refreshToken = this.#tokens?.refreshToken;
    this.#end('signedOut');
    if (refreshToken) await this.#revoke(refreshToken);
  }

  /** RFC 7009 for `refreshToken`; a failure is `logout_failed` with a `retry()` that tries
   * again: the session lives at the issuer until then, and only this call still holds it. */
  async #revoke(refreshToken) {
    const failed = (message, retryAfter) => {
      const error = new GatehouseClientError('logout_failed', message, retryAfter);
      error.retry = () => this.#revoke(refreshToken);
      return error;
    };
    const { response, body } = await this.#postForm('/v1/revoke', { token: refreshToken, token_type_hint: 'refresh_token' }, { needsBody: false })
      .catch((e) => {
        throw failed(e.message);
      });
    // 200 also when the session had already ended (RFC 7009 §2.2).
    if (response.ok) return;
    throw failed(textOf(body, `the issuer answered HTTP ${response.status}`), retryAfterOf(response));
  }

  /**
   * Stops timers and leaves the tab channel (the tokens stay where they are). A refresh already
   * sent still tells the other tabs its result before the channel closes: they would otherwise
   * keep the rotated-out token, and their next refresh would be taken for theft. No refresh
   * starts after it (`closed`).
   */
  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    const channel = this.#channel;
    this.#channel = null;
    if (!channel) return;
    this.#closing = channel;
    const closeChannel = () => {
      channel.close();
      if (this.#closing === channel) this.#closing = null;
    };
    if (this.#refreshing) this.#refreshing.then(closeChannel, closeChannel);
    else closeChannel();
  }

  /** `POST /v1/token`. */
  #token(form) {
    return this.#postForm('/v1/token', this.#clientId ? { ...form, client_id: this.#clientId } : form);
  }

  /** `issuer-api.js`'s `postForm` to this issuer, within `requestTimeoutSeconds`. */
  #postForm(path, form, options) {
    return postForm(this.#fetch, `${this.#issuer}${path}`, form, this.#requestTimeoutMs, options);
  }

  /**
   * When a refresh is due: `refreshAheadSeconds` before expiry, or halfway through a short
   * token's life. A token the session's end capped is refreshed only once it has expired: the
   * issuer then ends the session (`sessionRevoked`), or, had the cap been misjudged, goes on.
   */
  #due(tokens) {
    return Date.now() >= this.#refreshAt(tokens);
  }

  #refreshAt({ expiresAt, receivedAt, capped }) {
    return capped ? expiresAt : expiresAt - Math.min(this.#refreshAhead * 1000, (expiresAt - receivedAt) / 2);
  }

  /** Runs `task(contended)` under the tabs' lock; `contended` if another tab held it first. */
  async #exclusive(task) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return task(false);
    let done;
    try {
      done = await locks.request(this.#lock, { ifAvailable: true }, async (lock) => (lock ? { value: await task(false) } : null));
    } catch (e) {
      // An opaque origin (a sandboxed frame, a `file:` page) may not use Web Locks: it has no
      // other tab to share them with, so the refresh runs without one.
      if (e?.name === 'SecurityError') return task(false);
      throw e;
    }
    return done ? done.value : locks.request(this.#lock, () => task(true));
  }

  /** Lets every `#changed` waiter look again. */
  #wake() {
    for (const check of [...this.#waiters]) check();
  }

  /** Resolves when the refresh token is no longer `stale`, or `failed()`, or after `ms`. */
  #changed(stale, ms, failed) {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const check = () => (this.#tokens?.refreshToken !== stale || failed()) && finish();
      const timer = setTimeout(finish, ms);
      this.#waiters.add(check);
      check();
    });
  }

  /** To this issuer's other tabs: every message names the issuer (see `#onMessage`). */
  #post(message) {
    const data = { ...message, issuer: this.#issuer };
    const channel = this.#closed ? this.#closing : this.#channel;
    if (channel) {
      channel.postMessage(data);
    } else if (this.#closed && this.#channelName !== null) {
      // Closed, no refresh in flight: a logout still signs the other tabs out, through a
      // channel opened for it alone. Before, it did not reach them.
      const once = new BroadcastChannel(this.#channelName);
      once.postMessage(data);
      once.close();
    }
  }

  #set(tokens, event, broadcast = true, store = true) {
    const previous = this.#tokens;
    // A refresh that could not move the expiry, and got a shorter life, has reached the
    // session's end. (Two tabs' sets from one grace window differ by under a second in expiry
    // but have the same full life: neither is capped.)
    const life = (t) => t.expiresAt - t.receivedAt;
    if (previous && previous.sid === tokens.sid && tokens.expiresAt <= previous.expiresAt + 1000
      && life(tokens) < life(previous) - 1000) {
      tokens = { ...tokens, capped: true };
    }
    this.#tokens = tokens;
    this.#wake();
    this.#schedule();
    // The other tabs first: they still hold the refresh token the issuer has just rotated, and
    // one that used it again after the grace window would end the session.
    if (broadcast) this.#post({ type: 'tokens', tokens, event });
    try {
      if (store) this.#storage?.setItem(this.storageKey, JSON.stringify(tokens));
    } catch {
      // A full or refusing storage keeps the tokens in memory only (lost at reload). The set it
      // holds is dropped: its refresh token may have just been rotated, and a reload that used
      // it again would be taken for theft and end the session.
      this.#forget(this.storageKey);
    }
    if (event) this.#emit(event, tokens);
  }

  #end(event, broadcast = true) {
    if (!this.#tokens) return;
    const { sid } = this.#tokens;
    // A token without `sid` (not this issuer's kind) names no session to refuse later.
    if (sid !== undefined) this.#ended.add(sid);
    this.#tokens = null;
    this.#wake();
    clearTimeout(this.#timer);
    // The other tabs first, as for new tokens: a storage that refuses must not keep them in.
    if (broadcast) this.#post({ type: 'end', event, sid });
    this.#forget(this.storageKey);
    this.#emit(event);
  }

  #forget(key) {
    try {
      this.#storage?.removeItem(key);
    } catch {
      // Nothing more to do: the tokens are out of memory and the tabs were told.
    }
  }

  #stored() {
    try {
      const tokens = JSON.parse(this.#storage?.getItem(this.storageKey) ?? 'null');
      return isTokenSet(tokens) ? tokens : null;
    } catch {
      return null;
    }
  }

  #schedule() {
    clearTimeout(this.#timer);
    if (!this.#autoRefresh || !this.#tokens || this.#closed) return;
    const wait = Math.min(MAX_DELAY_MS, Math.max(0, this.#refreshAt(this.#tokens) - Date.now()));
    this.#later(wait);
  }

  #later(ms) {
    this.#timer = setTimeout(() => this.#backgroundRefresh(), ms);
  }

  /** A timer's refresh; a failure that leaves the session (the network, the issuer down) is
   * tried again as `nextTry` says, so the token held does not go stale unnoticed. */
  #backgroundRefresh() {
    // Not due (a delay capped at setTimeout's limit, a retry after another tab refreshed): the
    // refresh token is rotated only when it must be.
    if (!this.#tokens || this.#closed) return;
    if (!this.#due(this.#tokens)) {
      this.#schedule();
      return;
    }
    this.refresh().catch(() => {
      if (!this.#tokens || this.#closed) return;
      clearTimeout(this.#timer);
      // When `#backOff` says: not sooner than the issuer asked (a rate limit, a restart), and
      // soon enough after a network failure to stay inside the issuer's grace window.
      const backoff = this.#backoff;
      const wait = backoff?.token === this.#tokens.refreshToken ? backoff.until - Date.now() : RETRY_MS;
      this.#later(Math.min(MAX_DELAY_MS, Math.max(0, wait)));
    });
  }

  /** Each handler gets its own frozen copy; one that throws is reported, not propagated: the
   * event has happened (a login that succeeded must not reject, a refresh must not be retried). */
  #emit(event, detail) {
    for (const handler of this.#listeners.get(event) ?? []) {
      try {
        handler(detail && Object.freeze({ ...detail }));
      } catch (e) {
        if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
        else console.error(e);
      }
    }
  }

  #onMessage(message) {
    // A closed client keeps its channel only to send a refresh already out (`close`).
    if (this.#closed) return;
    // A client of another issuer given the same `channelName`: not this session's tabs.
    if (message?.issuer !== this.#issuer) return;
    if (message.type === 'tokens') {
      const incoming = message.tokens;
      if (!isTokenSet(incoming)) return;
      const held = this.#tokens;
      // Never a session seen ending, never a set older than the one held, of this session or
      // another (a tab that was frozen may broadcast an older session's tokens late).
      if (this.#ended.has(incoming.sid)) return;
      if (held && !isNewer(incoming, held)) return;
      this.#set(incoming, held ? message.event : 'signedIn', false);
    } else if (message.type === 'end') {
      // Only the session that ended: a tab may have signed in again since.
      if (this.#tokens?.sid === message.sid) this.#end(message.event, false);
      else if (message.sid !== undefined) this.#ended.add(message.sid);
    } else if (message.type === 'refreshFailed' && typeof message.token === 'string') {
      // Only the issuer's refusals are passed on: never an end of the session, which only the
      // `end` message tells.
      const code = typeof message.code === 'string' && message.code !== 'session_revoked' ? message.code : 'refresh_failed';
      const error = new GatehouseClientError(code, `another tab's refresh failed: ${message.message}`,
        Number.isFinite(message.retryAfter) ? message.retryAfter : undefined);
      this.#failure = { n: (this.#failure?.n ?? 0) + 1, token: message.token, error };
      this.#backOff(message.token, error);
      this.#wake();
    } else if (message.type === 'hello' && this.#tokens) {
      this.#post({ type: 'tokens', tokens: this.#tokens, event: 'signedIn' });
    }
  }

  #askOtherTabs() {
    if (!this.#channel) return Promise.resolve();
    this.#post({ type: 'hello' });
    return new Promise((r) => setTimeout(r, 200));
  }
}

/** `promise`, or `signal`'s abort if that comes first; the work itself goes on. */
function abortable(promise, signal) {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise((resolve, reject) => {
    const aborted = () => reject(signal.reason);
    signal.addEventListener('abort', aborted, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', aborted));
  });
}
