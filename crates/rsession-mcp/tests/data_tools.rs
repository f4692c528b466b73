//! The data-exploration tools through a real MCP client (rmcp over stdio)
//! talking to the built `rsession-mcp`, which starts its embedded Rserve.
//! Every input file is made by the test in the session workspace with R:
//! a CSV with dates, factors and NA, an Excel file (openxlsx), a JSON file,
//! a SQLite database and a 200 MB CSV; plus a 2 MB output read through the pager.

mod common;

use common::{Client, error_code, peak_rss_bytes, stdio_client, structured, text};
use rmcp::model::GetPromptRequestParams;
use serde_json::{Value, json};

async fn ok(c: &Client, code: &str, sid: &str) -> String {
    let r = c.exec(sid, code).await;
    assert_eq!(structured(&r)["status"], "ok", "{code}: {}", text(&r));
    text(&r)
}

fn column<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("column {name} missing in {s}"))
}

/// Files: 12 rows; `when` dates with one NA, `grp` categories, `val` 1..12
/// with two NA, `note` text with NA.
const MAKE_FILES: &str = r#"
people <- data.frame(
  id = 1:12,
  when = as.Date("2024-03-01") + c(0:10, NA),
  grp = rep(c("north", "south", "east"), times = c(6, 4, 2)),
  val = c(1:10, NA, NA),
  note = c(NA, rep("ok", 10), "late"))
