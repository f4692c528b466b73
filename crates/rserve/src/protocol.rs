//! QAP1 wire constants, as defined by Rserve's `Rsrv.h` (protocol version `0103`).
//!
//! All integers on the wire are little-endian ("Intel-endianness" in `Rsrv.h`). Every
//! message is a 16-byte header (`struct phdr`: `cmd`, `len`, `msg_id`, `res` = high 32 bits
//! of the length) followed by `len` bytes of parameters. Each parameter and each encoded SEXP
//! starts with a 4-byte head: 1 byte of type and 3 bytes of length; when the type carries the
//! `DT_LARGE`/`XT_LARGE` flag the head is 8 bytes and the length is 56 bits wide.
//!
//! Also the few protocol-level values that more than one module needs (the nesting cap of
//! the SEXP codec, the [`Signal`]s named in errors and sent by `signal`): they live here,
//! below every other module, so that no two modules import each other.

/// Size of the server's identification string sent right after the TCP connect.
pub const ID_STRING_LEN: usize = 32;
/// Size of a QAP1 message header (`struct phdr`).
pub const HEADER_LEN: usize = 16;

// ---- commands (Rsrv.h "availiable commands") ----
/// `CMD_login`: parameter `DT_STRING` `"user\npwd"`.
pub const CMD_LOGIN: u32 = 0x001;
/// `CMD_voidEval`: parameter `DT_STRING` R source; reply carries no value.
pub const CMD_VOID_EVAL: u32 = 0x002;
/// `CMD_eval`: parameter `DT_STRING` R source; reply is one `DT_SEXP`.
pub const CMD_EVAL: u32 = 0x003;
/// `CMD_setSEXP`: parameters `DT_STRING` (symbol name) and `DT_SEXP` (value).
pub const CMD_SET_SEXP: u32 = 0x020;
/// `CMD_setEncoding`: parameter `DT_STRING`, one of `"native"`, `"latin1"`, `"utf8"`.
pub const CMD_SET_ENCODING: u32 = 0x082;

// ---- responses ----
/// `CMD_RESP`: flag set on every response.
pub const CMD_RESP: u32 = 0x10000;
/// `RESP_OK`.
pub const RESP_OK: u32 = CMD_RESP | 0x0001;
/// `RESP_ERR`: failure; the status code is in bits 24..31 (`CMD_STAT`).
pub const RESP_ERR: u32 = CMD_RESP | 0x0002;
/// `CMD_OOB`: out-of-band (unsolicited) message flag.
pub const CMD_OOB: u32 = 0x20000;

/// `CMD_STAT(X)`: the 7-bit status code of a response command word.
pub const fn cmd_stat(cmd: u32) -> u8 {
    ((cmd >> 24) & 0x7f) as u8
}

// ---- status codes (Rsrv.h "stat codes") ----
/// `ERR_auth_failed`.
pub const ERR_AUTH_FAILED: u8 = 0x41;
/// `ERR_conn_broken`.
pub const ERR_CONN_BROKEN: u8 = 0x42;
/// `ERR_inv_cmd`.
pub const ERR_INV_CMD: u8 = 0x43;
/// `ERR_inv_par`.
pub const ERR_INV_PAR: u8 = 0x44;
/// `ERR_Rerror`.
pub const ERR_RERROR: u8 = 0x45;
/// `ERR_IOerror`.
pub const ERR_IO_ERROR: u8 = 0x46;
/// `ERR_notOpen`.
pub const ERR_NOT_OPEN: u8 = 0x47;
/// `ERR_accessDenied`.
pub const ERR_ACCESS_DENIED: u8 = 0x48;
/// `ERR_unsupportedCmd`.
pub const ERR_UNSUPPORTED_CMD: u8 = 0x49;
/// `ERR_unknownCmd`.
pub const ERR_UNKNOWN_CMD: u8 = 0x4a;
/// `ERR_data_overflow`: the request was larger than the server's `maxinbuf`.
pub const ERR_DATA_OVERFLOW: u8 = 0x4b;
/// `ERR_object_too_big`: the result is larger than the server's `maxsendbuf`.
pub const ERR_OBJECT_TOO_BIG: u8 = 0x4c;
/// `ERR_out_of_mem`.
pub const ERR_OUT_OF_MEM: u8 = 0x4d;
/// `ERR_ctrl_closed`.
pub const ERR_CTRL_CLOSED: u8 = 0x4e;
/// `ERR_session_busy`.
pub const ERR_SESSION_BUSY: u8 = 0x50;
/// `ERR_detach_failed`.
pub const ERR_DETACH_FAILED: u8 = 0x51;
/// `ERR_disabled`.
pub const ERR_DISABLED: u8 = 0x61;
/// `ERR_unavailable`.
pub const ERR_UNAVAILABLE: u8 = 0x62;
/// `ERR_cryptError`.
pub const ERR_CRYPT_ERROR: u8 = 0x63;
/// `ERR_securityClose`.
pub const ERR_SECURITY_CLOSE: u8 = 0x64;
/// Status Rserve sends when `R_tryEval` fails: it sends `-Rerror & 0x7f`, i.e. `0x7f` for
/// R's usual error code 1. The message is then available from `geterrmessage()`.
pub const STAT_R_EVAL_ERROR: u8 = 0x7f;

