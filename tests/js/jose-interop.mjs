// The jose side of the interop test (tests/e2e/jws_interop.rs; tests/py/interop.py is PyJWT's).
// Reads one JSON request on stdin, writes one JSON answer on stdout.
//   {"op":"sign", "claims":{...}}                      -> {"jwks":{...}, "tokens":{"EdDSA":..., "ES256":...}}
//   {"op":"verify", "jwks":{...}, "token":..., "issuer":..., "audience":...}
//                                                       -> {"ok":true, "payload":{...}, "header":{...}} | {"ok":false, "code":...}
//   {"op":"verify_snapshot", "jwks":{...}, "jws":..., "typ":...}
//                                                       -> {"ok":true, "payload_b64":...} | {"ok":false, "code":...}
import * as jose from 'jose';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));

async function sign(claims) {
  const keys = [];
  const tokens = {};
  for (const [alg, kid] of [['EdDSA', 'jose-ed25519'], ['ES256', 'jose-p256']]) {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, { crv: alg === 'EdDSA' ? 'Ed25519' : undefined, extractable: true });
    keys.push({ ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' });
    tokens[alg] = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg, typ: 'at+jwt', kid })
      .sign(privateKey);
  }
  return { jwks: { keys }, tokens };
}

async function verify({ jwks, token, issuer, audience }) {
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jose.createLocalJWKSet(jwks), {
      issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA', 'ES256'],
    });
    return { ok: true, payload, header: protectedHeader };
  } catch (err) {
    return { ok: false, code: err.code ?? String(err) };
  }
}

async function verifySnapshot({ jwks, jws, typ }) {
  try {
    const { payload, protectedHeader } = await jose.compactVerify(jws, jose.createLocalJWKSet(jwks));
    if (protectedHeader.typ !== typ) return { ok: false, code: 'wrong typ' };
    return { ok: true, payload_b64: Buffer.from(payload).toString('base64url') };
  } catch (err) {
    return { ok: false, code: err.code ?? String(err) };
  }
}

const ops = { sign: (r) => sign(r.claims), verify, verify_snapshot: verifySnapshot };
const op = ops[req.op];
if (!op) throw new Error(`unknown op ${req.op}`);
process.stdout.write(JSON.stringify(await op(req)));
