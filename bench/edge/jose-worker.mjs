// Baseline for the benchmark suite (rows 1a and 1b): the edge's job as a team would write it in
// JavaScript with the npm `jose` package. EdDSA against a JWKS, iss/aud/typ and the required
// claims, a revocation list kept in KV and cached in memory (re-read at the same interval as the
// Rust worker's), then either a verdict (`/_gatehouse/check`) or a forward to the origin.
// Not a product: it exists to be measured against, run the same way as the real worker.
// With `FORWARD_RULES = "gate"` it forwards as the Rust gate does (row 1c's second baseline for
// the forwarded path): the same job in JavaScript, so the two forwards compare like for like.
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

// A copy of the gate's rule (edge/src/origin.rs, `is_dropped_header`) for this baseline only:
// the headers a client could use to make the origin route or act otherwise, in either spelling
// (`-` or `_`), ours, `Destination`, and the `_` spelling of those Cloudflare sets itself. A unit
// test in origin.rs (`the_jose_baselines_copy_of_the_rule_names_the_same_headers`) keeps the
// two sets below the same as the gate's.
const ROUTING_HEADERS = new Set(["host", "forwarded", "x-forwarded-host", "x-forwarded-server",
  "x-forwarded-port", "x-forwarded-prefix", "x-original-host", "x-original-url", "x-rewrite-url",
  "x-forwarded-scheme", "x-forwarded-ssl", "x-host", "x-http-method-override", "x-http-method",
  "x-method-override", "true-client-ip", "x-script-name", "x-scheme", "x-url-scheme"]);
const CLOUDFLARE_HEADERS = new Set(["x-real-ip", "x-forwarded-for", "x-forwarded-proto"]);
function droppedByTheGate(name) {
  const dashed = name.replaceAll("_", "-");
  return dashed.startsWith("x-gatehouse-") || name === "destination" || ROUTING_HEADERS.has(dashed)
    || (name.includes("_") && (dashed.startsWith("cf-") || CLOUDFLARE_HEADERS.has(dashed)));
}

// As the gate forwards a verified request: routing headers dropped, `X-Forwarded-Host` set,
// redirects passed on, Cloudflare's cache kept out of a user's response, the origin's failure a
// 502 of its own.
async function forwardAsTheGate(request, env, claims) {
  const url = new URL(request.url);
  const headers = new Headers(request.headers);
  for (const name of [...headers.keys()]) if (droppedByTheGate(name)) headers.delete(name);
  headers.set("X-Forwarded-Host", url.host);
  headers.set("X-Gatehouse-Sub", claims.sub);
  headers.set("X-Gatehouse-Scope", claims.scope ?? "");
  headers.set("X-Gatehouse-Sid", claims.sid);
  headers.set("X-Gatehouse-Jti", claims.jti);
  const body = ["GET", "HEAD"].includes(request.method) ? undefined : request.body;
  const init = { method: request.method, headers, body, redirect: "manual", cache: "no-store" };
  return fetch(env.ORIGIN_URL + url.pathname + url.search, init).catch(() =>
    Response.json({ code: "origin_unreachable" }, { status: 502 }),
  );
}

async function forward(request, env, claims) {
  if (env.FORWARD_RULES === "gate") return forwardAsTheGate(request, env, claims);
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
