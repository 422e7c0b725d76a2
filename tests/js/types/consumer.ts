// Type-checks the package's .d.ts the way an application would use it (tsc --noEmit).
import init, {
  Verifier,
  RevocationList,
  GatehouseError,
  decodeUnverified,
  expiresIn,
  isExpired,
  errorCodes,
  initSync,
  type AccessClaims,
  type VerifierOptions,
} from '@gatehouse/verify';

export async function check(jwks: object, token: string, snapshot: string): Promise<string> {
  await init();
  const options: VerifierOptions = { issuer: 'https://issuer.test', audience: 'app', leeway: 30 };
  const verifier = new Verifier(jwks, options);
  const kids: string[] = verifier.kids;
  try {
    const claims = verifier.verify(token) as AccessClaims;
    const left: number = expiresIn(token);
    const expired: boolean = isExpired(token, 5);
    const list = RevocationList.fromSnapshot(snapshot, jwks, options.issuer);
    const reason: string | undefined = list.check(token, verifier);
    const seq: number = list.seq;
    const decoded = decodeUnverified(token);
    return `${claims.sub} ${left} ${expired} ${reason ?? 'live'} ${seq} ${kids.length} ${typeof decoded}`;
  } catch (e) {
    if (e instanceof GatehouseError) {
      const code: string = e.code;
      return code;
    }
    throw e;
  }
}

export function codes(): string[] {
  return errorCodes();
}

export function fromBytes(bytes: BufferSource): void {
  initSync({ module: bytes });
}
