// Remote keys: a Verifier over the issuer's JWK set and, with `revocationsUrl`, its signed
// revocation list, fetched and refreshed by the edge's rules with the edge's defaults, from the
// shared core (`keySetFetchDefaults()`, `revocationListFetchDefaults()`). The rules are the
// README's ("createRemoteVerifier"); redirects are refused by hand (`redirect: 'manual'`), as
// workerd has no `'error'`. `index.js` re-exports this module; the cycle is safe because
// nothing here runs at import.
import init, {
  GatehouseError, RevocationList, Verifier, keySetFetchDefaults, revocationListFetchDefaults,
} from './index.js';

const invalidOptions = (why) => new GatehouseError('invalid_key', `invalid options: ${why}`);

/** The body as text, read no further than `max` bytes: a body without a Content-Length (or a
 * wrong one) that goes on is cancelled there, not held whole in memory first. */
async function boundedText(response, max, tooLarge) {
  const body = response.body;
  const reader = body?.getReader?.();
  // A caller's own `fetch` may answer with a Node stream (node-fetch), which iterates, or with
  // no stream at all, which can only be read whole.
  if (!reader && typeof body?.[Symbol.asyncIterator] !== 'function') {
    const text = await response.text();
    if (new TextEncoder().encode(text).byteLength > max) throw tooLarge();
    return text;
  }
  const chunks = [];
  let size = 0;
  const next = reader ? () => reader.read() : (() => {
    const it = body[Symbol.asyncIterator]();
    return () => it.next();
  })();
  for (;;) {
    const { done, value } = await next();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      if (reader) reader.cancel().catch(() => {});
      else body.destroy?.();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** Whether keys may come from `url`: https, or http to a loopback host. */
const trusted = (url) =>
  url.protocol === 'https:' ||
  (url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname));

/** An option's URL, relative to the page in a browser as `fetch` would read it, from which
 * whoever answers decides what verifies: https only (http to this machine). */
function documentUrl(text, what) {
  let url;
  try {
    url = new URL(String(text), globalThis.document?.baseURI ?? globalThis.location?.href);
  } catch {
    throw invalidOptions(`the ${what} URL ${JSON.stringify(String(text))} is not a URL`);
  }
  if (!trusted(url)) throw invalidOptions(`the ${what} URL must be https: (http: only to localhost)`);
  return url;
}

/** The text at `url`, fetched by the rules the keys and the list come by, or a GatehouseError
 * with `code`: from that URL and not one it redirects to, a 2xx, at most `maxBytes`, within
 * `timeoutSecs`. */
async function fetchDocument(fetchWith, url, { what, code, accept, maxBytes, timeoutSecs }) {
  const response = await fetchWith(url.href, {
    headers: { accept },
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutSecs * 1000),
    // A browser (a page or a web worker) would answer a refetch for a new kid from its
    // HTTP cache (the issuer's set is `max-age=60`), then sit out the cooldown. Only
    // browsers: some server runtimes refuse the member (older Workers, edge runtimes).
    ...(globalThis.navigator?.userAgent?.startsWith('Mozilla/') ? { cache: 'no-cache' } : {}),
  });
  // A browser hands a redirect over as an opaque one (status 0), workerd and Node as the
  // 3xx; a `fetch` of the caller's own may follow it anyway, and then says so or names
  // another URL. The document comes from the URL given or not at all (a hop on the way, plain
  // http included, is not seen here).
  if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)
    || response.redirected || (response.url && response.url !== url.href.replace(/#.*$/s, ''))) {
    throw new GatehouseError(code, `the ${what} URL redirects; give its final URL`);
  }
  if (!response.ok) throw new GatehouseError(code, `the ${what} answered HTTP ${response.status}`);
  const tooLarge = () => new GatehouseError(code, `the ${what} is over ${maxBytes / 2 ** 20} MiB`);
  if (Number(response.headers?.get?.('content-length')) > maxBytes) throw tooLarge();
  return boundedText(response, maxBytes, tooLarge);
}

/**
 * One fetch at a time of the document at `url` (`fetchDocument`'s rules: `what`, `code`,
 * `accept`, `maxBytes`, `timeoutSecs`), joined by concurrent callers. `make` builds what its text
 * holds; of fetches that settle out of order only the newest is `install`ed, an older one (or
 * one after `free()`) is `discard`ed. A fetch is given up on after `limitMs`: on Workers a
 * background fetch dies with the request that started it (its promise then never settles),
 * and one still marked in flight would otherwise block every refetch for good.
 */
