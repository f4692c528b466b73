//! The bubblewrap command line for one session's sandbox.
//!
//! Kept as one pure function over the policy so its unit tests pin every
//! argument that makes the boundary; the attacker-side tests in
//! `tests/sandbox.rs` check that the kernel then enforces it.

use std::path::Path;

use tokio::process::Command;

use super::{SANDBOX_UID, SandboxMode, SandboxPolicy, running_as_root};

/// The session workspace's path inside the sandbox.
pub const WORKSPACE: &str = "/workspace";
/// The private run directory's path inside the sandbox (Rserve's
/// configuration, password file and Unix socket).
pub const RUN_DIR: &str = "/run/rsession";

/// Top-level directories that merged-/usr systems make symlinks into `/usr`
/// and older ones keep as directories; each is mirrored as it is on the host.
const SYSTEM_DIRS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Files under `/etc` hidden behind an empty file: password hashes.
const MASKED: [&str; 2] = ["/etc/shadow", "/etc/gshadow"];

/// Environment variables passed through from the server when set; everything
/// else (tokens, cloud keys, `SSH_AUTH_SOCK`) stays outside.
const PASSED_ENV: [&str; 4] = ["LANG", "LC_ALL", "TZ", "R_HOME"];

/// `bwrap <boundary> -- prlimit --nproc=N --core=0 -- <argv>`: `argv` runs
/// with `workspace` (host path) at [`WORKSPACE`] and `run_dir` at
/// [`RUN_DIR`], under `policy`. The environment is cleared except for
/// [`PASSED_ENV`]; `HOME` is the workspace (its private `/tmp` in
/// `read-only` mode). As root, bubblewrap starts as [`SANDBOX_UID`].
///
/// `policy.mode` must be a sandboxed one; `danger-full-access` builds no
/// sandbox and never gets here.
pub fn command(
    policy: &SandboxPolicy,
    workspace: &Path,
    run_dir: &Path,
    argv: &[String],
) -> Command {
    debug_assert!(policy.mode.is_sandboxed());
    let mut cmd = Command::new(&policy.bwrap);
    cmd.args(args(policy, workspace, run_dir, argv));
    cmd.env_clear();
    for name in PASSED_ENV {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    if std::env::var_os("LANG").is_none() && std::env::var_os("LC_ALL").is_none() {
        cmd.env("LANG", "C.UTF-8");
    }
    if running_as_root() {
        cmd.uid(SANDBOX_UID).gid(SANDBOX_UID);
    }
    cmd
}

/// The arguments of [`command`] (after the program name).
pub fn args(
    policy: &SandboxPolicy,
    workspace: &Path,
    run_dir: &Path,
    argv: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    // Every namespace bubblewrap knows (user, mount, PID, IPC, UTS, cgroup,
    // network); the network one is shared back only when asked.
    push(&["--unshare-all"]);
    if policy.allow_network {
        push(&["--share-net"]);
    }
    push(&[
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "rsession",
        "--ro-bind",
        "/usr",
        "/usr",
    ]);
    for dir in SYSTEM_DIRS {
        match std::fs::read_link(dir) {
            Ok(target) => push(&["--symlink", &target.to_string_lossy(), dir]),
            Err(_) if Path::new(dir).is_dir() => push(&["--ro-bind", dir, dir]),
            Err(_) => {}
        }
    }
    push(&["--ro-bind", "/etc", "/etc"]);
    for file in MASKED {
        if Path::new(file).exists() {
            push(&["--ro-bind", "/dev/null", file]);
        }
    }
    push(&[
        "--ro-bind-try",
        "/opt",
        "/opt",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]);
    for dir in &policy.read_only_paths {
        let d = dir.to_string_lossy();
        push(&["--ro-bind", &d, &d]);
    }
    let ws = workspace.to_string_lossy();
    let run = run_dir.to_string_lossy();
    let home = match policy.mode {
        SandboxMode::ReadOnly => {
            push(&["--ro-bind", &ws, WORKSPACE]);
            "/tmp"
        }
        _ => {
            push(&["--bind", &ws, WORKSPACE]);
            WORKSPACE
        }
    };
    push(&[
        "--bind",
        &run,
        RUN_DIR,
        "--chdir",
        WORKSPACE,
        "--setenv",
        "HOME",
        home,
        "--setenv",
        "TMPDIR",
        "/tmp",
        // Font and other caches go to the private temp, not the workspace.
        "--setenv",
        "XDG_CACHE_HOME",
        "/tmp/.cache",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--",
        "prlimit",
        &format!("--nproc={}", policy.max_processes),
        "--core=0",
        "--",
    ]);
    a.extend(argv.iter().cloned());
    a
}

/// Make `path` the sandbox user's: owned by [`SANDBOX_UID`] when running as
/// root (so R, as `nobody`, can use it), with permission bits `mode` either way.
pub fn hand_over(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if running_as_root() {
        std::os::unix::fs::chown(path, Some(SANDBOX_UID), Some(SANDBOX_UID))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy(mode: SandboxMode, allow_network: bool) -> SandboxPolicy {
        SandboxPolicy {
            mode,
            allow_network,
            memory_limit_bytes: 1 << 30,
            max_processes: 64,
            bwrap: PathBuf::from("bwrap"),
            read_only_paths: vec![PathBuf::from("/data/cdm")],
        }
    }

    fn built(mode: SandboxMode, allow_network: bool) -> Vec<String> {
        args(
            &policy(mode, allow_network),
            Path::new("/w/s1"),
            Path::new("/r/s1"),
            &["R".into(), "--version".into()],
        )
    }

    fn has_seq(a: &[String], seq: &[&str]) -> bool {
        a.windows(seq.len())
            .any(|w| w.iter().zip(seq).all(|(x, y)| x == y))
    }

    #[test]
    fn default_mode_isolates_every_namespace_and_binds_only_the_workspace_writable() {
        let a = built(SandboxMode::WorkspaceWrite, false);
        assert_eq!(a[0], "--unshare-all");
        assert!(!a.contains(&"--share-net".to_string()));
        for seq in [
            &["--die-with-parent"][..],
            &["--cap-drop", "ALL"],
            &["--ro-bind", "/usr", "/usr"],
            &["--ro-bind", "/etc", "/etc"],
            &["--ro-bind", "/data/cdm", "/data/cdm"],
            &["--tmpfs", "/tmp"],
            &["--bind", "/w/s1", WORKSPACE],
            &["--bind", "/r/s1", RUN_DIR],
            &["--setenv", "HOME", WORKSPACE],
            &[
                "--",
                "prlimit",
                "--nproc=64",
                "--core=0",
                "--",
                "R",
                "--version",
            ],
        ] {
            assert!(has_seq(&a, seq), "missing {seq:?} in {a:?}");
        }
        // The only writable binds are the workspace and the run directory.
        let writable: Vec<_> = a
            .windows(2)
            .filter(|w| w[0] == "--bind")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(writable, ["/w/s1", "/r/s1"]);
        assert!(!a.iter().any(|x| x == "/home" || x == "/root"));
    }

    #[test]
    fn read_only_mode_binds_the_workspace_read_only() {
        let a = built(SandboxMode::ReadOnly, false);
        assert!(has_seq(&a, &["--ro-bind", "/w/s1", WORKSPACE]));
        assert!(!has_seq(&a, &["--bind", "/w/s1", WORKSPACE]));
        assert!(has_seq(&a, &["--setenv", "HOME", "/tmp"]));
    }

    #[test]
    fn allow_network_shares_only_the_network_namespace() {
        let a = built(SandboxMode::WorkspaceWrite, true);
        assert_eq!(&a[..2], ["--unshare-all", "--share-net"]);
    }

    #[test]
    fn password_hashes_are_masked() {
        let a = built(SandboxMode::WorkspaceWrite, false);
        for f in MASKED {
            if Path::new(f).exists() {
                assert!(has_seq(&a, &["--ro-bind", "/dev/null", f]));
            }
        }
    }
}
