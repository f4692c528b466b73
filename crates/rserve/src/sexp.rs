//! The R value model: [`Sexp`] = a [`Value`] plus R attributes.
//!
//! One variant per QAP1 primary expression type (`XT_*` in Rserve's `Rsrv.h`). Secondary
//! and deprecated types are folded into their primary form when decoding (`XT_INT` into
//! [`Value::Int`], `XT_SYM` into [`Value::Symbol`], ...).

use crate::protocol::{NA_INTEGER, is_na_real};

/// A complex number as R stores it (`Rcomplex`): real and imaginary parts, exact bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

/// One element of a pairlist or language object: an optional tag (argument or element name)
/// and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    /// The tag (R `TAG()`), `None` when the element has no name.
    pub tag: Option<String>,
    /// The element (R `CAR()`).
    pub value: Sexp,
}

/// The payload of an R object, by QAP1 expression type.
///
/// Numeric vectors keep exact IEEE-754 bits: `NA_real_` (see [`crate::na_real`]), other NaN
/// payloads, `-0.0` and infinities survive decode and encode unchanged. Compare doubles with
/// `to_bits()` when exactness matters, since `NaN != NaN` under `PartialEq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `XT_NULL`: R's `NULL`.
    Null,
    /// `XT_ARRAY_INT` (and `XT_INT`): integer vector; `NA_integer_` is [`NA_INTEGER`].
    Int(Vec<i32>),
    /// `XT_ARRAY_DOUBLE` (and `XT_DOUBLE`): double vector, exact bits.
    Double(Vec<f64>),
    /// `XT_ARRAY_STR`: character vector; `None` is `NA_character_`. Bytes that are not valid
    /// UTF-8 are replaced by U+FFFD (Rserve sends UTF-8 when configured with `encoding utf8`).
    Str(Vec<Option<String>>),
    /// `XT_ARRAY_BOOL` (and `XT_BOOL`): logical vector; `None` is `NA`.
    Bool(Vec<Option<bool>>),
    /// `XT_RAW`: raw vector.
    Raw(Vec<u8>),
    /// `XT_ARRAY_CPLX`: complex vector.
    Complex(Vec<Complex>),
    /// `XT_VECTOR` (and `XT_VECTOR_STR`): generic vector, i.e. an R `list()`.
    List(Vec<Sexp>),
    /// `XT_VECTOR_EXP`: expression vector.
    Expression(Vec<Sexp>),
    /// `XT_LIST_TAG` / `XT_LIST_NOTAG`: pairlist (e.g. the formals of a closure).
    PairList(Vec<Tagged>),
    /// `XT_LANG_TAG` / `XT_LANG_NOTAG`: a call; the first element is the function.
    Lang(Vec<Tagged>),
    /// `XT_SYMNAME` (and `XT_SYM`): a symbol, e.g. `quote(x)`.
    Symbol(String),
    /// `XT_STR`: a single CHARSXP (Rserve sends it only inside other objects).
    Char(String),
    /// `XT_S4`: an S4 object; its slots are its attributes.
    S4,
    /// `XT_CLOS`: a closure with its formals (a pairlist or `NULL`) and body.
    Closure {
        /// `FORMALS(x)`.
        formals: Box<Sexp>,
        /// `BODY(x)`.
        body: Box<Sexp>,
    },
    /// `XT_UNKNOWN`: an R type QAP1 does not carry (environment, external pointer, builtin,
    /// ...); the payload is R's `TYPEOF()` code (e.g. 4 = `ENVSXP`).
    Unknown(i32),
}

/// An R object: a [`Value`] and its attributes (`XT_HAS_ATTR`), in R's order.
///
/// Attributes are name/value pairs such as `names`, `class`, `dim`, `dimnames`, `levels`,
/// `row.names`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sexp {
    /// The payload.
    pub value: Value,
    /// The attribute pairlist as `(name, value)` pairs; empty when there are none.
    pub attributes: Vec<(String, Sexp)>,
}

impl From<Value> for Sexp {
    fn from(value: Value) -> Self {
        Sexp {
            value,
            attributes: Vec::new(),
        }
    }
}

impl Sexp {
    /// R's `NULL`.
    pub const NULL: Sexp = Sexp {
        value: Value::Null,
        attributes: Vec::new(),
    };

