// A frontend that verifies an issuer token with @gatehouse/verify, as an app would after
// `npm install`. Input in the URL fragment; the result on <body data-result>.
import init, { Verifier, GatehouseError } from '@gatehouse/verify';

const show = (result) => {
  document.body.textContent = JSON.stringify(result);
  document.body.dataset.result = JSON.stringify(result);
};

try {
  const { jwks, token, tampered, issuer, audience } = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  await init();
  const verifier = new Verifier(jwks, { issuer, audience });
  const result = { sub: verifier.verify(token).sub };
  try {
    verifier.verify(tampered);
  } catch (e) {
    result.code = e instanceof GatehouseError ? e.code : String(e);
  }
  show(result);
} catch (e) {
  show({ error: String(e) });
}
