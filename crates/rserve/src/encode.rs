//! Encoding what we send: QAP1 requests, `DT_STRING` parameters and `DT_SEXP` values in the
//! format Rserve's `QAP_decode` reads.

use crate::error::Error;
use crate::protocol::*;
use crate::sexp::{Sexp, Value};

/// The 16-byte QAP1 request header for `cmd` with `len` bytes of parameters: `cmd`, length
/// low 32 bits, `msg_id` 0, length high 32 bits.
pub fn header(cmd: u32, len: usize) -> [u8; HEADER_LEN] {
    let len = len as u64;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&cmd.to_le_bytes());
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[12..16].copy_from_slice(&((len >> 32) as u32).to_le_bytes());
    h
}

/// Appends a `DT_STRING` parameter: the bytes, a NUL, NUL padding to a multiple of 4.
///
/// Errors with [`Error::InvalidArgument`] when `s` contains NUL (Rserve reads C strings).
pub fn put_string_param(out: &mut Vec<u8>, s: &str) -> Result<(), Error> {
    if s.contains('\0') {
        return Err(Error::InvalidArgument(
            "strings sent to Rserve cannot contain NUL".into(),
        ));
    }
    let padded = (s.len() + 1).next_multiple_of(4);
    put_head(out, DT_STRING, padded, DT_LARGE);
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + padded - s.len(), 0);
    Ok(())
}

/// Appends a `DT_SEXP` parameter holding `x`.
pub fn put_sexp_param(out: &mut Vec<u8>, x: &Sexp) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_into(out, x, 1)?;
    patch_head(out, start, DT_SEXP, DT_LARGE);
    Ok(())
}

/// Encodes `x` as a QAP1 SEXP (head + payload).
///
/// Encodable: NULL, integer, double (exact bits), character (with NA), logical (with NA),
/// raw, complex, list, expression, pairlist, call and symbol values, each with attributes.
/// [`Value::S4`], [`Value::Closure`], [`Value::Char`] and [`Value::Unknown`] are refused
/// with [`Error::InvalidArgument`] because Rserve's decoder cannot rebuild them.
pub fn encode_sexp(x: &Sexp) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    encode_into(&mut out, x, 1)?;
    Ok(out)
}

/// Rewrites the 4-byte placeholder at `start` as the head of what follows it, widening it to
/// the 8-byte large form when needed.
fn patch_head(out: &mut Vec<u8>, start: usize, ty: u8, large_flag: u8) {
    let len = out.len() - start - 4;
    let mut h = Vec::with_capacity(8);
    put_head(&mut h, ty, len, large_flag);
    out.splice(start..start + 4, h);
}

fn invalid(msg: &str) -> Error {
    Error::InvalidArgument(msg.into())
}

fn count(n: usize) -> Result<[u8; 4], Error> {
    i32::try_from(n)
        .map(i32::to_le_bytes)
        .map_err(|_| invalid("vector too long for QAP1 (more than 2^31-1 elements)"))
}

fn encode_into(out: &mut Vec<u8>, x: &Sexp, depth: usize) -> Result<(), Error> {
    if depth > DEFAULT_MAX_DEPTH {
        return Err(invalid("value nested too deeply"));
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut ty = xt_of(&x.value)?;
    if !x.attributes.is_empty() {
        ty |= XT_HAS_ATTR;
        // The attribute pairlist: XT_LIST_TAG of (value, XT_SYMNAME name) pairs.
        let attr_start = out.len();
        out.extend_from_slice(&[0; 4]);
        for (name, value) in &x.attributes {
            encode_into(out, value, depth + 1)?;
            encode_into(out, &Value::Symbol(name.clone()).into(), depth + 1)?;
        }
        patch_head(out, attr_start, XT_LIST_TAG, XT_LARGE);
    }
    match &x.value {
        Value::Null | Value::S4 => {}
        Value::Int(v) => v
            .iter()
            .for_each(|i| out.extend_from_slice(&i.to_le_bytes())),
        Value::Double(v) => v
            .iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes())),
        Value::Complex(v) => v.iter().for_each(|c| {
            out.extend_from_slice(&c.re.to_le_bytes());
            out.extend_from_slice(&c.im.to_le_bytes());
        }),
        Value::Str(v) => {
            let s0 = out.len();
            for s in v {
                match s {
                    None => out.extend_from_slice(&[0xff, 0]),
                    Some(s) if s.contains('\0') => {
                        return Err(invalid("R strings cannot contain NUL"));
                    }
                    Some(s) => {
                        out.extend_from_slice(s.as_bytes());
                        out.push(0);
                    }
                }
            }
            pad(out, s0, 1);
        }
        Value::Bool(v) => {
            out.extend_from_slice(&count(v.len())?);
            let s0 = out.len();
            out.extend(v.iter().map(|b| match b {
                Some(false) => 0,
                Some(true) => 1,
                None => 2,
            }));
            pad(out, s0, 0xff);
        }
        Value::Raw(v) => {
            out.extend_from_slice(&count(v.len())?);
            let s0 = out.len();
            out.extend_from_slice(v);
            pad(out, s0, 0);
        }
        Value::List(v) | Value::Expression(v) => {
            for e in v {
                encode_into(out, e, depth + 1)?;
            }
        }
        Value::PairList(v) | Value::Lang(v) => {
            let with_tags = v.iter().any(|t| t.tag.is_some());
            for t in v {
                encode_into(out, &t.value, depth + 1)?;
                if with_tags {
                    let tag = match &t.tag {
                        Some(name) => Value::Symbol(name.clone()),
                        None => Value::Null,
                    };
                    encode_into(out, &tag.into(), depth + 1)?;
                }
            }
        }
        Value::Symbol(s) => {
            if s.contains('\0') {
                return Err(invalid("symbol names cannot contain NUL"));
            }
            let s0 = out.len();
            out.extend_from_slice(s.as_bytes());
            out.push(0);
            pad(out, s0, 0);
        }
        Value::Char(_) | Value::Closure { .. } | Value::Unknown(_) => unreachable_type()?,
    }
    patch_head(out, start, ty, XT_LARGE);
    Ok(())
}

