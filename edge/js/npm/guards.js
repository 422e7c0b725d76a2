// Another object where one of the package's is due (an argument, `this`), or one used after
// `free()`: `invalid_argument`, not the glue's plain `Error`. A second `free()` does nothing.
export function guardObjectArguments({ Verifier, RevocationList }, GatehouseError) {
  // Which argument is one of the package's objects, and of which class.
  const due = { verifyNotRevoked: [1, RevocationList], check: [1, Verifier], replaces: [0, RevocationList] };
  const live = (object, Class) => object instanceof Class && object.__wbg_ptr;
  const refuse = (name, what, Class) => {
    throw new GatehouseError('invalid_argument', `${name}: ${what} must be a live ${Class.name}`);
  };
  for (const Class of [Verifier, RevocationList]) {
    const { prototype } = Class;
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const property = Object.getOwnPropertyDescriptor(prototype, name);
      const key = property.get ? 'get' : 'value';
      const original = property[key];
      if (name === 'constructor' || name.startsWith('__') || typeof original !== 'function') continue;
      const [at, Due] = due[name] ?? [];
      property[key] = function (...args) {
        if (!live(this, Class)) return name === 'free' ? undefined : refuse(name, 'this', Class);
        if (Due && !live(args[at], Due)) refuse(name, `argument ${at + 1}`, Due);
        return original.apply(this, args);
      };
      Object.defineProperty(prototype, name, property);
    }
    if (Symbol.dispose) prototype[Symbol.dispose] = prototype.free;
  }
}

// Before the browser entry's `init()` the glue throws a bare `TypeError`: refused first, with a
// code, until a check passes.
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
  const { decodeUnverified, expiresIn, isExpired, errorCodes, keySetFetchDefaults, revocationListFetchDefaults } = glue;
  return {
    Verifier,
    ...Object.fromEntries(
      Object.entries({ decodeUnverified, expiresIn, isExpired, errorCodes, keySetFetchDefaults, revocationListFetchDefaults }).map(([k, f]) => [k, guarded(f)]),
    ),
  };
}

// The glue's `init()` starts a second load when called before the first has finished, and the
// later one to finish replaces the wasm under objects made from the earlier (a `Verifier` then
// reads another instance's memory). One load, shared by every caller; one that failed may be
// tried again. `initSync` cannot wait for a load in flight, so it refuses then.
export function loadOnce(glue, GatehouseError) {
  let loading;
  let inFlight = false;
  const init = (...args) => {
    if (!loading) {
      inFlight = true;
      loading = glue.default(...args).finally(() => {
        inFlight = false;
      });
      loading.catch(() => {
        loading = undefined;
      });
    }
    return loading;
  };
  const initSync = (...args) => {
    if (inFlight) throw new GatehouseError('invalid_argument', 'initSync: init() is loading the wasm; await it instead');
    return glue.initSync(...args);
  };
  return { init, initSync };
}