/// Parse status codes (R's `ParseStatus`) that Rserve returns as the status when the
/// string given to `CMD_eval`/`CMD_voidEval` does not parse: `PARSE_INCOMPLETE`.
pub const STAT_PARSE_INCOMPLETE: u8 = 2;
/// `PARSE_ERROR`.
pub const STAT_PARSE_ERROR: u8 = 3;
/// `PARSE_EOF`.
pub const STAT_PARSE_EOF: u8 = 4;

/// The `Rsrv.h` name of a status code, e.g. `0x41` → `"ERR_auth_failed"`.
pub fn status_name(code: u8) -> &'static str {
    match code {
        ERR_AUTH_FAILED => "ERR_auth_failed",
        ERR_CONN_BROKEN => "ERR_conn_broken",
        ERR_INV_CMD => "ERR_inv_cmd",
        ERR_INV_PAR => "ERR_inv_par",
        ERR_RERROR => "ERR_Rerror",
        ERR_IO_ERROR => "ERR_IOerror",
        ERR_NOT_OPEN => "ERR_notOpen",
        ERR_ACCESS_DENIED => "ERR_accessDenied",
        ERR_UNSUPPORTED_CMD => "ERR_unsupportedCmd",
        ERR_UNKNOWN_CMD => "ERR_unknownCmd",
        ERR_DATA_OVERFLOW => "ERR_data_overflow",
        ERR_OBJECT_TOO_BIG => "ERR_object_too_big",
        ERR_OUT_OF_MEM => "ERR_out_of_mem",
        ERR_CTRL_CLOSED => "ERR_ctrl_closed",
        ERR_SESSION_BUSY => "ERR_session_busy",
        ERR_DETACH_FAILED => "ERR_detach_failed",
        ERR_DISABLED => "ERR_disabled",
        ERR_UNAVAILABLE => "ERR_unavailable",
        ERR_CRYPT_ERROR => "ERR_cryptError",
        ERR_SECURITY_CLOSE => "ERR_securityClose",
        STAT_R_EVAL_ERROR => "R evaluation error",
        STAT_PARSE_INCOMPLETE => "PARSE_INCOMPLETE",
        STAT_PARSE_ERROR => "PARSE_ERROR",
        STAT_PARSE_EOF => "PARSE_EOF",
        _ => "unknown status",
    }
}

// ---- parameter (data) types ----
/// `DT_INT`.
pub const DT_INT: u8 = 1;
/// `DT_STRING`: NUL-terminated string, padded to a multiple of 4 bytes.
pub const DT_STRING: u8 = 4;
/// `DT_BYTESTREAM`.
pub const DT_BYTESTREAM: u8 = 5;
/// `DT_SEXP`: an encoded SEXP.
pub const DT_SEXP: u8 = 10;
/// `DT_LARGE`: flag; the parameter length is 56 bits (8-byte head).
pub const DT_LARGE: u8 = 64;

