//! No tool result goes over the server's result size limit (clients refuse
//! larger messages; the official Python SDK ends its whole session on an
//! event over 1 MiB): a large text file is paged, a large binary file comes
//! in parts, and plots that do not fit are left out with a note. Through a
//! real MCP client (rmcp) against the built binary over stdio.

mod common;

use common::{Client, stdio_client, structured, text};
use rmcp::model::CallToolResult;
use serde_json::json;

/// Bytes of JSON `r` took on the wire (as rmcp serialises it).
fn json_len(r: &CallToolResult) -> usize {
    serde_json::to_vec(r).expect("serialise").len()
}

async fn read(c: &Client, sid: &str, path: &str, offset: Option<u64>) -> CallToolResult {
    let mut args = json!({"session_id": sid, "path": path});
    if let Some(o) = offset {
        args["offset"] = json!(o);
    }
    let r = c.call("read_session_file", args).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    r
}

#[tokio::test]
async fn large_files_and_many_plots_stay_under_the_result_limit() {
    const LIMIT: usize = 128 << 10;
    let c = stdio_client(&["--max-result-bytes", &LIMIT.to_string()]).await;
    let sid = c.create_session().await;
    let r = c
        .exec(
            &sid,
            "writeLines(sprintf('row %07d %s', 1:800000, strrep('x', 60)), 'big.txt'); \
             set.seed(1); writeBin(as.raw(sample(0:255, 1e6, TRUE)), 'big.bin'); \
             file.size(c('big.txt', 'big.bin'))",
        )
        .await;
    assert!(text(&r).contains("1000000"), "{}", text(&r));

    // A 60 MB text file: the first page and a handle, not megabytes of JSON.
    let r = read(&c, &sid, "big.txt", None).await;
    let s = structured(&r);
    assert!(json_len(&r) <= LIMIT, "{} bytes", json_len(&r));
    assert!(text(&r).starts_with("row 0000001 "), "{}", &text(&r)[..80]);
    assert!(s.get("content").is_none(), "the text is not sent twice");
    let handle = s["pager"]["handle"].as_str().expect("paged").to_string();
    let next = c.call("read_output", json!({"handle": handle})).await;
    assert_eq!(next.is_error, Some(false), "{}", text(&next));
    assert!(
        text(&next).contains("row 0000"),
        "page 2 continues the file"
    );

    // A binary file comes in parts, each naming where the next starts.
    let first = read(&c, &sid, "big.bin", None).await;
    let s = structured(&first).clone();
    assert!(json_len(&first) <= LIMIT, "{} bytes", json_len(&first));
    assert_eq!(s["encoding"], "base64");
    assert_eq!(s["truncated"], true);
    let next_offset = s["next_offset"].as_u64().expect("next_offset");
    assert!(next_offset > 0 && next_offset < 1_000_000, "{s}");
    let second = read(&c, &sid, "big.bin", Some(next_offset)).await;
    assert_eq!(structured(&second)["offset"], next_offset);
    assert!(json_len(&second) <= LIMIT);

    // Plots beyond what fits are left out, each with a note saying how to get it.
    let r = c
        .exec(
            &sid,
            "set.seed(2); for (i in 1:8) plot(rnorm(20000), col = rainbow(20000), pch = 19)",
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(json_len(&r) <= LIMIT, "{} bytes", json_len(&r));
    assert!(
        text(&r).contains("image left out"),
        "eight noisy plots cannot fit 128 KiB: {}",
        text(&r)
    );
    c.stop().await;
}
