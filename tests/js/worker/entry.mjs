// A Worker that uses @gatehouse/verify the way a Workers app would: the wasm module imported as
// a module and initialised synchronously. POST {jwks, token, issuer, audience} -> claims or code.
import { initSync, Verifier, GatehouseError } from '../../../edge/js/pkg/index.js';
import wasm from '../../../edge/js/pkg/gatehouse_verify_bg.wasm';

initSync({ module: wasm });

export default {
  async fetch(request) {
    const { jwks, token, issuer, audience } = await request.json();
    try {
      const claims = new Verifier(jwks, { issuer, audience }).verify(token);
      return Response.json({ ok: true, claims });
    } catch (e) {
      return Response.json({ ok: false, code: e instanceof GatehouseError ? e.code : String(e) });
    }
  },
};
