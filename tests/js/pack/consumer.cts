// The CommonJS view of the package's types (`require`, resolved through the exports map).
import gatehouse = require('@gatehouse/verify');
import client = require('@gatehouse/verify/client');

export function check(jwks: gatehouse.JwkSet, token: string): string {
  const claims: gatehouse.AccessClaims = new gatehouse.Verifier(jwks, { issuer: 'i', audience: 'a' }).verify(token);
  return claims.sub;
}

export function signIn(issuer: string): Promise<void> {
  const session: client.GatehouseClient = new client.GatehouseClient({ issuer });
  return session.login('alice', 'pw').finally(() => session.close());
}
