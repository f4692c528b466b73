//! Workspace files as MCP resources, through a real MCP client (rmcp)
//! against the built binary over stdio and streamable HTTP:
//! `resources/templates/list`, `resources/list`, `resources/read`, and the
//! refusals (a path leaving the workspace, an unknown session, a file too
//! large for one read).

mod common;

use common::{Client, http_client, stdio_client, text};
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use rmcp::service::ServiceError;
use serde_json::json;

async fn read(c: &Client, uri: &str) -> Result<Vec<ResourceContents>, ServiceError> {
    c.service
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .map(|r| r.contents)
}

/// The JSON-RPC error of a refused read, as text (code and message).
fn refusal(r: Result<Vec<ResourceContents>, ServiceError>) -> String {
    match r {
        Ok(contents) => panic!("read succeeded: {contents:?}"),
        Err(e) => e.to_string(),
    }
}

async fn workspace_files_are_resources(c: &Client) {
    let templates = c
        .service
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    assert_eq!(
        templates[0].uri_template,
        "rsession://sessions/{session_id}/files/{+path}"
    );

    let sid = c.create_session().await;
    let r = c
        .exec(
            &sid,
            "dir.create('data'); writeLines(c('a,b', '1,2'), 'data/my file.csv'); \
             png('plot.png', 200, 200); plot(1); invisible(dev.off()); \
             writeLines(strrep('x', 2e6), 'big.txt')",
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));

    let listed = c
        .service
        .list_all_resources()
        .await
        .expect("resources/list");
    let csv_uri = format!("rsession://sessions/{sid}/files/data/my%20file.csv");
    let csv = listed
        .iter()
        .find(|r| r.uri == csv_uri)
        .unwrap_or_else(|| panic!("{csv_uri} not in {listed:?}"));
    assert_eq!(csv.size, Some(8));
    assert!(
        !listed.iter().any(|r| r.uri.ends_with("/files/data")),
        "directories are not resources"
    );

    let contents = read(c, &csv_uri).await.expect("read the CSV");
    match &contents[0] {
        ResourceContents::TextResourceContents { text, uri, .. } => {
            assert_eq!(text, "a,b\n1,2\n");
            assert_eq!(uri, &csv_uri);
        }
        other => panic!("text expected: {other:?}"),
    }
    let png = read(c, &format!("rsession://sessions/{sid}/files/plot.png"))
        .await
        .expect("read the PNG");
    match &png[0] {
        ResourceContents::BlobResourceContents {
            mime_type, blob, ..
        } => {
            assert_eq!(mime_type.as_deref(), Some("image/png"));
            assert!(blob.len() > 100);
        }
        other => panic!("blob expected: {other:?}"),
    }

    let e = refusal(
        read(
            c,
            &format!("rsession://sessions/{sid}/files/../../etc/passwd"),
        )
        .await,
    );
    assert!(
        e.contains("-32602") && e.contains("relative to the session workspace"),
        "{e}"
    );
    let e = refusal(read(c, "rsession://sessions/rs-000000000000/files/x.csv").await);
    assert!(e.contains("no session with id"), "{e}");
    let e = refusal(read(c, &format!("rsession://sessions/{sid}/files/big.txt")).await);
    assert!(e.contains("read_session_file"), "{e}");
    let e = refusal(read(c, "file:///etc/passwd").await);
    assert!(e.contains("not a workspace file URI"), "{e}");

    // The session still answers after the refusals.
    let r = c
        .call("list_session_files", json!({"session_id": sid}))
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
}

#[tokio::test]
async fn stdio_workspace_files_are_resources() {
    let c = stdio_client(&[]).await;
    workspace_files_are_resources(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn http_workspace_files_are_resources() {
    let (c, _base) = http_client(&[]).await;
    workspace_files_are_resources(&c).await;
    c.stop().await;
}
