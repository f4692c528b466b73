//! R values ↔ JSON for the data tools.
//!
//! [`to_json`] turns the plain lists returned by `harness_data.R` into
//! structured content, following the convention stated in that file's
//! header: a length-1 atomic vector is a scalar, a vector of class `AsIs`
//! (`I(x)`) is always an array, a list with names is an object, `NA` is
//! `null`. [`r_literal`] goes the other way for tool arguments (options,
//! bound SQL parameters), producing R source that parses back to the value.

use rserve::{Sexp, Value as R, is_na_real};
use serde_json::{Map, Number, Value};

use crate::harness::r_string_literal;

/// Largest integer a double holds exactly (2^53).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

fn double(x: f64) -> Value {
    if is_na_real(x) || !x.is_finite() {
        // JSON has no NaN/Inf; NA, NaN and ±Inf all become null.
        return Value::Null;
    }
    if x.fract() == 0.0 && x.abs() < EXACT_INT {
        return Value::Number(Number::from(x as i64));
    }
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn is_as_is(s: &Sexp) -> bool {
    s.class()
        .is_some_and(|c| c.iter().any(|c| c.as_deref() == Some("AsIs")))
}

fn atomic(items: Vec<Value>, force_array: bool) -> Value {
    if items.len() == 1 && !force_array {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

/// JSON form of an R value (see the module docs for the mapping). Types JSON
/// cannot carry (closures, environments, ...) become `null`.
pub fn to_json(s: &Sexp) -> Value {
    let arr = is_as_is(s);
    match &s.value {
        R::Null => {
            if arr {
                Value::Array(Vec::new())
            } else {
                Value::Null
            }
        }
        R::Int(v) => atomic(
            v.iter()
                .map(|&i| {
                    if i == rserve::NA_INTEGER {
                        Value::Null
                    } else {
                        Value::from(i)
                    }
                })
                .collect(),
            arr,
        ),
        R::Double(v) => atomic(v.iter().map(|&x| double(x)).collect(), arr),
        R::Str(v) => atomic(
            v.iter()
                .map(|x| x.clone().map_or(Value::Null, Value::String))
                .collect(),
            arr,
        ),
        R::Bool(v) => atomic(
            v.iter()
                .map(|b| b.map_or(Value::Null, Value::Bool))
                .collect(),
            arr,
        ),
        R::Char(c) | R::Symbol(c) => Value::String(c.clone()),
        R::List(items) => match s.names() {
            Some(names)
                if names
                    .iter()
                    .any(|n| n.as_deref().is_some_and(|n| !n.is_empty())) =>
            {
                let mut obj = Map::new();
                for (i, item) in items.iter().enumerate() {
                    let key = names
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| format!("{}", i + 1));
                    obj.insert(key, to_json(item));
                }
                Value::Object(obj)
            }
            _ => Value::Array(items.iter().map(to_json).collect()),
        },
        _ => Value::Null,
    }
}

/// Rows of a table encoded as `{columns: [name...], data: [[column values]...]}`
/// (column-major, as `rows_of()` in `harness_data.R` sends it) turned into
/// one JSON object per row, in column order.
pub fn rows(table: &Value) -> Vec<Value> {
    let columns: Vec<&str> = table["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let data: Vec<&Vec<Value>> = table["data"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_array).collect())
        .unwrap_or_default();
    let n = data.first().map_or(0, |c| c.len());
    (0..n)
        .map(|i| {
            let mut row = Map::new();
            for (name, col) in columns.iter().zip(&data) {
                row.insert(
                    (*name).to_string(),
                    col.get(i).cloned().unwrap_or(Value::Null),
                );
            }
            Value::Object(row)
        })
        .collect()
}

/// Errors turning JSON into R source.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiteralError {
    /// A string holds NUL, which R strings cannot.
    #[error("text contains a NUL character")]
    Nul,
    /// Objects or arrays nested deeper than R options need.
    #[error("value is nested deeper than {0} levels")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 8;

/// R source for a JSON value: `null` → `NULL`, numbers → doubles (or `L`
/// integers when integral and in `i32` range), strings → escaped literals,
/// arrays of scalars of one kind → `c(...)` vectors, other arrays →
/// `list(...)`, objects → named `list(...)` (names quoted with backticks).
pub fn r_literal(v: &Value) -> Result<String, LiteralError> {
    literal_at(v, 0)
}

fn literal_at(v: &Value, depth: usize) -> Result<String, LiteralError> {
    if depth > MAX_DEPTH {
        return Err(LiteralError::TooDeep(MAX_DEPTH));
    }
    Ok(match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Value::Number(n) => number(n),
        Value::String(s) => r_string_literal(s).ok_or(LiteralError::Nul)?,
        Value::Array(items) => {
            let scalar_kind = |x: &Value| match x {
                Value::Bool(_) => Some(0),
                Value::Number(_) => Some(1),
                Value::String(_) => Some(2),
                _ => None,
            };
            let first = items.first().and_then(scalar_kind);
            let homogeneous = first.is_some() && items.iter().all(|x| scalar_kind(x) == first);
            let parts = items
                .iter()
                .map(|x| {
                    // doubles in a vector: c(1L, 2.5) would still be double, keep it plain
                    if let Value::Number(n) = x {
                        Ok(n.as_f64().map_or("NA".into(), |f| format!("{f:?}")))
                    } else {
                        literal_at(x, depth + 1)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if homogeneous {
                format!("c({})", parts.join(", "))
            } else if items.is_empty() {
                "list()".into()
            } else {
                format!("list({})", parts.join(", "))
            }
        }
        Value::Object(map) => {
            let parts = map
                .iter()
                .map(|(k, x)| {
                    let name = k.replace('\\', "\\\\").replace('`', "\\`");
                    if name.contains('\0') {
                        return Err(LiteralError::Nul);
                    }
                    Ok(format!("`{name}` = {}", literal_at(x, depth + 1)?))
                })
                .collect::<Result<Vec<_>, _>>()?;
            format!("list({})", parts.join(", "))
        }
    })
}

fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64()
        && i32::try_from(i).is_ok_and(|i| i != i32::MIN)
    {
        return format!("{i}L");
    }
    n.as_f64().map_or("NA_real_".into(), |f| format!("{f:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_arrays_and_objects() {
        let s = Sexp::named_list([
            ("n", Sexp::from(3.0)),
            ("x", Sexp::from(2.5)),
            ("na", Sexp::from(vec![rserve::na_real()])),
            ("v", Sexp::from(vec![1, rserve::NA_INTEGER])),
            (
                "one",
                Sexp::strings([Some("a")]).with_attr("class", Sexp::strings([Some("AsIs")])),
            ),
            ("flag", Sexp::from(true)),
        ]);
        assert_eq!(
            to_json(&s),
            json!({"n": 3, "x": 2.5, "na": null, "v": [1, null], "one": ["a"], "flag": true})
        );
        let unnamed = Sexp::from(R::List(vec![Sexp::string("a"), Sexp::NULL]));
        assert_eq!(to_json(&unnamed), json!(["a", null]));
    }

    #[test]
    fn column_major_tables_become_rows() {
        let t = json!({"columns": ["a", "b"], "data": [[1, 2], ["x", null]]});
        assert_eq!(
            rows(&t),
            vec![json!({"a": 1, "b": "x"}), json!({"a": 2, "b": null})]
        );
        assert!(rows(&json!({})).is_empty());
    }

    #[test]
    fn literals_parse_back_shapes() {
        assert_eq!(r_literal(&json!(null)).unwrap(), "NULL");
        assert_eq!(r_literal(&json!(3)).unwrap(), "3L");
        assert_eq!(r_literal(&json!(3.5)).unwrap(), "3.5");
        assert_eq!(r_literal(&json!(5_000_000_000i64)).unwrap(), "5000000000.0");
        assert_eq!(r_literal(&json!("a\"b")).unwrap(), r#""a\"b""#);
        assert_eq!(r_literal(&json!([1, 2.5])).unwrap(), "c(1.0, 2.5)");
        assert_eq!(r_literal(&json!(["a", "b"])).unwrap(), r#"c("a", "b")"#);
        assert_eq!(r_literal(&json!([1, "a"])).unwrap(), r#"list(1.0, "a")"#);
        assert_eq!(
            r_literal(&json!({"sheet": "S", "skip": 1})).unwrap(),
            r#"list(`sheet` = "S", `skip` = 1L)"#
        );
        assert_eq!(r_literal(&json!("a\u{0}")), Err(LiteralError::Nul));
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        assert!(matches!(r_literal(&deep), Err(LiteralError::TooDeep(_))));
    }
}
