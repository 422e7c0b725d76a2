// In-process figures under Node for the benchmark suite: the built @gatehouse/verify wasm
// (verify alone, and verify + revocation lookup), jose's jwtVerify with an imported key, and
// loading a large signed revocation snapshot. JSON in on stdin, JSON out on stdout.
import { readFileSync } from 'node:fs';
import * as jose from 'jose';

const input = JSON.parse(readFileSync(0, 'utf8'));
const { Verifier, RevocationList } = await import(new URL('../../edge/js/pkg/node.js', import.meta.url));

const { jwks, token, issuer, audience, now, repeats, secs } = input;
const verifier = new Verifier(jwks, { issuer, audience });
const list = RevocationList.fromSnapshot(input.snapshot, jwks, issuer, now);
const key = await jose.importJWK(JSON.parse(jwks).keys[0], 'EdDSA');
const joseOptions = { issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA'], currentDate: new Date(now * 1000) };

// Both sides must accept the token before anything is timed.
if (verifier.verifyNotRevoked(token, list, now).jti !== (await jose.jwtVerify(token, key, joseOptions)).payload.jti) {
  throw new Error('the two verifiers disagree on the token');
}

async function rate(op) {
  const end = performance.now() + secs * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) await op();
    n += 16;
  }
  return n / ((performance.now() - start) / 1000);
}
function rateSync(op) {
  const end = performance.now() + secs * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) op();
    n += 16;
  }
  return n / ((performance.now() - start) / 1000);
}

const bigBytes = new TextEncoder().encode(input.big_snapshot);
const out = { wasm_checked_us: [], wasm_verify_per_sec: [], jose_verify_per_sec: [], wasm_refresh_ms: [] };
for (let r = 0; r < repeats; r++) {
  out.wasm_checked_us.push(1e6 / rateSync(() => verifier.verifyNotRevoked(token, list, now)));
  out.wasm_verify_per_sec.push(rateSync(() => verifier.verify(token, now)));
  out.jose_verify_per_sec.push(await rate(() => jose.jwtVerify(token, key, joseOptions)));
  // Bytes, as the edge gets them from the runtime (request body, KV). The median of five loads
  // after a warm-up one: a single 2 MB load is at the mercy of one GC pause.
  const loads = [];
  for (let i = 0; i < 6; i++) {
    const start = performance.now();
    const big = RevocationList.fromSnapshot(bigBytes, jwks, issuer, now);
    const took = performance.now() - start;
    if (big.size < 1) throw new Error('the large snapshot loaded empty');
    big.free();
    if (i > 0) loads.push(took);
  }
  loads.sort((a, b) => a - b);
  out.wasm_refresh_ms.push(loads[2]);
}
process.stdout.write(JSON.stringify(out));
