// `@gatehouse/verify/client`: the browser client alone, with no wasm to load (for code that
// runs on a server too, and for bundles that only sign users in).
export {
  GatehouseClient,
  GatehouseClientError,
  type GatehouseClientEvent,
  type GatehouseClientOptions,
  type SessionTokens,
  type TokenStorage,
} from './index.js';