fn unreachable_type() -> Result<(), Error> {
    Err(invalid("this value type cannot be sent to Rserve"))
}

fn pad(out: &mut Vec<u8>, from: usize, byte: u8) {
    let n = (out.len() - from).next_multiple_of(4) - (out.len() - from);
    out.resize(out.len() + n, byte);
}

fn xt_of(v: &Value) -> Result<u8, Error> {
    Ok(match v {
        Value::Null => XT_NULL,
        Value::Int(_) => XT_ARRAY_INT,
        Value::Double(_) => XT_ARRAY_DOUBLE,
        Value::Str(_) => XT_ARRAY_STR,
        Value::Bool(_) => XT_ARRAY_BOOL,
        Value::Raw(_) => XT_RAW,
        Value::Complex(_) => XT_ARRAY_CPLX,
        Value::List(_) => XT_VECTOR,
        Value::Expression(_) => XT_VECTOR_EXP,
        Value::PairList(v) if v.iter().any(|t| t.tag.is_some()) => XT_LIST_TAG,
        Value::PairList(_) => XT_LIST_NOTAG,
        Value::Lang(v) if v.iter().any(|t| t.tag.is_some()) => XT_LANG_TAG,
        Value::Lang(_) => XT_LANG_NOTAG,
        Value::Symbol(_) => XT_SYMNAME,
        Value::S4 => {
            return Err(invalid(
                "S4 objects cannot be sent (Rserve cannot decode them)",
            ));
        }
        Value::Closure { .. } => return Err(invalid("closures cannot be sent to Rserve")),
        Value::Char(_) => return Err(invalid("a bare CHARSXP cannot be sent; use Value::Str")),
        Value::Unknown(_) => return Err(invalid("XT_UNKNOWN values cannot be sent")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeLimits, decode_sexp};
    use crate::sexp::Complex;

    fn roundtrip(x: &Sexp) -> Sexp {
        decode_sexp(&encode_sexp(x).unwrap(), DecodeLimits::default()).unwrap()
    }

    #[test]
    fn roundtrip_values_with_attributes() {
        let values = [
            Sexp::NULL,
            Sexp::from(vec![1, NA_INTEGER, -3]),
            Sexp::strings([Some("é"), None, Some(""), Some("中文🙂")]),
            Sexp::from(vec![Some(true), None, Some(false)]),
            Sexp::from(vec![0u8, 255, 7]),
            Value::Complex(vec![Complex { re: 1.0, im: -0.0 }]).into(),
            Sexp::named_list([("a", Sexp::from(1)), ("b", Sexp::NULL)]),
            Value::Symbol("x".into()).into(),
            Sexp::from(vec![1, 2, 3, 4]).with_attr("dim", Sexp::from(vec![2, 2])),
        ];
        for x in values {
            assert_eq!(roundtrip(&x), x);
        }
    }

    #[test]
    fn doubles_keep_exact_bits() {
        let xs = vec![
            na_real(),
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-310,
        ];
        let back = roundtrip(&Sexp::from(xs.clone()));
        let bits: Vec<u64> = back
            .as_f64s()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(bits, xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn large_values_use_the_large_head() {
        let x = Sexp::from(vec![7u8; MAX_SMALL_LEN + 1]);
        let enc = encode_sexp(&x).unwrap();
        assert_eq!(enc[0], XT_RAW | XT_LARGE);
        assert_eq!(roundtrip(&x), x);
    }

    #[test]
    fn string_param_padding_and_nul() {
        let mut out = Vec::new();
        put_string_param(&mut out, "1+1").unwrap();
        assert_eq!(out, [DT_STRING, 4, 0, 0, b'1', b'+', b'1', 0]);
        assert!(put_string_param(&mut Vec::new(), "a\0b").is_err());
    }

    #[test]
    fn unsendable_types_are_refused() {
        assert!(matches!(
            encode_sexp(&Value::S4.into()),
            Err(Error::InvalidArgument(_))
        ));
        assert!(encode_sexp(&Sexp::strings([Some("a\0")])).is_err());
    }
}
