export * from './gatehouse_verify.js';
export { default } from './gatehouse_verify.js';

/** Thrown by every failing call. `code` is the stable machine code (see the README table). */
export declare class GatehouseError extends Error {
  readonly name: 'GatehouseError';
  readonly code: string;
  constructor(code: string, message: string);
}

import type { AccessClaims, VerifierOptions } from './gatehouse_verify.js';

export interface RemoteVerifierOptions extends VerifierOptions {
  /** How long a fetched JWK set is used before it is fetched again (default 300 s, at most 3600, the edge's bound; a number or its text). */
  ttlSeconds?: number | string;
  /** At most one refetch per this many seconds for unknown kids and expiry (default 30 s, or `ttlSeconds` when shorter; at most `ttlSeconds`). */
  refetchCooldownSeconds?: number | string;
  /** A JWK set fetch gives up after this many seconds (default 5, at most 3600). */
  fetchTimeoutSeconds?: number | string;
  /**
   * The issuer's signed revocation list (`/v1/revocations`): with it, `verify` also refuses a
   * token the list names (`revoked`), as the edge does. Fetched by the same rules as the keys
   * (8 MiB at most); without a first list `createRemoteVerifier` throws `revocation_list_missing`.
   */
  revocationsUrl?: string | URL;
  /** The list is refetched in the background this long after the last try (default 10 s, the
   * edge's `KV_REFRESH_SECS`; from 1 to 3600; a number or its text). */
  revocationsTtlSeconds?: number | string;
  /** Once the list held was signed longer ago than this, a token it does not name is refused
   * `revocation_list_stale` (default 5400 s, the edge's `MAX_LIST_AGE_SECS`; at least
   * `revocationsTtlSeconds` + `fetchTimeoutSeconds` + 60). */
  maxListAgeSeconds?: number | string;
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: (url: string, init: { headers: Record<string, string>; redirect: 'manual'; signal: AbortSignal }) => Promise<Response>;
}

/** A verifier over the issuer's JWK set, refetched by the edge's rules. */
export interface RemoteVerifier {
  /** The `kid`s of the JWK set held now. */
  readonly kids: string[];
  /** The revocation list held now, without a `revocationsUrl` `undefined`. */
  readonly revocations: { seq: number; issuedAt: number; size: number } | undefined;
  /**
   * `Verifier.verify` (with a `revocationsUrl`, `verifyNotRevoked` against the list held),
   * refetching the keys first if the `kid` is new, and in the background once they are
   * `ttlSeconds` old, as the list once it is `revocationsTtlSeconds` old (after a quiet spell,
   * the list's fetch is waited for). On Cloudflare Workers
   * pass the request's `ctx`: a background refetch goes to `ctx.waitUntil`, or it would be
   * cancelled when the response is sent.
   */
  verify(token: string, now?: number, ctx?: { waitUntil(promise: Promise<unknown>): void }): Promise<AccessClaims>;
  /** Frees the keys' and the list's wasm memory now; any later call throws `invalid_argument`. On Workers no
   * finalizer frees it: make one per isolate, or free each one you make per request. */
  free(): void;
  [Symbol.dispose](): void;
}

/**
 * Fetches the JWK set at `jwksUrl` (throws `keys_unavailable` if it cannot) and returns a
 * verifier that refetches it in the background after `ttlSeconds`, and waits for a refetch only
 * for an unknown kid, at most once per `refetchCooldownSeconds`.
 */
export declare function createRemoteVerifier(jwksUrl: string | URL, options: RemoteVerifierOptions): Promise<RemoteVerifier>;

