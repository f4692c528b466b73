//! Integration tests against a real Rserve started by `rserve::testing::RserveFixture`.

use std::time::{Duration, Instant};

use rserve::testing::RserveFixture;
use rserve::{
    ConnectOptions, Connection, Error, NA_INTEGER, NA_REAL_BITS, Sexp, Signal, Value, signal_child,
};

fn fixture() -> RserveFixture {
    RserveFixture::start().expect("start Rserve (needs r-base-core and r-cran-rserve)")
}

async fn connect(fx: &RserveFixture) -> Connection {
    Connection::connect(fx.addr(), &fx.options())
        .await
        .expect("connect and log in")
}

fn bits(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| x.to_bits()).collect()
}

#[tokio::test]
async fn handshake_login_and_pid() {
    let fx = fixture();
    let conn = connect(&fx).await;
    let info = conn.server_info();
    assert_eq!(info.protocol, "QAP1");
    assert_eq!(info.version, "0103");
    assert!(info.auth_plaintext, "fixture enables plaintext: {info:?}");
    let pid = conn.child_pid().expect("pid");
    assert!(pid > 0);
    assert_ne!(
        pid as u32,
        fx.server_pid(),
        "Rserve forks a child per connection"
    );
}

#[tokio::test]
async fn wrong_password_and_missing_credentials_are_auth_errors() {
    let fx = fixture();
    let mut opts = fx.options();
    opts.password = Some("wrong".into());
    let err = Connection::connect(fx.addr(), &opts).await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let err = Connection::connect(fx.addr(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Auth(ref m) if m.contains("no username")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_to_closed_port_and_non_rserve_peer() {
    let port = rserve::testing::free_port().unwrap();
    let err = Connection::connect(&format!("127.0.0.1:{port}"), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");

    // A peer that accepts and says nothing: the ID-string wait times out with a TLS hint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let err = Connection::connect(&addr, &opts).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { operation, .. } if operation.contains("TLS")),
        "{err:?}"
    );
    drop(accept.await);
}

#[tokio::test]
async fn eval_each_type() {
    let fx = fixture();
    let mut c = connect(&fx).await;

    assert!(c.eval("NULL").await.unwrap().is_null());
    assert_eq!(c.eval("1:3").await.unwrap().as_i32s(), Some(&[1, 2, 3][..]));
    assert_eq!(c.eval("2.5").await.unwrap().as_f64(), Some(2.5));
    assert_eq!(c.eval("'a'").await.unwrap().as_str(), Some("a"));
    assert_eq!(
        c.eval("c(TRUE, FALSE, NA)").await.unwrap().as_bools(),
        Some(&[Some(true), Some(false), None][..])
    );
    assert_eq!(
        c.eval("as.raw(c(0, 255, 16))").await.unwrap().as_raw(),
        Some(&[0u8, 255, 16][..])
    );
    let z = c.eval("complex(real = 1.5, imaginary = -2)").await.unwrap();
    assert_eq!(
        z.as_complex().unwrap()[0],
        rserve::Complex { re: 1.5, im: -2.0 }
    );

    // Named list with nested values, names attribute.
    let l = c
        .eval("list(a = 1L, b = list(c = 'x'), d = NULL)")
        .await
        .unwrap();
    assert_eq!(
        l.names().unwrap(),
        vec![Some("a".into()), Some("b".into()), Some("d".into())]
    );
    assert_eq!(l.get("a").and_then(Sexp::as_i32), Some(1));
    assert_eq!(
        l.get("b").and_then(|b| b.get("c")).and_then(Sexp::as_str),
        Some("x")
    );
    assert!(l.get("d").unwrap().is_null());

    // Factor: integer codes with levels and class attributes.
    let f = c
        .eval("factor(c('lo', 'hi', 'lo'), levels = c('lo', 'hi'))")
        .await
        .unwrap();
    assert_eq!(f.as_i32s(), Some(&[1, 2, 1][..]));
    assert_eq!(
        f.attr("levels").unwrap().as_strings().unwrap(),
        &[Some("lo".into()), Some("hi".into())]
    );
    assert_eq!(f.class().unwrap(), &[Some("factor".to_string())]);

    // Matrix: dim attribute.
    let m = c.eval("matrix(1:6, nrow = 2)").await.unwrap();
    assert_eq!(m.attr("dim").unwrap().as_i32s(), Some(&[2, 3][..]));

    // data.frame: list with names, class and row.names.
    let df = c.eval("data.frame(x = 1:2, y = c('a', NA))").await.unwrap();
    assert_eq!(df.class().unwrap(), &[Some("data.frame".to_string())]);
    assert_eq!(
        df.get("y").unwrap().as_strings().unwrap(),
        &[Some("a".into()), None]
    );
    assert!(df.attr("row.names").is_some());

    // Symbols, calls (XT_LANG_*), pairlists, closures, expression vectors.
    let s = c.eval("quote(foo)").await.unwrap();
    assert_eq!(s.as_symbol(), Some("foo"));
    let call = c.eval("quote(f(1, b = 2))").await.unwrap();
    let Value::Lang(items) = &call.value else {
        panic!("not a call: {call:?}")
    };
    assert_eq!(items[0].value.as_symbol(), Some("f"));
    assert_eq!(items[2].tag.as_deref(), Some("b"));
    let pl = c.eval("pairlist(a = 1, 2)").await.unwrap();
    assert_eq!(pl.get("a").and_then(Sexp::as_f64), Some(1.0));
    let clo = c.eval("function(x, y = 2) x + y").await.unwrap();
    let Value::Closure { formals, body } = &clo.value else {
        panic!("{clo:?}")
    };
    assert_eq!(
        formals.names().unwrap(),
        vec![Some("x".into()), Some("y".into())]
    );
    assert!(matches!(body.value, Value::Lang(_)));
    let ex = c.eval("expression(1 + 2, z)").await.unwrap();
    assert!(matches!(ex.value, Value::Expression(ref v) if v.len() == 2));

    // S4 objects and types QAP1 cannot carry.
    let s4 = c
        .eval("setClass('P', representation(x = 'numeric')); new('P', x = 3)")
        .await
        .unwrap();
    assert!(matches!(s4.value, Value::S4));
    assert_eq!(s4.attr("x").and_then(Sexp::as_f64), Some(3.0));
    let env = c.eval("new.env()").await.unwrap();
    assert_eq!(env.value, Value::Unknown(4), "ENVSXP is type 4");
}

#[tokio::test]
async fn numeric_vectors_decode_exactly() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let x = c
        .eval("c(NA, NaN, Inf, -Inf, -0, 0, 1.5, .Machine$double.xmin / 4)")
        .await
        .unwrap();
    let xs = x.as_f64s().unwrap();
    assert_eq!(xs[0].to_bits(), NA_REAL_BITS);
    assert!(rserve::is_na_real(xs[0]));
    assert!(xs[1].is_nan() && !rserve::is_na_real(xs[1]));
    assert_eq!(xs[2], f64::INFINITY);
    assert_eq!(xs[3], f64::NEG_INFINITY);
    assert_eq!(xs[4].to_bits(), (-0.0f64).to_bits());
    assert_eq!(xs[5].to_bits(), 0);
    assert_eq!(xs[7], f64::MIN_POSITIVE / 4.0);

    let i = c
        .eval("c(NA_integer_, -2147483647L, 2147483647L, 0L)")
        .await
        .unwrap();
    assert_eq!(i.as_i32s(), Some(&[NA_INTEGER, -i32::MAX, i32::MAX, 0][..]));
    let s = c.eval("c(NA_character_, 'NA', '')").await.unwrap();
    assert_eq!(
        s.as_strings().unwrap(),
        &[None, Some("NA".into()), Some(String::new())]
    );
    let b = c.eval("NA").await.unwrap();
    assert_eq!(b.as_bools(), Some(&[None][..]));

    // And back: R sees exactly the bits we send.
    let sent = vec![rserve::na_real(), f64::NAN, -0.0, f64::INFINITY];
    c.assign("v", &Sexp::from(sent.clone())).await.unwrap();
    let checks = c
        .eval("c(is.na(v[1]) && !is.nan(v[1]), is.nan(v[2]), identical(v[3], -0) && 1/v[3] == -Inf, v[4] == Inf)")
        .await
        .unwrap();
    assert_eq!(checks.as_bools(), Some(&[Some(true); 4][..]));
    let back = c.eval("v").await.unwrap();
    assert_eq!(bits(back.as_f64s().unwrap()), bits(&sent));
}

#[tokio::test]
async fn utf8_strings_round_trip() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let words = ["é", "中文", "🙂 emoji", "naïve café"];
    let x = c
        .eval("c('é', '中文', '🙂 emoji', 'naïve café')")
        .await
        .unwrap();
    let got: Vec<&str> = x
        .as_strings()
        .unwrap()
        .iter()
        .map(|s| s.as_deref().unwrap())
        .collect();
    assert_eq!(got, words);
    let n = c.eval("nchar(c('é', '中文', '🙂 emoji'))").await.unwrap();
    assert_eq!(n.as_i32s(), Some(&[1, 2, 7][..]));
    c.assign("w", &Sexp::strings(words.iter().map(|w| Some(*w))))
        .await
        .unwrap();
    let same = c
        .eval("identical(w, c('é', '中文', '🙂 emoji', 'naïve café'))")
        .await
        .unwrap();
    assert_eq!(same.as_bool(), Some(true));
}

#[tokio::test]
async fn r_errors_carry_geterrmessage_and_keep_the_session() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    c.void_eval("keep <- 41").await.unwrap();
    let err = c.eval("stop('boom from R')").await.unwrap_err();
    match &err {
        Error::Eval { status, message } => {
            assert_eq!(*status, 0x7f);
            assert!(message.contains("boom from R"), "{message:?}");
        }
        other => panic!("expected Eval, got {other:?}"),
    }
    assert!(!err.is_connection_lost());
    let err = c
        .void_eval("log(-1); stop('void failure')")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Eval { ref message, .. } if message.contains("void failure")),
        "{err:?}"
    );
    let err = c.eval("1 +").await.unwrap_err();
    assert!(matches!(err, Error::Parse { .. }), "{err:?}");
    assert_eq!(c.eval("keep + 1").await.unwrap().as_f64(), Some(42.0));
}

