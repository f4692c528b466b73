//! A pager for long tool output.
//!
//! A text result longer than one page (a character budget) is kept here and
//! the agent gets page 1 plus a handle; `read_output` then returns the next
//! unsent page, a page by number, the page holding a character offset, or
//! the lines matching a pattern with their page numbers. Pages already sent
//! are not sent again unless asked (`resend`); each handle remembers which
//! pages went out.
//!
//! Memory is bounded: at most `max_outputs` handles and `max_bytes` of kept
//! text in total; the least recently used outputs are dropped first (an
//! evicted handle answers `invalid_argument` saying so).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use rand::Rng;
use regex::RegexBuilder;

use crate::errors::ToolError;

/// Pager settings (flags `--page-chars`, `--pager-max-outputs`, `--pager-max-bytes`,
/// `--max-result-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagerConfig {
    /// Characters per page (Unicode scalar values). Text up to this length
    /// is returned whole, without a handle.
    pub page_chars: usize,
    /// Most outputs kept at once.
    pub max_outputs: usize,
    /// Most bytes of kept text in total (the newest output is kept even
    /// when it alone is larger).
    pub max_bytes: usize,
    /// Largest tool result sent, in bytes of JSON (`--max-result-bytes`).
    pub max_result_bytes: usize,
}

impl Default for PagerConfig {
    fn default() -> Self {
        PagerConfig {
            page_chars: 16_000,
            max_outputs: 64,
            max_bytes: 64 << 20,
            max_result_bytes: 512 << 10,
        }
    }
}

/// A kept output.
struct Kept {
    owner: String,
    /// Where it came from, e.g. `execute_in_session rs-1234`.
    source: String,
    text: String,
    /// Byte offset where each page starts (pages end at line breaks when a
    /// line fits, else at a character boundary).
    starts: Vec<usize>,
    sent: Vec<bool>,
}

impl Kept {
    fn pages(&self) -> usize {
        self.starts.len()
    }

    fn page_text(&self, page: usize) -> &str {
        let start = self.starts[page];
        let end = self
            .starts
            .get(page + 1)
            .copied()
            .unwrap_or(self.text.len());
        &self.text[start..end]
    }

    fn page_of_byte(&self, byte: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= byte)
            .saturating_sub(1)
    }
}

/// Split `text` into pages of at most `page_chars` characters, breaking
/// after a newline when the page holds at least one, so lines stay whole.
pub fn page_starts(text: &str, page_chars: usize) -> Vec<usize> {
    let page_chars = page_chars.max(1);
    let mut starts = vec![0];
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        let Some((limit, _)) = rest.char_indices().nth(page_chars) else {
            break;
        };
        let cut = rest[..limit].rfind('\n').map_or(limit, |i| i + 1);
        start += cut;
        if start < text.len() {
            starts.push(start);
        }
    }
    starts
}

/// One page sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Page {
    /// Output handle.
    pub handle: String,
    /// 1-based page number.
    pub page: usize,
    /// Pages in the output.
    pub pages: usize,
    /// Character offset of the page's first character in the whole output.
    pub offset_chars: usize,
    /// Characters in the whole output.
    pub total_chars: usize,
    /// The page text, or `None` when it was sent before and not asked again.
    pub text: Option<String>,
    /// Pages not sent yet.
    pub unsent_pages: usize,
}

/// One matching line of a search.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Match {
    /// 1-based page number.
    pub page: usize,
    /// 1-based line number in the whole output.
    pub line: usize,
    /// The line (cut to 500 characters).
    pub text: String,
    /// Whether that page was already sent.
    pub page_already_sent: bool,
}

/// What `read_output` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The first page not sent yet.
    Next,
    /// A page by 1-based number.
    Page(usize),
    /// The page holding this character offset.
    Offset(usize),
    /// Lines matching a pattern (regex when `regex`, else literal), case-insensitive unless `case_sensitive`.
    Search {
        /// The pattern.
        pattern: String,
        /// Treat `pattern` as a regular expression (Rust `regex` syntax).
        regex: bool,
        /// Match case.
        case_sensitive: bool,
    },
}

/// Answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One page.
    Page(Page),
    /// Search hits (capped) and the pages holding them.
    Matches {
        /// Handle.
        handle: String,
        /// Pages in the output.
        pages: usize,
        /// Matching lines, in order, capped to one page budget of text.
        matches: Vec<Match>,
        /// All matching lines, including those left out.
        total_matches: usize,
        /// Pages holding a match (1-based, ascending).
        pages_with_matches: Vec<usize>,
    },
}

/// The kept outputs of one server.
pub struct Pager {
    config: PagerConfig,
    kept: Mutex<(LruCache<String, Kept>, usize)>,
}

