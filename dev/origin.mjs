// The demo origin behind the edge.
// - `/`, `/demo.js`: the demo page; `/pkg/*`: the built @gatehouse/verify package (edge/js/pkg);
// - `/issuer/*`: proxied to the issuer (ORIGIN_ISSUER_URL), so the page logs in through the edge
//   on its own origin, with no CORS;
// - `/api/whoami`: echoes the identity headers the edge added; `/api/redirect`: a 302 to another
//   host (a proxy must pass it on, not follow it); CORS preflights (OPTIONS) get 204 and the
//   CORS headers; other paths answer with a stub;
// - every request is recorded, and `GET /__origin/requests` returns (and clears) the record, so
//   the end-to-end tests can assert exactly what reached the origin;
// - with ORIGIN_SECRET set (`make dev` sets it), any request without the edge's
//   `X-Gatehouse-Origin-Secret` gets 403, and the secret is neither echoed nor passed on: what a
//   production origin does with it (the record above is then off).
// Usage: node dev/origin.mjs [port]   (default 8788)
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const port = Number(process.argv[2] ?? process.env.ORIGIN_PORT ?? 8788);
const issuer = process.env.ORIGIN_ISSUER_URL ?? 'http://127.0.0.1:8000';
const root = fileURLToPath(new URL('..', import.meta.url));
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain' };
let seen = [];
const digest = (text) => createHash('sha256').update(String(text)).digest();
const secret = process.env.ORIGIN_SECRET ? digest(process.env.ORIGIN_SECRET) : null;
// Equal-length digests, compared in constant time.
const throughEdge = (req) => !secret || timingSafeEqual(secret, digest(req.headers['x-gatehouse-origin-secret'] ?? ''));

async function file(res, path) {
  try {
    const body = await readFile(path);
    res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not_found"}');
  }
}

async function proxy(req, res, path, body) {
  const headers = { ...req.headers };
  delete headers.host;
  delete headers['content-length'];
  // The edge's secret is this origin's to check, never to pass on.
  delete headers['x-gatehouse-origin-secret'];
  try {
    const upstream = await fetch(`${issuer}${path}`, {
      method: req.method, headers, body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
    });
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  } catch (e) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'bad_gateway', error_description: String(e) }));
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const url = new URL(req.url, 'http://origin');
    const body = Buffer.concat(chunks);
    // The record holds the edge's secret: it is for the tests, which run this origin without one.
    if (url.pathname === '/__origin/requests' && !secret) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen));
      seen = [];
      return;
    }
    // Bounded: under benchmark load nobody drains it.
    if (seen.length >= 1000) seen.shift();
    seen.push({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, body: body.toString('utf8') });
    if (!throughEdge(req)) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'forbidden', error_description: 'not through the edge (X-Gatehouse-Origin-Secret)' }));
      return;
    }
    if (url.pathname.startsWith('/issuer/')) return proxy(req, res, url.pathname.slice('/issuer'.length) + url.search, body);
    if (url.pathname === '/' || url.pathname === '/index.html') return file(res, join(root, 'dev/demo/index.html'));
    if (url.pathname === '/demo.js') return file(res, join(root, 'dev/demo/demo.js'));
    if (url.pathname.startsWith('/pkg/')) {
      const rel = normalize(url.pathname.slice('/pkg/'.length));
      if (rel.startsWith('..')) { res.writeHead(400); res.end(); return; }
      return file(res, join(root, 'edge/js/pkg', rel));
    }
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
      res.writeHead(204, {
        'access-control-allow-origin': req.headers.origin ?? '*',
        'access-control-allow-methods': 'GET, POST, PUT, DELETE',
        'access-control-allow-headers': 'authorization, content-type',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (url.pathname === '/api/redirect') {
      res.writeHead(302, { location: 'https://elsewhere.example/landing', 'content-type': 'text/plain' });
      res.end('moved');
      return;
    }
    if (url.pathname === '/api/whoami') {
      const identity = Object.fromEntries(Object.entries(req.headers)
        .filter(([k]) => k.startsWith('x-gatehouse-') && k !== 'x-gatehouse-origin-secret'));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ identity, method: req.method, path: url.pathname, query: url.search }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, method: req.method, path: url.pathname }));
  });
});

server.listen(port, '127.0.0.1', () => console.log(`demo origin on http://127.0.0.1:${port}`));
