//! The formatter behind `verdict fmt` and the language server's formatting: parse, refuse
//! broken or too-deep files, print canonically with comments kept.

use crate::diagnostic::{Code, Diagnostic};
use verdict_grammar::ast::{MAX_DEPTH, Span, max_depth};

/// The canonical text of a `.verdict` source, or the diagnostics that prevent formatting it.
pub fn format_verdict(text: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = verdict_grammar::parse_file(text);
    if !parsed.errors.is_empty() {
        return Err(parsed.errors.iter().map(|e| Diagnostic::error(Code::Syntax, e.span, e.message.clone())).collect());
    }
    if max_depth(&parsed.tree) > MAX_DEPTH {
        return Err(vec![Diagnostic::error(
            Code::TooDeep,
            Span::default(),
            format!("nesting deeper than {MAX_DEPTH} levels"),
        )]);
    }
    Ok(verdict_grammar::printer::print_file(&parsed.tree, &parsed.comments))
}
