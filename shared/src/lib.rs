//! Gatehouse's one definition of tokens, shared by the issuer (native), the edge worker and the
//! JS package (wasm32): access-token claims, JWK/JWKS, the verifier, the revocation list and its
//! signed snapshot.
//!
//! An untrusted token becomes [`AccessClaims`] only through [`Verifier::verify`], which takes
//! the algorithm from the key its `kid` names, never from the header. The caller passes the
//! current time in; this crate never reads a clock. Signing lives behind the `sign` feature so
//! the edge build stays small.

mod b64;
pub mod claims;
mod ed25519;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod jwk;
pub mod jws;
pub mod revocation;
#[cfg(feature = "sign")]
pub mod sign;
pub mod verifier;

pub use claims::{ACCESS_TOKEN_TYPE, AccessClaims, Audience};
#[cfg(feature = "sign")]
pub use error::CreationError;
pub use error::{
    EncodingError, ErrorCode, JwkError, ParseError, SnapshotError, ValidationError, VerifyError,
};
pub use jwk::{Algorithm, Jwk, KeySet, PublicKey, SkippedKey, VerifyingJwk};
pub use jws::{Header, UntrustedToken};
pub use revocation::{
    RevocationList, RevocationListBuilder, RevocationReason, SNAPSHOT_TYPE, SnapshotOptions,
};
#[cfg(feature = "sign")]
pub use sign::{SigningKey, sign_access_token};
pub use verifier::{VerifiedCache, Verifier, VerifierOptions};
