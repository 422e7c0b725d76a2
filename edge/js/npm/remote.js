// Remote keys: a Verifier over the issuer's JWK set, fetched and cached by the edge's rules,
// whose defaults come from the shared core (`keySetFetchDefaults()`), as the edge's do.
// - The set is fetched once, then used for `ttlSeconds` (300, the edge's KEYS_TTL_SECS); after
//   that it is refetched in the background while verification goes on with the keys held.
// - A token naming an unknown `kid` waits for one refetch, at most once per
//   `refetchCooldownSeconds` (30, the edge's JWKS_REFETCH_COOLDOWN_SECS), so a flood of made-up
//   kids cannot hammer the issuer; concurrent callers share one fetch.
// - A fetch gives up after `fetchTimeoutSeconds` (5); a failed refetch, or a set with no key
//   this package can use, keeps the keys held. A fetch that never settles (on Workers, one
//   started by a request that has ended) is given up on after that limit too.
// - The keys come over `https:` only (plain `http:` to this machine, for development), from
//   the URL given and not one it redirects to, and at most 1 MiB of them: whoever can answer
//   that URL decides which tokens verify. Redirects are refused by hand (`redirect: 'manual'`):
//   workerd has no `'error'`.
// `index.js` re-exports this module; the cycle is safe because nothing here runs at import.
import init, { GatehouseError, Verifier, keySetFetchDefaults } from './index.js';

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

