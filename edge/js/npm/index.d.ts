export * from './gatehouse_verify.js';
export { default } from './gatehouse_verify.js';

/** Thrown by every failing call. `code` is the stable machine code (see the README table). */
export declare class GatehouseError extends Error {
  readonly name: 'GatehouseError';
  readonly code: string;
  constructor(code: string, message: string);
}

/** Claims of a verified Gatehouse access token (times in Unix seconds). */
export interface AccessClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  nbf?: number;
  jti: string;
  sid: string;
  scope?: string;
}

export interface VerifierOptions {
  issuer: string;
  audience: string;
  /** Allowed clock difference in seconds (default 30). */
  leeway?: number;
  /** Required header `typ` (default `at+jwt`). */
  typ?: string;
  /** Longer tokens are refused before decoding (default 8192). */
  maxTokenBytes?: number;
}