// ---- expression types (Rsrv.h "XpressionTypes") ----
/// `XT_NULL`.
pub const XT_NULL: u8 = 0;
/// `XT_INT` (deprecated scalar int; decoded like `XT_ARRAY_INT`).
pub const XT_INT: u8 = 1;
/// `XT_DOUBLE` (deprecated scalar double; decoded like `XT_ARRAY_DOUBLE`).
pub const XT_DOUBLE: u8 = 2;
/// `XT_STR`: one NUL-terminated string (a CHARSXP).
pub const XT_STR: u8 = 3;
/// `XT_LANG` (deprecated; decoded like `XT_LIST_NOTAG` pairs as a language object).
pub const XT_LANG: u8 = 4;
/// `XT_SYM`: symbol name (deprecated form of `XT_SYMNAME`).
pub const XT_SYM: u8 = 5;
/// `XT_BOOL` (deprecated scalar logical: one byte, 0/1/2=NA).
pub const XT_BOOL: u8 = 6;
/// `XT_S4`: an S4 object; its payload lives in the attributes.
pub const XT_S4: u8 = 7;
/// `XT_VECTOR`: generic vector (VECSXP).
pub const XT_VECTOR: u8 = 16;
/// `XT_LIST` (deprecated: head, vals, tag).
pub const XT_LIST: u8 = 17;
/// `XT_CLOS`: closure, formals then body.
pub const XT_CLOS: u8 = 18;
/// `XT_SYMNAME`: symbol name, stored like `XT_STR`.
pub const XT_SYMNAME: u8 = 19;
/// `XT_LIST_NOTAG`: pairlist without tags, stored like `XT_VECTOR`.
pub const XT_LIST_NOTAG: u8 = 20;
/// `XT_LIST_TAG`: tagged pairlist. Rserve writes each element as value then tag.
pub const XT_LIST_TAG: u8 = 21;
/// `XT_LANG_NOTAG`: language object without tags.
pub const XT_LANG_NOTAG: u8 = 22;
/// `XT_LANG_TAG`: language object with tags.
pub const XT_LANG_TAG: u8 = 23;
/// `XT_VECTOR_EXP`: expression vector (EXPRSXP).
pub const XT_VECTOR_EXP: u8 = 26;
/// `XT_VECTOR_STR` (unused by Rserve; decoded like `XT_VECTOR`).
pub const XT_VECTOR_STR: u8 = 27;
/// `XT_ARRAY_INT`: `n` little-endian `i32`s; NA is `i32::MIN`.
pub const XT_ARRAY_INT: u8 = 32;
/// `XT_ARRAY_DOUBLE`: `n` little-endian IEEE-754 doubles.
pub const XT_ARRAY_DOUBLE: u8 = 33;
/// `XT_ARRAY_STR`: NUL-terminated strings, padded with `0x01`; NA is `0xff 0x00`.
pub const XT_ARRAY_STR: u8 = 34;
/// `XT_ARRAY_BOOL_UA` (unaligned logicals; no longer sent by Rserve).
pub const XT_ARRAY_BOOL_UA: u8 = 35;
/// `XT_ARRAY_BOOL`: `i32` count, then one byte per element (0, 1, 2 = NA), padded.
pub const XT_ARRAY_BOOL: u8 = 36;
/// `XT_RAW`: `i32` count, then the bytes, padded.
pub const XT_RAW: u8 = 37;
/// `XT_ARRAY_CPLX`: pairs of doubles (re, im).
pub const XT_ARRAY_CPLX: u8 = 38;
/// `XT_UNKNOWN`: an R type QAP1 does not carry; payload is R's `TYPEOF` as `i32`.
pub const XT_UNKNOWN: u8 = 48;
/// `XT_LARGE`: flag; the length is 56 bits (8-byte head).
pub const XT_LARGE: u8 = 64;
/// `XT_HAS_ATTR`: flag; an attribute pairlist SEXP precedes the payload.
pub const XT_HAS_ATTR: u8 = 128;

/// Largest length that fits the 24-bit length of a 4-byte head. Rserve switches to the
/// large head above `0xfffff0`; we do the same when encoding.
pub const MAX_SMALL_LEN: usize = 0xfffff0;
/// Largest length a 56-bit head can carry.
pub const MAX_LARGE_LEN: u64 = (1 << 56) - 1;