#[tokio::test]
async fn assign_values_and_check_in_r() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let value = Sexp::named_list([
        ("s", Sexp::strings([Some("a"), None])),
        ("i", Sexp::from(vec![1, NA_INTEGER])),
        ("d", Sexp::from(vec![0.5])),
        ("r", Sexp::from(vec![1u8, 2, 3])),
        ("b", Sexp::from(vec![Some(true), None])),
        ("n", Sexp::NULL),
    ]);
    c.assign("x", &value).await.unwrap();
    let ok = c
        .eval("identical(x, list(s = c('a', NA), i = c(1L, NA), d = 0.5, r = as.raw(1:3), b = c(TRUE, NA), n = NULL))")
        .await
        .unwrap();
    assert_eq!(ok.as_bool(), Some(true));
    assert_eq!(c.eval("x").await.unwrap(), value);
}

#[tokio::test]
async fn large_vector_uses_xt_large() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let start = Instant::now();
    let x = c
        .eval("r <- as.raw(seq_len(20e6) %% 251); r")
        .await
        .unwrap();
    let raw = x.as_raw().unwrap();
    assert_eq!(raw.len(), 20_000_000);
    assert!(
        raw.iter()
            .enumerate()
            .all(|(i, &b)| b as usize == (i + 1) % 251)
    );
    let d = c.eval("as.numeric(seq_len(3e6))").await.unwrap();
    assert_eq!(d.as_f64s().unwrap().len(), 3_000_000);
    assert_eq!(d.as_f64s().unwrap()[2_999_999], 3e6);
    eprintln!("20 MB raw + 24 MB double eval in {:?}", start.elapsed());
    // And a large value sent to R.
    c.assign("big", &Sexp::from(vec![7u8; 17_000_000]))
        .await
        .unwrap();
    assert_eq!(
        c.eval("sum(as.integer(big))").await.unwrap().as_i32(),
        Some(119_000_000)
    );
}

