//! Errors, split by stage, and the one table of stable error codes.
//!
//! Every error that can reach a client maps to an [`ErrorCode`]. The issuer, the worker and the
//! JS package report the same code for the same failure, so the table below is the contract.

use core::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;

use crate::revocation::RevocationReason;

/// One table, three views: the enum, its wire code and its client-safe description.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $description:literal;)*) => {
        /// The stable, machine-readable code of a failure. Never renamed; new codes may be added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The `snake_case` code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// A short human description, safe to send to clients (it never echoes input).
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $description,)*
                }
            }
        }
    };
}

error_codes! {
    /// Not a compact JWS, bad base64url, bad JSON, or a claim of the wrong JSON type.
    Malformed = "malformed", "the token is not a well-formed JWS/JWT";
    /// Larger than the configured limit; rejected before any decoding.
    TooLarge = "too_large", "the token is larger than allowed";
    /// The header lists `crit` extensions (none are supported), or a `cty` that is not claims.
    UnsupportedHeader = "unsupported_header", "the token header requires unsupported extensions";
    /// No `kid`, or a `kid` that is not in the key set.
    UnknownKid = "unknown_kid", "the token is signed with an unknown key";
    /// The header `alg` is not the algorithm of the key the `kid` names (covers `none` and HS*).
    AlgMismatch = "alg_mismatch", "the token algorithm does not match its key";
    /// The signature does not verify.
    BadSignature = "bad_signature", "the token signature is invalid";
    /// The header `typ` is not the expected one (an access token is `at+jwt`).
    WrongType = "wrong_type", "the token is not of the expected type";
    /// `exp` is in the past, beyond the leeway.
    Expired = "expired", "the token has expired";
    /// `nbf` or `iat` is in the future, beyond the leeway.
    NotYetValid = "not_yet_valid", "the token is not valid yet";
    /// `iss` is not the expected issuer.
    WrongIssuer = "wrong_issuer", "the token was issued by an unexpected issuer";
    /// `aud` does not contain the expected audience.
    WrongAudience = "wrong_audience", "the token is not meant for this audience";
    /// A required claim is absent.
    MissingClaim = "missing_claim", "the token lacks a required claim";
    /// The token, its session or its user has been revoked.
    Revoked = "revoked", "the token has been revoked";
    /// A revocation snapshot is not newer than the one already held.
    StaleSnapshot = "stale_snapshot", "the revocation snapshot is older than the one in use";
    /// A JWK that cannot be used (unsupported type or curve, bad encoding).
    InvalidKey = "invalid_key", "the key cannot be used";
    /// Signing failed (issuer side only; never caused by client input).
    SigningFailed = "signing_failed", "signing failed";
    /// No token in the request (no `Authorization: Bearer`, no token cookie).
    MissingToken = "missing_token", "no bearer token was sent";
    /// The token is valid but lacks the scope the route requires.
    InsufficientScope = "insufficient_scope", "the token lacks a scope this route requires";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Stage 1: turning untrusted text into an untrusted, structured token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("token is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the header lists critical extensions, which are not supported")]
    UnsupportedCritical,
    #[error("the header names a content type (cty) other than JSON claims")]
    UnsupportedContentType,
}

impl ParseError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::Malformed(_) => ErrorCode::Malformed,
            Self::UnsupportedCritical | Self::UnsupportedContentType => {
                ErrorCode::UnsupportedHeader
            }
        }
    }
}

/// Stage 2: deciding whether an untrusted token can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("the token has no kid, or its kid is not in the key set")]
    UnknownKid,
    #[error("the header alg does not match the key's algorithm")]
    AlgMismatch,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the header typ is not the expected type")]
    WrongType,
    #[error("malformed claims: {0}")]
    MalformedClaims(&'static str),
    #[error("the required claim `{0}` is missing")]
    MissingClaim(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("unexpected issuer")]
    WrongIssuer,
    #[error("unexpected audience")]
    WrongAudience,
    #[error("revoked ({0})")]
    Revoked(RevocationReason),
}

impl ValidationError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownKid => ErrorCode::UnknownKid,
            Self::AlgMismatch => ErrorCode::AlgMismatch,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::WrongType => ErrorCode::WrongType,
            Self::MalformedClaims(_) => ErrorCode::Malformed,
            Self::MissingClaim(_) => ErrorCode::MissingClaim,
            Self::Expired => ErrorCode::Expired,
            Self::NotYetValid => ErrorCode::NotYetValid,
            Self::WrongIssuer => ErrorCode::WrongIssuer,
            Self::WrongAudience => ErrorCode::WrongAudience,
            Self::Revoked(_) => ErrorCode::Revoked,
        }
    }
}

/// Any failure of [`crate::Verifier::verify`]: parsing or validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
}

impl VerifyError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Parse(e) => e.code(),
            Self::Validation(e) => e.code(),
        }
    }
}

/// A JWK or JWKS that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JwkError {
    #[error("not a JWK set: {0}")]
    NotAKeySet(&'static str),
    #[error("unsupported key: {0}")]
    Unsupported(&'static str),
    #[error("invalid key: {0}")]
    Invalid(&'static str),
}

impl JwkError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::NotAKeySet(_) | Self::Unsupported(_) | Self::Invalid(_) => ErrorCode::InvalidKey,
        }
    }
}

/// The compact revocation-list encoding could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodingError {
    #[error("not a revocation list (bad magic)")]
    BadMagic,
    #[error("unsupported revocation list version {0}")]
    UnsupportedVersion(u8),
    #[error("revocation list is truncated")]
    Truncated,
    #[error("revocation list has trailing bytes")]
    TrailingBytes,
    #[error("revocation list entries are not strictly sorted")]
    NotSorted,
    #[error("revocation list issuer is not UTF-8")]
    BadIssuer,
    #[error("revocation delta starts after its own end")]
    BadRange,
}

/// A signed revocation snapshot was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error(transparent)]
    Jws(#[from] VerifyError),
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    #[error("snapshot seq {seq} is not newer than the held seq {held}")]
    Stale { seq: u64, held: u64 },
}

impl SnapshotError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Jws(e) => e.code(),
            Self::Encoding(_) => ErrorCode::Malformed,
            Self::Stale { .. } => ErrorCode::StaleSnapshot,
        }
    }
}

impl From<ParseError> for SnapshotError {
    fn from(e: ParseError) -> Self {
        Self::Jws(e.into())
    }
}

impl From<ValidationError> for SnapshotError {
    fn from(e: ValidationError) -> Self {
        Self::Jws(e.into())
    }
}

/// Stage 3 (issuer only): creating a signed token or snapshot.
#[cfg(feature = "sign")]
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CreationError {
    #[error("could not encode the token: {0}")]
    Encode(jwt_compact::CreationError),
    #[error("invalid claims: {0}")]
    Claims(&'static str),
    #[error(transparent)]
    Key(#[from] JwkError),
}

#[cfg(feature = "sign")]
impl CreationError {
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Key(e) => e.code(),
            Self::Encode(_) | Self::Claims(_) => ErrorCode::SigningFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn the_documented_table_matches() {
        let doc = include_str!("../../docs/error-codes.md");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
        let expected: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| format!("| `{}` | {} |", c.as_str(), c.description()))
            .collect();
        assert_eq!(
            rows, expected,
            "docs/error-codes.md is out of step with ErrorCode"
        );
    }
}