write.csv(people, "people.csv", row.names = FALSE, na = "")
openxlsx::write.xlsx(list(first = people[1:5, c("id", "grp", "val")], second = data.frame(k = c("a", "b"), v = c(10.5, 20))), "book.xlsx")
writeLines(jsonlite::toJSON(people[, c("id", "grp", "val")], na = "null"), "people.json")
con <- DBI::dbConnect(RSQLite::SQLite(), "shop.sqlite")
DBI::dbWriteTable(con, "orders", data.frame(order_id = 1:3, amount = c(9.5, 20, 3.25)))
DBI::dbWriteTable(con, "customers", data.frame(customer = c("ann", "bob")))
DBI::dbDisconnect(con)
invisible(file.exists(c("people.csv", "book.xlsx", "people.json", "shop.sqlite")))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_query_describe_help_and_prompt_over_stdio() {
    let c = stdio_client(&[]).await;
    let tools = c.service.list_all_tools().await.expect("tools/list");
    for name in [
        "load_data",
        "query_data",
        "describe_data",
        "help",
        "read_output",
    ] {
        assert!(tools.iter().any(|t| t.name == name), "tool {name} missing");
    }
    let sid = c.create_session().await;
    ok(&c, MAKE_FILES, &sid).await;

    // CSV: dates parsed, grp as a factor on request, NA counted
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "people.csv", "name": "people",
                   "options": {"factors": ["grp"]}}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let s = structured(&r);
    assert_eq!(s["rows"], 12);
    assert_eq!(s["n_columns"], 5);
    assert_eq!(s["backend"], "tibble");
    assert_eq!(s["format"], "csv");
    assert_eq!(column(s, "when")["type"], "date");
    assert_eq!(column(s, "when")["missing"], 1);
    assert_eq!(column(s, "grp")["type"], "factor");
    assert_eq!(column(s, "val")["missing"], 2);
    assert_eq!(column(s, "note")["missing"], 1);
    assert!(s["memory_bytes"].as_f64().unwrap() > 1000.0);
    assert_eq!(s["preview"].as_array().unwrap().len(), 5);
    assert_eq!(s["preview"][0]["when"], "2024-03-01");
    assert_eq!(s["preview"][0]["note"], Value::Null);
    let t = text(&r);
    assert!(
        t.contains("12 rows x 5 columns") && t.contains("people_glimpse()"),
        "{t}"
    );

    // the dataset and its helpers in execute_in_session
    let out = ok(
        &c,
        "people_glimpse(); nrow(people_slice_sample(4)); levels(people$grp)",
        &sid,
    )
    .await;
    assert!(out.contains("Rows: 12"), "{out}");
    assert!(out.contains("[1] 4"), "{out}");
    assert!(out.contains("\"east\"  \"north\" \"south\""), "{out}");
    let out = ok(
        &c,
        "people_db() |> dplyr::filter(val > 8) |> dplyr::count() |> dplyr::pull(n)",
        &sid,
    )
    .await;
    assert!(
        out.contains("[1] 2"),
        "dbplyr over the query_data table: {out}"
    );
    let out = ok(&c, "people_summary()", &sid).await;
    assert!(out.contains("Data summary: people"), "{out}");

    // SQL with bound parameters, capped rows, full count
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid,
                   "sql": "SELECT grp, COUNT(*) AS n, SUM(val) AS total FROM people WHERE \"when\" >= ? GROUP BY grp ORDER BY n DESC, grp",
                   "params": ["2024-03-03"]}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let s = structured(&r);
    assert_eq!(s["engine"], "sqlite");
    assert_eq!(
        s["rows"],
        json!([{"grp": "north", "n": 4, "total": 18}, {"grp": "south", "n": 4, "total": 34}, {"grp": "east", "n": 1, "total": null}]),
        "north: val 3..6, south: 7..10, east: one dated row whose val is NA (the NA date is excluded)"
    );
    assert_eq!(s["row_count"], 3);
    assert!(s["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert!(text(&r).contains("north"), "{}", text(&r));
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid, "sql": "SELECT id FROM people WHERE val > :v", "params": {"v": 2}, "max_rows": 3}),
        )
        .await;
    let s = structured(&r);
    assert_eq!(
        (s["returned_rows"].as_u64(), s["row_count"].as_u64()),
        (Some(3), Some(8))
    );
    assert_eq!(s["truncated"], true);
    // a change made in R is seen by SQL
    ok(&c, "people <- people[people$grp != 'east', ]", &sid).await;
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid, "sql": "SELECT COUNT(*) AS n FROM people"}),
        )
        .await;
    assert_eq!(structured(&r)["rows"][0]["n"], 10);
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid, "sql": "SELECT nope FROM people"}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    assert!(structured(&r)["message"].as_str().unwrap().contains("nope"));

    // profile
    let r = c
        .call(
            "describe_data",
            json!({"session_id": sid, "name": "people", "top_n": 2}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let s = structured(&r);
    let val = column(s, "val");
    assert_eq!(val["numeric"]["p0"], 1);
    assert_eq!(val["numeric"]["p100"], 10);
    assert_eq!(val["numeric"]["p50"], 5.5);
    assert_eq!(val["numeric"]["mean"], 5.5);
    assert_eq!(
        val["missing"], 0,
        "the two NA rows were east, removed above"
    );
    let grp = column(s, "grp");
    assert_eq!(grp["categorical"]["top_values"], json!(["north", "south"]));
    assert_eq!(grp["categorical"]["top_counts"], json!([6, 4]));
    assert_eq!(column(s, "when")["time"]["min"], "2024-03-01");
    assert!(text(&r).contains("-- numeric"), "{}", text(&r));

    // Excel, JSON, SQLite
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "book.xlsx", "name": "sheet2", "options": {"sheet": "second"}}),
        )
        .await;
    let s = structured(&r);
    assert_eq!(
        (s["format"].as_str(), s["rows"].as_u64()),
        (Some("excel"), Some(2)),
        "{}",
        text(&r)
    );
    assert_eq!(column(s, "v")["type"], "double");
    assert_eq!(s["preview"][1], json!({"k": "b", "v": 20}));
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "people.json", "name": "pj"}),
        )
        .await;
    let s = structured(&r);
    assert_eq!(
        (s["format"].as_str(), s["rows"].as_u64()),
        (Some("json"), Some(12)),
        "{}",
        text(&r)
    );
    assert_eq!(column(s, "val")["missing"], 2);
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "shop.sqlite", "name": "orders"}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    let msg = structured(&r)["message"].as_str().unwrap().to_string();
    assert!(msg.contains("orders") && msg.contains("customers"), "{msg}");
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "shop.sqlite", "name": "orders", "options": {"table": "orders"}}),
        )
        .await;
    let s = structured(&r);
    assert_eq!(
        (s["format"].as_str(), s["rows"].as_u64()),
        (Some("sqlite"), Some(3)),
        "{}",
        text(&r)
    );
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid, "sql": "SELECT SUM(amount) AS total FROM orders"}),
        )
        .await;
    assert_eq!(structured(&r)["rows"][0]["total"], 32.75);

    // missing packages and bad input are clear errors
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "people.csv", "name": "p2", "backend": "arrow"}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    assert!(
        structured(&r)["message"]
            .as_str()
            .unwrap()
            .contains("'arrow'"),
        "{r:?}"
    );
    for (args, what) in [
        (
            json!({"session_id": sid, "file_path": "../etc/passwd", "name": "x"}),
            "path",
        ),
        (
            json!({"session_id": sid, "file_path": "people.csv", "name": "x; system('id')"}),
            "name",
        ),
        (
            json!({"session_id": sid, "file_path": "missing.csv", "name": "x"}),
            "missing file",
        ),
        (
            json!({"session_id": sid, "file_path": "people.csv", "name": "x", "backend": "spark"}),
            "backend",
        ),
    ] {
        let r = c.call("load_data", args).await;
        assert_eq!(error_code(&r), "invalid_argument", "{what}");
    }

    // help as text: tool and in-band
    let r = c
        .call(
            "help",
            json!({"session_id": sid, "topic": "read_csv", "package": "readr"}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("read_csv("), "{}", text(&r));
    assert_eq!(structured(&r)["package"], "readr");
    let r = c
        .call(
            "help",
            json!({"session_id": sid, "topic": "no_such_topic_xyz"}),
        )
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    let out = ok(&c, "?mean", &sid).await;
    assert!(out.contains("Arithmetic Mean"), "{out}");
    let out = ok(&c, "vignette('dplyr')", &sid).await;
    assert!(
        out.contains("Introduction to dplyr") && !out.contains("http://"),
        "{}",
        &out[..out.len().min(500)]
    );

    // the explore_data prompt
    let prompts = c.service.list_all_prompts().await.expect("prompts/list");
    assert!(prompts.iter().any(|p| p.name == "explore_data"));
    let mut args = serde_json::Map::new();
    args.insert("file_path".into(), json!("people.csv"));
    args.insert("output_format".into(), json!("notebook"));
    let p = c
        .service
        .get_prompt(GetPromptRequestParams::new("explore_data").with_arguments(args))
        .await
        .expect("prompts/get");
    let body = serde_json::to_string(&p.messages).unwrap();
    assert!(
        body.contains("people.csv") && body.contains("analysis.Rmd"),
        "{body}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_megabytes_of_output_come_back_as_pages() {
    let c = stdio_client(&["--page-chars", "16000"]).await;
    let sid = c.create_session().await;
    // 40000 lines of 53 characters: 2.12 MB
    const LINE: u64 = 53;
    const LINES: u64 = 40_000;
    let r = c
        .exec_limited(
            &sid,
            "for (i in 1:40000) cat(sprintf('line %06d %s\\n', i, strrep('x', 40)))",
            120.0,
            4 << 20,
        )
        .await;
    let s = structured(&r);
    assert_eq!(s["truncated"], false, "the whole output is kept");
    let pager = &s["pager"];
    let handle = pager["handle"].as_str().expect("paged").to_string();
    assert_eq!(pager["total_chars"], LINES * LINE);
    // pages hold whole lines: 301 lines of 53 characters fit 16000
    let per_page = 16_000 / LINE;
    assert_eq!(pager["pages"], LINES.div_ceil(per_page));
    let first = text(&r);
    assert!(
        first.len() < 16_000 + 400,
        "page 1 is {} bytes",
        first.len()
    );
    assert!(first.starts_with("line 000001 "), "{}", &first[..60]);
    let wire = serde_json::to_string(&r).unwrap().len();
    assert!(
        wire < 40_000,
        "the whole result is {wire} bytes on the wire"
    );

    // a line on page 7 is found by search, with its page and line numbers
    let target = 6 * per_page + 10;
    let r = c
        .call(
            "read_output",
            json!({"handle": handle, "search": format!("line {target:06} ")}),
        )
        .await;
    let s = structured(&r);
    assert_eq!(s["total_matches"], 1);
    assert_eq!(s["pages_with_matches"], json!([7]));
    assert_eq!(s["matches"][0]["line"], target);
    assert!(
        text(&r).contains(&format!("page 7 line {target}: line {target:06} xxx")),
        "{}",
        text(&r)
    );
    let r = c
        .call("read_output", json!({"handle": handle, "page": 7}))
        .await;
    let page7 = text(&r);
    assert!(page7.starts_with(&format!("line {:06} ", 6 * per_page + 1)));
    assert!(page7.contains(&format!("line {target:06} ")));
    // next = page 2; page 1 is not sent again unless asked
    let r = c.call("read_output", json!({"handle": handle})).await;
    assert_eq!(structured(&r)["page"], 2);
    assert!(text(&r).starts_with(&format!("line {:06} ", per_page + 1)));
    let r = c
        .call("read_output", json!({"handle": handle, "page": 1}))
        .await;
    assert_eq!(structured(&r)["already_sent"], true);
    assert!(!text(&r).contains("line 000001"));
    let r = c
        .call(
            "read_output",
            json!({"handle": handle, "page": 1, "resend": true}),
        )
        .await;
    assert!(text(&r).starts_with("line 000001 "));
    // jump by character offset
    let offset = 1_000_000u64;
    let line0 = offset / LINE;
    let r = c
        .call("read_output", json!({"handle": handle, "offset": offset}))
        .await;
    assert_eq!(structured(&r)["page"], line0 / per_page + 1);
    assert!(text(&r).contains(&format!("line {:06} ", line0 + 1)));
    let r = c
        .call("read_output", json!({"handle": "out-nothere"}))
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    let rss = peak_rss_bytes(c.pid);
    eprintln!("server peak RSS after 2 MB paged output: {} MiB", rss >> 20);
    assert!(rss < 200 << 20, "server peak RSS {} MiB", rss >> 20);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_csv_loads_with_auto_and_the_server_stays_small() {
    let c = stdio_client(&[]).await;
    let sid = c.create_session().await;
    // 2,000,000 rows of about 100 bytes, written in chunks of 250,000
    let r = c
        .exec_limited(
            &sid,
            r#"con <- file("big.csv", "w")
writeLines("id,group,x,y,label", con)
for (k in 0:7) {
  i <- k * 250000 + 1:250000
  writeLines(sprintf("%d,g%02d,%.6f,%.6f,%s", i, i %% 50, sin(i), cos(i), strrep("abcdefghij", 7)), con)
}
close(con)
file.size("big.csv")"#,
            300.0,
            65536,
        )
        .await;
    assert_eq!(structured(&r)["status"], "ok", "{}", text(&r));
    let r = c
        .call(
            "load_data",
            json!({"session_id": sid, "file_path": "big.csv", "name": "big", "max_duration_secs": 300}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let s = structured(&r);
    let bytes = s["file_bytes"].as_f64().unwrap();
    assert!(bytes > 190e6 && bytes < 230e6, "{bytes}");
    assert_eq!(s["rows"], 2_000_000);
    assert_eq!(s["backend_requested"], "auto");
    // 100 MB..1 GB asks for arrow; this image has no arrow (nor duckdb), so tibble with a note
    let arrow = s["notes"].as_array().unwrap().iter().any(|n| {
        n.as_str()
            .is_some_and(|n| n.contains("auto chose 'arrow'") && n.contains("not installed"))
    });
    let has_arrow = ok(&c, "cat(requireNamespace('arrow', quietly = TRUE))", &sid).await;
    if has_arrow.trim() == "FALSE" {
        assert!(arrow, "{s}");
        assert_eq!(s["backend"], "tibble");
    } else {
        assert_eq!(s["backend"], "arrow");
    }
    eprintln!(
        "200 MB CSV: loaded in {:.1} s, {} MiB in R memory",
        s["load_seconds"].as_f64().unwrap_or(0.0),
        s["memory_bytes"].as_f64().unwrap_or(0.0) as u64 >> 20
    );
    let started = std::time::Instant::now();
    let r = c
        .call(
            "query_data",
            json!({"session_id": sid, "sql": "SELECT \"group\", COUNT(*) AS n FROM big GROUP BY \"group\" ORDER BY \"group\"", "max_rows": 5}),
        )
        .await;
    let s = structured(&r);
    eprintln!(
        "first query_data on it (copies the table into SQLite): {:.1} s wall, {:.0} ms in SQL",
        started.elapsed().as_secs_f64(),
        s["elapsed_ms"].as_f64().unwrap_or(0.0)
    );
    assert_eq!(s["row_count"], 50);
    assert_eq!(s["rows"][0], json!({"group": "g00", "n": 40000}));
    let rss = peak_rss_bytes(c.pid);
    eprintln!(
        "server peak RSS after loading and querying 200 MB: {} MiB",
        rss >> 20
    );
    assert!(rss < 100 << 20, "server peak RSS {} MiB", rss >> 20);
    c.stop().await;
}