#[tokio::test]
async fn reply_over_the_limit_is_refused_and_the_connection_is_lost() {
    let fx = fixture();
    let opts = ConnectOptions {
        max_reply_bytes: 1_000_000,
        ..fx.options()
    };
    let mut c = Connection::connect(fx.addr(), &opts).await.unwrap();
    let err = c.eval("raw(2e6)").await.unwrap_err();
    assert!(
        matches!(err, Error::ReplyTooLarge { size, limit: 1_000_000 } if size > 2_000_000),
        "{err:?}"
    );
    assert!(err.is_connection_lost());
    assert!(c.poisoned().is_some());
    let next = c.eval("1").await.unwrap_err();
    assert!(
        matches!(next, Error::Poisoned(_)) && next.is_connection_lost(),
        "{next:?}"
    );
}

#[tokio::test]
async fn sigint_through_second_connection_interrupts_sleep() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let pid = c.child_pid().unwrap();
    c.void_eval("state <- 'kept'").await.unwrap();
    // An earlier error must not be reported again for the interrupt (no stale message).
    assert!(c.eval("stop('earlier error')").await.is_err());
    let start = Instant::now();
    c.send_eval("Sys.sleep(60); 'not interrupted'")
        .await
        .unwrap();
    // The deadline passes while R sleeps: the reply is still pending.
    let early = tokio::time::timeout(Duration::from_millis(300), c.read_reply()).await;
    assert!(
        early.is_err(),
        "reply arrived before the interrupt: {early:?}"
    );
    assert!(c.has_pending_reply());
    signal_child(fx.addr(), &fx.options(), pid, Signal::Interrupt)
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), c.read_reply())
        .await
        .expect("interrupt ends the evaluation");
    let err = reply.unwrap_err();
    assert!(
        matches!(err, Error::Eval { ref message, .. } if message == rserve::NO_ERROR_MESSAGE),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // Same R process, state kept.
    assert_eq!(c.eval("state").await.unwrap().as_str(), Some("kept"));
    assert_eq!(c.child_pid(), Some(pid));
}

