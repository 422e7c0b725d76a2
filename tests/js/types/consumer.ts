// Type-checks the package's .d.ts the way an application would use it: `tsc --noEmit` in strict
// mode, against the package installed from its tarball (tests/js/package.test.mjs), no casts.
import init, {
  Verifier,
  RevocationList,
  GatehouseError,
  decodeUnverified,
  expiresIn,
  isExpired,
  errorCodes,
  initSync,
  keySetFetchDefaults,
  createRemoteVerifier,
  type AccessClaims,
  type DecodedToken,
  type JwkSet,
  type KeySetFetchDefaults,
  type RemoteVerifier,
  type RevocationReason,
  type VerifierOptions,
} from '@gatehouse/verify';
import wasm from '@gatehouse/verify/wasm';
import { GatehouseClient, GatehouseClientError, type GatehouseClientOptions } from '@gatehouse/verify/client';

export async function check(jwks: JwkSet, token: string, snapshot: string): Promise<string> {
  await init();
  const options: VerifierOptions = { issuer: 'https://issuer.test', audience: 'app', leeway: 30 };
  const verifier = new Verifier(jwks, options);
  const kids: string[] = verifier.kids;
  try {
    const claims: AccessClaims = verifier.verify(token);
    const left: number = expiresIn(token);
    const expired: boolean = isExpired(token, 5);
    const list = RevocationList.fromSnapshot(snapshot, jwks, options.issuer);
    const reason: RevocationReason | undefined = list.check(token, verifier);
    const seq: number = list.seq;
    const decoded: DecodedToken = decodeUnverified(token);
    const alg: string = decoded.header.alg;
    return `${claims.sub} ${left} ${expired} ${reason ?? 'live'} ${seq} ${kids.length} ${alg}`;
  } catch (e) {
    if (e instanceof GatehouseError) {
      const code: string = e.code;
      return code;
    }
    throw e;
  }
}

// The types say no: each line below must fail to type-check, or `tsc` reports the unused
// directive. An `any` anywhere on these paths would let them through.
export function misuse(jwks: JwkSet, token: string): void {
  // @ts-expect-error: options need an audience
  new Verifier(jwks, { issuer: 'https://issuer.test' });
  // @ts-expect-error: a JWK set is not a number
  new Verifier(42, { issuer: 'https://issuer.test', audience: 'app' });
  const verifier = new Verifier(jwks, { issuer: 'https://issuer.test', audience: 'app' });
  // @ts-expect-error: claims have no `admin` member
  verifier.verify(token).admin;
  // @ts-expect-error: `sub` is a string
  const sub: number = verifier.verify(token).sub;
  // @ts-expect-error: a revocation reason is one of four strings
  const reason: 'expired' | undefined = RevocationList.fromSnapshot('', jwks, '').check(token, verifier);
  void sub;
  void reason;
}

export function codes(): string[] {
  return errorCodes();
}

export function fromBytes(bytes: BufferSource): void {
  initSync({ module: bytes });
}

export function fromModule(): void {
  const module: WebAssembly.Module = wasm;
  initSync({ module });
}

// The client alone (`@gatehouse/verify/client`), typed like the root export's.
export async function signIn(username: string, password: string): Promise<string | undefined> {
  const options: GatehouseClientOptions = { issuer: 'https://issuer.test', requestTimeoutSeconds: 5 };
  const client = new GatehouseClient(options);
  try {
    await client.login(username, password);
  } catch (e) {
    if (e instanceof GatehouseClientError) return e.code;
  }
  return client.accessToken;
}

/** The remote verifier's defaults and its `free()`, typed. */
export async function remote(url: string): Promise<number> {
  const defaults: KeySetFetchDefaults = keySetFetchDefaults();
  const verifier: RemoteVerifier = await createRemoteVerifier(url, { issuer: 'https://issuer.test', audience: 'app' });
  verifier.free();
  return defaults.ttlSeconds + defaults.refetchCooldownSeconds + defaults.fetchTimeoutSeconds + defaults.maxBytes;
}

