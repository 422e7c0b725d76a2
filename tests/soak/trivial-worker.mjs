// The soak's baseline: a worker that does nothing, under the same `wrangler dev`, driven at the
// same rate as the edge, so that workerd's own memory behaviour is visible next to ours.
export default {
  async fetch() {
    return new Response('{"ok":true}', { headers: { 'content-type': 'application/json' } });
  },
};
