//! The main job, scripted: start `rsession-mcp` (embedded local Rserve) over
//! stdio with rmcp's MCP client, write a CSV into a session, load it with
//! `load_data`, summarise it with dplyr, draw a ggplot, save the PNG that
//! comes back, answer a question with SQL (`query_data`), print the results.
//!
//! ```text
//! cargo run -p rsession-mcp --example demo [-- <output-dir>]
//! ```
//!
//! The server is started with `cargo run --bin rsession-mcp` (or the binary
//! named by `RSESSION_MCP_BIN`). Needs R with Rserve, dplyr, readr and ggplot2.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// A small, fixed sales table.
fn sales_csv() -> String {
    let regions = ["North", "South", "East", "West"];
    let products = [("widget", 2.5), ("gadget", 10.0), ("gizmo", 24.0)];
    let mut csv = String::from("date,region,product,units,price\n");
    for day in 1..=28u32 {
        for (i, region) in regions.iter().enumerate() {
            let (product, price) = products[(day as usize + i) % products.len()];
            let units = 5 + (day * 7 + i as u32 * 13) % 40;
            csv.push_str(&format!(
                "2024-02-{day:02},{region},{product},{units},{price}\n"
            ));
        }
    }
    csv
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Value,
) -> anyhow::Result<CallToolResult> {
    let args = args.as_object().cloned().unwrap_or_default();
    let r = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .with_context(|| format!("calling {tool}"))?;
    if r.is_error == Some(true) {
        bail!("{tool} failed: {}", text(&r));
    }
    Ok(r)
}

async fn execute(
    client: &RunningService<RoleClient, ()>,
    sid: &str,
    code: &str,
) -> anyhow::Result<CallToolResult> {
    call(
        client,
        "execute_in_session",
        json!({"session_id": sid, "code": code}),
    )
    .await
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect()
}

fn server_command() -> tokio::process::Command {
    match std::env::var_os("RSESSION_MCP_BIN") {
        Some(bin) => tokio::process::Command::new(bin),
        None => tokio::process::Command::new(
            std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        )
        .configure(|c| {
            c.args([
                "run",
                "--quiet",
                "-p",
                "rsession-mcp",
                "--bin",
                "rsession-mcp",
                "--",
            ]);
        }),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "demo-output".into()),
    );
    std::fs::create_dir_all(&out_dir)?;

    println!("== starting rsession-mcp over stdio (embedded local Rserve)");
    let cmd = server_command().configure(|c| {
        c.env(
            "RSESSION_LOG",
            std::env::var("RSESSION_LOG").unwrap_or_else(|_| "warn".into()),
        );
    });
    let client = ().serve(TokioChildProcess::new(cmd)?).await.context("MCP initialize")?;
    let info = client
        .peer_info()
        .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone()))
        .unwrap_or_default();
    println!("connected to {info}");

    let created = call(&client, "create_session", json!({})).await?;
    let sid = created
        .structured_content
        .as_ref()
        .and_then(|s| s["session_id"].as_str())
        .context("session_id")?
        .to_string();
    println!("{}", text(&created));

    println!("\n== write_session_file sales.csv");
    let r = call(
        &client,
        "write_session_file",
        json!({"session_id": sid, "path": "sales.csv", "content": sales_csv()}),
    )
    .await?;
    println!("{}", text(&r));

    println!("\n== load_data sales.csv");
    let r = call(
        &client,
        "load_data",
        json!({"session_id": sid, "file_path": "sales.csv", "name": "sales"}),
    )
    .await?;
    print!("{}", text(&r));

    println!("\n== summarise with dplyr");
    let code = r#"suppressPackageStartupMessages(library(dplyr))
summary_by_region <- sales |>
  group_by(region) |>
  summarise(orders = n(), revenue = sum(units * price), units = sum(units)) |>
  arrange(desc(revenue))
print(summary_by_region)
cat("total revenue:", format(sum(sales$units * sales$price), big.mark = ","), "\n")"#;
    let r = execute(&client, &sid, code).await?;
    print!("{}", text(&r));

    println!("\n== draw a ggplot");
    let code = r#"library(ggplot2)
sales |>
  group_by(region, product) |>
  summarise(revenue = sum(units * price), .groups = "drop") |>
  ggplot(aes(region, revenue, fill = product)) +
  geom_col() +
  labs(title = "Revenue by region and product, February 2024", x = NULL, y = "revenue")"#;
    let r = execute(&client, &sid, code).await?;
    print!("{}", text(&r));
    let mut saved = 0;
    for c in &r.content {
        if let ContentBlock::Image(img) = c {
            let png = base64::engine::general_purpose::STANDARD.decode(&img.data)?;
            let (w, h) = rsession_mcp::harness::png_dimensions(&png).context("not a PNG")?;
            let path = out_dir.join(format!("revenue-{}.png", saved + 1));
            std::fs::write(&path, &png)?;
            println!(
                "saved {} ({} bytes, {w}x{h} px, {})",
                path.display(),
                png.len(),
                img.mime_type
            );
            saved += 1;
        }
    }
    if saved == 0 {
        bail!("the ggplot call returned no image");
    }

    println!("\n== query_data: SQL with a bound parameter");
    let r = call(
        &client,
        "query_data",
        json!({"session_id": sid,
               "sql": "SELECT region, product, SUM(units * price) AS revenue FROM sales \
                       WHERE date >= ? GROUP BY region, product ORDER BY revenue DESC",
               "params": ["2024-02-15"], "max_rows": 4}),
    )
    .await?;
    print!("{}", text(&r));

    println!("\n== state persists: the summary is still there");
    let r = execute(&client, &sid, "summary_by_region$region[1]").await?;
    print!("{}", text(&r));

    let r = call(&client, "list_session_files", json!({"session_id": sid})).await?;
    println!("\n== workspace\n{}", text(&r));
    call(&client, "close_session", json!({"session_id": sid})).await?;
    client.cancel().await?;
    println!("done");
    Ok(())
}
