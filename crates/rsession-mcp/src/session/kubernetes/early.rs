//! Logging in before Ready. A starting session's Rserve accepts logins as soon as R has started,
//! loaded its packages and passed the egress check (Rserve listens only after that check), which
//! can be up to one readiness-probe period (1 s) before the kubelet marks the pod Ready. While
//! an RSession is Starting with `status.podIP`, [`first_login`] tries the QAP1 login there until
//! one succeeds, so `create_session` does not wait for the probe.

use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use rserve::{ConnectOptions, Connection};

use crate::session::Credentials;

/// Time between login attempts while Rserve does not listen yet. A refused connect costs the pod
/// one SYN/RST, so this is cheap; it bounds how late the login comes after Rserve listens.
pub(super) const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Bound on one attempt (TCP connect, ID string, login).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a failed attempt means "not listening yet" (try again), not a wrong password or a
/// server that is not Rserve.
fn not_listening_yet(e: &rserve::Error) -> bool {
    matches!(
        e,
        rserve::Error::Io(_) | rserve::Error::Timeout { .. } | rserve::Error::ConnectionClosed(_)
    )
}

/// Logs in to the Rserve at `addr` with `credentials`, retrying every [`RETRY_EVERY`] while it
/// does not listen yet; returns once a login succeeded (the connection is closed again: the
/// session connects for real next). Runs until then or until an attempt fails for another
/// reason (that error); the caller bounds it in time.
pub(super) async fn first_login(
    addr: &str,
    credentials: &Credentials,
) -> Result<(), rserve::Error> {
    let opts = ConnectOptions {
        username: Some(credentials.username.clone()),
        password: Some(credentials.password.clone()),
        connect_timeout: ATTEMPT_TIMEOUT,
        ..ConnectOptions::default()
    };
    (|| Connection::connect(addr, &opts))
        .retry(
            ConstantBuilder::default()
                .with_delay(RETRY_EVERY)
                .without_max_times(),
        )
        .when(not_listening_yet)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_rserve::{LocalRserve, LocalRserveOptions};

    #[tokio::test]
    async fn refused_logins_are_retried_a_real_login_ends_it_and_a_wrong_password_is_not_retried() {
        let rserve = LocalRserve::start(&LocalRserveOptions::default())
            .await
            .expect("Rserve");
        // Nothing listens here: attempts are refused and retried, so this is still trying.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(
            tokio::time::timeout(RETRY_EVERY * 6, first_login(&closed, rserve.credentials()))
                .await
                .is_err(),
            "a refused connect is retried, not an error"
        );
        first_login(rserve.addr(), rserve.credentials())
            .await
            .expect("a login where Rserve listens");
        let wrong = Credentials {
            username: rserve.credentials().username.clone(),
            password: "not-the-password".into(),
        };
        let e = tokio::time::timeout(Duration::from_secs(10), first_login(rserve.addr(), &wrong))
            .await
            .expect("a wrong password is not retried")
            .unwrap_err();
        assert!(!not_listening_yet(&e), "{e}");
    }
}
