//! The Verdict compiler: source forms → one typed IR, checks, and the reference interpreter.
//!
//! Pipeline: [`yaml`] (YAML/JSON → spanned [`tree`]) or `verdict_grammar` + [`dsl`] (`.verdict` →
//! tree) → [`lower`] (tree → [`ir`], with every structural and type check) → [`interp`] (the
//! oracle) and [`emit`] (IR → `.verdict`, JSON, YAML; fingerprints). [`analysis`] decides
//! the rule-graph findings (V001–V005, V009, V010) and change impact on a compiled bundle; it is
//! not part of [`compile`], which stays cheap. Decision Cards are checked, verified and mapped to a
//! reference-format bundle by [`card`], then compiled like JSON.
//!
//! Architecture invariant: no LSP or CLI types here; diagnostics are plain data
//! ([`diagnostic::Diagnostic`]).

pub mod analysis;
pub mod card;
pub mod codegen;
pub mod diagnostic;
pub mod dsl;
pub mod emit;
pub mod format;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod source;
pub mod tree;
pub mod yaml;

use diagnostic::{Code, Diagnostic, Severity};
use source::SourceFile;

/// The source forms a bundle can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Verdict,
    Yaml,
    Json,
}

impl SourceKind {
    /// By file extension; otherwise by content (`{` → JSON, `bundle`/`policy`/`let` → DSL, else YAML).
    pub fn detect(name: &str, text: &str) -> SourceKind {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".verdict") {
            return SourceKind::Verdict;
        }
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            return SourceKind::Yaml;
        }
        if lower.ends_with(".json") {
            return SourceKind::Json;
        }
        let t = text.trim_start();
        if t.starts_with('{') {
            SourceKind::Json
        } else if t.starts_with("//")
            || ["bundle", "policy", "let"].iter().any(|k| {
                t.strip_prefix(k).is_some_and(|rest| rest.starts_with(|c: char| c.is_whitespace() || c == '"'))
            })
        {
            SourceKind::Verdict
        } else {
            SourceKind::Yaml
        }
    }
}

/// The outcome of compiling one source: the bundle when there was no error, and every diagnostic.
#[derive(Debug)]
pub struct Compiled {
    pub bundle: Option<ir::Bundle>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// Compiles one source file of any form.
pub fn compile(file: &SourceFile) -> Compiled {
    compile_as(file, SourceKind::detect(&file.name, &file.text))
}

/// What `verdict check` reports on one source of a given form: every compile diagnostic, then,
/// when the bundle compiled without errors, the rule analysis' findings.
pub fn check_as(file: &SourceFile, kind: SourceKind) -> Vec<Diagnostic> {
    let compiled = compile_as(file, kind);
    let mut diagnostics = compiled.diagnostics;
    if let Some(bundle) = &compiled.bundle {
        diagnostics.extend(analysis::analyze(bundle));
    }
    diagnostics
}

/// Compiles one source file of a given form.
pub fn compile_as(file: &SourceFile, kind: SourceKind) -> Compiled {
    let mut diagnostics = Vec::new();
    let (tree, form) = match kind {
        SourceKind::Verdict => {
            let parsed = verdict_grammar::parse_file(&file.text);
            for e in &parsed.errors {
                diagnostics.push(Diagnostic::error(Code::Syntax, e.span, e.message.clone()));
            }
            (Some(dsl::file_to_tree(&parsed.tree, &mut diagnostics)), lower::Form::Dsl)
        }
        SourceKind::Yaml | SourceKind::Json => {
            let loaded =
                if kind == SourceKind::Json { yaml::load_json(&file.text) } else { yaml::load_yaml(&file.text) };
            match loaded {
                Ok(t) => (Some(t), lower::Form::Yaml),
                Err(d) => {
                    diagnostics.push(d);
                    (None, lower::Form::Yaml)
                }
            }
        }
    };
    let syntax_ok = !diagnostics.iter().any(|d| d.severity == Severity::Error);
    let bundle = tree.and_then(|t| lower::lower(&t, file, form, &mut diagnostics));
    Compiled { bundle: bundle.filter(|_| syntax_ok), diagnostics }
}
