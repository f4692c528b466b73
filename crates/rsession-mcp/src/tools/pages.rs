//! Long tool output through the [`Pager`]: [`paginate`] turns a result whose
//! text is longer than one page into its first page plus a handle, and the
//! `read_output` tool serves the rest.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, Paging, RSessionServer, ToolDef, tool};
use crate::errors::ToolError;
use crate::pager::{Answer, Page, Pager, Request};

/// Arguments of `read_output`: one of `page`, `offset`, `search`; none means the next unsent page.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadOutput {
    /// Handle from a paged result (`pager.handle`).
    pub handle: String,
    /// 1-based page number.
    #[serde(default)]
    pub page: Option<usize>,
    /// Character offset in the whole output; returns the page holding it.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Return the lines matching this pattern, with line and page numbers.
    #[serde(default)]
    pub search: Option<String>,
    /// Treat `search` as a regular expression (default: literal text).
    #[serde(default)]
    pub regex: Option<bool>,
    /// Match case in `search` (default false).
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    /// Send a page again even if it was sent before (default false).
    #[serde(default)]
    pub resend: Option<bool>,
}

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![tool(&READ_OUTPUT, read_output)]
}

/// `read_output`: page through long output.
const READ_OUTPUT: ToolDef = ToolDef {
    name: "read_output",
    title: "Read more of a long result",
    description: "Read more of a long result that came back paged (its text ends with a handle). Without page/offset/search: the next page not yet sent. page: that page; offset: the page holding that character offset; search: the matching lines with their line and page numbers (literal text unless regex=true). Pages already sent are not sent again unless resend=true.",
    hints: Hints::READ_ONLY,
    paging: Paging::Whole,
    task: false,
};

async fn read_output(call: Call, p: ReadOutput) -> Result<CallToolResult, ToolError> {
    read(&call.pager, &call.owner, p)
}

fn footer(p: &Page) -> String {
    format!(
        "\n[page {} of {} of output {} ({} characters in all); read_output with handle \"{}\" gives the next page, a page number, an offset, or the lines matching a search]\n",
        p.page, p.pages, p.handle, p.total_chars, p.handle
    )
}

fn page_json(p: &Page, already_sent: bool) -> Value {
    json!({
        "handle": p.handle,
        "page": p.page,
        "pages": p.pages,
        "offset_chars": p.offset_chars,
        "total_chars": p.total_chars,
        "unsent_pages": p.unsent_pages,
        "already_sent": already_sent,
    })
}

/// If the first text content of `result` is longer than a page, keep it in
/// `pager` and replace it with page 1 and a footer naming the handle; the
/// structured content gains `pager {handle, page, pages, ...}` and loses the
/// per-event `text` of evaluation events (the pages carry it).
pub(crate) fn paginate(
    pager: &Pager,
    owner: &str,
    source: &str,
    mut result: CallToolResult,
) -> CallToolResult {
    let Some(index) = result.content.iter().position(|c| c.as_text().is_some()) else {
        return result;
    };
    let text = match result.content[index].as_text() {
        Some(t) if t.text.len() > pager.config().page_chars => t.text.clone(),
        _ => return result,
    };
    let Some(page) = pager.keep(owner, source, text) else {
        return result;
    };
    let mut shown = page.text.clone().unwrap_or_default();
    shown.push_str(&footer(&page));
    result.content[index] = ContentBlock::text(shown);
    if let Some(Value::Object(obj)) = result.structured_content.as_mut() {
        // read_session_file: the pages carry the file's text
        obj.remove("content");
        if let Some(Value::Array(events)) = obj.get_mut("events") {
            for ev in events.iter_mut() {
                if let Some(e) = ev.as_object_mut() {
                    e.remove("text");
                }
            }
        }
        obj.insert("pager".into(), page_json(&page, false));
    }
    result
}

/// Bytes of JSON `result` takes on the wire.
fn json_len(result: &CallToolResult) -> usize {
    serde_json::to_vec(result).map_or(usize::MAX, |v| v.len())
}

