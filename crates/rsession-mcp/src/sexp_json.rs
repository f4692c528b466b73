//! R values to JSON for the data tools.
//!
//! [`to_json`] turns the plain lists returned by `harness_data.R` into
//! structured content, following the convention stated in that file's
//! header: a length-1 atomic vector is a scalar, a vector of class `AsIs`
//! (`I(x)`) is always an array, a list with names is an object, `NA` is
//! `null`. The other way (JSON tool arguments to R source) is
//! [`crate::harness::literal::r_literal`].

use rserve::{Sexp, Value as R, is_na_real};
use serde_json::{Map, Number, Value};

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
}
