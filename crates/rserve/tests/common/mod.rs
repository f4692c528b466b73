//! Shared proptest strategies for R values, and a deparser that writes them as R source
//! literals so R can build the same value itself.

#![allow(dead_code)] // each test binary uses part of this module

use proptest::prelude::*;
use rserve::{Complex, NA_INTEGER, Sexp, Value, encode_sexp, na_real};

/// Bit-exact equality: the QAP1 encoding is deterministic, so equal bytes mean equal values
/// down to NaN payloads and the sign of zero (which `PartialEq` on `f64` cannot tell).
pub fn same_bits(a: &Sexp, b: &Sexp) -> bool {
    encode_sexp(a).expect("encodable") == encode_sexp(b).expect("encodable")
}

/// Doubles R can hold: normal, subnormal, ±0, ±Inf, `NA_real_` and R's own `NaN` (whose
/// bits the caller passes, as read from R).
pub fn double(r_nan_bits: u64) -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => any::<f64>().prop_filter("finite", |x| x.is_finite()),
        1 => prop::num::f64::SUBNORMAL,
        1 => Just(na_real()),
        1 => Just(f64::from_bits(r_nan_bits)),
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(-0.0), Just(0.0)],
    ]
}

fn string() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        6 => "[^\u{0}]{0,12}".prop_map(Some),
        2 => "(é|中文|🙂|a|\"|\\\\|\n| ){0,6}".prop_map(Some),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.]{0,7}"
}

fn atomic(r_nan_bits: u64) -> impl Strategy<Value = Value> {
    let n = 0..12usize;
    prop_oneof![
        prop::collection::vec(
            prop_oneof![1 => Just(NA_INTEGER), 8 => any::<i32>()],
            n.clone()
        )
        .prop_map(Value::Int),
        prop::collection::vec(double(r_nan_bits), n.clone()).prop_map(Value::Double),
        prop::collection::vec(string(), n.clone()).prop_map(Value::Str),
        prop::collection::vec(any::<Option<bool>>(), n.clone()).prop_map(Value::Bool),
        prop::collection::vec(any::<u8>(), n.clone()).prop_map(Value::Raw),
        prop::collection::vec(
            (double(r_nan_bits), double(r_nan_bits)).prop_map(|(re, im)| Complex { re, im }),
            n
        )
        .prop_map(Value::Complex),
    ]
}

/// Atomic vectors (optionally with `names`), `NULL`, and lists of those up to depth 3
/// (optionally named).
pub fn sexp(r_nan_bits: u64) -> impl Strategy<Value = Sexp> {
    let leaf = prop_oneof![
        1 => Just(Sexp::NULL),
        8 => (atomic(r_nan_bits), any::<bool>()).prop_flat_map(|(v, named)| {
            let len = Sexp::from(v.clone()).len();
            let names = if named && len > 0 {
                prop::collection::vec(name(), len).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (Just(v), names).prop_map(|(v, names)| match names {
                Some(names) => Sexp::from(v).with_attr("names", Sexp::strings(names.into_iter().map(Some))),
                None => Sexp::from(v),
            })
        }),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        (prop::collection::vec((name(), inner), 0..5), any::<bool>()).prop_map(|(items, named)| {
            if named && !items.is_empty() {
                Sexp::named_list(items)
            } else {
                Value::List(items.into_iter().map(|(_, v)| v).collect()).into()
            }
        })
    })
}

/// R source that evaluates to exactly `x` (bit-exact doubles via hexadecimal literals).
pub fn deparse(x: &Sexp) -> String {
    let body = match &x.value {
        Value::Null => "NULL".to_string(),
        Value::Int(v) if v.is_empty() => "integer(0)".into(),
        Value::Int(v) => vector(v.iter().map(|&i| {
            if i == NA_INTEGER {
                "NA_integer_".into()
            } else {
                format!("{i}L")
            }
        })),
        Value::Double(v) if v.is_empty() => "double(0)".into(),
        Value::Double(v) => vector(v.iter().map(|&d| double_literal(d))),
        Value::Str(v) if v.is_empty() => "character(0)".into(),
        Value::Str(v) => vector(v.iter().map(|s| match s {
            None => "NA_character_".into(),
            Some(s) => string_literal(s),
        })),
        Value::Bool(v) if v.is_empty() => "logical(0)".into(),
        Value::Bool(v) => vector(v.iter().map(|b| match b {
            None => "NA".into(),
            Some(true) => "TRUE".into(),
            Some(false) => "FALSE".into(),
        })),
        Value::Raw(v) if v.is_empty() => "raw(0)".into(),
        Value::Raw(v) => format!("as.raw({})", vector(v.iter().map(|b| format!("0x{b:02x}")))),
        Value::Complex(v) if v.is_empty() => "complex(0)".into(),
        Value::Complex(v) => format!(
            "complex(real = {}, imaginary = {})",
            vector(v.iter().map(|c| double_literal(c.re))),
            vector(v.iter().map(|c| double_literal(c.im)))
        ),
        Value::List(v) => {
            let names = x.names();
            let items: Vec<String> = v
                .iter()
                .enumerate()
                .map(|(i, e)| match names.as_ref().and_then(|n| n[i].as_ref()) {
                    Some(n) => format!("`{n}` = {}", deparse(e)),
                    None => deparse(e),
                })
                .collect();
            return format!("list({})", items.join(", "));
        }
        other => panic!("deparse does not cover {other:?}"),
    };
    match x.attr("names") {
        Some(names) if !matches!(x.value, Value::List(_)) => {
            format!("structure({body}, names = {})", deparse(names))
        }
        _ => body,
    }
}

fn vector(items: impl Iterator<Item = String>) -> String {
    format!("c({})", items.collect::<Vec<_>>().join(", "))
}

/// `0x1.<hex>p<exp>` for finite values, so R's parser reproduces the bits exactly.
fn double_literal(d: f64) -> String {
    if rserve::is_na_real(d) {
        return "NA_real_".into();
    }
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    let sign = if d.is_sign_negative() { "-" } else { "" };
    let bits = d.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mant = bits & ((1 << 52) - 1);
    if exp == 0 && mant == 0 {
        return format!("{sign}0");
    }
    if exp == 0 {
        // Subnormal: 0x0.<mant>p-1022.
        format!("{sign}0x0.{mant:013x}p-1022")
    } else {
        format!("{sign}0x1.{mant:013x}p{}", exp - 1023)
    }
}

fn string_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\U{{{:x}}}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[test]
fn double_literals_are_exact_in_rust_terms() {
    // Guard the deparser itself: parse our hex literal back with Rust's own arithmetic.
    for d in [1.5, -0.1, f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e-310] {
        let lit = double_literal(d);
        let (neg, rest) = lit
            .strip_prefix('-')
            .map_or((false, lit.as_str()), |r| (true, r));
        let (m, e) = rest.split_once('p').unwrap();
        let (int, frac) = m.trim_start_matches("0x").split_once('.').unwrap();
        let mant = u64::from_str_radix(frac, 16).unwrap() as f64 / (1u64 << 52) as f64
            + int.parse::<f64>().unwrap();
        let v = mant * 2f64.powi(e.parse::<i32>().unwrap());
        assert_eq!(if neg { -v } else { v }.to_bits(), d.to_bits(), "{lit}");
    }
}
