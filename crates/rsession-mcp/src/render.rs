//! Text an agent reads for an evaluation: the events in order, formatted the
//! way the R console shows them.

use crate::harness::{Event, ExecOutcome, ExecStatus};

/// Render `outcome` as console-like text: stdout and printed values as is,
/// messages as is, warnings as `Warning message:` blocks, the error as
/// `Error in <call> : <message>` plus a traceback, plots as a pointer to the
/// image content, truncation as a marker.
pub fn render_text(outcome: &ExecOutcome) -> String {
    let mut out = String::new();
    let mut plot_no = 0;
    for ev in &outcome.events {
        match ev {
            Event::Stdout(t) | Event::Value(t) | Event::Message(t) => out.push_str(t),
            Event::Warning { message, call } => {
                ensure_newline(&mut out);
                match call {
                    Some(c) => out.push_str(&format!("Warning message:\nIn {c} : {message}\n")),
                    None => out.push_str(&format!("Warning message:\n{message}\n")),
                }
            }
            Event::Error {
                message,
                call,
                traceback,
            } => {
                ensure_newline(&mut out);
                let label = if outcome.status == ExecStatus::ParseError {
                    "Parse error"
                } else {
                    "Error"
                };
                match call {
                    Some(c) => out.push_str(&format!("{label} in {c} : {message}\n")),
                    None => out.push_str(&format!("{label}: {message}\n")),
                }
                if traceback.len() > 1 {
                    out.push_str("Traceback (outermost first):\n");
                    for (i, c) in traceback.iter().enumerate() {
                        out.push_str(&format!("{}: {c}\n", i + 1));
                    }
                }
            }
            Event::Plot { width, height, png } => {
                plot_no += 1;
                ensure_newline(&mut out);
                out.push_str(&format!(
                    "[plot {plot_no}: {width}x{height} PNG, {} bytes, returned as image content]\n",
                    png.len()
                ));
            }
            Event::Truncated { omitted_bytes } => {
                ensure_newline(&mut out);
                out.push_str(&format!("[... {omitted_bytes} bytes of output omitted (over the output limit); head and tail shown ...]\n"));
            }
        }
    }
    out
}

fn ensure_newline(s: &mut String) {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_like_rendering_in_order() {
        let o = ExecOutcome {
            status: ExecStatus::Error,
            events: vec![
                Event::Value("[1] 2\n".into()),
                Event::Stdout("hi".into()),
                Event::Message("note\n".into()),
                Event::Warning {
                    message: "careful".into(),
                    call: Some("f(x)".into()),
                },
                Event::Error {
                    message: "boom".into(),
                    call: Some("g()".into()),
                    traceback: vec!["f()".into(), "g()".into()],
                },
            ],
            truncated: false,
            omitted_bytes: 0,
        };
        assert_eq!(
            render_text(&o),
            "[1] 2\nhinote\nWarning message:\nIn f(x) : careful\nError in g() : boom\nTraceback (outermost first):\n1: f()\n2: g()\n"
        );
    }
}
