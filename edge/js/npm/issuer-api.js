// GatehouseClient's side of the issuer's API (`POST /v1/token`, `/v1/revoke`): a form POST
// bounded in time, and its answers read as a token set or a coded error. Nothing here holds
// state; client.js decides what to do with the answers.

export const isObject = (v) => typeof v === 'object' && v !== null;
// The JWKS-free decoding of the access token's payload (for `sid`) or header (for `kid`), part
// `n`; nothing in it is trusted.
export const payloadOf = (jwt, n = 1) => {
  try {
    const part = jwt.split('.')[n].replace(/-/g, '+').replace(/_/g, '/');
    const payload = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    return isObject(payload) ? payload : {};
  } catch {
    return {};
  }
};
// A JSON object from its text; anything else (no JSON, `null`, an array) reads as `{}`.
export const objectOf = (text) => {
  try {
    const body = JSON.parse(text);
    return isObject(body) ? body : {};
  } catch {
    return {};
  }
};
// A response's JSON object, as `objectOf`; a body that cannot be read reads as `{}` too.
export const bodyOf = (response) => response.text().then(objectOf, () => ({}));
// The issuer's finer `code` (`locked_out`) or else its `error`, when a non-empty string, else
// `fallback`.
export const codeOf = (body, fallback) => [body.code, body.error].find((c) => typeof c === 'string' && c) ?? fallback;
export const textOf = (body, fallback) => (typeof body.error_description === 'string' ? body.error_description : fallback);

/** A failure of the client itself (login refused, session ended), with an OAuth2-style code,
 * and, when the issuer said when to come back (429, 503), `retryAfter` in seconds. */
export class GatehouseClientError extends Error {
  constructor(code, message, retryAfter) {
    super(message);
    this.name = 'GatehouseClientError';
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/** A response's `Retry-After` in seconds (the issuer sends seconds), or `undefined`. */
export function retryAfterOf(response) {
  const text = response.headers?.get?.('retry-after');
  const secs = text == null || text.trim() === '' ? NaN : Number(text);
  return Number.isFinite(secs) && secs >= 0 ? secs : undefined;
}

/** The tokens of a successful `/v1/token` answer; an answer without them (an HTML page a host
 * serves for any path, a proxy's) is `invalid_response`, never a session of `undefined`s. */
export function tokensOf(body) {
  const text = (v) => typeof v === 'string' && v.length > 0;
  const life = Number(body?.expires_in);
  if (!text(body?.access_token) || !text(body?.refresh_token) || !(life > 0 && Number.isFinite(life))) {
    throw new GatehouseClientError('invalid_response', 'the issuer answered without access_token, refresh_token and expires_in');
  }
  const receivedAt = Date.now();
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: receivedAt + Number(body.expires_in) * 1000,
    receivedAt,
    sid: payloadOf(body.access_token).sid,
    scope: body.scope,
    // A login's set; a refresh counts on from the set it replaces.
    rotations: 0,
  };
}

/** A form POST to the issuer, as `{ response, body }` (its JSON object, as `objectOf`),
 * bounded in time: a request or a body that hangs must not hold every caller (and, under the
 * refresh lock, every tab). A network failure or the time running out, before the answer or
 * while its body is read, is `network_error`: a `200` whose body was cut off may carry tokens
 * the issuer has already rotated to, and only a quick second ask gets them (client.js, `#rotate`). */
export async function postForm(fetchWith, url, form, timeoutMs, { needsBody = true } = {}) {
  const controller = new AbortController();
  // One timer for the request and its body, also when a `fetch` of the app's own drops the
  // `signal`: the call is given up all the same.
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`no answer within ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  const answer = async () => {
    const response = await fetchWith(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
      signal: controller.signal,
    });
    // A logout's 200 says all it has to: a body cut off after it must not fail the logout.
    if (response.ok && !needsBody) {
      // A web stream is cancelled; a `fetch` of the app's own may give a Node stream, which
      // has no `cancel` (it would have thrown, failing every logout).
      const stream = response.body;
      if (typeof stream?.cancel === 'function') stream.cancel().catch(() => {});
      return { response, body: {} };
    }
    return { response, body: objectOf(await response.text()) };
  };
  try {
    return await Promise.race([answer(), late]);
  } catch (e) {
    throw new GatehouseClientError('network_error', `the issuer could not be reached: ${e?.message ?? e}`);
  } finally {
    clearTimeout(timer);
  }
}
