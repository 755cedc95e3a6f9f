//! Conversions between the compiler's plain data (byte offsets, [`Diagnostic`]) and LSP types
//! (0-based lines, UTF-16 columns). The only place that knows both (after rust-analyzer's
//! `to_proto`/`from_proto`).

use crate::ide::{Completion, CompletionKind, OutlineKind, OutlineNode};
use lsp_types as lsp;
use verdict_compiler::diagnostic::{Diagnostic, Severity};
use verdict_compiler::source::LineIndex;
use verdict_grammar::ast::Span;

/// A document's text with its line index: what every conversion needs.
#[derive(Clone, Copy)]
pub struct Doc<'a> {
    pub text: &'a str,
    pub lines: &'a LineIndex,
}

impl Doc<'_> {
    pub fn position(&self, offset: u32) -> lsp::Position {
        let (line, character) = self.lines.line_utf16(self.text, offset);
        lsp::Position { line, character }
    }

    pub fn range(&self, span: Span) -> lsp::Range {
        lsp::Range { start: self.position(span.start), end: self.position(span.end.max(span.start)) }
    }

    /// The byte offset of a position; positions past a line's end or the text's end are clamped.
    pub fn offset(&self, p: lsp::Position) -> u32 {
        self.lines.offset_utf16(self.text, p.line, p.character)
    }

    /// The whole text's range.
    pub fn full_range(&self) -> lsp::Range {
        self.range(Span::new(0, self.text.len()))
    }
}

pub fn severity(s: Severity) -> lsp::DiagnosticSeverity {
    match s {
        Severity::Error => lsp::DiagnosticSeverity::ERROR,
        Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        Severity::Info => lsp::DiagnosticSeverity::INFORMATION,
    }
}

/// A diagnostic: code, severity and message (help and witness appended), and each label as
/// related information in the same document.
pub fn diagnostic(doc: Doc<'_>, uri: &lsp::Uri, d: &Diagnostic) -> lsp::Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    if let Some(w) = &d.witness {
        message.push_str("\nwitness: ");
        message.push_str(&w.to_string());
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .map(|l| lsp::DiagnosticRelatedInformation {
            location: lsp::Location { uri: uri.clone(), range: doc.range(l.span) },
            message: l.message.clone(),
        })
        .collect();
    lsp::Diagnostic {
        range: doc.range(d.span),
        severity: Some(severity(d.severity)),
        code: Some(lsp::NumberOrString::String(d.code.as_str().to_owned())),
        code_description: None,
        source: Some("verdict".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: d.witness.as_ref().map(|w| serde_json::json!({ "witness": w })),
    }
}

#[expect(deprecated, reason = "DocumentSymbol has a deprecated field that must still be set")]
pub fn outline(doc: Doc<'_>, node: &OutlineNode) -> lsp::DocumentSymbol {
    let kind = match node.kind {
        OutlineKind::Bundle => lsp::SymbolKind::MODULE,
        OutlineKind::Let => lsp::SymbolKind::CONSTANT,
        OutlineKind::State => lsp::SymbolKind::STRUCT,
        OutlineKind::Extern => lsp::SymbolKind::INTERFACE,
        OutlineKind::Policy => lsp::SymbolKind::CLASS,
        OutlineKind::Rule => lsp::SymbolKind::METHOD,
    };
    let range = doc.range(node.span);
    let selection = doc.range(node.selection);
    lsp::DocumentSymbol {
        name: if node.name.is_empty() { "\"\"".into() } else { node.name.clone() },
        detail: node.detail.clone(),
        kind,
        tags: None,
        deprecated: None,
        range,
        // The selection must lie within the range.
        selection_range: if contains(range, selection) { selection } else { range },
        children: (!node.children.is_empty()).then(|| node.children.iter().map(|c| outline(doc, c)).collect()),
    }
}

fn contains(outer: lsp::Range, inner: lsp::Range) -> bool {
    let le = |a: lsp::Position, b: lsp::Position| (a.line, a.character) <= (b.line, b.character);
    le(outer.start, inner.start) && le(inner.end, outer.end)
}

pub fn completion(c: &Completion) -> lsp::CompletionItem {
    let kind = match c.kind {
        CompletionKind::Keyword => lsp::CompletionItemKind::KEYWORD,
        CompletionKind::Effect => lsp::CompletionItemKind::ENUM_MEMBER,
        CompletionKind::Path => lsp::CompletionItemKind::FIELD,
        CompletionKind::Let => lsp::CompletionItemKind::VARIABLE,
        CompletionKind::State => lsp::CompletionItemKind::STRUCT,
        CompletionKind::Extern => lsp::CompletionItemKind::INTERFACE,
        CompletionKind::Function => lsp::CompletionItemKind::FUNCTION,
        CompletionKind::Window => lsp::CompletionItemKind::PROPERTY,
        CompletionKind::TimeField => lsp::CompletionItemKind::PROPERTY,
    };
    lsp::CompletionItem {
        label: c.label.clone(),
        kind: Some(kind),
        detail: c.detail.clone(),
        insert_text: c.insert.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_both_ways() {
        let text = "a\n😀b";
        let lines = LineIndex::new(text);
        let doc = Doc { text, lines: &lines };
        assert_eq!(doc.position(6), lsp::Position { line: 1, character: 2 });
        assert_eq!(doc.offset(lsp::Position { line: 1, character: 2 }), 6);
        // Past the end of a line, past the last line: clamped, never a panic.
        assert_eq!(doc.offset(lsp::Position { line: 0, character: 99 }), 1);
        assert_eq!(doc.offset(lsp::Position { line: 99, character: 0 }), 7);
        // Inside a surrogate pair: the next character boundary.
        assert_eq!(doc.offset(lsp::Position { line: 1, character: 1 }), 6);
    }
}