#[tokio::test]
async fn eval_future_kept_across_deadline_then_sigint() {
    // The in-flight `eval` future itself can be polled again after a timeout.
    let fx = fixture();
    let mut c = connect(&fx).await;
    let pid = c.child_pid().unwrap();
    let (addr, opts) = (fx.addr().to_string(), fx.options());
    let mut fut = std::pin::pin!(c.eval("Sys.sleep(60)"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut fut)
            .await
            .is_err()
    );
    signal_child(&addr, &opts, pid, Signal::Interrupt)
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), &mut fut)
        .await
        .unwrap();
    assert!(matches!(res, Err(Error::Eval { .. })), "{res:?}");
}

#[tokio::test]
async fn sigkill_makes_the_pending_reply_fail_as_lost() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let pid = c.child_pid().unwrap();
    c.send_eval("repeat {}").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.read_reply())
            .await
            .is_err()
    );
    signal_child(fx.addr(), &fx.options(), pid, Signal::Kill)
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), c.read_reply())
        .await
        .expect("killed process closes the socket")
        .unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");
    // The process is dead: gone, or a zombie until Rserve reaps it. The socket closes while
    // the kernel is still tearing the process down, so allow that a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            break;
        }
        assert!(Instant::now() < deadline, "R process still alive: {stat}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A fresh connection is a fresh R.
    let mut fresh = connect(&fx).await;
    assert_eq!(fresh.eval("1+1").await.unwrap().as_f64(), Some(2.0));
}

#[tokio::test]
async fn quit_closes_the_connection() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let err = c.eval("quit('no')").await.unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");
}

#[tokio::test]
async fn new_request_while_reply_pending_is_refused() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    c.send_eval("Sys.sleep(0.2); 5").await.unwrap();
    let err = c.eval("1").await.unwrap_err();
    assert!(matches!(err, Error::ReplyPending), "{err:?}");
    assert_eq!(c.read_reply().await.unwrap().as_f64(), Some(5.0));
    assert!(matches!(c.read_reply().await, Err(Error::NoPendingRequest)));
}

#[tokio::test]
async fn read_timeout_keeps_reply_pending() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    c.set_read_timeout(Some(Duration::from_millis(100)));
    let err = c.eval("Sys.sleep(0.5); 9").await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. }) && !err.is_connection_lost(),
        "{err:?}"
    );
    c.set_read_timeout(None);
    assert_eq!(c.read_reply().await.unwrap().as_f64(), Some(9.0));
}

