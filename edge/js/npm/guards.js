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
