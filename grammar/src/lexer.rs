//! The logos lexer: source text to tokens with byte spans.
//!
//! Comments are tokens of their own so that the formatter can keep them; [`lex`] separates them from
//! the tokens the parser sees. A byte sequence the lexer does not recognise becomes a [`Tok::Error`]
//! token, never an abort, so the parser can report it and recover.

use logos::Logos;
use std::fmt;
use verdict_vocab::AtomOp;

/// The raw token kinds recognised by logos. String and number payloads are decoded in [`lex`].
#[derive(Logos, Debug, Clone, Copy, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
enum Raw {
    #[token("bundle")]
    Bundle,
    #[token("policy")]
    Policy,
    #[token("rule")]
    Rule,
    #[token("let")]
    Let,
    #[token("when")]
    When,
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("in")]
    In,
    #[token("state")]
    State,
    #[token("extern")]
    Extern,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("null")]
    Null,
    #[token("input")]
    Input,
    #[regex("[A-Za-z_][A-Za-z0-9_]*")]
    Ident,
    #[regex(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")]
    Number,
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    #[regex(r#"'([^'\\\n]|\\[^\n])*'"#)]
    Str,
    #[regex(r#"r"[^"\n]*""#)]
    Verbatim,
    #[regex(r#"f"([^"\\\n]|\\[^\n])*""#)]
    Template,
    #[regex(r#""([^"\\\n]|\\[^\n])*"#, priority = 1)]
    #[regex(r#"'([^'\\\n]|\\[^\n])*"#, priority = 1)]
    #[regex(r#"r"[^"\n]*"#, priority = 1)]
    #[regex(r#"f"([^"\\\n]|\\[^\n])*"#, priority = 1)]
    Unterminated,
    #[regex(r"//[^\n]*", allow_greedy = true)]
    #[regex(r"#[^\n]*", allow_greedy = true)]
    Comment,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("=")]
    Assign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("-")]
    Minus,
    #[token("+")]
    Plus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("->")]
    Arrow,
}

/// A token as the parser sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Bundle,
    Policy,
    Rule,
    Let,
    When,
    And,
    Or,
    Not,
    In,
    State,
    Extern,
    /// A word operator of the vocabulary (`contains`, `matches`, `starts_with`, `ends_with`).
    Word(AtomOp),
    True,
    False,
    Null,
    Input,
    Ident(String),
    /// The number's source text (without sign); the compiler decides between integer and float.
    Number(String),
    /// A string literal with its escapes decoded.
    Str(String),
    /// A template literal `f"…"` with its escapes decoded.
    FStr(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Colon,
    Dot,
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Minus,
    Plus,
    Star,
    Slash,
    Arrow,
    /// Something the lexer could not read; the message says what.
    Error(LexError),
}

/// Why a stretch of input is not a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    UnexpectedChar(char),
    UnterminatedString,
    BadEscape(String),
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnexpectedChar(c) => write!(f, "unexpected character `{}`", c.escape_debug()),
            LexError::UnterminatedString => write!(f, "unterminated string literal"),
            LexError::BadEscape(e) => write!(f, "invalid escape sequence `{e}` in string literal"),
        }
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Bundle => "`bundle`",
            Tok::Policy => "`policy`",
            Tok::Rule => "`rule`",
            Tok::Let => "`let`",
            Tok::When => "`when`",
            Tok::And => "`and`",
            Tok::Or => "`or`",
            Tok::Not => "`not`",
            Tok::In => "`in`",
            Tok::State => "`state`",
            Tok::Extern => "`extern`",
            Tok::Word(op) => return write!(f, "`{}`", op.name()),
            Tok::True => "`true`",
            Tok::False => "`false`",
            Tok::Null => "`null`",
            Tok::Input => "`input`",
            Tok::Ident(s) => return write!(f, "identifier `{s}`"),
            Tok::Number(s) => return write!(f, "number `{s}`"),
            Tok::Str(_) => "string literal",
            Tok::FStr(_) => "template literal",
            Tok::LBrace => "`{`",
            Tok::RBrace => "`}`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::Comma => "`,`",
            Tok::Colon => "`:`",
            Tok::Dot => "`.`",
            Tok::Assign => "`=`",
            Tok::EqEq => "`==`",
            Tok::NotEq => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
            Tok::Minus => "`-`",
            Tok::Plus => "`+`",
            Tok::Star => "`*`",
            Tok::Slash => "`/`",
            Tok::Arrow => "`->`",
            Tok::Error(e) => return write!(f, "{e}"),
        };
        f.write_str(s)
    }
}

/// A comment kept for the formatter: its byte span and its text (including the `//` or `#`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// A token with its byte span, in the triple form lalrpop expects.
pub type Spanned = (usize, Tok, usize);

/// The UTF-8 byte-order mark, skipped at the start of a text (and only there).
const BOM: char = '\u{feff}';

