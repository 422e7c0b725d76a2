//! Private signing keys at rest: sealed with XChaCha20-Poly1305 (`RustCrypto`'s
//! `chacha20poly1305`) under the key-encryption key from configuration
//! (`GATEHOUSE_KEY_ENCRYPTION_KEY`). The kid is the associated data, so a sealed key copied into
//! another row does not open. Every replica holding the same secret reads the same key ring.
//!
//! Rotating that secret: earlier secrets go in `GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS`, which
//! open keys but never seal one, and `keys reseal` seals every key again under the current
//! secret (docs/deploy.md gives the order for replicas).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use gatehouse_shared::SigningKey;
use sha2::Digest as _;

use crate::config::Config;
use crate::error::ApiError;

/// Names the format, so a later scheme can live beside this one.
const FORMAT: &str = "xchacha20poly1305.v1.";
const NONCE_LEN: usize = 24;
/// Where a development run keeps the key-encryption key it generated.
const DEV_SECRET_FILE: &str = "key-encryption-key";

const SETTING: &str = "GATEHOUSE_KEY_ENCRYPTION_KEY";
const FALLBACKS_SETTING: &str = "GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS";

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Names the current secret without revealing it (`witness`).
    fingerprint: String,
    /// The fallbacks' fingerprints: secrets being rotated away from.
    fallback_fingerprints: Vec<String>,
    /// Earlier secrets: they open keys sealed before a rotation of the secret, never seal.
    fallbacks: Vec<XChaCha20Poly1305>,
}

/// Which secret opened a sealed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedUnder {
    Current,
    Fallback,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn aad(kid: &str) -> Vec<u8> {
    [b"gatehouse signing key ".as_slice(), kid.as_bytes()].concat()
}

impl Sealer {
    /// From the configured secret: 32 random bytes in base64 or base64url, padding optional.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let key = key_bytes(secret, SETTING)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            fingerprint: fingerprint_of(&key),
            fallback_fingerprints: Vec::new(),
            fallbacks: Vec::new(),
        })
    }

    /// Adds earlier secrets, comma-separated, each in the form of [`Self::from_secret`].
    pub fn with_fallbacks(mut self, secrets: &str) -> Result<Self, String> {
        for secret in secrets.split(',').filter(|s| !s.trim().is_empty()) {
            let key = key_bytes(secret, FALLBACKS_SETTING)?;
            self.fallbacks.push(XChaCha20Poly1305::new(&key.into()));
            self.fallback_fingerprints.push(fingerprint_of(&key));
        }
        Ok(self)
    }

    /// The current secret's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The fallbacks' fingerprints.
    pub fn fallback_fingerprints(&self) -> &[String] {
        &self.fallback_fingerprints
    }

    /// A new random secret, base64url.
    pub fn generate_secret() -> Result<String, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
        Ok(URL_SAFE_NO_PAD.encode(key))
    }

    pub fn seal(&self, key: &SigningKey) -> Result<String, String> {
        let jwk = key.to_private_jwk_json().map_err(|e| e.to_string())?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: jwk.as_bytes(),
                    aad: &aad(key.kid()),
                },
            )
            .map_err(|_| "sealing the signing key failed".to_owned())?;
        Ok(format!(
            "{FORMAT}{}",
            URL_SAFE_NO_PAD.encode([&nonce[..], &sealed].concat())
        ))
    }

    pub fn open(&self, kid: &str, sealed: &str) -> Result<SigningKey, String> {
        self.open_any(kid, sealed).map(|(key, _)| key)
    }

    /// Opens with the current secret, else with a fallback, and says which.
    pub fn open_any(&self, kid: &str, sealed: &str) -> Result<(SigningKey, SealedUnder), String> {
        self.open_with(kid, sealed).map(|(key, fallback)| {
            let under = match fallback {
                None => SealedUnder::Current,
                Some(_) => SealedUnder::Fallback,
            };
            (key, under)
        })
    }

    /// This sealer with the secret that opens `sealed` (the key `kid`) as the one it seals
    /// under: a key it seals opens wherever that key does. `None` if no configured secret
    /// opens it.
    pub fn sealing_like(&self, kid: &str, sealed: &str) -> Option<Self> {
        let (_, fallback) = self.open_with(kid, sealed).ok()?;
        let Some(index) = fallback else {
            return Some(self.clone());
        };
        Some(Self {
            cipher: self.fallbacks.get(index)?.clone(),
            fingerprint: self.fallback_fingerprints.get(index)?.clone(),
            ..self.clone()
        })
    }

    /// Opens `sealed`, with the index of the fallback that did (`None`: the current secret).
    fn open_with(&self, kid: &str, sealed: &str) -> Result<(SigningKey, Option<usize>), String> {
        let bytes = sealed
            .strip_prefix(FORMAT)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| format!("signing key {kid}: the sealed key is not in a known format"))?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| format!("signing key {kid}: the sealed key is too short"))?;
        let (nonce, aad) = (XNonce::from(nonce), aad(kid));
        let payload = || Payload {
            msg: body,
            aad: &aad,
        };
        let (jwk, under) = match self.cipher.decrypt(&nonce, payload()) {
            Ok(jwk) => (jwk, None),
            Err(_) => self
                .fallbacks
                .iter()
                .enumerate()
                .find_map(|(index, fallback)| {
                    fallback
                        .decrypt(&nonce, payload())
                        .ok()
                        .map(|jwk| (jwk, Some(index)))
                })
                .ok_or_else(|| {
                    format!(
                        "signing key {kid} does not open with this {SETTING} (nor with \
                         {FALLBACKS_SETTING}): every replica needs the secret the key was \
                         sealed with"
                    )
                })?,
        };
        let key = std::str::from_utf8(&jwk)
            .ok()
            .and_then(|json| SigningKey::from_jwk_json(json).ok())
            .filter(|key| key.kid() == kid)
            .ok_or_else(|| format!("signing key {kid}: the sealed key is damaged"))?;
        Ok((key, under))
    }
}

