// A SIMULATION of Cloudflare's locations on one machine (nothing here reaches Cloudflare):
// N separate workerd instances (one Miniflare each) of the built worker, each with its own KV
// namespace and its own Cache API storage, as data centers have. A KV replicator copies every
// write made at one location to the others after `kvDelayMs` (default 60 s, the delay Cloudflare
// documents for KV writes to be visible elsewhere), last writer wins.
//
// KV's limit of one write a second per key is enforced across the locations (a put within the
// second fails as Cloudflare's binding fails it; GET /refused-writes counts them).
//
// A location reads its own write at once by default. Cloudflare says that is usual but not
// promised, and slower where the location had just read the previous version, as the edge does
// before each write: `ownReadLagMs` models that case, its worst form. After each put, the worker
// at that location reads the key's version from before the window's first put (or none) until
// `ownReadLagMs` after its last put of the key, whatever else is written to the key there
// meanwhile (the replicator's deliveries too); the put itself is stored and replicated at once.
// GET /refused-writes counts the reads so served (`stale_reads`).
//
// What it does not model: KV's real latency distribution (the delay here is fixed; Cloudflare's
// "up to 60 seconds or more" has no bound, and a location's first read may see a change at once)
// and its cached negative lookups; that each location caches each key on its own (a fresh head can sit beside a stale snapshot there;
// here a location's keys arrive together); the many machines (and isolates) of one data center,
// isolate eviction; cron triggers (fired here on request, at a location the test picks;
// Cloudflare runs them where it likes, reading KV through that location's cache); write order
// (last writer wins by when the replicator found the write, to within its 100 ms tick, and an
// unchanged value written again is not replicated); deletes (not replicated); network distance
// between locations and the issuer.
//
// Usage: node tests/sim/locations.mjs '{"script": ".../index.js", "port": 9000,
//   "locations": 3, "vars": {...}, "kvDelayMs": 60000, "ownReadLagMs": 0}'
// Serves on `port`: GET /locations -> [{name, url}], GET /writes -> the worker's KV puts per
// location, each counted as made (all keys, and the revocation list's alone; the replicator's
// copies not counted; and `list_changes`, the changed list contents the replicator found at
// each that it had not delivered), GET /heads -> each location's copy of the `revocations-head` key (null if none),
// GET /snapshots -> the metadata of each location's `revocations` key (which list KV holds),
// GET /reads -> the worker's KV reads per location, by key (`get` and `getWithMetadata` alike),
// POST /cron/<i> -> fires location i's cron,
// PUT /kv/<i>/<key> (body: the value, header x-kv-metadata: JSON) -> writes location i's KV as
// the worker there would: what another isolate's late write leaves behind (replicated as any
// local write),
// POST /slow-puts/<key> (body: {"count": n, "ms": t}) -> the worker's next n puts of the key,
// at any location, reach KV t ms late (a slow KV write; its one-a-second slot is taken then).
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import { dirname } from 'node:path';
import { Miniflare } from 'miniflare';

const config = JSON.parse(process.argv[2]);
const kvDelayMs = config.kvDelayMs ?? 60_000;
const ownReadLagMs = config.ownReadLagMs ?? 0;
const TICK_MS = 100;

// The worker's KV binding, wrapped to record each put it makes (a key per put in `PUTS`), so a
// rewrite of an unchanged value counts too: the replicator below sees only changed contents.
// Each read is recorded the same way (in `READS`), as reads are metered too.
const COUNTING_KV = `
// key -> until when this location reads the version before its own puts (from STALE).
const staleUntil = new Map();
export default function (env) {
  const store = env.STORE;
  const lagMs = Number(env.OWN_READ_LAG_MS);
  // Awaited, so no count is lost with a request that ends first.
  const reading = async (key) => {
    await env.READS.put(key + '/' + crypto.randomUUID(), '');
    if (Date.now() >= (staleUntil.get(key) ?? 0)) return store;
    const counted = await fetch(env.KV_CONTROL + '/stale-read', { method: 'POST' });
    await counted.arrayBuffer();
    return env.STALE;
  };
  // Keeps the version a put replaces, unless an earlier put's window still serves an older one.
  async function keepPrevious(key) {
    if (lagMs <= 0) return;
    if (Date.now() >= (staleUntil.get(key) ?? 0)) {
      const { value, metadata } = await store.getWithMetadata(key, { type: 'arrayBuffer' });
      if (value === null) await env.STALE.delete(key);
      else await env.STALE.put(key, value, metadata === null ? {} : { metadata });
    }
    staleUntil.set(key, Date.now() + lagMs);
  }
  return {
    get: async (key, ...rest) => (await reading(key)).get(key, ...rest),
    getWithMetadata: async (key, ...rest) => (await reading(key)).getWithMetadata(key, ...rest),
    list: (...args) => store.list(...args),
    delete: (...args) => store.delete(...args),
    async put(key, ...rest) {
      // KV takes one write a second per key, across every location (Cloudflare's KV limits):
      // the control process keeps the one clock; a write within the second is refused as the
      // real binding refuses it.
      const slot = await fetch(env.KV_CONTROL + '/kv-write-slot/' + encodeURIComponent(key), {
        method: 'POST',
      });
      await slot.arrayBuffer();
      if (slot.status === 429) throw new Error('KV PUT failed: 429 Too Many Requests');
      if (!slot.ok) throw new Error(\`simulation: the write-limit check answered \${slot.status}\`);
      await keepPrevious(key);
      await store.put(key, ...rest);
      await env.PUTS.put(key + '/' + crypto.randomUUID(), '');
    },
  };
}`;

