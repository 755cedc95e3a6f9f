//! Diagnostics as plain data: a code, a severity, a message, a primary span, labels and help.
//! The CLI renders them with ariadne; the language server converts them to LSP; nothing here
//! knows either. [`to_json`] is the one JSON form (TOOLCHAIN.md's `check --format json` object),
//! shared by the CLI and the Python package.

use crate::source::SourceFile;
use serde_json::{Value, json};
use verdict_grammar::ast::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A secondary location with a message ("covered by rule `a` here").
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One finding about a source file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub labels: Vec<Label>,
    pub help: Option<String>,
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// A request context that shows the finding, for existential claims.
    pub witness: Option<serde_json::Value>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            labels: Vec::new(),
            help: None,
            policy: None,
            rule: None,
            witness: None,
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }

    pub fn in_rule(mut self, policy: Option<&str>, rule: Option<&str>) -> Diagnostic {
        self.policy = policy.map(str::to_owned);
        self.rule = rule.map(str::to_owned);
        self
    }
}

/// A diagnostic as TOOLCHAIN.md's JSON object, with lines and columns in `file`.
pub fn to_json(file: &SourceFile, d: &Diagnostic) -> Value {
    let (line, column) = file.line_col(d.span.start);
    let (end_line, end_column) = file.line_col(d.span.end);
    let related: Vec<Value> = d
        .labels
        .iter()
        .map(|l| {
            let (line, column) = file.line_col(l.span.start);
            json!({"message": l.message, "file": file.name, "line": line, "column": column})
        })
        .collect();
    json!({
        "code": d.code.as_str(),
        "severity": d.severity.as_str(),
        "message": d.message,
        "file": file.name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "policy": d.policy,
        "rule": d.rule,
        "related": related,
        "help": d.help,
        "witness": d.witness,
    })
}

macro_rules! codes {
    ($($variant:ident = $code:literal: $doc:literal,)*) => {
        /// Every diagnostic code. V001–V010 are the analysis codes of TOOLCHAIN.md; V1xx are
        /// front-end errors (syntax, structure, names).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }

            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
        }
    };
}

codes! {
    Unreachable = "V001": "unreachable rule: it can never be the deciding match",
    Unsatisfiable = "V002": "unsatisfiable condition",
    Redundant = "V003": "redundant rule: removing it changes no decision",
    Conflict = "V004": "conflict: rules of different effects in different policies can hold for one request",
    Ambiguity = "V005": "ambiguity: same-priority rules of different effects can hold together",
    IllTyped = "V006": "ill-typed atom, always false",
    UnknownPath = "V007": "unknown path",
    DefinitionCycle = "V008": "cycle among `let` definitions",
    DeadDefault = "V009": "the policy default can never apply",
    Gap = "V010": "gap: some request gets `not_applicable`",
    Syntax = "V100": "syntax error",
    UnknownKey = "V101": "unknown key",
    WrongType = "V102": "wrong type",
    MissingKey = "V103": "missing required key",
    DuplicateId = "V104": "duplicate id",
    UnknownEffect = "V105": "unknown effect",
    BadRegex = "V106": "invalid regular expression",
    TooDeep = "V107": "nesting too deep",
    BadValue = "V108": "invalid value",
    UnknownName = "V109": "unknown definition",
    Undecided = "V110": "analysis undecided: a budget ran out",
    CardRefused = "V111": "refused Decision Card",
    TooLarge = "V112": "document too large",
}