impl Pager {
    /// An empty pager.
    pub fn new(config: PagerConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_outputs.max(1)).unwrap_or(NonZeroUsize::MIN);
        Pager {
            config,
            kept: Mutex::new((LruCache::new(cap), 0)),
        }
    }

    /// The settings.
    pub fn config(&self) -> PagerConfig {
        self.config
    }

    /// Outputs kept now and their total bytes.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        (g.0.len(), g.1)
    }

    /// If `text` is longer than one page, keep it and return its first page
    /// (marked sent); otherwise `None` (send it whole).
    pub fn keep(&self, owner: &str, source: &str, text: String) -> Option<Page> {
        if text.len() <= self.config.page_chars || text.chars().count() <= self.config.page_chars {
            return None;
        }
        let starts = page_starts(&text, self.config.page_chars);
        let handle = format!("out-{:08x}", rand::rng().random::<u32>());
        let mut kept = Kept {
            owner: owner.to_string(),
            source: source.to_string(),
            sent: vec![false; starts.len()],
            starts,
            text,
        };
        let page = page_of(&handle, &mut kept, 0, true);
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (cache, bytes) = &mut *g;
        *bytes += kept.text.len();
        if let Some((_, old)) = cache.push(handle, kept) {
            *bytes -= old.text.len();
        }
        // The newest output stays even when it alone is over the byte bound
        // (its pages must be readable); older ones go first.
        while *bytes > self.config.max_bytes && cache.len() > 1 {
            match cache.pop_lru() {
                Some((_, old)) => *bytes -= old.text.len(),
                None => break,
            }
        }
        Some(page)
    }

    /// Serve `request` on `handle` for `owner`; `resend` returns pages that
    /// were already sent.
    ///
    /// Errors: `invalid_argument` for an unknown or evicted handle, another
    /// owner's handle, a page or offset out of range, or a bad regex.
    pub fn read(
        &self,
        owner: &str,
        handle: &str,
        request: &Request,
        resend: bool,
    ) -> Result<Answer, ToolError> {
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let kept = match g.0.get_mut(handle) {
            Some(k) if k.owner == owner => k,
            _ => {
                return Err(ToolError::invalid(format!(
                    "no kept output with handle {handle:?} (unknown, or dropped to bound memory: the server keeps the {} most recent outputs); re-run the code to get it again",
                    self.config.max_outputs
                )));
            }
        };
        let pages = kept.pages();
        let index = match request {
            Request::Next => match kept.sent.iter().position(|s| !s) {
                Some(i) => i,
                None => {
                    return Err(ToolError::invalid(format!(
                        "all {pages} pages of {handle} ({}) were sent; ask for a page number with resend=true, or search",
                        kept.source
                    )));
                }
            },
            Request::Page(p) if *p >= 1 && *p <= pages => p - 1,
            Request::Page(p) => {
                return Err(ToolError::invalid(format!(
                    "page {p} is out of range: {handle} has pages 1 to {pages}"
                )));
            }
            Request::Offset(off) => {
                let total = kept.text.chars().count();
                if *off >= total {
                    return Err(ToolError::invalid(format!(
                        "offset {off} is past the end: {handle} has {total} characters"
                    )));
                }
                let byte = kept
                    .text
                    .char_indices()
                    .nth(*off)
                    .map_or(kept.text.len(), |(b, _)| b);
                kept.page_of_byte(byte)
            }
            Request::Search {
                pattern,
                regex,
                case_sensitive,
            } => {
                return search(
                    handle,
                    kept,
                    pattern,
                    *regex,
                    *case_sensitive,
                    self.config.page_chars,
                );
            }
        };
        Ok(Answer::Page(page_of(handle, kept, index, resend)))
    }
}

fn page_of(handle: &str, kept: &mut Kept, index: usize, resend: bool) -> Page {
    let already = kept.sent[index];
    kept.sent[index] = true;
    let text = (!already || resend).then(|| kept.page_text(index).to_string());
    Page {
        handle: handle.to_string(),
        page: index + 1,
        pages: kept.pages(),
        offset_chars: kept.text[..kept.starts[index]].chars().count(),
        total_chars: kept.text.chars().count(),
        text,
        unsent_pages: kept.sent.iter().filter(|s| !**s).count(),
    }
}