const locations = [];
for (let i = 0; i < (config.locations ?? 3); i++) {
  const mf = new Miniflare({
    // No fetch of Cloudflare's `cf.json` from the internet.
    cf: false,
    workers: [
      {
        name: `location-${i}`,
        modules: true,
        scriptPath: config.script,
        modulesRoot: dirname(config.script),
        modulesRules: [
          { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
          { type: 'CompiledWasm', include: ['**/*.wasm'] },
        ],
        compatibilityDate: '2026-04-01',
        bindings: config.vars ?? {},
        wrappedBindings: { GATEHOUSE_KV: { scriptName: 'counting-kv' } },
      },
      {
        name: 'counting-kv',
        modules: true,
        script: COUNTING_KV,
        kvNamespaces: ['STORE', 'PUTS', 'STALE', 'READS'],
        bindings: { KV_CONTROL: `http://127.0.0.1:${config.port}`, OWN_READ_LAG_MS: String(ownReadLagMs) },
      },
    ],
    host: '127.0.0.1',
    port: 0,
  });
  const url = await mf.ready;
  locations.push({
    name: `location-${i}`,
    url: url.href.replace(/\/$/, ''),
    mf,
    kv: await mf.getKVNamespace('STORE', 'counting-kv'),
    puts: await mf.getKVNamespace('PUTS', 'counting-kv'),
    reads: await mf.getKVNamespace('READS', 'counting-kv'),
    seen: new Map(), // key -> hash last observed here
    writtenAt: new Map(), // key -> time of the version held here (for last-writer-wins)
    // Changed list contents the replicator found here and did not deliver itself: the
    // worker's writes as the replicator sees them, or an echo of its own deliveries (a bug it
    // once had), which the put counts cannot show.
    listChanges: 0,
  });
}

const hashOf = (bytes, metadata) =>
  createHash('sha256').update(Buffer.from(bytes)).update(JSON.stringify(metadata ?? null)).digest('hex');

// When each key was last written anywhere (ms): KV's limit of one write a second per key.
const KV_WRITE_INTERVAL_MS = 1000;
const lastWrite = new Map();
/** Takes the key's write slot; `false` if it was written less than a second ago. */
function takeWriteSlot(key, { refuse = true } = {}) {
  const now = Date.now();
  if (refuse && now - (lastWrite.get(key) ?? -Infinity) < KV_WRITE_INTERVAL_MS) return false;
  lastWrite.set(key, now);
  return true;
}
let refusedWrites = 0;
// Reads a location's worker got from before its own puts (`ownReadLagMs`).
let staleReads = 0;
// key -> {count, ms}: puts still to be held back, and by how long.
const slowPuts = new Map();

// Deliveries due at the other locations, applied by the replicator's own loop.
const pending = [];

// Finds writes the worker made at each location and schedules them at the others. Deliveries are
// applied here, between scans, never while one runs: a scan that read a key while a delivery's
// put was still landing would see the old value, take it for a local write and replicate it
// back with a newer time, rolling the other locations' KV back (a bug this loop once had).
async function tick() {
  const now = Date.now();
  while (pending.length > 0 && pending[0].due <= now) {
    const { loc, name, value, metadata, hash, time } = pending.shift();
    await deliver(loc, name, value, metadata, hash, time);
  }
  for (const [i, loc] of locations.entries()) {
    const { keys } = await loc.kv.list();
    for (const { name } of keys) {
      const { value, metadata } = await loc.kv.getWithMetadata(name, { type: 'arrayBuffer' });
      if (value === null) continue;
      const hash = hashOf(value, metadata);
      if (loc.seen.get(name) === hash) continue;
      loc.seen.set(name, hash);
      const time = Date.now();
      loc.writtenAt.set(name, time);
      if (name !== 'jwks') loc.listChanges += 1;
      for (const [j, other] of locations.entries()) {
        if (j === i) continue;
        // Scheduled in detection order with one delay, so `pending` stays sorted by `due`.
        pending.push({ due: time + kvDelayMs, loc: other, name, value, metadata, hash, time });
      }
    }
  }
}

/** Every key of a namespace, across list pages. */
async function allKeys(kv) {
  const names = [];
  let cursor;
  do {
    const page = await kv.list({ cursor });
    names.push(...page.keys.map((k) => k.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return names;
}

async function deliver(loc, name, value, metadata, hash, time) {
  if ((loc.writtenAt.get(name) ?? 0) > time) return; // a later write there wins
  await loc.kv.put(name, value, metadata === null ? {} : { metadata });
  loc.seen.set(name, hash); // so the replicator does not take it for a local write
  loc.writtenAt.set(name, time);
}

let running = true;
// Ticks that failed: counted, so that a replicator that stopped delivering is seen in the report
// rather than read as "no writes" (its log goes with the simulation's directory).
let replicatorErrors = 0;
(async () => {
  while (running) {
    try {
      await tick();
    } catch (e) {
      replicatorErrors += 1;
      console.error(`replicator: ${e}`);
    }
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
})();

const server = http.createServer(async (req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    if (req.method === 'GET' && req.url === '/locations') {
      return send(200, locations.map(({ name, url }) => ({ name, url })));
    }
    if (req.method === 'GET' && req.url === '/heads') {
      const heads = await Promise.all(locations.map(({ kv }) => kv.get('revocations-head', 'json')));
      return send(200, heads);
    }
    if (req.method === 'GET' && req.url === '/writes') {
      return send(200, await Promise.all(locations.map(async ({ name, puts, listChanges }) => {
        const keys = await allKeys(puts);
        const listWrites = keys.filter((k) => !k.startsWith('jwks/')).length;
        return { name, writes: keys.length, list_writes: listWrites, list_changes: listChanges };
      })));
    }
    if (req.method === 'GET' && req.url === '/reads') {
      return send(200, await Promise.all(locations.map(async ({ reads }) => {
        const counts = {};
        for (const name of await allKeys(reads)) {
          const key = name.slice(0, name.lastIndexOf('/'));
          counts[key] = (counts[key] ?? 0) + 1;
        }
        return counts;
      })));
    }
    if (req.method === 'GET' && req.url === '/refused-writes') {
      return send(200, { refused: refusedWrites, replicator_errors: replicatorErrors, stale_reads: staleReads });
    }
    if (req.method === 'POST' && req.url === '/stale-read') {
      staleReads += 1;
      return send(200, {});
    }
    if (req.method === 'GET' && req.url === '/snapshots') {
      const metadata = await Promise.all(
        locations.map(async ({ kv }) => {
          // Not a stream: Miniflare's Node-side proxy crashes when one is cancelled.
          const { metadata } = await kv.getWithMetadata('revocations', { type: 'arrayBuffer' });
          return metadata ?? null;
        }),
      );
      return send(200, metadata);
    }
    const slot = req.url.match(/^\/kv-write-slot\/(.+)$/);
    if (req.method === 'POST' && slot) {
      const slow = slowPuts.get(decodeURIComponent(slot[1]));
      if (slow?.count > 0) {
        slow.count -= 1;
        await new Promise((r) => setTimeout(r, slow.ms));
      }
      if (takeWriteSlot(decodeURIComponent(slot[1]))) return send(200, {});
      refusedWrites += 1;
      console.error(`kv: refused a second write of ${decodeURIComponent(slot[1])} within a second`);
      return send(429, { error: 'too_many_writes' });
    }
    const slowPut = req.url.match(/^\/slow-puts\/([\w-]+)$/);
    if (req.method === 'POST' && slowPut) {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const { count, ms } = JSON.parse(Buffer.concat(chunks).toString());
      slowPuts.set(slowPut[1], { count, ms });
      return send(200, {});
    }
    const put = req.url.match(/^\/kv\/(\d+)\/([\w-]+)$/);
    if (req.method === 'PUT' && put && locations[Number(put[1])]) {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const header = req.headers['x-kv-metadata'];
      const options = header ? { metadata: JSON.parse(header) } : {};
      const loc = locations[Number(put[1])];
      takeWriteSlot(put[2], { refuse: false }); // a test's planted write: recorded, never refused
      await loc.kv.put(put[2], Buffer.concat(chunks).toString(), options);
      await loc.puts.put(`${put[2]}/${randomUUID()}`, ''); // as the worker's own put
      return send(200, {});
    }
    const cron = req.url.match(/^\/cron\/(\d+)$/);
    if (req.method === 'POST' && cron && locations[Number(cron[1])]) {
      const worker = await locations[Number(cron[1])].mf.getWorker();
      const result = await worker.scheduled({ cron: '* * * * *' });
      return send(200, result);
    }
    send(404, { error: 'not_found' });
  } catch (e) {
    send(500, { error: String(e) });
  }
});
// Listens only once every location serves, so a probe that gets an answer may use them all.
server.listen(config.port, '127.0.0.1', () =>
  console.log(
    `simulating ${locations.length} locations, KV delay ${kvDelayMs} ms, own reads ${ownReadLagMs} ms late, control on ${config.port}`,
  ),
);

const stop = async () => {
  running = false;
  server.close();
  await Promise.allSettled(locations.map((l) => l.mf.dispose()));
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
