// openid-client (and the oauth4webapi under it) as a public client against the running issuer,
// for tests/e2e/oauth_clients.rs: discovery (RFC 8414), the password grant, the access token
// checked by jose against the published JWKS, a refresh, a revocation (RFC 7009) and a refresh
// after it. Reads one JSON request on stdin ({issuer, audience, username, password, scope}, and
// `alg` when the issuer's `jws_alg` is not `EdDSA`),
// writes what the library did as one JSON object; the Rust side asserts.
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));

// The library's verdict on a call that should fail: the OAuth error code it read, or its own.
async function failure(call) {
  try {
    await call();
    return { ok: true };
  } catch (e) {
    return { ok: false, error: e.error ?? e.code ?? e.name };
  }
}

// The issuer runs on http://127.0.0.1 in the test: the library refuses plain HTTP unless told.
const config = await client.discovery(new URL(req.issuer), 'interop-node', undefined, client.None(), {
  algorithm: 'oauth2',
  execute: [client.allowInsecureRequests],
});
const metadata = config.serverMetadata();
const jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
const claimsOf = async (accessToken) => {
  const { payload, protectedHeader } = await jose.jwtVerify(accessToken, jwks, {
    issuer: metadata.issuer, audience: req.audience, typ: 'at+jwt', algorithms: [req.alg ?? 'EdDSA'],
  });
  return { payload, protectedHeader };
};

const out = { metadata_issuer: metadata.issuer };
const first = await client.genericGrantRequest(config, 'password', {
  username: req.username, password: req.password, scope: req.scope,
});
out.first = { token_type: first.token_type, expires_in: first.expires_in, scope: first.scope };
const firstClaims = await claimsOf(first.access_token);
out.first_claims = firstClaims.payload;
out.first_header = firstClaims.protectedHeader;

const second = await client.refreshTokenGrant(config, first.refresh_token);
out.second_claims = (await claimsOf(second.access_token)).payload;
out.rotated = second.refresh_token !== first.refresh_token;

await client.tokenRevocation(config, second.refresh_token, { token_type_hint: 'refresh_token' });
out.revoked = true;
out.after_revoke = await failure(() => client.refreshTokenGrant(config, second.refresh_token));
out.wrong_password = await failure(() => client.genericGrantRequest(config, 'password', {
  username: req.username, password: `${req.password}-wrong`,
}));

// RFC 9068's validator, as a resource server using oauth4webapi would run it, on the first
// access token and on the refreshed one.
const as = { ...metadata };
const rfc9068 = async (accessToken) => {
  const request = new Request(`${req.issuer}/resource`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  try {
    const claims = await oauth.validateJwtAccessToken(as, request, req.audience, {
      [oauth.allowInsecureRequests]: true,
    });
    return { ok: true, client_id: claims.client_id };
  } catch (e) {
    return { ok: false, message: e.message };
  }
};
out.rfc9068 = [await rfc9068(first.access_token), await rfc9068(second.access_token)];

process.stdout.write(JSON.stringify(out));
