//! The Verdict language server. Only this crate will speak LSP (lsp-server + lsp-types) and host
//! the salsa database; the compiler stays free of protocol types.
//!
//! Status: a placeholder until the language-server issue. It holds the one conversion every
//! editor integration needs and that the compiler already provides data for: byte offsets to
//! LSP's 0-based line / UTF-16 column positions.

use verdict_compiler::source::SourceFile;

/// A position as LSP counts it: 0-based line, UTF-16 code units into the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

/// The LSP position of a byte offset in a file.
pub fn position(file: &SourceFile, offset: u32) -> Position {
    let (line, character) = file.lines.line_utf16(&file.text, offset);
    Position { line, character }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns() {
        let f = SourceFile::new("x", "a\n😀b");
        assert_eq!(position(&f, 6), Position { line: 1, character: 2 });
        assert_eq!(f.lines.offset_utf16(&f.text, 1, 2), 6);
    }
}
