//! Random identifiers and secrets, and how secrets are stored (hashed).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// `n` random bytes, base64url.
pub fn random(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Ids of users, sessions and tokens: 128 random bits.
pub fn new_id() -> Result<String, ApiError> {
    random(16)
}

/// Refresh tokens: 256 random bits.
pub fn new_secret() -> Result<String, ApiError> {
    random(32)
}

/// How a refresh token is stored: SHA-256, base64url. The token has 256 bits of entropy, so a
/// fast hash is enough (no password-style stretching needed).
pub fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// The successor of a rotated refresh token, derived from the presented token and the nonce
/// stored at rotation: a retry within the grace window gets the same successor, while neither
/// the database alone nor the old token alone is enough to compute it.
pub fn successor_secret(parent: &str, nonce: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"gatehouse-refresh-successor\0")
        .chain_update(parent.as_bytes())
        .chain_update(b"\0")
        .chain_update(nonce.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}
