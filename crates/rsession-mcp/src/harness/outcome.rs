//! What the harness sends back: the decoded result of `.rsession$execute()`
//! (status and events in order), the per-call limits it runs under, and the
//! Rust-side output cap. See the header of `harness.R` for the exact shape.

use std::time::Duration;

use rserve::Sexp;
use serde::Serialize;

use crate::errors::ToolError;

/// Errors decoding a harness reply.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The reply lacks a field or has the wrong SEXP type.
    #[error("harness reply is malformed: {0}")]
    Malformed(&'static str),
}

/// Per-call limits passed to `execute()` inside R.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Total bytes of text output kept (half head, half tail).
    pub max_output_bytes: u64,
    /// Plots returned per call; more are reported as omitted.
    pub max_plots: u32,
    /// Largest PNG returned, in bytes.
    pub max_plot_bytes: u64,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            max_output_bytes: 1 << 20,
            max_plots: 20,
            max_plot_bytes: 10 << 20,
        }
    }
}

/// How an evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Every expression ran.
    Ok,
    /// An expression signalled an R error; later expressions did not run.
    Error,
    /// The code did not parse; nothing ran.
    ParseError,
    /// R was interrupted (SIGINT after the deadline); state is kept.
    Interrupted,
}

impl ExecStatus {
    /// The wire name (`ok`, `error`, `parse_error`, `interrupted`), as in
    /// results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Ok => "ok",
            ExecStatus::Error => "error",
            ExecStatus::ParseError => "parse_error",
            ExecStatus::Interrupted => "interrupted",
        }
    }
}

/// One thing that happened during an evaluation, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text written to stdout (or stderr) by the code.
    Stdout(String),
    /// A visible value printed as the console would.
    Value(String),
    /// A `message()` (text ends with a newline, as R makes it).
    Message(String),
    /// A warning, kept as a warning (not an error).
    Warning {
        /// `conditionMessage()`.
        message: String,
        /// Deparsed call, if any.
        call: Option<String>,
    },
    /// The R error that stopped evaluation.
    Error {
        /// `conditionMessage()`.
        message: String,
        /// Deparsed call, if any.
        call: Option<String>,
        /// User calls from outermost to innermost, one line each.
        traceback: Vec<String>,
    },
    /// A finished plot page.
    Plot {
        /// PNG bytes.
        png: Vec<u8>,
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
    },
    /// Output left out between the head and the tail.
    Truncated {
        /// Bytes left out.
        omitted_bytes: u64,
    },
}

impl Event {
    /// Bytes of text this event carries (0 for plots and markers).
    pub fn text_len(&self) -> usize {
        match self {
            Event::Stdout(t) | Event::Value(t) | Event::Message(t) => t.len(),
            Event::Warning { message, .. } => message.len(),
            Event::Error { message, .. } => message.len(),
            Event::Plot { .. } | Event::Truncated { .. } => 0,
        }
    }
}

/// The decoded result of `.rsession$execute()`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// How it ended.
    pub status: ExecStatus,
    /// Events in order.
    pub events: Vec<Event>,
    /// Output went over the byte cap.
    pub truncated: bool,
    /// Bytes left out.
    pub omitted_bytes: u64,
}

/// The result of `execute_in_session`.
#[derive(Debug, Clone)]
pub struct ExecReport {
    /// Session id.
    pub session_id: String,
    /// What R did.
    pub outcome: ExecOutcome,
    /// Set when this call ran on a fresh R because the previous one was lost
    /// or reset: R state is gone, workspace files are kept.
    pub state_reset_notice: Option<String>,
    /// Wall-clock time of the evaluation.
    pub elapsed: Duration,
    /// Deadline applied.
    pub max_duration: Duration,
    /// Output budget applied (bytes).
    pub max_output_bytes: u64,
}

/// What [`crate::session::SessionManager::call`] answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An evaluation (`execute`, `install_package`).
    Report(ExecReport),
    /// The R value of any other entry point.
    Value(Sexp),
}

/// The evaluation report of a [`Reply`]; `internal` for a value.
impl TryFrom<Reply> for ExecReport {
    type Error = ToolError;

    fn try_from(reply: Reply) -> Result<Self, ToolError> {
        match reply {
            Reply::Report(r) => Ok(r),
            Reply::Value(_) => Err(ToolError::internal("expected an evaluation report")),
        }
    }
}

/// The R value of a [`Reply`]; `internal` for an evaluation report.
impl TryFrom<Reply> for Sexp {
    type Error = ToolError;

    fn try_from(reply: Reply) -> Result<Self, ToolError> {
        match reply {
            Reply::Value(v) => Ok(v),
            Reply::Report(_) => Err(ToolError::internal("expected an R value")),
        }
    }
}

fn text_of(s: &Sexp) -> Option<String> {
    s.as_strings()?.first()?.clone()
}

fn field_text(ev: &Sexp, name: &str) -> Option<String> {
    ev.get(name).and_then(text_of)
}

/// A byte count the harness sends as a double (R has no 64-bit integer); 0 when absent.
fn field_bytes(list: &Sexp, name: &str) -> u64 {
    list.get(name)
        .and_then(Sexp::as_f64)
        .map_or(0, |b| b.max(0.0) as u64)
}

/// `spool_end` of an `.rsession$execute()` reply: the spool offset where the next
/// evaluation's output starts (0 when absent: an older harness).
pub fn spool_end(reply: &Sexp) -> u64 {
    field_bytes(reply, "spool_end")
}

