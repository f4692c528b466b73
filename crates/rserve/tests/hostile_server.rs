//! Framing paths a well-behaved Rserve never takes (or takes only under load), driven by
//! exact server bytes over an in-memory stream: bad ID strings, unknown response codes, OOB
//! messages, truncated replies, oversized length fields, and resuming a reply whose read was
//! cancelled half way.

use std::time::Duration;

use rserve::{ConnectOptions, Connection, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const ID_OPEN: &[u8; 32] = b"Rsrv0103QAP1\r\n\r\n--------------\r\n";
const RESP_OK: u32 = 0x10001;
const RESP_ERR: u32 = 0x10002;

fn packet(cmd: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&cmd.to_le_bytes());
    p.extend_from_slice(&(body.len() as u32).to_le_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(body);
    p
}

/// `RESP_OK` carrying `DT_SEXP(XT_ARRAY_INT [v])`.
fn int_reply(v: i32) -> Vec<u8> {
    let mut body = vec![0x0a, 8, 0, 0, 0x20, 4, 0, 0];
    body.extend_from_slice(&v.to_le_bytes());
    packet(RESP_OK, &body)
}

/// A fake server: the client half, and the server half whose reads are drained in the
/// background so the client's requests never block.
fn pair() -> (DuplexStream, tokio::io::WriteHalf<DuplexStream>) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let (mut rd, wr) = tokio::io::split(server);
    tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while rd.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    (client, wr)
}

async fn connected(script: &[u8]) -> (Connection, tokio::io::WriteHalf<DuplexStream>) {
    let (client, mut server) = pair();
    server.write_all(ID_OPEN).await.unwrap();
    server.write_all(&packet(RESP_OK, &[])).await.unwrap(); // CMD_setEncoding
    server.write_all(&int_reply(4242)).await.unwrap(); // Sys.getpid()
    server.write_all(script).await.unwrap();
    let conn = Connection::connect_stream(client, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(conn.child_pid(), Some(4242));
    (conn, server)
}

#[tokio::test]
async fn non_rserve_id_is_a_protocol_error() {
    let (client, mut server) = pair();
    server
        .write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        .await
        .unwrap();
    let err = Connection::connect_stream(client, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ref m) if m.contains("not an Rserve")),
        "{err:?}"
    );
}

#[tokio::test]
async fn crypt_only_server_gets_a_clear_auth_error() {
    let (client, mut server) = pair();
    server
        .write_all(b"Rsrv0103QAP1\r\n\r\nARucKIN ----\r\n\r\n")
        .await
        .unwrap();
    let opts = ConnectOptions {
        username: Some("u".into()),
        password: Some("p".into()),
        ..Default::default()
    };
    let err = Connection::connect_stream(client, &opts).await.unwrap_err();
    assert!(
        matches!(err, Error::Auth(ref m) if m.contains("ARuc") && m.contains("plaintext")),
        "{err:?}"
    );
}

#[tokio::test]
async fn oob_send_before_the_reply_is_skipped() {
    let mut script = packet(0x21000, &[0x0a, 4, 0, 0, 0, 0, 0, 0]); // OOB_SEND, DT_SEXP(NULL)
    script.extend(int_reply(7));
    let (mut conn, _server) = connected(&script).await;
    assert_eq!(conn.eval("x").await.unwrap().as_i32(), Some(7));
}

#[tokio::test]
async fn unknown_response_code_loses_the_connection() {
    let (mut conn, _server) = connected(&packet(0x1234, &[])).await;
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(err, Error::Protocol(_)) && err.is_connection_lost(),
        "{err:?}"
    );
    assert!(matches!(conn.eval("y").await, Err(Error::Poisoned(_))));
}

#[tokio::test]
async fn object_too_big_and_unsupported_command_statuses() {
    let mut script = packet(RESP_ERR | (0x4c << 24), &123_456u32.to_le_bytes());
    script.extend(packet(RESP_ERR | (0x49 << 24), &[]));
    script.extend(int_reply(1));
    let (mut conn, _server) = connected(&script).await;
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ObjectTooBig {
                size: Some(123_456)
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_connection_lost());
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedCommand { code: 0x49, .. }),
        "{err:?}"
    );
    assert_eq!(
        conn.eval("x").await.unwrap().as_i32(),
        Some(1),
        "still in step"
    );
}

#[tokio::test]
async fn huge_length_field_is_refused_before_allocation() {
    // 2^40 bytes announced through the high length word.
    let mut hdr = packet(RESP_OK, &[]);
    hdr[12..16].copy_from_slice(&256u32.to_le_bytes());
    let (mut conn, _server) = connected(&hdr).await;
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(err, Error::ReplyTooLarge { size, .. } if size == 1 << 40),
        "{err:?}"
    );
    assert!(err.is_connection_lost());
}

#[tokio::test]
async fn malformed_sexp_keeps_the_connection_in_step() {
    // DT_SEXP claiming 8 bytes of XT_ARRAY_INT with only 4 present inside it.
    let mut script = packet(RESP_OK, &[0x0a, 8, 0, 0, 0x20, 8, 0, 0, 1, 0, 0, 0]);
    script.extend(int_reply(5));
    let (mut conn, _server) = connected(&script).await;
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(err, Error::Decode(_)) && !err.is_connection_lost(),
        "{err:?}"
    );
    assert_eq!(conn.eval("x").await.unwrap().as_i32(), Some(5));
}

#[tokio::test]
async fn truncated_reply_then_eof_is_connection_closed() {
    let reply = int_reply(9);
    let (mut conn, mut server) = connected(&reply[..10]).await;
    server.shutdown().await.unwrap(); // EOF for the client
    let err = conn.eval("x").await.unwrap_err();
    assert!(
        matches!(err, Error::ConnectionClosed(ref m) if m.contains("middle")),
        "{err:?}"
    );
    assert!(err.is_connection_lost());
}

#[tokio::test]
async fn cancelled_read_resumes_the_same_reply() {
    let reply = int_reply(31337);
    let (mut conn, mut server) = connected(&reply[..20]).await;
    conn.send_eval("x").await.unwrap();
    // Half the reply is there; the read is cancelled by the timeout...
    let cut = tokio::time::timeout(Duration::from_millis(50), conn.read_reply()).await;
    assert!(cut.is_err());
    assert!(conn.has_pending_reply() && conn.poisoned().is_none());
    // ...and the next read picks up the rest.
    server.write_all(&reply[20..]).await.unwrap();
    assert_eq!(conn.read_reply().await.unwrap().as_i32(), Some(31337));
}
