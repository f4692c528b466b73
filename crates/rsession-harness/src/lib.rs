//! The R side of RSession's evaluation harness, shared by the two programs that put it into R:
//!
//! - **rsession-mcp** installs [`HARNESS_R`] in every R it connects to (QAP1 `voidEval` right
//!   after the login), unless that R already holds this very harness;
//! - **rsession-operator** gives pool pods the same text in their pool's ConfigMap, and their
//!   command sources it in the Rserve parent before it listens ([`preload_r`]), so every R
//!   forked for a connection starts with the harness in place. On the way to a warm session's
//!   first result that saves parsing about 77 KB of R (12.7 ms on a quiet two-core machine,
//!   several times that while the pool's replacement pod starts R on the same cores).
//!
//! Which harness a preloaded R holds is the R option [`PRELOADED_OPTION`], set to [`digest`] of
//! the text it sourced; the frontend installs its own when that differs (an operator and a
//! frontend of different releases), so a mismatch costs time, never correctness.
//!
//! The R files (`r/`), one job each: `harness.R` (evaluation: output, warnings, errors and plots
//! captured; workspace files), `harness_data.R` (the data tools), `harness_db.R` (the database
//! and the OMOP CDM handle), `harness_checkpoint.R` (checkpoint and restore of R state). Each
//! file's header documents its entry points and result shapes.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The whole harness as one R script (`harness.R`, then `harness_data.R`, `harness_db.R` and
/// `harness_checkpoint.R`, which build on the `.rsession` environment the first defines).
pub const HARNESS_R: &str = concat!(
    include_str!("../r/harness.R"),
    include_str!("../r/harness_data.R"),
    include_str!("../r/harness_db.R"),
    include_str!("../r/harness_checkpoint.R")
);

/// The R option naming the harness an R process preloaded: [`digest`] of its text.
pub const PRELOADED_OPTION: &str = "rsession.harness";

/// SHA-256 of [`HARNESS_R`], lower-case hex (64 characters).
pub fn digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| hex::encode(Sha256::digest(HARNESS_R.as_bytes())))
}

/// How an Rserve parent preloads the harness ([`preload_r`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preload {
    /// Sourced (about 10 ms), with R's `parallel` namespace loaded (about 4 ms): forked
    /// connections skip the install, run the harness uncompiled (the JIT switched to the user's
    /// level around each user expression) until a background child of their own has compiled
    /// it, and fork that child without loading `parallel` first.
    Source,
    /// Sourced and byte-compiled (`.rsession$compile()`, about 0.6 s more): every evaluation in
    /// a forked R also skips that JIT switch (about 70 to 90 us of a cold `1+1`). For a parent
    /// whose start nobody waits for (a warm pool's pod).
    Compiled,
}

/// R code that loads the harness from the file `path` (holding [`HARNESS_R`]) as `how` says and
/// records it in [`PRELOADED_OPTION`]; nothing when the file does not exist. For an Rserve
/// parent process, run before it listens. `path` must not contain `'` or `\`.
pub fn preload_r(path: &str, how: Preload) -> String {
    let compile = match how {
        Preload::Source => " loadNamespace('parallel');",
        Preload::Compiled => " .rsession$compile();",
    };
    format!(
        "if (file.exists('{path}')) {{ source('{path}');{compile} options({PRELOADED_OPTION} = '{}') }}",
        digest()
    )
}

/// R code evaluating to `then` when this R preloaded this very harness, else to `NULL`: how
/// the frontend asks, in the same round trip as its first call, whether to install it.
pub fn if_preloaded(then: &str) -> String {
    format!(
        "if (identical(getOption('{PRELOADED_OPTION}'), '{}')) {{\n{then}\n}} else NULL",
        digest()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_hex_of_the_text() {
        assert_eq!(digest().len(), 64);
        assert!(
            digest()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(digest(), hex::encode(Sha256::digest(HARNESS_R.as_bytes())));
    }

    #[test]
    fn the_scripts_name_the_option_and_the_digest() {
        let p = preload_r("/etc/rserve/harness.R", Preload::Compiled);
        assert!(
            p.starts_with("if (file.exists('/etc/rserve/harness.R'))"),
            "{p}"
        );
        assert!(
            p.contains(&format!("options(rsession.harness = '{}')", digest())),
            "{p}"
        );
        // Sourced, then compiled, and only then recorded as preloaded.
        let at = |part: &str| p.find(part).unwrap_or_else(|| panic!("{part:?} in {p}"));
        assert!(at("source('/etc/rserve/harness.R')") < at(".rsession$compile()"));
        assert!(at(".rsession$compile()") < at("options(rsession.harness"));
        let s = preload_r("/etc/rserve/harness.R", Preload::Source);
        assert!(!s.contains("compile"), "{s}");
        // Sourced with `parallel` loaded for the background compile's fork instead.
        assert_eq!(
            s.replace(
                "source('/etc/rserve/harness.R'); loadNamespace('parallel');",
                ""
            ),
            p.replace("source('/etc/rserve/harness.R'); .rsession$compile();", "")
        );
        let q = if_preloaded(".rsession$init('/w')");
        assert!(
            q.contains(&format!("getOption('rsession.harness'), '{}'", digest())),
            "{q}"
        );
        assert!(
            q.contains(".rsession$init('/w')") && q.ends_with("else NULL"),
            "{q}"
        );
    }
}
