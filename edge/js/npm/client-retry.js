// When a refresh that failed may be asked again: the client's timer and the app's calls alike
// wait for it (client.js, `#backOff`).

// After a refresh failed on the network, it is asked again after this while within
// NETWORK_GRACE_MS of the first failure: the issuer may have rotated the token before the
// connection dropped, and only an ask inside its grace window (5 s from the rotation) gets the
// successor. Also the least an issuer's `Retry-After` holds a refresh back.
export const NETWORK_BACKOFF_MS = 1000;
const NETWORK_GRACE_MS = 4000;
// Past that, and after a failure without `Retry-After`: this, doubling with each failure in a
// row up to MAX_RETRY_MS, a random part of it cut off, so that the open pages do not all ask an
// issuer that is down (or just back) at the same moments.
export const RETRY_MS = 5000;
export const MAX_RETRY_MS = 60_000;
// The longest an issuer's `Retry-After` holds refreshes back (a proxy's may say days).
const MAX_BACKOFF_MS = 300_000;

/**
 * The back-off after `error`, following `held` (the back-off of the same refresh token before,
 * or null): `{ until, networkSince, slowFailures }`. Never earlier than `held.until`.
 */
export function nextTry(held, error, now, random = Math.random) {
  let networkSince;
  let wait;
  if (error?.code === 'network_error') {
    networkSince = held?.networkSince ?? now;
    if (now - networkSince < NETWORK_GRACE_MS) wait = NETWORK_BACKOFF_MS;
  }
  let slowFailures = held?.slowFailures ?? 0;
  if (wait === undefined && error?.retryAfter !== undefined) {
    wait = Math.min(MAX_BACKOFF_MS, Math.max(NETWORK_BACKOFF_MS, error.retryAfter * 1000));
  } else if (wait === undefined) {
    slowFailures += 1;
    const ceiling = Math.min(MAX_RETRY_MS, RETRY_MS * 2 ** (slowFailures - 1));
    // "Equal jitter": at least half the ceiling, so the back-off still grows.
    wait = ceiling / 2 + random() * (ceiling / 2);
  }
  return { until: Math.max(now + wait, held?.until ?? 0), networkSince, slowFailures };
}
