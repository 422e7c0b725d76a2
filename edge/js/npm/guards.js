// Where a method takes another of the package's objects, wasm-bindgen's glue refuses anything
// else with a plain `Error` ("expected instance of …") that has no `code`. These methods refuse
// it first as `invalid_argument`, as every other wrong argument is refused.
export function guardObjectArguments({ Verifier, RevocationList }, GatehouseError) {
  const guard = (Class, method, position, Expected, expected) => {
    const original = Class.prototype[method];
    Class.prototype[method] = function guarded(...args) {
      if (!(args[position] instanceof Expected)) {
        throw new GatehouseError('invalid_argument', `${method}: argument ${position + 1} must be ${expected}`);
      }
      return original.apply(this, args);
    };
  };
  guard(Verifier, 'verifyNotRevoked', 1, RevocationList, 'a RevocationList');
  guard(RevocationList, 'check', 1, Verifier, 'a Verifier');
}

// Before the browser entry's `init()`, the glue throws a bare `TypeError`: refuse first, with a
// code, until a check passes once.
export function requireInit(glue, GatehouseError) {
  let ready = false;
  const ensureReady = () => {
    if (ready) return;
    try {
      glue.errorCodes();
      ready = true;
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new GatehouseError('not_initialized', '@gatehouse/verify: call `await init()` first');
    }
  };
  const guarded = (f) => function (...args) {
    ensureReady();
    return f.apply(this, args);
  };
  glue.RevocationList.fromSnapshot = guarded(glue.RevocationList.fromSnapshot);
  const Verifier = new Proxy(glue.Verifier, {
    construct: (...args) => (ensureReady(), Reflect.construct(...args)),
  });
  const { decodeUnverified, expiresIn, isExpired, errorCodes, keySetFetchDefaults } = glue;
  return {
    Verifier,
    ...Object.fromEntries(
      Object.entries({ decodeUnverified, expiresIn, isExpired, errorCodes, keySetFetchDefaults }).map(([k, f]) => [k, guarded(f)]),
    ),
  };
}
