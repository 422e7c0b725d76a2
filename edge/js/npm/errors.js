// The one error class the package throws. `code` is the stable machine code shared with the
// edge worker and the issuer, but for the package's own (the README's table).
export class GatehouseError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'GatehouseError';
    this.code = code;
  }
}
