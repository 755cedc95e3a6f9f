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
pub mod testfile;
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
        let t = source::strip_bom(text).0.trim_start();
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

/// Compiles one source file for use — to evaluate, to write an artifact, to serve: [`compile`]
/// plus what a bundle must pass before it decides anything, that no two rules of one priority
/// and different effects can hold together (V005, an error by LANGUAGE.md §3). `verdict check`
/// finds the same with the rest of the analysis; this runs only the ambiguity check, and only on
/// `match priority` policies that have such a level, so other bundles pay nothing for it.
pub fn compile_for_use(file: &SourceFile) -> Compiled {
    compile_for_use_as(file, SourceKind::detect(&file.name, &file.text))
}

/// [`compile_for_use`] of a source of a given form.
pub fn compile_for_use_as(file: &SourceFile, kind: SourceKind) -> Compiled {
    let mut compiled = compile_as(file, kind);
    if let Some(b) = &compiled.bundle
        && may_be_ambiguous(b)
    {
        let options = analysis::Options { scope: analysis::Scope::Ambiguity, ..analysis::Options::default() };
        let found = analysis::analyze_with(b, &options).diagnostics;
        let ambiguous = found.iter().any(|d| d.code == Code::Ambiguity);
        compiled.diagnostics.extend(found.into_iter().filter(|d| d.code == Code::Ambiguity));
        if ambiguous {
            compiled.bundle = None;
        }
    }
    compiled
}

/// Whether some `match priority` policy has a priority level with rules of different effects.
fn may_be_ambiguous(b: &ir::Bundle) -> bool {
    b.policies.iter().filter(|p| p.match_mode == ir::MatchMode::Priority).any(|p| {
        let mut levels: std::collections::HashMap<i64, ir::EffectId> = std::collections::HashMap::new();
        p.rules.iter().any(|r| *levels.entry(r.priority).or_insert(r.effect) != r.effect)
    })
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
    compile_with(file, kind, &|| {})
}

/// [`compile_as`], calling `checkpoint` now and then (every few thousand tokens, YAML events or
/// rules): a caller that must be able to abandon a long compile (the language server, on an
/// edit) unwinds from it. Nothing is shared between compiles, so abandoning one leaves nothing
/// behind.
pub fn compile_with(file: &SourceFile, kind: SourceKind, checkpoint: &dyn Fn()) -> Compiled {
    // Refused before any parsing: the cost of what follows grows with the size.
    if let Some(d) = source::too_large(file.text.len()) {
        return Compiled { bundle: None, diagnostics: vec![d] };
    }
    let mut diagnostics = Vec::new();
    let (tree, form) = match kind {
        SourceKind::Verdict => {
            let parsed = verdict_grammar::parse::parse_file_with(&file.text, checkpoint);
            for e in &parsed.errors {
                diagnostics.push(Diagnostic::error(Code::Syntax, e.span, e.message.clone()));
            }
            (Some(dsl::file_to_tree(&parsed.tree, &mut diagnostics)), lower::Form::Dsl)
        }
        SourceKind::Yaml | SourceKind::Json => {
            let loaded = if kind == SourceKind::Json {
                yaml::load_json_with(&file.text, checkpoint)
            } else {
                yaml::load_yaml_with(&file.text, checkpoint)
            };
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
    let bundle = tree.and_then(|t| lower::lower_with(&t, file, form, &mut diagnostics, checkpoint));
    Compiled { bundle: bundle.filter(|_| syntax_ok), diagnostics }
}
