//! Fuzzes the whole client against hostile server bytes: the input is everything "the
//! server" sends (ID string, login reply, pid reply, eval reply, ...). Exercises framing,
//! status mapping, the reply size limit and decoding; must never panic or hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rserve::{ConnectOptions, Connection};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Server bytes, then EOF; our writes go nowhere.
        let stream = tokio::io::join(std::io::Cursor::new(data.to_vec()), tokio::io::sink());
        let opts = ConnectOptions {
            username: Some("u".into()),
            password: Some("p".into()),
            connect_timeout: Duration::from_secs(5),
            max_reply_bytes: 1 << 20,
        };
        if let Ok(mut conn) = Connection::connect_stream(stream, &opts).await {
            for expr in ["1+1", "x"] {
                if conn.eval(expr).await.is_err() && conn.poisoned().is_some() {
                    break;
                }
            }
        }
    });
});
