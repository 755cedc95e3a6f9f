//! The formatter behind `verdict fmt` and the language server's formatting: parse, refuse
//! broken or too-deep files, print canonically with comments kept.

use crate::diagnostic::{Code, Diagnostic};
use verdict_grammar::ast::{MAX_DEPTH, Span, first_error_node, max_depth};

/// The canonical text of a `.verdict` source, or the diagnostics that prevent formatting it.
pub fn format_verdict(text: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = verdict_grammar::parse_file(text);
    if !parsed.errors.is_empty() {
        return Err(parsed.errors.iter().map(|e| Diagnostic::error(Code::Syntax, e.span, e.message.clone())).collect());
    }
    // A tree that kept an error node (e.g. a rule's second `when`) parsed without a syntax
    // error but has no faithful printed form: refuse rather than lose text.
    if let Some(span) = first_error_node(&parsed.tree) {
        let compiled =
            crate::compile_as(&crate::source::SourceFile::new("format.verdict", text), crate::SourceKind::Verdict);
        let errors: Vec<Diagnostic> =
            compiled.diagnostics.into_iter().filter(|d| d.severity == crate::diagnostic::Severity::Error).collect();
        return Err(if errors.is_empty() {
            vec![Diagnostic::error(Code::Syntax, span, "this cannot be formatted: fix the error here first")]
        } else {
            errors
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A second `when` parses (the rest of the file is still read) but the tree keeps it as an
    /// error node; printing it would drop the condition, so the file is refused, with the
    /// compiler's explanation.
    #[test]
    fn error_nodes_are_refused_not_printed() {
        let text = "bundle b {}\npolicy p {\n  rule r allow {\n    when a == 1\n    when b == 2\n  }\n}\n";
        let Err(diags) = format_verdict(text) else { unreachable!("formatted a rule with two `when`s") };
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags.iter().all(|d| d.message.contains("one `when`")), "{diags:?}");
        let fine = text.replace("    when b == 2\n", "");
        assert!(format_verdict(&fine).is_ok());
    }

    /// `input.` stays before a path whose first segment merely starts with `input` (a `let` of
    /// that name would otherwise capture it), and is written once before quoted and index ones.
    #[test]
    fn the_input_prefix_survives_formatting() {
        let text = "let inputs = action == \"read\"\npolicy p {\n  default allow\n  rule r deny { when input.inputs.x == 1 and input.\"odd.key\" == 2 and input[0] == 3 and inputs }\n}\n";
        let out = format_verdict(text).unwrap_or_default();
        assert!(out.contains("input.inputs.x == 1"), "{out}");
        assert!(out.contains("input.\"odd.key\" == 2"), "{out}");
        assert!(out.contains("input[0] == 3"), "{out}");
        assert_eq!(format_verdict(&out).unwrap_or_default(), out, "formatting is idempotent");
    }
}
