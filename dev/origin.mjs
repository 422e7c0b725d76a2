// The demo origin behind the edge. `/api/whoami` echoes the identity headers the edge added;
// every request is recorded, and `GET /__origin/requests` returns (and clears) the record, so
// the end-to-end tests can assert exactly what reached the origin.
// Usage: node dev/origin.mjs [port]   (default 8788)
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.ORIGIN_PORT ?? 8788);
let seen = [];

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://origin');
    if (url.pathname === '/__origin/requests') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen));
      seen = [];
      return;
    }
    const record = {
      method: req.method,
      path: url.pathname,
      query: url.search,
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    seen.push(record);
    if (url.pathname === '/api/whoami') {
      const identity = Object.fromEntries(
        Object.entries(req.headers).filter(([k]) => k.startsWith('x-gatehouse-')));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ identity, method: req.method, path: url.pathname, query: url.search }));
      return;
    }
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Gatehouse demo origin</title><h1>Gatehouse demo origin</h1>'
        + '<p>This page is public. <code>/api/*</code> needs a token.</p>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, method: req.method, path: url.pathname }));
  });
});

server.listen(port, '127.0.0.1', () => console.log(`demo origin on http://127.0.0.1:${port}`));
