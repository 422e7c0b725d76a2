//! Gatehouse's one definition of tokens, shared by the issuer (native), the edge worker and the
//! JS package (wasm32): access-token claims, JWK/JWKS, the verifier, the revocation list and its
//! signed snapshot.
//!
//! Tokens are made and checked by jwt-compact; this crate is the thin layer it cannot express
//! (size limit, `crit`, strict `typ`, the key choosing the algorithm, exact time boundaries,
//! stable error codes; see `token`). An untrusted token becomes [`AccessClaims`] only through
//! [`Verifier::verify`]. The caller passes the current time in; this crate never reads a clock.
//! Signing lives behind the `sign` feature so the edge build stays small.

pub mod alg;
pub mod challenge;
pub mod claims;
pub mod error;
pub mod jwk;
pub mod revocation;
#[cfg(feature = "sign")]
pub mod sign;
pub mod token;
pub mod verifier;

pub use alg::{Algorithm, Ed25519Key, Ed25519Name, StrictEd25519};
pub use challenge::{ErrorBody, Refusal, bearer_token, trim_http_whitespace};
pub use claims::{
    ACCESS_TOKEN_TYPE, AccessClaims, Audience, TokenClaims, exp_has_passed, fits_a_header,
};
#[cfg(feature = "sign")]
pub use error::CreationError;
pub use error::{
    EncodingError, ErrorCode, JwkError, ParseError, SnapshotError, ValidationError, VerifyError,
};
pub use jwk::{KeySet, PublicKey, SkippedKey, VerifyingJwk};
pub use revocation::{
    DELTA_TYPE, RevocationDelta, RevocationKind, RevocationList, RevocationListBuilder,
    RevocationReason, RevocationView, SNAPSHOT_TYPE, SnapshotOptions, disowns, entry_expiry,
    entry_revokes, is_newer, key_id, replaces, replaces_list,
};
#[cfg(feature = "sign")]
pub use sign::{SigningKey, sign_access_token};
pub use token::{Ed25519Input, Header, UntrustedToken};
pub use verifier::{Ed25519Oracle, VerifiedCache, Verifier, VerifierOptions};
