//! The front end of the Verdict language: the logos [`lexer`], the lalrpop grammar (in
//! `verdict.lalrpop`), the [`ast`] and the canonical [`printer`] used by `verdict fmt` and
//! `verdict convert`.
//!
//! Architecture invariant: this crate knows nothing of bundles' meaning (that is `compiler`'s job)
//! and nothing of LSP or CLI; its public types carry no lexer or parser types.

pub mod ast;
pub mod lexer;
pub mod parse;
pub mod printer;

pub use parse::{Parsed, SyntaxError, parse_expr, parse_file, parse_path};
