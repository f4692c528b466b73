//! Everything that turns tool arguments into R source, and the checks that
//! come first: string literals, JSON values as R values, plain R names,
//! package names and workspace-relative paths. Every R call the harness
//! module renders takes its arguments through here, so escaping lives in one
//! place. The harness checks names and paths again on the R side
//! (`normalizePath()` also catches symlinks pointing out of the workspace).

use serde_json::{Number, Value};

use crate::errors::ToolError;

/// Turn `s` into an R string literal that parses back to exactly `s`, in any
/// locale: non-ASCII characters become `\U{...}` escapes (R Language
/// Definition §10.3.1, "Constants"). R strings cannot hold NUL, so `None`
/// for input containing one.
pub fn r_string_literal(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => return None,
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\U{{{:x}}}", c as u32)),
        }
    }
    out.push('"');
    Some(out)
}

/// [`r_string_literal`] for a tool argument: NUL is `invalid_argument`.
pub fn literal(s: &str) -> Result<String, ToolError> {
    r_string_literal(s).ok_or_else(|| ToolError::invalid("text contains a NUL character"))
}

/// R's `TRUE` or `FALSE`.
pub fn logical(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}

/// A plain R name, as `load_data` binds it (checked again in R): ASCII
/// letters, digits, `_` and `.`, starting with a letter, at most 64 bytes.
///
/// Errors: `invalid_argument`.
pub fn check_identifier(name: &str) -> Result<(), ToolError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ToolError::invalid(format!(
            "name {name:?} is not a plain R name (ASCII letters, digits, '_' and '.', starting with a letter, at most 64 characters)"
        )))
    }
}

/// R package names: ASCII letters, digits and `.`, at least two characters,
/// starting with a letter, not ending with `.` ("Writing R Extensions" §1.1.1).
/// Such a name needs no escaping inside `"..."`.
pub fn is_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        && !name.ends_with('.')
}

/// Accept only relative paths that stay inside the workspace: no absolute
/// path, no `..` component, no home (`~`) expansion, no NUL, no backslash
/// (a path separator on Windows R). `""` and `"."` mean the workspace itself
/// and are accepted only when `allow_root`.
///
/// Errors: `invalid_argument` naming the rule broken.
pub fn check_relative_path(path: &str, allow_root: bool) -> Result<(), ToolError> {
    let refuse = |why: &str| {
        Err(ToolError::invalid(format!(
            "path {path:?} refused: {why}; paths are relative to the session workspace"
        )))
    };
    if path.contains('\0') {
        return refuse("contains NUL");
    }
    if path.contains('\\') {
        return refuse("contains a backslash");
    }
    if path.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    if path.starts_with('~') {
        return refuse("home-directory paths are not allowed");
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' {
        return refuse("drive paths are not allowed");
    }
    if path.split('/').any(|c| c == "..") {
        return refuse("'..' is not allowed");
    }
    let is_root = path.split('/').all(|c| c.is_empty() || c == ".");
    if is_root && !allow_root {
        return refuse("names the workspace itself, not a file");
    }
    Ok(())
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
    fn literal_escapes_quotes_backslashes_and_unicode() {
        assert_eq!(r_string_literal("a\"b\\c\n").unwrap(), r#""a\"b\\c\n""#);
        assert_eq!(
            r_string_literal("é中😀").unwrap(),
            r#""\U{e9}\U{4e2d}\U{1f600}""#
        );
        assert_eq!(r_string_literal("\u{7}").unwrap(), r#""\x07""#);
        assert!(r_string_literal("a\0b").is_none());
    }

    #[test]
    fn package_names() {
        assert!(is_package_name("dplyr"));
        assert!(is_package_name("data.table"));
        assert!(is_package_name("R6"));
        assert!(!is_package_name("6R"));
        assert!(!is_package_name("a"));
        assert!(!is_package_name("pkg."));
        assert!(!is_package_name("x\"); system(\"id"));
    }

    #[test]
    fn names_are_plain_r_names() {
        assert!(check_identifier("sales_2024").is_ok());
        assert!(check_identifier("a.b").is_ok());
        for bad in ["", "1x", "_x", "a b", "x;system('id')", &"a".repeat(65)] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_plain_relative_paths() {
        for p in ["a.csv", "data/a.csv", "./a.csv", "dir/sub/", ".R/library"] {
            assert!(check_relative_path(p, false).is_ok(), "{p}");
        }
        assert!(check_relative_path("", true).is_ok());
        assert!(check_relative_path(".", true).is_ok());
    }

    #[test]
    fn refuses_escapes() {
        for p in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "~/x",
            "~root/x",
            "C:/x",
            "a\\..\\b",
            "a\0b",
        ] {
            let e = check_relative_path(p, true).unwrap_err();
            assert_eq!(e.code, crate::errors::ErrorCode::InvalidArgument, "{p}");
        }
        assert!(check_relative_path("", false).is_err());
        assert!(check_relative_path("./", false).is_err());
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