fn search(
    handle: &str,
    kept: &Kept,
    pattern: &str,
    regex: bool,
    case_sensitive: bool,
    budget: usize,
) -> Result<Answer, ToolError> {
    if pattern.is_empty() {
        return Err(ToolError::invalid("search pattern is empty"));
    }
    let source = if regex {
        pattern.to_string()
    } else {
        regex::escape(pattern)
    };
    let re = RegexBuilder::new(&source)
        .case_insensitive(!case_sensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ToolError::invalid(format!("invalid regular expression: {e}")))?;
    let mut matches = Vec::new();
    let mut used = 0usize;
    let mut total = 0usize;
    let mut pages_with = Vec::new();
    let mut byte = 0usize;
    for (i, line) in kept.text.split_inclusive('\n').enumerate() {
        if re.is_match(line) {
            total += 1;
            let page = kept.page_of_byte(byte);
            if pages_with.last() != Some(&(page + 1)) {
                pages_with.push(page + 1);
            }
            let shown: String = line.trim_end_matches('\n').chars().take(500).collect();
            if used + shown.len() <= budget {
                used += shown.len();
                matches.push(Match {
                    page: page + 1,
                    line: i + 1,
                    text: shown,
                    page_already_sent: kept.sent[page],
                });
            }
        }
        byte += line.len();
    }
    Ok(Answer::Matches {
        handle: handle.to_string(),
        pages: kept.pages(),
        matches,
        total_matches: total,
        pages_with_matches: pages_with,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pager(page_chars: usize) -> Pager {
        Pager::new(PagerConfig {
            page_chars,
            max_outputs: 3,
            max_bytes: 10_000,
            ..PagerConfig::default()
        })
    }

    fn lines(n: usize) -> String {
        (0..n).map(|i| format!("line {i:04}\n")).collect()
    }

    #[test]
    fn pages_break_at_lines_and_cover_everything() {
        let text = lines(100); // 10 bytes a line
        let starts = page_starts(&text, 95);
        assert_eq!(starts.len(), 12);
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 90));
        // a single long line is cut at the budget, on a char boundary
        let long = "é".repeat(25);
        let starts = page_starts(&long, 10);
        assert_eq!(starts, vec![0, 20, 40]);
    }

    #[test]
    fn short_text_is_not_kept() {
        let p = pager(100);
        assert!(p.keep("o", "t", "short".into()).is_none());
        assert_eq!(p.usage().0, 0);
    }

    #[test]
    fn next_page_offset_and_no_resend() {
        let p = pager(95);
        let first = p.keep("o", "t", lines(100)).expect("kept");
        assert_eq!((first.page, first.pages), (1, 12));
        assert!(first.text.as_deref().unwrap().starts_with("line 0000"));
        let h = first.handle.clone();
        let Answer::Page(second) = p.read("o", &h, &Request::Next, false).unwrap() else {
            panic!()
        };
        assert_eq!(second.page, 2);
        assert!(second.text.unwrap().starts_with("line 0009"));
        // page 1 again: not resent unless asked
        let Answer::Page(again) = p.read("o", &h, &Request::Page(1), false).unwrap() else {
            panic!()
        };
        assert_eq!(again.text, None);
        let Answer::Page(again) = p.read("o", &h, &Request::Page(1), true).unwrap() else {
            panic!()
        };
        assert!(again.text.is_some());
        // offset 500 chars = line 50 = page 6 (9 lines a page)
        let Answer::Page(at) = p.read("o", &h, &Request::Offset(500), false).unwrap() else {
            panic!()
        };
        assert_eq!(at.page, 6);
        assert!(at.text.unwrap().contains("line 0050"));
        // other owners do not see it; bad pages are refused
        assert!(p.read("x", &h, &Request::Next, false).is_err());
        assert!(p.read("o", &h, &Request::Page(99), false).is_err());
        assert!(p.read("o", &h, &Request::Offset(1000), false).is_err());
    }

    #[test]
    fn search_reports_pages() {
        let p = pager(95);
        let h = p.keep("o", "t", lines(100)).unwrap().handle;
        let req = Request::Search {
            pattern: "LINE 006[0-2]".into(),
            regex: true,
            case_sensitive: false,
        };
        let Answer::Matches {
            matches,
            pages_with_matches,
            total_matches,
            ..
        } = p.read("o", &h, &req, false).unwrap()
        else {
            panic!()
        };
        assert_eq!(total_matches, 3);
        assert_eq!(pages_with_matches, vec![7]);
        assert_eq!(matches[0].line, 61);
        assert!(!matches[0].page_already_sent);
        let bad = Request::Search {
            pattern: "(".into(),
            regex: true,
            case_sensitive: false,
        };
        assert!(p.read("o", &h, &bad, false).is_err());
    }

    #[test]
    fn memory_is_bounded_by_count_and_bytes() {
        let p = pager(10);
        let handles: Vec<String> = (0..5)
            .map(|_| p.keep("o", "t", lines(100)).unwrap().handle)
            .collect();
        let (n, bytes) = p.usage();
        assert_eq!(n, 3);
        assert_eq!(bytes, 3000);
        assert!(p.read("o", &handles[0], &Request::Next, false).is_err());
        assert!(p.read("o", &handles[4], &Request::Next, false).is_ok());
        let big = Pager::new(PagerConfig {
            page_chars: 10,
            max_outputs: 100,
            max_bytes: 2500,
            ..PagerConfig::default()
        });
        for _ in 0..5 {
            big.keep("o", "t", lines(100));
        }
        assert!(big.usage().1 <= 2500);
        // an output larger than the whole bound is still paged (alone)
        let tiny = Pager::new(PagerConfig {
            page_chars: 10,
            max_outputs: 100,
            max_bytes: 500,
            ..PagerConfig::default()
        });
        tiny.keep("o", "t", lines(10));
        let h = tiny.keep("o", "t", lines(100)).expect("paged").handle;
        assert_eq!(tiny.usage(), (1, 1000));
        assert!(tiny.read("o", &h, &Request::Next, false).is_ok());
    }
}
