// The glue refuses another object where one of the package's is due, and an object used
// after `free()` (a second `free()` too), with a plain `Error` (no `code`): refused first, as
// `invalid_argument`; a second `free()` does nothing. The glue's `__` helpers are left alone.
export function guardObjectArguments({ Verifier, RevocationList }, GatehouseError) {
  const due = { verifyNotRevoked: RevocationList, check: Verifier };
  for (const { prototype } of [Verifier, RevocationList]) {
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const property = Object.getOwnPropertyDescriptor(prototype, name);
      const key = property.get ? 'get' : 'value';
      const original = property[key];
      if (name === 'constructor' || name.startsWith('__') || typeof original !== 'function') continue;
      const Due = due[name];
      property[key] = function (...args) {
        const refuse = (why) => {
          throw new GatehouseError('invalid_argument', `${name}: ${why}`);
        };
        if (!this?.__wbg_ptr) return name === 'free' ? undefined : refuse('used after free()');
        if (Due && !(args[1] instanceof Due && args[1].__wbg_ptr)) refuse(`argument 2 must be a live ${Due.name}`);
        return original.apply(this, args);
      };
      Object.defineProperty(prototype, name, property);
    }
  }
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
