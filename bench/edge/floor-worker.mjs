// The floor for rows 1c (and the loop microscope): the least a gate that checks Ed25519 with the
// runtime's WebCrypto can do per request. It checks the token's signature (key imported once)
// and nothing else: no header, claims, expiry or revocation. `/_gatehouse/check` answers the
// verdict; any other path forwards the request as it came (`fetch(url, request)`: no header
// copied or added). No worker that verifies the signature with WebCrypto can add less CPU than
// this (an Ed25519 in the wasm cost more: docs/performance.md). Not a product: a
// measuring stick, and it would be an insecure gate.
const fromB64url = (s) =>
  Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
let key;

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/_gatehouse/health") return new Response("ok");
    key ??= await crypto.subtle.importKey(
      "raw",
      fromB64url(JSON.parse(env.JWKS).keys[0].x),
      "Ed25519",
      false,
      ["verify"],
    );
    const token = (request.headers.get("authorization") ?? "").slice(7);
    const dot = token.lastIndexOf(".");
    const ok =
      dot > 0 &&
      (await crypto.subtle.verify(
        "Ed25519",
        key,
        fromB64url(token.slice(dot + 1)),
        new TextEncoder().encode(token.slice(0, dot)),
      ));
    if (!ok) return new Response("bad", { status: 401 });
    if (url.pathname === "/_gatehouse/check") return new Response("ok");
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};
