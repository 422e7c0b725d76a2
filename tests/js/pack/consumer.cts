// The CommonJS view of the package's types (`require`, resolved through the exports map).
import gatehouse = require('@gatehouse/verify');

export function check(jwks: gatehouse.JwkSet, token: string): string {
  const claims: gatehouse.AccessClaims = new gatehouse.Verifier(jwks, { issuer: 'i', audience: 'a' }).verify(token);
  return claims.sub;
}
