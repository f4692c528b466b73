//! Decoding QAP1-encoded SEXPs (Rserve's `QAP_storeSEXP` format) into [`Sexp`].
//!
//! Every length is checked against the bytes that remain before anything is read or
//! allocated, so hostile input yields [`Error::Decode`], never a panic; memory used is
//! proportional to the input (at most about 24 bytes per input byte, for vectors of empty
//! strings), and nesting is capped by [`DecodeLimits::max_depth`].

use crate::error::Error;
use crate::protocol::*;
use crate::sexp::{Complex, Sexp, Tagged, Value};

// Kept importable from here, where it was defined first; it lives in `protocol` because the
// encoder caps nesting with it too.
pub use crate::protocol::DEFAULT_MAX_DEPTH;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Maximum nesting depth; the top-level SEXP is depth 1.
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Decode(msg.into())
}

/// Decodes one SEXP (head + payload) from the start of `buf`. Bytes after it are ignored.
pub fn decode_sexp(buf: &[u8], limits: DecodeLimits) -> Result<Sexp, Error> {
    Ok(decode_at(buf, 1, limits)?.0)
}

/// Decodes the body of an `RESP_OK` reply to `CMD_eval`: one `DT_SEXP` parameter.
pub fn decode_reply_sexp(body: &[u8], limits: DecodeLimits) -> Result<Sexp, Error> {
    let (ty, len, hs) =
        get_head(body, DT_LARGE).ok_or_else(|| bad("reply too short for a parameter head"))?;
    if ty != DT_SEXP {
        return Err(bad(format!("expected a DT_SEXP parameter, got type {ty}")));
    }
    let payload = checked_slice(body, hs, len, "DT_SEXP parameter")?;
    decode_sexp(payload, limits)
}

/// `buf[start .. start + len]`, or a decode error naming `what`.
fn checked_slice<'a>(buf: &'a [u8], start: usize, len: u64, what: &str) -> Result<&'a [u8], Error> {
    let remaining = buf.len().saturating_sub(start);
    match usize::try_from(len) {
        Ok(len) if len <= remaining => Ok(&buf[start..start + len]),
        _ => Err(bad(format!(
            "{what} claims {len} bytes but only {remaining} remain"
        ))),
    }
}

/// Decodes one SEXP at the start of `buf`; returns it and the number of bytes it used.
fn decode_at(buf: &[u8], depth: usize, limits: DecodeLimits) -> Result<(Sexp, usize), Error> {
    if depth > limits.max_depth {
        return Err(bad(format!(
            "SEXP nesting deeper than {}",
            limits.max_depth
        )));
    }
    let (ty, len, hs) = get_head(buf, XT_LARGE).ok_or_else(|| bad("truncated SEXP head"))?;
    let mut body = checked_slice(buf, hs, len, "SEXP")?;
    let used = hs + body.len();

    let mut attributes = Vec::new();
    if ty & XT_HAS_ATTR != 0 {
        let (attr, n) = decode_at(body, depth + 1, limits)?;
        body = &body[n..];
        attributes = attribute_pairs(attr)?;
    }
    let value = decode_value(ty & 0x3f, body, depth, limits)?;
    Ok((Sexp { value, attributes }, used))
}

fn attribute_pairs(attr: Sexp) -> Result<Vec<(String, Sexp)>, Error> {
    match attr.value {
        Value::Null => Ok(Vec::new()),
        Value::PairList(items) => items
            .into_iter()
            .map(|t| match t.tag {
                Some(tag) => Ok((tag, t.value)),
                None => Err(bad("attribute without a name")),
            })
            .collect(),
        _ => Err(bad("attributes are not a tagged pairlist")),
    }
}

/// Recursive types are handled here; everything else goes to [`decode_leaf`], kept out of
/// line so the recursion's stack frames stay small (nesting runs to `max_depth` levels).
fn decode_value(ty: u8, body: &[u8], depth: usize, limits: DecodeLimits) -> Result<Value, Error> {
    Ok(match ty {
        XT_VECTOR | XT_VECTOR_STR => Value::List(sequence(body, depth, limits)?),
        XT_VECTOR_EXP => Value::Expression(sequence(body, depth, limits)?),
        XT_LIST_NOTAG => Value::PairList(untagged(sequence(body, depth, limits)?)),
        XT_LANG_NOTAG => Value::Lang(untagged(sequence(body, depth, limits)?)),
        XT_LIST_TAG => Value::PairList(tagged(body, depth, limits)?),
        XT_LANG_TAG => Value::Lang(tagged(body, depth, limits)?),
        XT_CLOS => closure(body, depth, limits)?,
        _ => decode_leaf(ty, body)?,
    })
}

