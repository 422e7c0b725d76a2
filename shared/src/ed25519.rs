//! Ed25519 verification with a table precomputed per key.
//!
//! The equation is RFC 8032 §5.1.7's, checked cofactorless on encodings exactly as
//! ed25519-dalek's `verify` does: `s` must be canonical, and `[s]B - [k]A` must encode to `R`,
//! with `k = SHA-512(R || A || M)`. Keys of small order are refused when a JWK is read. What
//! differs is how `[k]A` is computed: `A` is fixed for a key's lifetime, so a fixed-base table
//! for `-A` (built once, about 30 KB and 2 ms in wasm) turns the 253 doublings of a variable-base
//! multiplication into 64 table additions. In the wasm builds that halves verification time.
//! Both multiplications are curve25519-dalek's own constant-time fixed-base code.

use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable as _;
use sha2::{Digest, Sha512};

/// The basepoint's table, built at first use rather than linked in: curve25519-dalek's static
/// copy would add 30 KB (gzipped) to the worker, which has a size budget.
fn basepoint_table() -> &'static EdwardsBasepointTable {
    static TABLE: OnceLock<EdwardsBasepointTable> = OnceLock::new();
    TABLE.get_or_init(|| EdwardsBasepointTable::create(&ED25519_BASEPOINT_POINT))
}

/// An Ed25519 public key and, once first used, its multiplication table (shared by clones).
#[derive(Clone)]
pub(crate) struct PrecomputedKey {
    a: [u8; 32],
    table: Arc<OnceLock<Option<EdwardsBasepointTable>>>,
}

impl core::fmt::Debug for PrecomputedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrecomputedKey")
    }
}

/// Keys are equal when their points are; the table is derived from the point.
impl PartialEq for PrecomputedKey {
    fn eq(&self, other: &Self) -> bool {
        self.a == other.a
    }
}

impl Eq for PrecomputedKey {}

impl PrecomputedKey {
    pub(crate) fn new(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self {
            a: key.to_bytes(),
            table: Arc::new(OnceLock::new()),
        }
    }

    fn table(&self) -> Option<&EdwardsBasepointTable> {
        self.table
            .get_or_init(|| {
                let a = CompressedEdwardsY(self.a).decompress()?;
                Some(EdwardsBasepointTable::create(&-a))
            })
            .as_ref()
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let (Some(r), Some(s)) = (signature.get(..32), signature.get(32..)) else {
            return false;
        };
        let (Ok(s), 64) = (<[u8; 32]>::try_from(s), signature.len()) else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let Some(neg_a) = self.table() else {
            return false;
        };
        let digest: [u8; 64] = Sha512::new()
            .chain_update(r)
            .chain_update(self.a)
            .chain_update(message)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&digest);
        let expected: EdwardsPoint = basepoint_table() * &s + neg_a * &k;
        expected.compress().as_bytes() == r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

    use super::PrecomputedKey;

    /// The group order l: s + l encodes the same scalar non-canonically (RFC 8032 wants s < l).
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// The same answer as ed25519-dalek's `verify` (the same equation without the table).
    fn agrees(key: &SigningKey, message: &[u8], signature: &[u8]) -> bool {
        let ours = PrecomputedKey::new(&key.verifying_key()).verify(message, signature);
        let theirs = ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|sig| key.verifying_key().verify(message, &sig).is_ok());
        assert_eq!(ours, theirs, "message {message:?}, signature {signature:?}");
        ours
    }

    #[test]
    fn valid_signatures_verify_for_many_keys() {
        for i in 0..32u8 {
            let key = SigningKey::from_bytes(&[i; 32]);
            let message = vec![i; usize::from(i) * 7];
            let signature = key.sign(&message).to_bytes();
            assert!(agrees(&key, &message, &signature));
            assert!(!agrees(&key, b"another message", &signature));
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signature = key.sign(b"payload").to_bytes();
        for bit in 0..512 {
            let mut tampered = signature;
            tampered[bit / 8] ^= 1 << (bit % 8);
            assert!(!agrees(&key, b"payload", &tampered), "bit {bit}");
        }
    }

    #[test]
    fn non_canonical_s_wrong_lengths_and_other_keys_are_refused() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let signature = key.sign(b"payload").to_bytes();
        let mut malleated = signature;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(malleated[32 + i]) + u16::from(L[i]) + carry;
            malleated[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert!(!agrees(&key, b"payload", &malleated));
        for len in [0, 32, 63, 65] {
            let cut: Vec<u8> = signature.iter().copied().cycle().take(len).collect();
            assert!(!PrecomputedKey::new(&key.verifying_key()).verify(b"payload", &cut));
        }
        let other = SigningKey::from_bytes(&[10; 32]);
        assert!(!agrees(&other, b"payload", &signature));
    }
}
