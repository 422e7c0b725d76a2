//! base64url without padding, strict: padding, non-canonical trailing bits and any
//! character outside the URL-safe alphabet are rejected (RFC 7515 §2, RFC 8725 §3.3).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub(crate) fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes into a fixed-size array; `None` unless the text decodes to exactly `N` bytes.
pub(crate) fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // A buffer of N bytes only fits texts that decode to at most N; the length check rejects fewer.
    if base64::decoded_len_estimate(text.len()) > N + 2 {
        return None;
    }
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_padding_and_noncanonical_bits() {
        assert_eq!(decode("YQ").as_deref(), Some(&b"a"[..]));
        assert!(decode("YQ==").is_none());
        assert!(decode("YR").is_none(), "trailing bits must be zero");
        assert!(
            decode("Y+").is_none() && decode("Y/").is_none(),
            "standard alphabet"
        );
        assert!(decode("YQ.").is_none());
    }

    #[test]
    fn fixed_size_decoding_checks_length() {
        assert_eq!(decode_array::<1>("YQ"), Some(*b"a"));
        assert!(decode_array::<2>("YQ").is_none());
        assert!(decode_array::<1>("YWI").is_none());
        assert!(decode_array::<4>(&"A".repeat(10_000)).is_none());
    }
}