fn closure(body: &[u8], depth: usize, limits: DecodeLimits) -> Result<Value, Error> {
    let (formals, n) = decode_at(body, depth + 1, limits)?;
    let (fbody, _) = decode_at(&body[n..], depth + 1, limits)?;
    Ok(Value::Closure {
        formals: Box::new(formals),
        body: Box::new(fbody),
    })
}

/// Non-recursive types.
#[inline(never)]
fn decode_leaf(ty: u8, body: &[u8]) -> Result<Value, Error> {
    Ok(match ty {
        XT_NULL => Value::Null,
        XT_INT | XT_ARRAY_INT => Value::Int(fixed::<4, _>(body, "integer", i32::from_le_bytes)?),
        XT_DOUBLE | XT_ARRAY_DOUBLE => {
            Value::Double(fixed::<8, _>(body, "double", f64::from_le_bytes)?)
        }
        XT_ARRAY_CPLX => Value::Complex(fixed::<16, _>(body, "complex", |b| {
            let (re, im) = b.split_at(8);
            Complex {
                re: f64::from_le_bytes(re.try_into().unwrap_or_default()),
                im: f64::from_le_bytes(im.try_into().unwrap_or_default()),
            }
        })?),
        XT_ARRAY_STR => Value::Str(strings(body)?),
        XT_ARRAY_BOOL => Value::Bool(
            counted(body, "logical")?
                .iter()
                .map(|&b| logical(b))
                .collect(),
        ),
        XT_BOOL | XT_ARRAY_BOOL_UA => Value::Bool(body.iter().map(|&b| logical(b)).collect()),
        XT_RAW => Value::Raw(counted(body, "raw")?.to_vec()),
        XT_SYMNAME | XT_SYM => Value::Symbol(c_string(body)),
        XT_STR => Value::Char(c_string(body)),
        XT_S4 => Value::S4,
        XT_UNKNOWN => {
            let b: [u8; 4] = body
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("XT_UNKNOWN without its type code"))?;
            Value::Unknown(i32::from_le_bytes(b))
        }
        XT_LIST | XT_LANG => {
            return Err(bad(format!(
                "pre-0.5 expression type {ty} is not supported (server too old)"
            )));
        }
        other => return Err(bad(format!("unknown expression type {other}"))),
    })
}

/// Fixed-width elements filling the whole payload.
fn fixed<const N: usize, T>(
    body: &[u8],
    what: &str,
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, Error> {
    if !body.len().is_multiple_of(N) {
        return Err(bad(format!(
            "{what} vector payload of {} bytes is not a multiple of {N}",
            body.len()
        )));
    }
    Ok(body
        .chunks_exact(N)
        .map(|c| f(c.try_into().unwrap_or([0; N])))
        .collect())
}

/// `XT_ARRAY_BOOL` / `XT_RAW`: an `i32` count, then that many bytes (then padding).
fn counted<'a>(body: &'a [u8], what: &str) -> Result<&'a [u8], Error> {
    let n: [u8; 4] = body
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{what} vector without its length")))?;
    let n = i32::from_le_bytes(n);
    let n = u64::try_from(n).map_err(|_| bad(format!("negative {what} vector length")))?;
    checked_slice(body, 4, n, what)
}

