//! First check of workspace-relative paths, in Rust, before anything reaches
//! R. The harness checks again with `normalizePath()` on the R host, which
//! also catches symlinks pointing out of the workspace.

use crate::errors::ToolError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
