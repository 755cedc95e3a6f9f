//! The parser entry points. Parsing never fails: each returns a tree and every error found.

use crate::ast::{Expr, File, Path, Segment, Span};
use crate::lexer::{self, Comment, LexError, Tok};
use lalrpop_util::{ErrorRecovery, ParseError as LalrError};

#[expect(
    clippy::all,
    clippy::pedantic,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    reason = "generated code"
)]
mod generated {
    lalrpop_util::lalrpop_mod!(pub verdict);
}

/// A syntax error: what went wrong, where, and what the parser expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    pub expected: Vec<String>,
}

/// A parsed file: the tree (with `Error` nodes where recovery happened), the errors, and the
/// comments (for the formatter).
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub tree: T,
    pub errors: Vec<SyntaxError>,
    pub comments: Vec<Comment>,
}

/// One member of a rule block, before the rule is assembled.
pub(crate) enum RuleMember {
    When(Expr),
    Prop(crate::ast::Prop),
    Error,
}

/// Parses a `.verdict` file.
///
/// When the input ends inside open blocks (a half-typed file), the parse is retried with the
/// missing closing delimiters supplied at the end, so everything written so far still yields a
/// tree; the "unexpected end of input" error is kept.
pub fn parse_file(src: &str) -> Parsed<File> {
    parse_file_with(src, &|| {})
}

/// How many tokens the parser reads between two calls of a checkpoint.
const CHECKPOINT_TOKENS: usize = 4096;

/// [`parse_file`], calling `checkpoint` every few thousand tokens: a caller that must be able to
/// abandon the parse of a large file (the language server, on an edit) unwinds from it.
pub fn parse_file_with(src: &str, checkpoint: &dyn Fn()) -> Parsed<File> {
    let (mut tokens, comments) = lexer::lex(src);
    checkpoint();
    let closers = missing_closers(&tokens, src.len());
    let unclosed = !closers.is_empty();
    tokens.extend(closers);
    let mut recovered = Vec::new();
    let tokens = tokens.into_iter().enumerate().map(|(i, t)| {
        if i % CHECKPOINT_TOKENS == CHECKPOINT_TOKENS - 1 {
            checkpoint();
        }
        t
    });
    let result = generated::verdict::FileParser::new().parse(&mut recovered, tokens);
    let mut errors: Vec<SyntaxError> = recovered.into_iter().map(|r| convert(r.error, src.len())).collect();
    let tree = match result {
        Ok(file) => file,
        Err(e) => {
            errors.push(convert(e, src.len()));
            File::default()
        }
    };
    if unclosed {
        // Errors at the synthetic closers are replaced by one that says what is missing.
        let end = Span::new(src.len(), src.len());
        errors.retain(|e| e.span != end);
        errors.push(SyntaxError {
            message: "unexpected end of input: a `{`, `[` or `(` is not closed".into(),
            span: end,
            expected: vec!["}".into()],
        });
    }
    errors.sort_by_key(|e| (e.span.start, e.span.end));
    errors.dedup();
    Parsed { tree, errors, comments }
}

/// The closing delimiters that would balance the tokens' open `{`, `[` and `(`, innermost first.
fn missing_closers(tokens: &[lexer::Spanned], len: usize) -> Vec<lexer::Spanned> {
    let mut open: Vec<Tok> = Vec::new();
    for (_, t, _) in tokens {
        match t {
            Tok::LBrace => open.push(Tok::RBrace),
            Tok::LBracket => open.push(Tok::RBracket),
            Tok::LParen => open.push(Tok::RParen),
            Tok::RBrace | Tok::RBracket | Tok::RParen => {
                if let Some(pos) = open.iter().rposition(|o| o == t) {
                    open.truncate(pos);
                }
            }
            _ => {}
        }
    }
    open.into_iter().rev().map(|t| (len, t, len)).collect()
}

/// Parses a condition expression on its own (YAML `when:` strings, `definitions`).
pub fn parse_expr(src: &str) -> Parsed<Option<Expr>> {
    let (tokens, comments) = lexer::lex(src);
    let mut recovered = Vec::new();
    let result = generated::verdict::ExprParser::new().parse(&mut recovered, tokens);
    let mut errors: Vec<SyntaxError> = recovered.into_iter().map(|r| convert(r.error, src.len())).collect();
    let tree = match result {
        Ok(e) => Some(e),
        Err(e) => {
            errors.push(convert(e, src.len()));
            None
        }
    };
    Parsed { tree, errors, comments }
}

/// Parses a path on its own (`schema` keys given as strings, the CLI).
pub fn parse_path(src: &str) -> Parsed<Option<Path>> {
    let (tokens, comments) = lexer::lex(src);
    let mut recovered = Vec::new();
    let result = generated::verdict::PathParser::new().parse(&mut recovered, tokens);
    let mut errors: Vec<SyntaxError> = recovered.into_iter().map(|r| convert(r.error, src.len())).collect();
    let tree = match result {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(convert(e, src.len()));
            None
        }
    };
    Parsed { tree, errors, comments }
}

/// `.0.1` after a path lexes as the number `0.1`: split it back into index steps.
pub(crate) fn number_segments(n: &str, start: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut offset = start;
    for part in n.split('.') {
        out.push(Segment { text: part.to_owned(), span: Span::new(offset, offset + part.len()) });
        offset += part.len() + 1;
    }
    out
}

fn expected_list(expected: Vec<String>) -> Vec<String> {
    let mut v: Vec<String> = expected.into_iter().map(|e| e.trim_matches('"').to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

fn describe_expected(expected: &[String]) -> String {
    if expected.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = expected.iter().take(8).map(|e| format!("`{e}`")).collect();
    let more = if expected.len() > 8 { ", …" } else { "" };
    format!("; expected {}{more}", shown.join(", "))
}

fn convert(e: LalrError<usize, Tok, LexError>, len: usize) -> SyntaxError {
    match e {
        LalrError::InvalidToken { location } => {
            SyntaxError { message: "invalid token".into(), span: Span::new(location, location), expected: vec![] }
        }
        LalrError::UnrecognizedEof { location, expected } => {
            let expected = expected_list(expected);
            SyntaxError {
                message: format!("unexpected end of input{}", describe_expected(&expected)),
                span: Span::new(location.min(len), location.min(len)),
                expected,
            }
        }
        LalrError::UnrecognizedToken { token: (l, tok, r), expected } => {
            let expected = expected_list(expected);
            let message = match &tok {
                Tok::Error(e) => e.to_string(),
                other => format!("unexpected {other}{}", describe_expected(&expected)),
            };
            SyntaxError { message, span: Span::new(l, r), expected }
        }
        LalrError::ExtraToken { token: (l, tok, r) } => {
            SyntaxError { message: format!("unexpected {tok} after the end"), span: Span::new(l, r), expected: vec![] }
        }
        LalrError::User { error } => {
            SyntaxError { message: error.to_string(), span: Span::new(0, 0), expected: vec![] }
        }
    }
}

/// Unused helper kept private to satisfy the generated code's expectations.
#[allow(dead_code)]
fn _recovery_type(_: ErrorRecovery<usize, Tok, LexError>) {}