fn logical(b: u8) -> Option<bool> {
    match b {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// `XT_ARRAY_STR`: NUL-terminated strings; `0xff` alone is NA, a leading `0xff` is doubled;
/// the tail after the last NUL is `0x01` padding.
fn strings(body: &[u8]) -> Result<Vec<Option<String>>, Error> {
    let end = match body.iter().rposition(|&b| b == 0) {
        Some(i) => i + 1,
        None => 0,
    };
    if body[end..].iter().any(|&b| b != 1) {
        return Err(bad("XT_ARRAY_STR padding is not 0x01"));
    }
    if end == 0 {
        return Ok(Vec::new());
    }
    Ok(body[..end - 1]
        .split(|&b| b == 0)
        .map(|s| match s {
            [0xff] => None,
            [0xff, rest @ ..] => Some(String::from_utf8_lossy(rest).into_owned()),
            _ => Some(String::from_utf8_lossy(s).into_owned()),
        })
        .collect())
}

/// `XT_STR` / `XT_SYMNAME`: bytes up to the first NUL (the rest is padding).
fn c_string(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// SEXPs back to back until the payload is used up.
fn sequence(mut body: &[u8], depth: usize, limits: DecodeLimits) -> Result<Vec<Sexp>, Error> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (x, n) = decode_at(body, depth + 1, limits)?;
        out.push(x);
        body = &body[n..];
    }
    Ok(out)
}

fn untagged(values: Vec<Sexp>) -> Vec<Tagged> {
    values
        .into_iter()
        .map(|value| Tagged { tag: None, value })
        .collect()
}

/// `XT_LIST_TAG` / `XT_LANG_TAG`: value, tag, value, tag, ... (Rserve writes `CAR` then
/// `TAG`; an absent tag is `XT_NULL`).
fn tagged(body: &[u8], depth: usize, limits: DecodeLimits) -> Result<Vec<Tagged>, Error> {
    let items = sequence(body, depth, limits)?;
    if !items.len().is_multiple_of(2) {
        return Err(bad("tagged pairlist with an odd number of elements"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(value), Some(tag)) = (it.next(), it.next()) {
        let tag = match tag.value {
            Value::Null => None,
            Value::Symbol(s) | Value::Char(s) => Some(s),
            Value::Str(mut v) if v.len() == 1 => v.pop().flatten(),
            _ => return Err(bad("pairlist tag is not a symbol")),
        };
        out.push(Tagged { tag, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ty: u8, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        put_head(&mut v, ty, len, XT_LARGE);
        v
    }

    #[test]
    fn strings_with_na_and_padding() {
        // c("a", NA, "") -> "a\0" "\xff\0" "\0" + one 0x01 pad byte = 6 + 2 = 8
        let payload = b"a\0\xff\0\0\x01\x01\x01";
        let mut buf = head(XT_ARRAY_STR, payload.len());
        buf.extend_from_slice(payload);
        let x = decode_sexp(&buf, DecodeLimits::default()).unwrap();
        assert_eq!(
            x.as_strings().unwrap(),
            &[Some("a".to_string()), None, Some(String::new())]
        );
    }

    #[test]
    fn bool_with_na() {
        let payload = [3, 0, 0, 0, 1, 0, 2, 0xff];
        let mut buf = head(XT_ARRAY_BOOL, payload.len());
        buf.extend_from_slice(&payload);
        let x = decode_sexp(&buf, DecodeLimits::default()).unwrap();
        assert_eq!(x.as_bools().unwrap(), &[Some(true), Some(false), None]);
    }

    #[test]
    fn lengths_beyond_input_are_rejected() {
        let mut buf = head(XT_ARRAY_INT, 400);
        buf.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode_sexp(&buf, DecodeLimits::default()),
            Err(Error::Decode(_))
        ));
        let mut buf = head(XT_RAW, 8);
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        assert!(matches!(
            decode_sexp(&buf, DecodeLimits::default()),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn maximum_depth_fits_a_small_stack() {
        const STACK: usize = 1 << 20;
        // DEFAULT_MAX_DEPTH nested lists decode, re-encode and drop within 1 MiB of stack
        // (tokio's worker threads have 2 MiB), even in debug builds.
        let mut inner = head(XT_NULL, 0);
        for _ in 1..DEFAULT_MAX_DEPTH {
            let mut outer = head(XT_VECTOR, inner.len());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        let worker = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let x = decode_sexp(&inner, DecodeLimits::default()).expect("at the limit");
                assert_eq!(crate::encode_sexp(&x).expect("encodes"), inner);
                let mut deeper = head(XT_VECTOR, inner.len());
                deeper.extend_from_slice(&inner);
                assert!(decode_sexp(&deeper, DecodeLimits::default()).is_err());
            });
        worker.unwrap().join().unwrap();
    }

    #[test]
    fn depth_limit() {
        // 10 nested lists, each containing the next; innermost is NULL.
        let mut inner = head(XT_NULL, 0);
        for _ in 0..10 {
            let mut outer = head(XT_VECTOR, inner.len());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        assert!(decode_sexp(&inner, DecodeLimits { max_depth: 11 }).is_ok());
        assert!(matches!(
            decode_sexp(&inner, DecodeLimits { max_depth: 10 }),
            Err(Error::Decode(_))
        ));
    }
}