/// Keep `result` within `max_bytes` of JSON (`--max-result-bytes`; clients
/// refuse larger messages, the Python SDK at 1 MiB). Long text is paged
/// before this; here images give way first, from the last one back, each
/// replaced by a note saying how to get it, then the structured content
/// (its text stays in the content blocks). Returns the result and its JSON
/// size in bytes (measured here anyway; the audit trail records it).
pub(crate) fn fit(mut result: CallToolResult, max_bytes: usize) -> (CallToolResult, usize) {
    let limit_kib = max_bytes >> 10;
    while json_len(&result) > max_bytes {
        let Some(i) = result.content.iter().rposition(|c| c.as_image().is_some()) else {
            break;
        };
        let kib = result.content[i]
            .as_image()
            .map_or(0, |img| img.data.len() * 3 / 4)
            >> 10;
        result.content[i] = ContentBlock::text(format!(
            "[image left out: {kib} KiB does not fit this server's {limit_kib} KiB result limit; \
             write it to a workspace file (png(), ggsave()) and read that with read_session_file]"
        ));
    }
    let size = json_len(&result);
    if size > max_bytes && result.structured_content.is_some() {
        result.structured_content = Some(json!({
            "omitted": format!("the structured result ({} KiB) does not fit this server's {limit_kib} KiB result limit; the text content carries the result", size >> 10),
        }));
        let size = json_len(&result);
        return (result, size);
    }
    (result, size)
}

fn read(pager: &Pager, owner: &str, p: ReadOutput) -> Result<CallToolResult, ToolError> {
    let chosen = [p.page.is_some(), p.offset.is_some(), p.search.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen > 1 {
        return Err(ToolError::invalid(
            "give at most one of page, offset and search",
        ));
    }
    let request = match (p.page, p.offset, p.search) {
        (Some(page), _, _) => Request::Page(page),
        (_, Some(off), _) => Request::Offset(off),
        (_, _, Some(pattern)) => Request::Search {
            pattern,
            regex: p.regex.unwrap_or(false),
            case_sensitive: p.case_sensitive.unwrap_or(false),
        },
        _ => Request::Next,
    };
    let answer = pager.read(owner, &p.handle, &request, p.resend.unwrap_or(false))?;
    let (text, structured) = match answer {
        Answer::Page(page) => {
            let already = page.text.is_none();
            let text = match &page.text {
                Some(t) => format!("{t}{}", footer(&page)),
                None => format!(
                    "[page {} of {} of {} was already sent; pass resend=true to get it again. {} page(s) not sent yet.]\n",
                    page.page, page.pages, page.handle, page.unsent_pages
                ),
            };
            (text, page_json(&page, already))
        }
        Answer::Matches {
            handle,
            pages,
            matches,
            total_matches,
            pages_with_matches,
        } => {
            let mut text = format!(
                "{total_matches} matching line(s) in {handle} ({pages} pages); pages with matches: {}\n",
                pages_with_matches
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for m in &matches {
                text.push_str(&format!("page {} line {}: {}\n", m.page, m.line, m.text));
            }
            if matches.len() < total_matches {
                text.push_str(&format!(
                    "[{} more matching line(s) not shown; narrow the pattern]\n",
                    total_matches - matches.len()
                ));
            }
            let structured = json!({
                "handle": handle,
                "pages": pages,
                "total_matches": total_matches,
                "pages_with_matches": pages_with_matches,
                "matches": matches,
            });
            (text, structured)
        }
    };
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::PagerConfig;

    #[test]
    fn long_results_become_page_one_with_a_handle() {
        let pager = Pager::new(PagerConfig {
            page_chars: 1000,
            max_outputs: 4,
            max_bytes: 1 << 20,
            ..PagerConfig::default()
        });
        let text: String = (0..500).map(|i| format!("row {i}\n")).collect();
        let mut r = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
        r.structured_content = Some(json!({"events": [{"type": "stdout", "text": text}]}));
        let r = paginate(&pager, "o", "test", r);
        let s = r.structured_content.as_ref().unwrap();
        assert!(s["events"][0].get("text").is_none());
        let handle = s["pager"]["handle"].as_str().unwrap();
        let shown = r.content[0].as_text().unwrap().text.clone();
        assert!(shown.starts_with("row 0\n") && shown.contains(handle));
        assert!(shown.len() < 1000 + 300);
        let next = read(
            &pager,
            "o",
            ReadOutput {
                handle: handle.into(),
                page: None,
                offset: None,
                search: None,
                regex: None,
                case_sensitive: None,
                resend: None,
            },
        )
        .unwrap();
        assert_eq!(next.structured_content.unwrap()["page"], 2);
        // short results pass through untouched
        let short = CallToolResult::success(vec![ContentBlock::text("ok")]);
        let out = paginate(&pager, "o", "test", short.clone());
        assert_eq!(out, short);
    }
}
