//! Source texts, their size limit, the byte-order mark, and byte-offset → line/column conversion.

use crate::diagnostic::{Code, Diagnostic};
use verdict_grammar::ast::Span;

/// The largest source text (any form: `.verdict`, YAML, JSON, a Decision Card) the toolchain
/// reads: 16 MiB, ten times a 10,000-rule bundle. The compiler refuses a larger text before
/// parsing it (V112), the CLI before reading the file, the language server before any other
/// work on the document. The service's request bodies have their own, smaller cap (128 KiB).
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// The V112 refusal of a source text of `len` bytes, when it is over [`MAX_SOURCE_BYTES`].
pub fn too_large(len: usize) -> Option<Diagnostic> {
    (len > MAX_SOURCE_BYTES).then(|| {
        Diagnostic::error(
            Code::TooLarge,
            Span::new(0, 0),
            format!("the source is {len} bytes, over the limit of {MAX_SOURCE_BYTES} bytes (16 MiB)"),
        )
        .with_help("split the bundle, or generate it more compactly")
    })
}

/// The UTF-8 byte-order mark. A source text may start with one (some Windows editors write it);
/// every reader skips it, and spans still count it, so they stay offsets into the text as given.
pub const BOM: &str = "\u{feff}";

/// The text after a leading byte-order mark, and the mark's length (0 or 3).
pub fn strip_bom(text: &str) -> (&str, usize) {
    match text.strip_prefix(BOM) {
        Some(rest) => (rest, BOM.len()),
        None => (text, 0),
    }
}

/// Line starts of one text, for turning byte offsets into 1-based lines and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    starts: Vec<u32>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        LineIndex { starts }
    }

    /// 1-based line and 1-based column in characters of byte `offset` in `text`.
    pub fn line_col(&self, text: &str, offset: u32) -> (u32, u32) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = text.get(start as usize..(offset as usize).min(text.len())).map_or(0, |s| s.chars().count());
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col + 1).unwrap_or(u32::MAX))
    }

    /// 0-based line and UTF-16 column, as the language server protocol counts.
    pub fn line_utf16(&self, text: &str, offset: u32) -> (u32, u32) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = text.get(start as usize..(offset as usize).min(text.len())).map_or(0, |s| s.encode_utf16().count());
        (u32::try_from(line - 1).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
    }

    /// The byte offset of a 0-based line and UTF-16 column (clamped to the text).
    pub fn offset_utf16(&self, text: &str, line: u32, col: u32) -> u32 {
        let Some(&start) = self.starts.get(line as usize) else {
            return u32::try_from(text.len()).unwrap_or(u32::MAX);
        };
        let rest = text.get(start as usize..).unwrap_or("");
        let mut units = 0u32;
        for (i, c) in rest.char_indices() {
            if units >= col || c == '\n' {
                return start + u32::try_from(i).unwrap_or(u32::MAX);
            }
            units += u32::try_from(c.len_utf16()).unwrap_or(1);
        }
        u32::try_from(text.len()).unwrap_or(u32::MAX)
    }
}

/// A named source text with its line index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    pub lines: LineIndex,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let lines = LineIndex::new(&text);
        SourceFile { name: name.into(), text, lines }
    }

    pub fn line_col(&self, offset: u32) -> (u32, u32) {
        self.lines.line_col(&self.text, offset)
    }

    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }
}
