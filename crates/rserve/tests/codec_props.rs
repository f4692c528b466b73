//! Pure codec properties (no R needed): encode→decode is the identity, bit-exactly, and the
//! decoder returns an error (never panics) on arbitrary or truncated bytes.

mod common;

use proptest::prelude::*;
use rserve::{DecodeLimits, decode_sexp, encode_sexp};

proptest! {
    #[test]
    fn encode_then_decode_is_identity(v in common::sexp(0x7ff8_0000_0000_0000)) {
        let bytes = encode_sexp(&v).unwrap();
        let back = decode_sexp(&bytes, DecodeLimits::default()).unwrap();
        prop_assert!(common::same_bits(&back, &v));
        // Every proper prefix is rejected cleanly.
        for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(decode_sexp(&bytes[..cut], DecodeLimits::default()).is_err());
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_sexp(&bytes, DecodeLimits::default());
        let _ = rserve::decode::decode_reply_sexp(&bytes, DecodeLimits::default());
        let _ = rserve::handshake::parse_id_string(&bytes);
    }
}
