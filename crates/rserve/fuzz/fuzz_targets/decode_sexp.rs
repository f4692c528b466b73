//! Fuzzes the SEXP decoder (bare SEXP and `DT_SEXP` reply body) and the ID-string parser.
//! Whatever decodes must re-encode and decode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rserve::{DecodeLimits, decode_sexp, encode_sexp};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_depth: 64 };
    if let Ok(x) = decode_sexp(data, limits) {
        // Values Rserve cannot rebuild (S4, closures, ...) are refused by the encoder.
        if let Ok(bytes) = encode_sexp(&x) {
            let again = decode_sexp(&bytes, DecodeLimits { max_depth: 1024 })
                .expect("our own encoding decodes");
            assert_eq!(encode_sexp(&again).expect("re-encodes"), bytes);
        }
    }
    let _ = rserve::decode::decode_reply_sexp(data, limits);
    if data.len() >= 32 {
        let _ = rserve::handshake::parse_id_string(&data[..32]);
    }
});