function refresher({ fetchWith, url, limitMs, make, install, discard, freed, ...rules }) {
  let inflight = null;
  let started = 0;
  let installed = 0;
  const state = {
    ...rules,
    fetchedAt: 0,
    attemptedAt: -Infinity,
    /** When the last fetch failed (or was given up on at its limit), if it has not succeeded since. */
    failedAt: -Infinity,
    live() {
      if (!inflight) return null;
      if (Date.now() - state.attemptedAt < limitMs) return inflight;
      // Given up on: a fetch that never settles failed too.
      state.failedAt = Math.max(state.failedAt, state.attemptedAt + limitMs);
      return null;
    },
    load() {
      const joined = state.live();
      if (joined) return joined;
      state.attemptedAt = Date.now();
      const generation = ++started;
      // `await null` first: a `fetch` that throws at once must not clear `inflight` before it is set.
      const attempt = (async () => {
        await null;
        try {
          const made = await make(await fetchDocument(fetchWith, url, rules));
          if (generation < installed || freed()) {
            discard(made);
            return;
          }
          installed = generation;
          install(made);
          state.fetchedAt = Date.now();
          state.failedAt = -Infinity;
        } catch (e) {
          state.failedAt = Date.now();
          throw e instanceof GatehouseError ? e : new GatehouseError(rules.code, `fetching the ${rules.what}: ${e}`);
        } finally {
          if (inflight === attempt) inflight = null;
        }
      })();
      inflight = attempt;
      return attempt;
    },
  };
  return state;
}