export async function createRemoteVerifier(jwksUrl, options = {}) {
  if (options === null || typeof options !== 'object') throw invalidOptions('options must be an object');
  const {
    ttlSeconds,
    refetchCooldownSeconds,
    fetchTimeoutSeconds,
    fetch: fetchKeys = globalThis.fetch,
    ...verifierOptions
  } = options;
  // The caller's options first, before anything is loaded or fetched: a mistake of theirs (no
  // audience, a leeway over 60, a NaN from an unset environment variable) throws as it does for
  // a local Verifier (`invalid_key`, "invalid options"), where it would otherwise pass for the
  // issuer's keys being unavailable, or quietly stop every refetch.
  // Seconds as a number or its text (a Workers var is text).
  const seconds = (name, value) => {
    if (value === undefined) return undefined;
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || Number.isNaN(n) || n < 0) throw invalidOptions(`${name} must be a number of seconds, 0 or more`);
    return n;
  };
  const ttl = seconds('ttlSeconds', ttlSeconds);
  const cooldown = seconds('refetchCooldownSeconds', refetchCooldownSeconds);
  const timeout = seconds('fetchTimeoutSeconds', fetchTimeoutSeconds);
  if (typeof fetchKeys !== 'function') throw invalidOptions('fetch must be a function');
  // setTimeout's limit is about 24 days; an hour is more than any key set needs.
  if (timeout !== undefined && !(timeout > 0 && timeout <= 3600)) throw invalidOptions('fetchTimeoutSeconds must be over 0 and at most 3600');
  // The edge's bound: a key the issuer drops verifies until a refetch.
  if (ttl > 3600) throw invalidOptions('ttlSeconds must be at most 3600');
  let url;
  try {
    // Relative to the page, in a browser, as `fetch` would read it.
    url = new URL(String(jwksUrl), globalThis.document?.baseURI ?? globalThis.location?.href);
  } catch {
    throw invalidOptions(`the JWK set URL ${JSON.stringify(String(jwksUrl))} is not a URL`);
  }
  if (!trusted(url)) throw invalidOptions('the JWK set URL must be https: (http: only to localhost)');
  // What a fetch reports as its `url` when it was not redirected.
  const withoutFragment = url.href.replace(/#.*$/s, '');
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
  const ttlMs = (ttl ?? defaults.ttlSeconds) * 1000;
  const cooldownMs = (cooldown ?? defaults.refetchCooldownSeconds) * 1000;
  const timeoutSecs = timeout ?? defaults.fetchTimeoutSeconds;
  const maxBytes = defaults.maxBytes;
  new Verifier({ keys: [] }, verifierOptions).free();
  let verifier;
  let freed = false;
  let fetchedAt = 0;
  let attemptedAt = -Infinity;
  let inflight = null;
  // Each fetch's place in order: one given up on that settles late installs only if no later
  // one has installed meanwhile.
  let started = 0;
  let installed = 0;
  // A fetch is given up on after its limit, plus a second's grace for the answer's body: on
  // Workers a background fetch dies with the request that started it (its promise then never
  // settles), and a fetch still marked in flight would otherwise block every refetch for good.
  const limitMs = timeoutSecs * 1000 + 1000;
  const live = () => (inflight && Date.now() - attemptedAt < limitMs ? inflight : null);
  const load = () => {
    const joined = live();
    if (joined) return joined;
    attemptedAt = Date.now();
    const generation = ++started;
    // `await null` first: a `fetch` that throws at once must not clear `inflight` before it is set.
    const attempt = (async () => {
      await null;
      try {
        const response = await fetchKeys(url.href, {
          headers: { accept: 'application/json' },
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutSecs * 1000),
          // A browser (a page or a web worker) would answer a refetch for a new kid from its
          // HTTP cache (the issuer's set is `max-age=60`), then sit out the cooldown. Only
          // browsers: some server runtimes refuse the member (older Workers, edge runtimes).
          ...(globalThis.navigator?.userAgent?.startsWith('Mozilla/') ? { cache: 'no-cache' } : {}),
        });
        // A browser hands a redirect over as an opaque one (status 0), workerd and Node as the
        // 3xx; a `fetch` of the caller's own may follow it anyway, and then says so or names
        // another URL. The keys come from the URL given or not at all (a hop on the way, plain
        // http included, is not seen here).
        if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)
          || response.redirected || (response.url && response.url !== withoutFragment)) {
          throw new GatehouseError('keys_unavailable', 'the JWK set URL redirects; give its final URL');
        }
        if (!response.ok) {
          throw new GatehouseError('keys_unavailable', `the JWK set answered HTTP ${response.status}`);
        }
        const tooLarge = () => new GatehouseError('keys_unavailable', `the JWK set is over ${maxBytes / 2 ** 20} MiB`);
        if (Number(response.headers?.get?.('content-length')) > maxBytes) throw tooLarge();
        const text = await boundedText(response, maxBytes, tooLarge);
        let fresh;
        try {
          fresh = new Verifier(text, verifierOptions);
        } catch (e) {
          // A document that is no key set (an error page's JSON) is the issuer's keys being
          // unavailable, as the README says, not a bad key of the caller's.
          if (e instanceof GatehouseError && e.code === 'invalid_key') {
            throw new GatehouseError('keys_unavailable', `the JWK set cannot be used: ${e.message}`);
          }
          throw e;
        }
        // An empty set (an error page's JSON, a deploy in progress) would refuse every token.
        if (fresh.kids.length === 0) {
          fresh.free();
          throw new GatehouseError('keys_unavailable', 'the JWK set holds no usable key');
        }
        if (generation < installed || freed) {
          fresh.free();
          return;
        }
        installed = generation;
        // Freed now, not left to a finalizer that Workers may never run: nothing holds the old
        // one across an `await` (`verify` is synchronous).
        const replaced = verifier;
        verifier = fresh;
        replaced?.free();
        fetchedAt = Date.now();
      } catch (e) {
        throw e instanceof GatehouseError ? e : new GatehouseError('keys_unavailable', `fetching the JWK set: ${e}`);
      } finally {
        if (inflight === attempt) inflight = null;
      }
    })();
    inflight = attempt;
    return attempt;
  };
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
  const cooledDown = () => Date.now() - attemptedAt >= cooldownMs;
  // A refetch in flight is joined; a new one starts only once the cooldown has passed.
  const refetch = () => settled(load());
  // The first fetch fails loudly, within the same limit: without keys there is nothing to
  // verify with, and a caller keeping this promise must not wait for good.
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new GatehouseError('keys_unavailable', 'fetching the JWK set did not finish in time')), limitMs);
    timer?.unref?.();
  });
  try {
    await Promise.race([load(), late]);
  } finally {
    clearTimeout(timer);
  }
  const held = () => {
    if (freed) throw new GatehouseError('invalid_argument', 'this remote verifier was freed');
    return verifier;
  };
  const remote = {
    get kids() {
      return held().kids;
    },
    /** Frees the keys' wasm memory now. On Workers nothing else does (no finalizer runs):
     * make one remote verifier per isolate, or free each one made per request. */
    free() {
      freed = true;
      verifier?.free();
      verifier = undefined;
    },
    async verify(token, now, ctx) {
      held();
      if (Date.now() - fetchedAt >= ttlMs && !live() && cooledDown()) {
        // On Workers, work a request leaves behind is cancelled when it answers: `ctx.waitUntil`
        // lets the background refetch finish (without it, keys past their TTL are refetched only
        // when a token names an unknown kid).
        const background = refetch();
        ctx?.waitUntil?.(background);
      }
      try {
        return verifier.verify(token, now);
      } catch (e) {
        const newKid = e instanceof GatehouseError && e.code === 'unknown_kid';
        if (!newKid || !(live() || cooledDown())) throw e;
        await refetch();
        return held().verify(token, now);
      }
    },
  };
  if (typeof Symbol.dispose === 'symbol') remote[Symbol.dispose] = remote.free;
  return remote;
}