    /// A character vector from optional strings (`None` = `NA_character_`).
    pub fn strings<I, S>(items: I) -> Sexp
    where
        I: IntoIterator<Item = Option<S>>,
        S: Into<String>,
    {
        Value::Str(items.into_iter().map(|s| s.map(Into::into)).collect()).into()
    }

    /// A character vector of length one.
    pub fn string(s: impl Into<String>) -> Sexp {
        Value::Str(vec![Some(s.into())]).into()
    }

    /// A generic vector (`list(...)`) with `names`, from `(name, value)` pairs.
    pub fn named_list<I, S>(items: I) -> Sexp
    where
        I: IntoIterator<Item = (S, Sexp)>,
        S: Into<String>,
    {
        let (names, values): (Vec<Option<String>>, Vec<Sexp>) =
            items.into_iter().map(|(n, v)| (Some(n.into()), v)).unzip();
        Sexp::from(Value::List(values)).with_attr("names", Sexp::from(Value::Str(names)))
    }

    /// Returns `self` with attribute `name` set to `value` (replacing an existing one).
    pub fn with_attr(mut self, name: impl Into<String>, value: Sexp) -> Sexp {
        let name = name.into();
        match self.attributes.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
        self
    }

    /// True for R's `NULL` (with or without attributes).
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The attribute called `name` (`attr(x, name, exact = TRUE)`).
    pub fn attr(&self, name: &str) -> Option<&Sexp> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `names` attribute as strings, or for pairlists and calls the tags.
    pub fn names(&self) -> Option<Vec<Option<String>>> {
        match &self.value {
            Value::PairList(items) | Value::Lang(items) => {
                Some(items.iter().map(|t| t.tag.clone()).collect())
            }
            _ => self.attr("names")?.as_strings().map(<[_]>::to_vec),
        }
    }

    /// The `class` attribute (`NULL` → `None`).
    pub fn class(&self) -> Option<&[Option<String>]> {
        self.attr("class")?.as_strings()
    }

    /// Looks up an element by name: for lists and expression vectors through the `names`
    /// attribute, for pairlists and calls through the tags. First match wins, like `x[["n"]]`
    /// with `exact = TRUE`. Atomic named vectors: use [`Sexp::position`] and the typed slice.
    pub fn get(&self, name: &str) -> Option<&Sexp> {
        match &self.value {
            Value::PairList(items) | Value::Lang(items) => items
                .iter()
                .find(|t| t.tag.as_deref() == Some(name))
                .map(|t| &t.value),
            Value::List(items) | Value::Expression(items) => items.get(self.position(name)?),
            _ => None,
        }
    }

    /// Index of the first element whose name is `name` (via `names` or tags).
    pub fn position(&self, name: &str) -> Option<usize> {
        let pos_in =
            |names: &[Option<String>]| names.iter().position(|n| n.as_deref() == Some(name));
        match &self.value {
            Value::PairList(items) | Value::Lang(items) => {
                items.iter().position(|t| t.tag.as_deref() == Some(name))
            }
            _ => pos_in(self.attr("names")?.as_strings()?),
        }
    }

    /// Number of elements (`length(x)` for vectors and pairlists, 0 for `NULL`, 1 otherwise).
    pub fn len(&self) -> usize {
        match &self.value {
            Value::Null => 0,
            Value::Int(v) => v.len(),
            Value::Double(v) => v.len(),
            Value::Str(v) => v.len(),
            Value::Bool(v) => v.len(),
            Value::Raw(v) => v.len(),
            Value::Complex(v) => v.len(),
            Value::List(v) | Value::Expression(v) => v.len(),
            Value::PairList(v) | Value::Lang(v) => v.len(),
            Value::Symbol(_)
            | Value::Char(_)
            | Value::S4
            | Value::Closure { .. }
            | Value::Unknown(_) => 1,
        }
    }