export async function createRemoteVerifier(jwksUrl, options = {}) {
  if (options === null || typeof options !== 'object') throw invalidOptions('options must be an object');
  const {
    ttlSeconds,
    refetchCooldownSeconds,
    fetchTimeoutSeconds,
    revocationsUrl,
    revocationsTtlSeconds,
    maxListAgeSeconds,
    fetch: fetchWith = globalThis.fetch,
    ...verifierOptions
  } = options;
  // The caller's options before anything is fetched (most before the wasm loads; the bounds
  // on its defaults and the verifier's own after): a mistake throws `invalid_key` ("invalid
  // options") as for a local Verifier, not as the keys being unavailable.
  // Seconds as a number or its text (a Workers var is text).
  const seconds = (name, value) => {
    if (value === undefined) return undefined;
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    // Not `Infinity` either: a cooldown or a list age that never ends turns the check off.
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw invalidOptions(`${name} must be a number of seconds, 0 or more`);
    return n;
  };
  const ttl = seconds('ttlSeconds', ttlSeconds);
  const cooldown = seconds('refetchCooldownSeconds', refetchCooldownSeconds);
  const timeout = seconds('fetchTimeoutSeconds', fetchTimeoutSeconds);
  const listTtl = seconds('revocationsTtlSeconds', revocationsTtlSeconds);
  const maxListAge = seconds('maxListAgeSeconds', maxListAgeSeconds);
  if (typeof fetchWith !== 'function') throw invalidOptions('fetch must be a function');
  // setTimeout's limit is about 24 days; an hour is more than any key set needs.
  if (timeout !== undefined && !(timeout > 0 && timeout <= 3600)) throw invalidOptions('fetchTimeoutSeconds must be over 0 and at most 3600');
  // The edge's bound: a key the issuer drops verifies until a refetch.
  if (ttl > 3600) throw invalidOptions('ttlSeconds must be at most 3600');
  // As the edge's KV_REFRESH_SECS: never a fetch per token.
  if (listTtl !== undefined && !(listTtl >= 1 && listTtl <= 3600)) throw invalidOptions('revocationsTtlSeconds must be from 1 to 3600');
  const url = documentUrl(jwksUrl, 'JWK set');
  const listUrl = revocationsUrl === undefined ? null : documentUrl(revocationsUrl, 'revocation list');
  if (!listUrl && (listTtl !== undefined || maxListAge !== undefined)) {
    throw invalidOptions('revocationsTtlSeconds and maxListAgeSeconds need a revocationsUrl');
  }
  // The browser entry leaves loading the wasm to the caller's `init()`; without it, the lines
  // below would throw the glue's TypeError. At once where it is loaded (Node, Workers).
  try {
    await init();
  } catch (e) {
    // The wasm could not be fetched or compiled (a 404, a Content-Security-Policy): no key set
    // can be used, and the caller gets the code it handles for that.
    throw new GatehouseError('keys_unavailable', `loading the package's wasm: ${e?.message ?? e}`);
  }
  // The defaults, the edge's own, from the shared core.
  const defaults = keySetFetchDefaults();
  const listDefaults = revocationListFetchDefaults();
  const ttlMs = (ttl ?? defaults.ttlSeconds) * 1000;
  // The default cooldown no longer than the TTL: a 10 s TTL is not a 30 s one.
  const cooldownMs = cooldown === undefined ? Math.min(defaults.refetchCooldownSeconds * 1000, ttlMs) : cooldown * 1000;
  // The key set's refresh waits for the cooldown: a longer one would hold a key the issuer
  // dropped (or revoked) past the TTL, as the edge reports of JWKS_REFETCH_COOLDOWN_SECS.
  if (cooldown !== undefined && cooldownMs > ttlMs) throw invalidOptions('refetchCooldownSeconds must be at most ttlSeconds');
  const timeoutSecs = timeout ?? defaults.fetchTimeoutSeconds;
  const listTtlMs = (listTtl ?? listDefaults.ttlSeconds) * 1000;
  const maxListAgeSecs = maxListAge ?? listDefaults.maxAgeSeconds;
  // A list is up to 15 s old when the issuer serves it, and its clock may run 30 s ahead: a
  // bound inside a refetch's period and those would refuse tokens while the issuer is up.
  if (listUrl && !(maxListAgeSecs >= listTtlMs / 1000 + timeoutSecs + 60)) {
    throw invalidOptions('maxListAgeSeconds must be at least revocationsTtlSeconds + fetchTimeoutSeconds + 60');
  }
  new Verifier({ keys: [] }, verifierOptions).free();
  // What is held: `{ verifier, text }` of the key set (the text verifies the list), and the list.
  let keys;
  let list = null;
  let freed = false;
  // A fetch is given up on after its limit, plus a second's grace for the answer's body.
  const limitMs = timeoutSecs * 1000 + 1000;
  const fetched = { fetchWith, limitMs, timeoutSecs, freed: () => freed };
  const keySet = refresher({
    ...fetched,
    url,
    what: 'JWK set',
    code: 'keys_unavailable',
    accept: 'application/json',
    maxBytes: defaults.maxBytes,
    make(text) {
      let verifier;
      try {
        verifier = new Verifier(text, verifierOptions);
      } catch (e) {
        // A document that is no key set (an error page's JSON) is the issuer's keys being
        // unavailable, as the README says, not a bad key of the caller's.
        if (e instanceof GatehouseError && e.code === 'invalid_key') {
          throw new GatehouseError('keys_unavailable', `the JWK set cannot be used: ${e.message}`);
        }
        throw e;
      }
      // An empty set (an error page's JSON, a deploy in progress) would refuse every token.
      if (verifier.kids.length === 0) {
        verifier.free();
        throw new GatehouseError('keys_unavailable', 'the JWK set holds no usable key');
      }
      return { verifier, text };
    },
    // Freed now, not left to a finalizer that Workers may never run: nothing holds the old
    // one across an `await` (`verify` is synchronous).
    install(fresh) {
      const replaced = keys;
      keys = fresh;
      replaced?.verifier.free();
    },
    discard: (fresh) => fresh.verifier.free(),
  });
  // Waits for a fetch, or for its limit: one started by another (finished) request may never
  // settle on Workers, and a caller must still be answered.
  const settled = (promise) => {
    let timer;
    const limit = new Promise((resolve) => {
      timer = setTimeout(resolve, limitMs);
      timer?.unref?.();
    });
    return Promise.race([promise.catch(() => {}), limit]).finally(() => clearTimeout(timer));
  };
  const cooledDown = () => Date.now() - keySet.attemptedAt >= cooldownMs;
  // A refetch in flight is joined; a new one starts only once the cooldown has passed.
  const refetchKeys = () => settled(keySet.load());
  const revocations = listUrl && refresher({
    ...fetched,
    url: listUrl,
    what: 'revocation list',
    code: 'revocation_list_missing',
    accept: 'application/jwt',
    maxBytes: listDefaults.maxBytes,
    // Checked against the keys held; signed by a key not held yet (a rotation), once more after
    // a refetch of the keys, within their cooldown.
    async make(text) {
      const verified = () => RevocationList.fromSnapshot(text, keys.text, verifierOptions.issuer);
      try {
        return verified();
      } catch (e) {
        if (e?.code !== 'unknown_kid' || !(keySet.live() || cooledDown())) throw e;
        await refetchKeys();
        return verified();
      }
    },
    // By the edge's rule (`list.replaces`): newer, or disowning a list a leaked key signed. An
    // older one (another replica behind, a cache) is not taken.
    install(fresh) {
      if (list && !fresh.replaces(list)) {
        fresh.free();
        return;
      }
      const replaced = list;
      list = fresh;
      replaced?.free();
    },
    discard: (fresh) => fresh.free(),
  });
  // The first fetches fail loudly, within the same limit: without keys (or the list asked for)
  // there is nothing to verify with, and a caller keeping this promise must not wait for good.
  const first = async (fetcher) => {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new GatehouseError(fetcher.code, `fetching the ${fetcher.what} did not finish in time`)), limitMs);
      timer?.unref?.();
    });
    try {
      await Promise.race([fetcher.load(), late]);
    } finally {
      clearTimeout(timer);
    }
  };
  /** Frees the keys' and the list's wasm memory now. On Workers nothing else does (no
   * finalizer runs): make one remote verifier per isolate, or free each one made per request. */
  const release = () => {
    freed = true;
    keys?.verifier.free();
    list?.free();
    keys = undefined;
    list = null;
  };
  try {
    await first(keySet);
    if (revocations) {
      // A list the issuer signed that this package refuses (another issuer's, a bad signature)
      // is no list to check against either.
      await first(revocations).catch((e) => {
        throw e.code === 'revocation_list_missing' ? e : new GatehouseError('revocation_list_missing', `the revocation list cannot be used: ${e.message}`);
      });
    }
  } catch (e) {
    // What is held is freed, and a fetch given up on that settles later frees what it made.
    release();
    throw e;
  }
  const held = () => {
    if (freed) throw new GatehouseError('invalid_argument', 'this remote verifier was freed');
    return keys.verifier;
  };
  const remote = {
    get kids() {
      return held().kids;
    },
    /** The revocation list held: `{ seq, issuedAt, size }`, or `undefined` without one. */
    get revocations() {
      held();
      return list ? { seq: list.seq, issuedAt: list.issuedAt, size: list.size } : undefined;
    },
    free: release,
    async verify(token, now, ctx) {
      held();
      // On Workers, work a request leaves behind is cancelled when it answers: `ctx.waitUntil`
      // lets a background refetch finish (without it, keys past their TTL are refetched only
      // when a token names an unknown kid, and the list only when a request outlives its fetch).
      const inBackground = (fetcher) => {
        const background = settled(fetcher.load());
        ctx?.waitUntil?.(background);
        return background;
      };
      if (Date.now() - keySet.fetchedAt >= ttlMs && !keySet.live() && cooledDown()) inBackground(keySet);
      // Counted from the last try, not the last success: an issuer that is down is asked once
      // per period, not at every token.
      if (revocations) {
        const due = Date.now() - revocations.attemptedAt >= listTtlMs && !revocations.live();
        const fetching = due ? inBackground(revocations) : revocations.live();
        // Past a period and a fetch's limit since the list held was fetched, no request came to
        // refresh it (an idle server): the tokens wait for the list being fetched, or a logout
        // from the quiet spell would pass. Not while the issuer fails (a fetch failed within
        // that time): the list held serves, and tokens wait at most once per failing streak.
        const window = listTtlMs + limitMs;
        const now = Date.now();
        if (fetching && now - revocations.fetchedAt > window && now - revocations.failedAt > window) {
          await settled(fetching);
        }
      }
      // Entries are honoured even from a list too old to rely on, as at the edge: refusing is
      // always safe. Then a token the list would pass is refused while the list is stale.
      const check = () => {
        if (!list) return held().verify(token, now);
        const claims = held().verifyNotRevoked(token, list, now);
        const age = (now ?? Date.now() / 1000) - list.issuedAt;
        if (age > maxListAgeSecs) {
          throw new GatehouseError('revocation_list_stale', `the revocation list was signed ${Math.floor(age)} s ago, over maxListAgeSeconds (${maxListAgeSecs})`);
        }
        return claims;
      };
      try {
        return check();
      } catch (e) {
        const newKid = e instanceof GatehouseError && e.code === 'unknown_kid';
        if (!newKid || !(keySet.live() || cooledDown())) throw e;
        await refetchKeys();
        return check();
      }
    },
  };
  if (typeof Symbol.dispose === 'symbol') remote[Symbol.dispose] = remote.free;
  return remote;
}
