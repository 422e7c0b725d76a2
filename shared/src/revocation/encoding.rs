//! The compact binary form of a [`RevocationList`] (little-endian):
//!
//! ```text
//! "GHRL" version:u8=2 seq:u64 issued_at:i64 issuer_len:u16 issuer:[u8]
//! n_tokens:u32 n_sessions:u32 n_users:u32 n_keys:u32
//! tokens, sessions: (key:u64 expires_at:u32)*     12 bytes each
//! users:            (key:u64 issued_before:u32 expires_at:u32)*   16 bytes each
//! keys:             (key:u64 expires_at:u32)*     12 bytes each
//! ```
//!
//! Version 1 (no key section, no `n_keys`) is still read: lists stored before version 2 stay
//! usable until the next snapshot replaces them.
//!
//! Each section is strictly ascending by key, so decoding is one linear pass with no sorting,
//! and duplicates cannot sneak in.

use super::{Entry, RevocationList, UserEntry};
use crate::error::EncodingError;

const MAGIC: &[u8; 4] = b"GHRL";
const VERSION: u8 = 2;
const ENTRY_LEN: usize = 12;
const USER_ENTRY_LEN: usize = 16;

impl RevocationList {
    /// The compact encoding. Issuers longer than 65535 bytes are truncated at a char boundary.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut issuer = self.issuer.as_str();
        while issuer.len() > usize::from(u16::MAX) {
            let mut end = usize::from(u16::MAX);
            while !issuer.is_char_boundary(end) {
                end -= 1;
            }
            issuer = issuer.get(..end).unwrap_or_default();
        }
        let mut out = Vec::with_capacity(
            39 + issuer.len()
                + ENTRY_LEN * (self.tokens.len() + self.sessions.len() + self.keys.len())
                + USER_ENTRY_LEN * self.users.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.issued_at.to_le_bytes());
        out.extend_from_slice(
            &u16::try_from(issuer.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(issuer.as_bytes());
        for n in [
            self.tokens.len(),
            self.sessions.len(),
            self.users.len(),
            self.keys.len(),
        ] {
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        }
        for e in self.tokens.iter().chain(&self.sessions) {
            out.extend_from_slice(&e.key.to_le_bytes());
            out.extend_from_slice(&e.expires_at.to_le_bytes());
        }
        for e in &self.users {
            out.extend_from_slice(&e.key.to_le_bytes());
            out.extend_from_slice(&e.issued_before.to_le_bytes());
            out.extend_from_slice(&e.expires_at.to_le_bytes());
        }
        for e in &self.keys {
            out.extend_from_slice(&e.key.to_le_bytes());
            out.extend_from_slice(&e.expires_at.to_le_bytes());
        }
        out
    }

    /// Decodes [`Self::to_bytes`]. Any deviation (length, order, trailing bytes) is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EncodingError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(EncodingError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION && version != 1 {
            return Err(EncodingError::UnsupportedVersion(version));
        }
        let seq = r.u64()?;
        let issued_at = i64::from_le_bytes(r.array()?);
        let issuer_len = usize::from(r.u16()?);
        let issuer = core::str::from_utf8(r.take(issuer_len)?)
            .map_err(|_| EncodingError::BadIssuer)?
            .to_owned();
        let n_tokens = r.count()?;
        let n_sessions = r.count()?;
        let n_users = r.count()?;
        let n_keys = if version == 1 { 0 } else { r.count()? };
        // The exact length is known up front: check it before allocating anything.
        let body = n_tokens
            .checked_add(n_sessions)
            .and_then(|n| n.checked_add(n_keys))
            .and_then(|n| n.checked_mul(ENTRY_LEN))
            .and_then(|n| n.checked_add(n_users.checked_mul(USER_ENTRY_LEN)?))
            .ok_or(EncodingError::Truncated)?;
        match r.0.len().cmp(&body) {
            core::cmp::Ordering::Less => return Err(EncodingError::Truncated),
            core::cmp::Ordering::Greater => return Err(EncodingError::TrailingBytes),
            core::cmp::Ordering::Equal => {}
        }
        let tokens = r.entries(n_tokens)?;
        let sessions = r.entries(n_sessions)?;
        let mut users = Vec::with_capacity(n_users);
        for _ in 0..n_users {
            let entry = UserEntry {
                key: r.u64()?,
                issued_before: r.u32()?,
                expires_at: r.u32()?,
            };
            if users
                .last()
                .is_some_and(|prev: &UserEntry| prev.key >= entry.key)
            {
                return Err(EncodingError::NotSorted);
            }
            users.push(entry);
        }
        let keys = r.entries(n_keys)?;
        Ok(Self {
            issuer,
            seq,
            issued_at,
            // Set by the signature check that hands the payload out, if any.
            signer: String::new(),
            tokens,
            sessions,
            users,
            keys,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EncodingError> {
        if self.0.len() < n {
            return Err(EncodingError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EncodingError> {
        self.take(N)?
            .try_into()
            .map_err(|_| EncodingError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, EncodingError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, EncodingError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, EncodingError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, EncodingError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn count(&mut self) -> Result<usize, EncodingError> {
        usize::try_from(self.u32()?).map_err(|_| EncodingError::Truncated)
    }

    fn entries(&mut self, n: usize) -> Result<Vec<Entry>, EncodingError> {
        let mut out: Vec<Entry> = Vec::with_capacity(n);
        for _ in 0..n {
            let entry = Entry {
                key: self.u64()?,
                expires_at: self.u32()?,
            };
            if out.last().is_some_and(|prev| prev.key >= entry.key) {
                return Err(EncodingError::NotSorted);
            }
            out.push(entry);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RevocationList {
        let mut b = RevocationList::builder("https://issuer.example", 42, 1_000);
        for i in 0..50 {
            b = b
                .token(&format!("j{i}"), 2_000)
                .session(&format!("s{i}"), 2_000);
        }
        b.user("u", 1_500, 3_000).key("kid-1", 3_000).build()
    }

    #[test]
    fn round_trip() {
        let list = sample();
        let bytes = list.to_bytes();
        assert_eq!(bytes.len(), 39 + 22 + 101 * ENTRY_LEN + USER_ENTRY_LEN);
        assert_eq!(RevocationList::from_bytes(&bytes).unwrap(), list);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            assert!(
                RevocationList::from_bytes(&bytes[..n]).is_err(),
                "prefix {n}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            RevocationList::from_bytes(&longer),
            Err(EncodingError::TrailingBytes)
        );
    }

    #[test]
    fn header_and_order_are_checked() {
        let bytes = sample().to_bytes();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(
            RevocationList::from_bytes(&bad),
            Err(EncodingError::BadMagic)
        );
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(
            RevocationList::from_bytes(&bad),
            Err(EncodingError::UnsupportedVersion(9))
        );
        // Swap the first two token entries.
        let start = 39 + 22;
        let mut bad = bytes.clone();
        bad[start..start + 2 * ENTRY_LEN].rotate_left(ENTRY_LEN);
        assert_eq!(
            RevocationList::from_bytes(&bad),
            Err(EncodingError::NotSorted)
        );
        // Counts that overflow when multiplied must not allocate or panic.
        let mut bad = bytes;
        bad[start - 16..start].fill(0xff);
        assert!(RevocationList::from_bytes(&bad).is_err());
    }

    #[test]
    fn version_1_lists_without_keys_still_decode() {
        let list = RevocationList::builder("https://issuer.example", 7, 1_000)
            .token("j", 2_000)
            .user("u", 1_500, 3_000)
            .build();
        let v2 = list.to_bytes();
        // Version 1: the same bytes without `n_keys` (the key section is empty).
        let counts = 4 + 1 + 8 + 8 + 2 + "https://issuer.example".len();
        let mut v1 = v2.clone();
        v1[4] = 1;
        v1.drain(counts + 12..counts + 16);
        assert_eq!(RevocationList::from_bytes(&v1).unwrap(), list);
    }
}