/// Splits `src` into parser tokens and comments. Never fails: bad input becomes [`Tok::Error`].
/// A leading byte-order mark is skipped (spans still count its three bytes).
pub fn lex(src: &str) -> (Vec<Spanned>, Vec<Comment>) {
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut lexer = Raw::lexer(src);
    if src.starts_with(BOM) {
        // INVARIANT: the text starts with the mark, so its length is a character boundary in it.
        lexer.bump(BOM.len_utf8());
    }
    while let Some(raw) = lexer.next() {
        let span = lexer.span();
        let text = lexer.slice();
        let tok = match raw {
            Err(()) => Tok::Error(LexError::UnexpectedChar(text.chars().next().unwrap_or('?'))),
            Ok(raw) => match raw {
                Raw::Bundle => Tok::Bundle,
                Raw::Policy => Tok::Policy,
                Raw::Rule => Tok::Rule,
                Raw::Let => Tok::Let,
                Raw::When => Tok::When,
                Raw::And => Tok::And,
                Raw::Or => Tok::Or,
                Raw::Not => Tok::Not,
                Raw::In => Tok::In,
                Raw::State => Tok::State,
                Raw::Extern => Tok::Extern,
                Raw::True => Tok::True,
                Raw::False => Tok::False,
                Raw::Null => Tok::Null,
                Raw::Input => Tok::Input,
                // Word operators are the vocabulary's (`in`, a keyword, is matched above).
                Raw::Ident => match AtomOp::from_word(text) {
                    Some(op) => Tok::Word(op),
                    None => Tok::Ident(text.to_owned()),
                },
                Raw::Number => Tok::Number(text.to_owned()),
                Raw::Str => match unescape(text) {
                    Ok(s) => Tok::Str(s),
                    Err(e) => Tok::Error(e),
                },
                Raw::Verbatim => Tok::Str(text.get(2..text.len().saturating_sub(1)).unwrap_or("").to_owned()),
                Raw::Template => match unescape(text.get(1..).unwrap_or("")) {
                    Ok(s) => Tok::FStr(s),
                    Err(e) => Tok::Error(e),
                },
                Raw::Unterminated => Tok::Error(LexError::UnterminatedString),
                Raw::Comment => {
                    comments.push(Comment { start: span.start, end: span.end, text: text.trim_end().to_owned() });
                    continue;
                }
                Raw::LBrace => Tok::LBrace,
                Raw::RBrace => Tok::RBrace,
                Raw::LBracket => Tok::LBracket,
                Raw::RBracket => Tok::RBracket,
                Raw::LParen => Tok::LParen,
                Raw::RParen => Tok::RParen,
                Raw::Comma => Tok::Comma,
                Raw::Colon => Tok::Colon,
                Raw::Dot => Tok::Dot,
                Raw::Assign => Tok::Assign,
                Raw::EqEq => Tok::EqEq,
                Raw::NotEq => Tok::NotEq,
                Raw::Lt => Tok::Lt,
                Raw::Le => Tok::Le,
                Raw::Gt => Tok::Gt,
                Raw::Ge => Tok::Ge,
                Raw::Minus => Tok::Minus,
                Raw::Plus => Tok::Plus,
                Raw::Star => Tok::Star,
                Raw::Slash => Tok::Slash,
                Raw::Arrow => Tok::Arrow,
            },
        };
        tokens.push((span.start, tok, span.end));
    }
    (tokens, comments)
}

/// Decodes a quoted literal (with its quotes): `\n \t \r \0 \\ \" \' \/ \uXXXX \u{X..}`.
fn unescape(quoted: &str) -> Result<String, LexError> {
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            return Err(LexError::BadEscape("\\".into()));
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' | '"' | '\'' | '/' => out.push(e),
            'u' => {
                let rest = chars.as_str();
                let (hex, consumed) = if let Some(braced) = rest.strip_prefix('{') {
                    let close = braced.find('}').ok_or_else(|| LexError::BadEscape("\\u{".into()))?;
                    (braced.get(..close).unwrap_or(""), close + 2)
                } else {
                    (rest.get(..4).unwrap_or(rest), 4)
                };
                let code = u32::from_str_radix(hex, 16).map_err(|_| LexError::BadEscape(format!("\\u{hex}")))?;
                let ch = char::from_u32(code).ok_or_else(|| LexError::BadEscape(format!("\\u{hex}")))?;
                out.push(ch);
                for _ in 0..consumed {
                    if chars.next().is_none() {
                        break;
                    }
                }
            }
            other => return Err(LexError::BadEscape(format!("\\{other}"))),
        }
    }
    Ok(out)
}

/// Writes `s` as a DSL string literal, escaping what [`unescape`] decodes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `s` can be written as a bare identifier (not a keyword, identifier characters only).
pub fn is_bare_ident(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !is_keyword(s)
}

/// The reserved words of the language.
pub const KEYWORDS: &[&str] = &[
    "bundle", "policy", "rule", "let", "when", "and", "or", "not", "in", "state", "extern", "true", "false", "null",
    "input",
];

/// Whether `s` is a reserved word: a keyword or a word operator of the vocabulary.
pub fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s) || AtomOp::from_word(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_strings_and_comments() {
        let (toks, comments) = lex("let a = 'x\\'y' // hi\n\"un");
        let kinds: Vec<_> = toks.iter().map(|t| t.1.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Let,
                Tok::Ident("a".into()),
                Tok::Assign,
                Tok::Str("x'y".into()),
                Tok::Error(LexError::UnterminatedString)
            ]
        );
        assert_eq!(comments.len(), 1);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let (toks, _) = lex("\u{feff}let a");
        assert_eq!(toks, vec![(3, Tok::Let, 6), (7, Tok::Ident("a".into()), 8)]);
        // Anywhere else it is an unexpected character.
        let (toks, _) = lex("let \u{feff}a");
        assert_eq!(toks.get(1).map(|t| t.1.clone()), Some(Tok::Error(LexError::UnexpectedChar('\u{feff}'))));
    }

    #[test]
    fn quote_roundtrips() {
        for s in ["plain", "q\"uote", "back\\slash", "new\nline", "\u{1}ctl", "é"] {
            let (toks, _) = lex(&quote(s));
            assert_eq!(toks.first().map(|t| t.1.clone()), Some(Tok::Str(s.into())));
        }
    }
}