#[tokio::test]
async fn sigint_interrupts_a_busy_loop() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let pid = c.child_pid().unwrap();
    c.send_eval("i <- 0; repeat { i <- i + 1 }").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.read_reply())
            .await
            .is_err()
    );
    signal_child(fx.addr(), &fx.options(), pid, Signal::Interrupt)
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), c.read_reply())
        .await
        .expect("interrupt ends the loop")
        .unwrap_err();
    assert!(matches!(err, Error::Eval { .. }), "{err:?}");
    // The loop ran, and the session still answers.
    assert!(c.eval("i").await.unwrap().as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn tls_ports_and_tls_offers_are_reported() {
    // A self-signed certificate for Rserve's TLS listener.
    let certs = tempfile::tempdir().unwrap();
    let (key, cert) = (certs.path().join("key.pem"), certs.path().join("cert.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let tls_port = rserve::testing::free_port().unwrap();
    let fx = RserveFixture::start_with(rserve::testing::FixtureConfig {
        extra_config: vec![
            format!("tls.key {}", key.display()),
            format!("tls.cert {}", cert.display()),
            format!("qap.tls.port {tls_port}"),
            "switch.qap.tls enable".into(),
        ],
        ..Default::default()
    })
    .unwrap();

    // The plain port announces that it can switch to TLS; we stay in plaintext and work.
    let mut c = connect(&fx).await;
    assert!(c.server_info().tls_offered, "{:?}", c.server_info());
    assert_eq!(c.eval("1L").await.unwrap().as_i32(), Some(1));

    // The TLS-only port waits for a ClientHello: a timeout that names TLS.
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(500),
        ..fx.options()
    };
    let err = Connection::connect(&format!("127.0.0.1:{tls_port}"), &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { operation, .. } if operation.contains("TLS")),
        "{err:?}\n{}",
        fx.log()
    );
}

#[tokio::test]
async fn signals_to_missing_processes_are_reported() {
    let fx = fixture();
    // A pid that existed a moment ago and has been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id() as i32;
    child.wait().unwrap();
    let err = signal_child(fx.addr(), &fx.options(), gone, Signal::Interrupt)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SignalNotDelivered { pid, signal: Signal::Interrupt } if pid == gone),
        "{err:?}"
    );
    assert!(
        !rserve::send_signal(fx.addr(), &fx.options(), gone, Signal::Kill)
            .await
            .unwrap()
    );
    let err = signal_child(fx.addr(), &fx.options(), 0, Signal::Kill)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[tokio::test]
async fn request_over_server_maxinbuf_is_data_overflow() {
    // maxinbuf is in kB: requests of 64 kB and more are refused by the server.
    let fx = RserveFixture::start_with(rserve::testing::FixtureConfig {
        extra_config: vec!["maxinbuf 64".into()],
        ..Default::default()
    })
    .unwrap();
    let mut c = connect(&fx).await;
    let err = c
        .assign("x", &Sexp::from(vec![0u8; 100_000]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DataOverflow), "{err:?}");
    assert!(!err.is_connection_lost());
    let long_expr = format!("length('{}')", "a".repeat(70_000));
    assert!(matches!(c.eval(&long_expr).await, Err(Error::DataOverflow)));
    assert_eq!(
        c.eval("2L").await.unwrap().as_i32(),
        Some(2),
        "still usable"
    );
}

#[tokio::test]
async fn nesting_beyond_the_depth_limit_is_a_decode_error() {
    let fx = fixture();
    let mut c = connect(&fx).await;
    let ok = c
        .eval("x <- NULL; for (i in 1:100) x <- list(x); x")
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
    let err = c
        .eval("x <- NULL; for (i in 1:500) x <- list(x); x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode(ref m) if m.contains("nesting")),
        "{err:?}"
    );
    assert!(!err.is_connection_lost());
    assert_eq!(c.eval("3L").await.unwrap().as_i32(), Some(3));
}

#[tokio::test]
async fn strings_are_utf8_whatever_the_server_encoding_setting() {
    // No `encoding` line: Rserve's default is native. The client asks for UTF-8 itself.
    let fx = RserveFixture::start_with(rserve::testing::FixtureConfig {
        encoding: None,
        ..Default::default()
    })
    .unwrap();
    let mut c = connect(&fx).await;
    let x = c
        .eval("c(iconv('caf\\u00e9', 'UTF-8', 'latin1'), '\\u4e2d\\u6587')")
        .await
        .unwrap();
    assert_eq!(
        x.as_strings().unwrap(),
        &[Some("café".into()), Some("中文".into())]
    );
    c.assign("s", &Sexp::string("naïve 🙂")).await.unwrap();
    let n = c.eval("c(nchar(s), Encoding(s) == 'UTF-8')").await.unwrap();
    assert_eq!(n.as_i32s(), Some(&[7, 1][..]));
}
