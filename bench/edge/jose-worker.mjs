// Baseline for the benchmark suite (rows 1a and 1b): the edge's job as a team would write it in
// JavaScript with the npm `jose` package. EdDSA against a JWKS, iss/aud/typ and the required
// claims, a revocation list kept in KV and cached in memory (re-read at the same interval as the
// Rust worker's), then either a verdict (`/_gatehouse/check`) or a forward to the origin.
// Not a product: it exists to be measured against, run the same way as the real worker.
import { createLocalJWKSet, jwtVerify } from "jose";

const KV_KEY = "jose-revocations";
let keys;
let list;
let listCheckedAt = -Infinity;

function deny(status, code) {
  return Response.json(
    { error: "invalid_token", code },
    { status, headers: { "WWW-Authenticate": `Bearer error="invalid_token"` } },
  );
}

async function revocations(env) {
  const now = Date.now();
  if (now - listCheckedAt >= Number(env.KV_REFRESH_SECS ?? 5) * 1000) {
    listCheckedAt = now;
    const stored = await env.GATEHOUSE_KV.get(KV_KEY, "json");
    if (stored) {
      list = {
        jti: new Set(stored.jti),
        sid: new Set(stored.sid),
        users: new Map(Object.entries(stored.users)),
      };
    }
  }
  return list;
}

function revoked(list, claims) {
  const cutOff = list.users.get(claims.sub);
  return (
    list.jti.has(claims.jti) || list.sid.has(claims.sid) || (cutOff !== undefined && claims.iat < cutOff)
  );
}

async function authorize(request, env) {
  const header = request.headers.get("Authorization") ?? "";
  const [scheme, token] = header.split(" ");
  if (scheme?.toLowerCase() !== "bearer" || !token) return { response: deny(401, "missing_token") };
  keys ??= createLocalJWKSet(JSON.parse(env.JWKS));
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, keys, {
      algorithms: ["EdDSA"],
      issuer: env.EXPECTED_ISSUER,
      audience: env.EXPECTED_AUDIENCE,
      typ: "at+jwt",
      requiredClaims: ["sub", "exp", "iat", "jti", "sid"],
    }));
  } catch (e) {
    return { response: deny(401, e.code ?? "invalid_token") };
  }
  const current = await revocations(env);
  if (!current) return { response: Response.json({ code: "revocation_list_missing" }, { status: 503 }) };
  if (revoked(current, claims)) return { response: deny(401, "revoked") };
  return { claims };
}

async function forward(request, env, claims) {
  const url = new URL(request.url);
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (!name.startsWith("x-gatehouse-") && name !== "host") headers.append(name, value);
  }
  headers.set("X-Gatehouse-Sub", claims.sub);
  headers.set("X-Gatehouse-Scope", claims.scope ?? "");
  headers.set("X-Gatehouse-Sid", claims.sid);
  headers.set("X-Gatehouse-Jti", claims.jti);
  const body = ["GET", "HEAD"].includes(request.method) ? undefined : request.body;
  return fetch(env.ORIGIN_URL + url.pathname + url.search, { method: request.method, headers, body });
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/_gatehouse/health") return Response.json({ status: "ok" });
    if (pathname === "/_bench/revocations" && request.method === "POST") {
      await env.GATEHOUSE_KV.put(KV_KEY, await request.text());
      listCheckedAt = -Infinity;
      return Response.json({ stored: true });
    }
    const { claims, response } = await authorize(request, env);
    if (response) return response;
    if (pathname === "/_gatehouse/check") {
      return Response.json({ sub: claims.sub, scope: claims.scope, sid: claims.sid, exp: claims.exp });
    }
    return forward(request, env, claims);
  },
};
