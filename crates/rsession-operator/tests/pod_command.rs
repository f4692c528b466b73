//! The session pod's R command against a real R and Rserve (Debian's `r-base-core` and
//! `r-cran-rserve`): the Rserve it starts logs in with the password whose hash the pod's
//! annotation carries (`secret::pwdfile_entry`, projected as the password file), and refuses a
//! wrong password and the hash itself. The command is the one `build::pod::command` emits, with
//! only its password file folder, port and Rserve working folder moved into a temporary folder.

use std::process::Stdio;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use rserve::{ConnectOptions, Connection};
use rsession_api::well_known as wk;
use rsession_operator::build::pod::command;
use rsession_operator::build::secret::{RSERVE_USER, pwdfile_entry};
use rsession_operator::build::startup::CREDENTIALS_DIR;
use tokio::process::Command;

const PASSWORD: &str = "Zq4vT0yB7nW2kR9sLx3aH6eJ1uC8pD5m";

fn login(password: &str) -> ConnectOptions {
    ConnectOptions {
        username: Some(RSERVE_USER.into()),
        password: Some(password.into()),
        ..ConnectOptions::default()
    }
}

#[tokio::test]
async fn the_pod_command_serves_the_password_whose_hash_the_pod_carries_and_no_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    std::fs::write(
        credentials.join(wk::SECRET_KEY_PASSWORD_FILE),
        pwdfile_entry(PASSWORD),
    )
    .expect("password file");
    let port = rserve::testing::free_port().expect("free port");
    let mut argv = command(&["tools".into()], false);
    let expression = argv.last_mut().expect("expression");
    for (from, to) in [
        (
            CREDENTIALS_DIR.to_owned(),
            credentials.display().to_string(),
        ),
        (
            format!("port = '{}'", wk::RSERVE_PORT),
            format!("port = '{port}'"),
        ),
        (
            format!("{}/Rserv", wk::TMP_PATH),
            dir.path().join("work").display().to_string(),
        ),
    ] {
        assert!(expression.contains(&from), "{from} in {expression}");
        *expression = expression.replace(&from, &to);
    }
    let mut server = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run R (needs r-base-core and r-cran-rserve)");
    let addr = format!("127.0.0.1:{port}");

    // Rserve listens once the preload is done: connect until it does (at most 30 s).
    let opts = login(PASSWORD);
    let conn = (|| Connection::connect(&addr, &opts))
        .retry(
            ConstantBuilder::default()
                .with_delay(Duration::from_millis(100))
                .with_max_times(300),
        )
        .when(|e| !matches!(e, rserve::Error::Auth(_)))
        .await;
    let mut conn = conn.expect("the pod's password logs in");
    let preloaded = conn
        .eval("'package:tools' %in% search()")
        .await
        .expect("eval");
    assert_eq!(preloaded.as_bool(), Some(true), "the preload ran first");
    conn.close().await;

    let hash = pwdfile_entry(PASSWORD);
    let hash = hash.trim_end().rsplit('$').next().expect("hash");
    for wrong in ["not-the-password", hash] {
        let refused = Connection::connect(&addr, &login(wrong)).await;
        assert!(
            matches!(refused, Err(rserve::Error::Auth(_))),
            "{wrong}: {refused:?}"
        );
    }
    kill_group(&mut server).await.expect("stop Rserve");
}

/// Ends the server and the connections it forked (they share its process group).
async fn kill_group(server: &mut tokio::process::Child) -> std::io::Result<()> {
    if let Some(pid) = server.id() {
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .await?;
    }
    server.wait().await.map(drop)
}