/// SHA-256 of the 32 random bytes, domain-separated: it names the secret and cannot be turned
/// back into it.
fn fingerprint_of(key: &[u8; 32]) -> String {
    let digest =
        sha2::Sha256::digest([b"gatehouse key-encryption-key v1\0".as_slice(), key].concat());
    URL_SAFE_NO_PAD.encode(digest)
}

fn key_bytes(secret: &str, setting: &str) -> Result<[u8; 32], String> {
    let trimmed = secret.trim().trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| format!("{setting} is not base64"))?;
    bytes.try_into().map_err(|_| {
        format!(
            "{setting} must be 32 random bytes in base64 (43 or 44 characters; `openssl rand \
             -base64 32` makes one)"
        )
    })
}

/// The sealer from configuration. Without `GATEHOUSE_KEY_ENCRYPTION_KEY`, a development run
/// generates one in the data directory, loudly; replicas then share nothing but that file.
pub fn from_config(config: &Config) -> Result<Sealer, ApiError> {
    let fallbacks = config
        .key_encryption_key_fallbacks
        .as_ref()
        .map_or("", |s| s.expose());
    current_from_config(config)?
        .with_fallbacks(fallbacks)
        .map_err(ApiError::Internal)
}

fn current_from_config(config: &Config) -> Result<Sealer, ApiError> {
    if let Some(secret) = &config.key_encryption_key {
        return Sealer::from_secret(secret.expose()).map_err(ApiError::Internal);
    }
    if config.profile == crate::config::Profile::Production {
        return Err(ApiError::Internal(
            "GATEHOUSE_KEY_ENCRYPTION_KEY is unset; production never generates it".into(),
        ));
    }
    let path = config.data_dir.join(DEV_SECRET_FILE);
    let secret = match std::fs::read_to_string(&path) {
        Ok(secret) => secret,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = Sealer::generate_secret().map_err(ApiError::Internal)?;
            write_new_secret(&path, &secret)?;
            tracing::warn!(
                file = %path.display(),
                "DEV MODE: no GATEHOUSE_KEY_ENCRYPTION_KEY; generated one in the data directory \
                 to seal signing keys. Production sets the secret on every replica."
            );
            secret
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    Sealer::from_secret(&secret).map_err(ApiError::Internal)
}

fn write_new_secret(path: &Path, secret: &str) -> Result<(), ApiError> {
    use std::io::Write as _;
    let fail =
        |e: std::io::Error| ApiError::Internal(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use gatehouse_shared::Algorithm;

    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_secret_and_its_kid() {
        let secret = Sealer::generate_secret().unwrap();
        let ours = Sealer::from_secret(&secret).unwrap();
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let sealed = ours.seal(&key).unwrap();
        let private = key.to_private_jwk_json().unwrap();
        let d: serde_json::Value = serde_json::from_str(&private).unwrap();
        assert!(!sealed.contains(d["d"].as_str().unwrap()));
        assert_eq!(ours.open(key.kid(), &sealed).unwrap().kid(), key.kid());

        let other = Sealer::from_secret(&Sealer::generate_secret().unwrap()).unwrap();
        let err = other.open(key.kid(), &sealed).unwrap_err();
        assert!(err.contains("GATEHOUSE_KEY_ENCRYPTION_KEY"), "{err}");
        assert!(ours.open("another-kid", &sealed).is_err());
        assert!(ours.open(key.kid(), "plain text").is_err());
        assert!(Sealer::from_secret("c2hvcnQ").is_err());
    }

    #[test]
    fn fallbacks_open_but_never_seal() {
        let (old, new) = (
            Sealer::generate_secret().unwrap(),
            Sealer::generate_secret().unwrap(),
        );
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let under_old = Sealer::from_secret(&old).unwrap().seal(&key).unwrap();
        let rotated = Sealer::from_secret(&new)
            .unwrap()
            .with_fallbacks(&format!(" {old} ,"))
            .unwrap();
        let (opened, under) = rotated.open_any(key.kid(), &under_old).unwrap();
        assert_eq!((opened.kid(), under), (key.kid(), SealedUnder::Fallback));

        let under_new = rotated.seal(&key).unwrap();
        assert_eq!(
            rotated.open_any(key.kid(), &under_new).unwrap().1,
            SealedUnder::Current
        );
        assert!(
            Sealer::from_secret(&old)
                .unwrap()
                .open(key.kid(), &under_new)
                .is_err()
        );
        assert!(
            Sealer::from_secret(&new)
                .unwrap()
                .open(key.kid(), &under_new)
                .is_ok()
        );

        let err = Sealer::from_secret(&new)
            .unwrap()
            .with_fallbacks(&format!("{old},c2hvcnQ"))
            .err()
            .unwrap();
        assert!(
            err.starts_with("GATEHOUSE_KEY_ENCRYPTION_KEY_FALLBACKS"),
            "{err}"
        );
    }
}