/// Default cap on SEXP nesting (lists in lists, attributes, calls in calls, ...). Decoding
/// recurses once per level; 128 levels fit in 1 MiB of stack even in debug builds (tokio
/// worker threads have 2 MiB). Deeper values fail with [`crate::Error::Decode`] and the connection
/// stays usable.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// R's `NA_integer_` (`INT_MIN`).
pub const NA_INTEGER: i32 = i32::MIN;
/// Bit pattern of R's `NA_real_`: a NaN whose low 32-bit word is 1954.
pub const NA_REAL_BITS: u64 = 0x7ff0_0000_0000_07a2;

/// R's `NA_real_` with its exact bit pattern.
pub fn na_real() -> f64 {
    f64::from_bits(NA_REAL_BITS)
}

/// True when `x` is R's `NA_real_` (as R's `R_IsNA`: a NaN whose low word is 1954), false for
/// every other NaN. Arithmetic on NA can set the quiet bit; R still calls that NA, so do we.
pub fn is_na_real(x: f64) -> bool {
    x.is_nan() && (x.to_bits() & 0xffff_ffff) == 1954
}

/// A signal to send to an R process (see [`crate::send_signal`]): the QAP1 connection that
/// forked it is busy while R evaluates, so the signal goes through R's `tools::pskill` on a
/// second connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `SIGINT` (R's user interrupt).
    Interrupt,
    /// `SIGKILL`.
    Kill,
}

impl Signal {
    /// The R expression naming the signal number in package `tools`.
    pub(crate) fn r_constant(self) -> &'static str {
        match self {
            Signal::Interrupt => "tools::SIGINT",
            Signal::Kill => "tools::SIGKILL",
        }
    }
}

/// Writes a 4- or 8-byte parameter/SEXP head for `type_` and `len` into `out`.
///
/// Uses the 8-byte `*_LARGE` form when `len > MAX_SMALL_LEN`, like Rserve does.
pub(crate) fn put_head(out: &mut Vec<u8>, type_: u8, len: usize, large_flag: u8) {
    if len > MAX_SMALL_LEN {
        let len = len as u64;
        let w0 = ((len & 0xff_ffff) as u32) << 8 | u32::from(type_ | large_flag);
        out.extend_from_slice(&w0.to_le_bytes());
        out.extend_from_slice(&((len >> 24) as u32).to_le_bytes());
    } else {
        let w0 = (len as u32) << 8 | u32::from(type_);
        out.extend_from_slice(&w0.to_le_bytes());
    }
}

/// Reads a 4- or 8-byte head from the start of `buf`: `(type without the large flag, length,
/// head size)`. `None` when `buf` is too short for the head.
pub(crate) fn get_head(buf: &[u8], large_flag: u8) -> Option<(u8, u64, usize)> {
    let w0 = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    let ty = (w0 & 0xff) as u8;
    let mut len = u64::from(w0 >> 8);
    if ty & large_flag != 0 {
        let w1 = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
        len |= u64::from(w1) << 24;
        Some((ty & !large_flag, len, 8))
    } else {
        Some((ty, len, 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_roundtrip_small_and_large() {
        for len in [0usize, 4, MAX_SMALL_LEN, MAX_SMALL_LEN + 4, 20_000_008] {
            let mut out = Vec::new();
            put_head(&mut out, XT_RAW, len, XT_LARGE);
            let (ty, got, hs) = get_head(&out, XT_LARGE).unwrap();
            assert_eq!(ty, XT_RAW);
            assert_eq!(got, len as u64);
            assert_eq!(hs, out.len());
            assert_eq!(hs, if len > MAX_SMALL_LEN { 8 } else { 4 });
        }
    }

    #[test]
    fn na_real_is_distinguished_from_nan() {
        assert!(is_na_real(na_real()));
        assert!(!is_na_real(f64::NAN));
        assert!(is_na_real(f64::from_bits(
            NA_REAL_BITS | 0x0008_0000_0000_0000
        )));
        assert!(!is_na_real(1954.0));
    }

    #[test]
    fn status_codes_have_names() {
        assert_eq!(cmd_stat(RESP_ERR | (0x41 << 24)), ERR_AUTH_FAILED);
        assert_eq!(status_name(ERR_AUTH_FAILED), "ERR_auth_failed");
        assert_eq!(status_name(0x7f), "R evaluation error");
    }
}
