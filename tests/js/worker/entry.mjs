// A Worker that uses @gatehouse/verify the way a Workers app would: the wasm module imported as
// a module and initialised synchronously. POST {jwks, token, issuer, audience} -> claims or code;
// with `jwksUrl` instead of `jwks`, through createRemoteVerifier and the runtime's own fetch.
import { initSync, Verifier, GatehouseError, createRemoteVerifier } from '../../../edge/js/pkg/index.js';
import wasm from '../../../edge/js/pkg/gatehouse_verify_bg.wasm';

initSync({ module: wasm });

export default {
  async fetch(request) {
    const { jwks, jwksUrl, token, issuer, audience } = await request.json();
    try {
      const claims = jwksUrl
        ? await (await createRemoteVerifier(jwksUrl, { issuer, audience })).verify(token)
        : new Verifier(jwks, { issuer, audience }).verify(token);
      return Response.json({ ok: true, claims });
    } catch (e) {
      return Response.json({ ok: false, code: e instanceof GatehouseError ? e.code : String(e) });
    }
  },
};