/** Where the client keeps tokens when asked to persist them (sessionStorage, localStorage, …). */
export interface TokenStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface GatehouseClientOptions {
  /** Base URL of the issuer (default: this origin). */
  issuer?: string;
  /** This app's OAuth `client_id`, sent with every login and refresh: the issuer names it in
   * the access tokens (RFC 9068) and refuses the session's refresh under another. Not
   * authenticated: the issuer keeps no client registry. 1 to 255 printable ASCII characters
   * without surrounding spaces: the issuer refuses a login under another with
   * `invalid_request`; anything but a non-empty string throws `invalid_options`. */
  clientId?: string;
  /**
   * Origins besides this page's and the issuer's that `fetch` sends the access token to
   * (`https://api.example`); a request to any other origin rejects with `origin_not_allowed`.
   */
  apiOrigins?: string[];
  /** Refresh this many seconds before the access token expires (default 60; 0 or more, or its
   * text; anything else throws `invalid_options`). */
  refreshAheadSeconds?: number | string;
  /** Refresh on a timer ahead of expiry (default true on a page, false without a `document`:
   * Node, Deno, a Web Worker); otherwise only when a token is needed. */
  autoRefresh?: boolean | 'true' | 'false';
  /** Default: memory only, shared with the other tabs of this origin. */
  storage?: TokenStorage;
  /** The BroadcastChannel that tabs share tokens over, and the prefix of the Web Lock and storage
   * key (default `gatehouse:` and the issuer's URL, with the `clientId` after it when there is
   * one, so clients of two issuers, or two clients of one, never share). */
  channelName?: string;
  /** Share the session with this origin's other tabs (default true). Any script on the origin
   * can ask the tabs for it over the channel; `false` keeps each tab's session to itself. */
  shareAcrossTabs?: boolean | 'true' | 'false';
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: typeof globalThis.fetch;
  /** How long a call to the issuer's token endpoint may take before it fails with
   * `network_error` (default 4, under the issuer's 5 s grace window; over 0 and at most 3600, or its text; anything else throws
   * `invalid_options`). */
  requestTimeoutSeconds?: number | string;
}

export type GatehouseClientEvent = 'signedIn' | 'refreshed' | 'signedOut' | 'sessionRevoked';

/** The tokens a client holds (times in milliseconds since the epoch). */
export interface SessionTokens {
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
  receivedAt: number;
  /** The session (`sid` claim) the tokens belong to; absent from a token without one. */
  sid?: string;
  /** The scope the issuer granted, when it said. */
  scope?: string;
  /** Set once a refresh could not move the expiry: the session ends at `expiresAt`. */
  capped?: boolean;
  /** Refreshes since the login (0 for the login's set): how tabs tell which set is newer. */
  rotations?: number;
}

/** Log in, keep and refresh tokens across calls and tabs, and call APIs with them. */
export declare class GatehouseClient {
  constructor(options?: GatehouseClientOptions);
  /** Resolves once other tabs had a moment to hand over a session they hold. */
  readonly ready: Promise<void>;
  readonly accessToken: string | undefined;
  readonly signedIn: boolean;
  readonly storageKey: string;
  on(event: GatehouseClientEvent, handler: (tokens?: Readonly<SessionTokens>) => void): () => void;
  /** Signs in; a session held before is ended at the issuer (best effort). */
  login(username: string, password: string, scope?: string): Promise<void>;
  getAccessToken(): Promise<string | undefined>;
  refresh(): Promise<void>;
  /** Rejects with `origin_not_allowed`, sending nothing, outside this origin, the issuer's and
   * `apiOrigins`, or for a relative URL off a page. On an `expired` or `revoked` answer (or `unknown_kid` on a token held over 30 s),
   * refreshes and sends once more (not a `ReadableStream` body in `init`, which is sent once); rejects
   * with `session_revoked` when the issuer refuses the refresh, or with the refresh's own code
   * (`network_error`, …) when it fails otherwise. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Signs out in every tab; rejects with `logout_failed` if the issuer could not be told, whose
   * `retry()` tries again. */
  logout(): Promise<void>;
  /** Stops the refresh timer and leaves the tab channel; the tokens stay. A refresh already
   * sent (with its quick retry after a network failure) still finishes and reaches the tabs. */
  close(): void;
}

/** A failure of the client itself, with an OAuth2-style `code` (`invalid_grant`,
 * `session_revoked`, `network_error`, `invalid_response` for a 200 without tokens, …). */
export declare class GatehouseClientError extends Error {
  readonly name: 'GatehouseClientError';
  readonly code: string;
  /** Seconds the issuer asked to wait (`Retry-After` of a 429 or 503), when it did. */
  readonly retryAfter?: number;
  /** On `logout_failed`: tries to end the session at the issuer again. */
  retry?: () => Promise<void>;
  constructor(code: string, message: string, retryAfter?: number);
}