    /// True when [`Sexp::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements of an integer vector (`NA_integer_` = [`NA_INTEGER`]).
    pub fn as_i32s(&self) -> Option<&[i32]> {
        match &self.value {
            Value::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a double vector, exact bits.
    pub fn as_f64s(&self) -> Option<&[f64]> {
        match &self.value {
            Value::Double(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a character vector (`None` = `NA_character_`).
    pub fn as_strings(&self) -> Option<&[Option<String>]> {
        match &self.value {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a logical vector (`None` = `NA`).
    pub fn as_bools(&self) -> Option<&[Option<bool>]> {
        match &self.value {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a raw vector.
    pub fn as_raw(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a complex vector.
    pub fn as_complex(&self) -> Option<&[Complex]> {
        match &self.value {
            Value::Complex(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a generic vector (`list`) or expression vector.
    pub fn as_list(&self) -> Option<&[Sexp]> {
        match &self.value {
            Value::List(v) | Value::Expression(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of a pairlist or call.
    pub fn as_pairs(&self) -> Option<&[Tagged]> {
        match &self.value {
            Value::PairList(v) | Value::Lang(v) => Some(v),
            _ => None,
        }
    }

    /// The single string of a length-one, non-NA character vector (or a symbol / CHARSXP).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(v) if v.len() == 1 => v[0].as_deref(),
            Value::Symbol(s) | Value::Char(s) => Some(s),
            _ => None,
        }
    }

    /// The single value of a length-one, non-NA integer vector.
    pub fn as_i32(&self) -> Option<i32> {
        match self.as_i32s()? {
            [x] if *x != NA_INTEGER => Some(*x),
            _ => None,
        }
    }

    /// The single value of a length-one double vector that is not `NA_real_` (other NaNs are
    /// returned), or of a length-one non-NA integer vector converted to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match &self.value {
            Value::Double(v) if v.len() == 1 && !is_na_real(v[0]) => Some(v[0]),
            Value::Int(_) => self.as_i32().map(f64::from),
            _ => None,
        }
    }

    /// The single value of a length-one, non-NA logical vector.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_bools()? {
            [Some(b)] => Some(*b),
            _ => None,
        }
    }

    /// The symbol name of an `XT_SYMNAME`.
    pub fn as_symbol(&self) -> Option<&str> {
        match &self.value {
            Value::Symbol(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Vec<f64>> for Sexp {
    fn from(v: Vec<f64>) -> Self {
        Value::Double(v).into()
    }
}

impl From<Vec<i32>> for Sexp {
    fn from(v: Vec<i32>) -> Self {
        Value::Int(v).into()
    }
}

impl From<Vec<u8>> for Sexp {
    fn from(v: Vec<u8>) -> Self {
        Value::Raw(v).into()
    }
}

impl From<Vec<Option<bool>>> for Sexp {
    fn from(v: Vec<Option<bool>>) -> Self {
        Value::Bool(v).into()
    }
}

impl From<Vec<Option<String>>> for Sexp {
    fn from(v: Vec<Option<String>>) -> Self {
        Value::Str(v).into()
    }
}

impl From<&str> for Sexp {
    fn from(s: &str) -> Self {
        Sexp::string(s)
    }
}

impl From<f64> for Sexp {
    fn from(x: f64) -> Self {
        Value::Double(vec![x]).into()
    }
}

impl From<i32> for Sexp {
    fn from(x: i32) -> Self {
        Value::Int(vec![x]).into()
    }
}

impl From<bool> for Sexp {
    fn from(x: bool) -> Self {
        Value::Bool(vec![Some(x)]).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_list_lookup() {
        let x = Sexp::named_list([("a", Sexp::from(1.5)), ("b", Sexp::string("z"))]);
        assert_eq!(x.get("b").and_then(Sexp::as_str), Some("z"));
        assert_eq!(x.get("a").and_then(Sexp::as_f64), Some(1.5));
        assert!(x.get("c").is_none());
        assert_eq!(x.position("b"), Some(1));
        assert_eq!(x.names().unwrap(), vec![Some("a".into()), Some("b".into())]);
    }

    #[test]
    fn scalar_accessors_reject_na_and_longer_vectors() {
        assert_eq!(Sexp::from(vec![NA_INTEGER]).as_i32(), None);
        assert_eq!(Sexp::from(vec![1, 2]).as_i32(), None);
        assert_eq!(Sexp::from(vec![crate::na_real()]).as_f64(), None);
        assert!(Sexp::from(vec![f64::NAN]).as_f64().unwrap().is_nan());
        assert_eq!(Sexp::strings([None::<String>]).as_str(), None);
        assert!(Sexp::NULL.is_null());
        assert!(Sexp::NULL.is_empty());
    }
}
