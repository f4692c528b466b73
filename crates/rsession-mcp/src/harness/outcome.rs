//! The R evaluation harness (`harness.R`) and the Rust side of its contract:
//! the R calls we send and the decoding of what `execute()` returns.
//!
//! The harness is sent with QAP1 `voidEval` right after login (see
//! [`crate::session::conn`]), so any R image with Rserve works. Its result is a
//! plain R list decoded here from the QAP1 SEXP; see the header of
//! `harness.R` for the exact shape.

use rserve::Sexp;
use serde::Serialize;

/// Source of the harness, installed into the private environment `.rsession`,
/// followed by the data tools (`harness_data.R`, environment `.rsession_data`).
pub const HARNESS_R: &str = concat!(include_str!("harness.R"), include_str!("harness_data.R"));

/// Library directory of a session, relative to its workspace; prepended to
/// `.libPaths()` so `install_package` never touches the image's library.
pub const SESSION_LIBRARY: &str = ".R/library";

/// Errors decoding a harness reply.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The reply lacks a field or has the wrong SEXP type.
    #[error("harness reply is malformed: {0}")]
    Malformed(&'static str),
}

/// Turn `s` into an R string literal that parses back to exactly `s`, in any
/// locale: non-ASCII characters become `\U{...}` escapes (R Language
/// Definition §10.3.1, "Constants"). R strings cannot hold NUL, so `None`
/// for input containing one.
pub fn r_string_literal(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => return None,
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\U{{{:x}}}", c as u32)),
        }
    }
    out.push('"');
    Some(out)
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

/// The R call that evaluates `code` through the harness; `None` if `code`
/// contains NUL.
pub fn execute_call(code: &str, limits: &ExecLimits) -> Option<String> {
    let lit = r_string_literal(code)?;
    Some(format!(
        ".rsession$execute({lit}, max_output_bytes = {}, max_plots = {}L, max_plot_bytes = {})",
        limits.max_output_bytes, limits.max_plots, limits.max_plot_bytes
    ))
}

/// The R call that prepares a fresh R for a session: workspace (created if
/// missing, then `setwd`), private library, plot size.
pub fn init_call(workspace: &str) -> Option<String> {
    Some(format!(
        ".rsession$init({}, library = {})",
        r_string_literal(workspace)?,
        r_string_literal(SESSION_LIBRARY)?
    ))
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

fn text_of(s: &Sexp) -> Option<String> {
    s.as_strings()?.first()?.clone()
}

fn field_text(ev: &Sexp, name: &str) -> Option<String> {
    ev.get(name).and_then(text_of)
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
            omitted_bytes: ev
                .get("omitted_bytes")
                .and_then(Sexp::as_f64)
                .map(|b| b.max(0.0) as u64)
                .unwrap_or(0),
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
        omitted_bytes: reply
            .get("omitted_bytes")
            .and_then(Sexp::as_f64)
            .map(|b| b.max(0.0) as u64)
            .unwrap_or(0),
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
    fn literal_escapes_quotes_backslashes_and_unicode() {
        assert_eq!(r_string_literal("a\"b\\c\n").unwrap(), r#""a\"b\\c\n""#);
        assert_eq!(
            r_string_literal("é中😀").unwrap(),
            r#""\U{e9}\U{4e2d}\U{1f600}""#
        );
        assert_eq!(r_string_literal("\u{7}").unwrap(), r#""\x07""#);
        assert!(r_string_literal("a\0b").is_none());
    }

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