fn decode_event(ev: &Sexp) -> Result<Event, DecodeError> {
    let kind = field_text(ev, "type").ok_or(DecodeError::Malformed("event without type"))?;
    let text = field_text(ev, "text").unwrap_or_default();
    let call = field_text(ev, "call");
    Ok(match kind.as_str() {
        "stdout" => Event::Stdout(text),
        "value" => Event::Value(text),
        "message" => Event::Message(text),
        "warning" => Event::Warning {
            message: text,
            call,
        },
        "error" => Event::Error {
            message: text,
            call,
            traceback: ev
                .get("traceback")
                .and_then(Sexp::as_strings)
                .map(|v| v.iter().map(|s| s.clone().unwrap_or_default()).collect())
                .unwrap_or_default(),
        },
        "plot" => {
            let png = ev
                .get("png")
                .and_then(Sexp::as_raw)
                .ok_or(DecodeError::Malformed("plot without png"))?
                .to_vec();
            let (width, height) = png_dimensions(&png).unwrap_or((0, 0));
            Event::Plot { png, width, height }
        }
        "truncated" => Event::Truncated {
            omitted_bytes: field_bytes(ev, "omitted_bytes"),
        },
        _ => return Err(DecodeError::Malformed("unknown event type")),
    })
}

/// Decode the list returned by `.rsession$execute()`.
pub fn decode_outcome(reply: &Sexp) -> Result<ExecOutcome, DecodeError> {
    let status = match field_text(reply, "status").as_deref() {
        Some("ok") => ExecStatus::Ok,
        Some("error") => ExecStatus::Error,
        Some("parse_error") => ExecStatus::ParseError,
        Some("interrupted") => ExecStatus::Interrupted,
        _ => return Err(DecodeError::Malformed("missing or unknown status")),
    };
    let events = match reply.get("events") {
        Some(list) if list.is_null() => Vec::new(),
        Some(list) => list
            .as_list()
            .ok_or(DecodeError::Malformed("events is not a list"))?
            .iter()
            .map(decode_event)
            .collect::<Result<_, _>>()?,
        None => return Err(DecodeError::Malformed("missing events")),
    };
    Ok(ExecOutcome {
        status,
        events,
        truncated: reply
            .get("truncated")
            .and_then(Sexp::as_bool)
            .unwrap_or(false),
        omitted_bytes: field_bytes(reply, "omitted_bytes"),
    })
}

/// Width and height from a PNG's IHDR chunk (PNG spec §11.2.2), or `None`
/// when `png` does not start with the PNG signature and an IHDR.
pub fn png_dimensions(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if png.len() < 24 || png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

/// Second, Rust-side output cap (the first is inside R): if the text in
/// `outcome` exceeds `max_bytes`, keep whole events from the head and the tail
/// up to half the budget each, and put a [`Event::Truncated`] marker between.
pub fn enforce_output_cap(outcome: &mut ExecOutcome, max_bytes: usize) {
    let total: usize = outcome.events.iter().map(Event::text_len).sum();
    if total <= max_bytes {
        return;
    }
    let half = max_bytes / 2;
    let events = std::mem::take(&mut outcome.events);
    let mut head = Vec::new();
    let mut used = 0usize;
    let mut rest = events.into_iter().peekable();
    while let Some(ev) = rest.next_if(|ev| used + ev.text_len() <= half) {
        used += ev.text_len();
        head.push(ev);
    }
    let rest: Vec<Event> = rest.collect();
    let mut tail = Vec::new();
    let mut tail_used = 0usize;
    let mut omitted = 0u64;
    for ev in rest.into_iter().rev() {
        let n = ev.text_len();
        let keep = matches!(ev, Event::Plot { .. } | Event::Error { .. }) || tail_used + n <= half;
        if keep {
            tail_used += n;
            tail.push(ev);
        } else if let Event::Truncated { omitted_bytes } = ev {
            omitted += omitted_bytes;
        } else {
            omitted += n as u64;
        }
    }
    tail.reverse();
    head.push(Event::Truncated {
        omitted_bytes: omitted,
    });
    head.extend(
        tail.into_iter()
            .filter(|e| !matches!(e, Event::Truncated { .. })),
    );
    outcome.events = head;
    outcome.truncated = true;
    outcome.omitted_bytes += omitted;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_dimensions_reads_ihdr() {
        let mut png = vec![
            0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
        ];
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&800u32.to_be_bytes());
        png.extend_from_slice(&600u32.to_be_bytes());
        assert_eq!(png_dimensions(&png), Some((800, 600)));
        assert_eq!(png_dimensions(b"not a png at all, no no no"), None);
    }

    #[test]
    fn rust_side_cap_keeps_head_and_tail() {
        let mut o = ExecOutcome {
            status: ExecStatus::Ok,
            events: (0..100)
                .map(|i| Event::Stdout(format!("{i:09}\n")))
                .collect(),
            truncated: false,
            omitted_bytes: 0,
        };
        enforce_output_cap(&mut o, 100);
        assert!(o.truncated);
        assert_eq!(o.events.first(), Some(&Event::Stdout("000000000\n".into())));
        assert_eq!(o.events.last(), Some(&Event::Stdout("000000099\n".into())));
        let kept: usize = o.events.iter().map(Event::text_len).sum();
        assert!(kept <= 100, "kept {kept}");
        assert_eq!(o.omitted_bytes as usize + kept, 1000);
    }

    #[test]
    fn cap_is_a_no_op_under_budget() {
        let mut o = ExecOutcome {
            status: ExecStatus::Ok,
            events: vec![Event::Value("[1] 2\n".into())],
            truncated: false,
            omitted_bytes: 0,
        };
        let before = o.clone();
        enforce_output_cap(&mut o, 1000);
        assert_eq!(o, before);
    }
}
