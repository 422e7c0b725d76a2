// A frontend that verifies an issuer token with @gatehouse/verify, as an app would after
// `npm install`. Input in the URL fragment; the result on <body data-result>.
import init, { Verifier, GatehouseError, createRemoteVerifier } from '@gatehouse/verify';

const show = (result) => {
  document.body.textContent = JSON.stringify(result);
  document.body.dataset.result = JSON.stringify(result);
};

try {
  const { jwks, token, tampered, issuer, audience } = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  // Before any `init()`: the remote verifier loads the wasm itself.
  const keys = typeof jwks === 'string' ? jwks : JSON.stringify(jwks);
  const remote = await createRemoteVerifier('https://keys.test/jwks', { issuer, audience, fetch: async () => new Response(keys) });
  const remoteSub = (await remote.verify(token)).sub;
  await init();
  const verifier = new Verifier(jwks, { issuer, audience });
  const result = { sub: verifier.verify(token).sub, remoteSub };
  try {
    verifier.verify(tampered);
  } catch (e) {
    result.code = e instanceof GatehouseError ? e.code : String(e);
  }
  show(result);
} catch (e) {
  show({ error: String(e) });
}
