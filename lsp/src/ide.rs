//! Editor features as plain data over the database: hover, definition, references, the outline,
//! completion and formatting. Offsets and spans are bytes; [`crate::proto`] converts them to LSP.
//!
//! Every function answers "nothing" (`None`, an empty list) for offsets outside the text and for
//! documents that are not bundles.

use crate::db::{Db, SourceInput, bundle_kind, file_diagnostics};
use crate::symbols::{Owner, PathUse, Symbols, symbols};
use verdict_compiler::SourceKind;
use verdict_compiler::diagnostic::Diagnostic;
use verdict_compiler::ir::Type;
use verdict_grammar::ast::Span;

/// What is under the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A `let` (by index), at its declaration or at a use.
    Let(usize),
    /// A bare name used as a condition that names no `let`.
    UnknownName(String),
    Policy(usize),
    Rule(usize, usize),
    Effect(String),
    Path(Vec<String>),
}

fn contains(span: Span, offset: u32) -> bool {
    span.start <= offset && offset <= span.end && span != Span::default()
}

/// The symbol at `offset` and the span of the word it was found at.
pub fn target_at(s: &Symbols, offset: u32) -> Option<(Target, Span)> {
    if let Some((name, span, _)) = s.refs.iter().find(|r| contains(r.1, offset)) {
        return Some(match s.lets.iter().position(|l| &l.name == name) {
            Some(i) => (Target::Let(i), *span),
            None => (Target::UnknownName(name.clone()), *span),
        });
    }
    if let Some(u) = s.paths.iter().find(|u| contains(u.span, offset)) {
        return Some((Target::Path(u.segments.clone()), u.span));
    }
    if let Some(i) = s.lets.iter().position(|l| contains(l.name_span, offset)) {
        return s.lets.get(i).map(|l| (Target::Let(i), l.name_span));
    }
    for (pi, p) in s.policies.iter().enumerate() {
        if contains(p.decl.name_span, offset) {
            return Some((Target::Policy(pi), p.decl.name_span));
        }
        if let Some((d, span)) = &p.default
            && contains(*span, offset)
        {
            return Some((Target::Effect(d.clone()), *span));
        }
        for (ri, r) in p.rules.iter().enumerate() {
            if contains(r.decl.name_span, offset) {
                return Some((Target::Rule(pi, ri), r.decl.name_span));
            }
            if contains(r.effect_span, offset) {
                return Some((Target::Effect(r.effect.clone()), r.effect_span));
            }
        }
    }
    if let Some((e, span)) = s.effects.iter().find(|(_, span)| contains(*span, offset)) {
        return Some((Target::Effect(e.clone()), *span));
    }
    if let Some(entry) = s.schema.iter().flatten().find(|e| contains(e.span, offset)) {
        return Some((Target::Path(entry.segments.clone()), entry.span));
    }
    None
}

fn offset_ok(db: &dyn Db, file: SourceInput, offset: u32) -> bool {
    bundle_kind(db, file).is_some() && (offset as usize) <= file.text(db).len()
}

// ---- hover -------------------------------------------------------------------------------------

/// Hover text (Markdown) and the span it is about.
pub fn hover(db: &dyn Db, file: SourceInput, offset: u32) -> Option<(String, Span)> {
    if !offset_ok(db, file, offset) {
        return None;
    }
    let s = symbols(db, file);
    let (target, span) = target_at(s, offset)?;
    let text = file.text(db);
    let md = match target {
        Target::Let(i) => {
            let l = s.lets.get(i)?;
            let body = s.let_bodies.get(i).and_then(|b| text.get(b.range())).unwrap_or("…");
            let uses = s.refs.iter().filter(|r| r.0 == l.name).count();
            let mut md = format!("```verdict\nlet {} = {}\n```\n", l.name, one_line(body));
            md.push_str(&format!("\n`let` definition, used {} time{}", uses, plural(uses)));
            md
        }
        Target::UnknownName(name) => {
            format!("`{name}` names no `let`: a bare name used as a condition must be a definition")
        }
        Target::Policy(pi) => {
            let p = s.policies.get(pi)?;
            let default = p
                .default
                .as_ref()
                .map_or_else(|| format!("`{}` (the most severe)", most_severe(s)), |d| format!("`{}`", d.0));
            format!(
                "**policy** `{}`\n\n- default: {default}\n- match: `{}`\n- rules: {}",
                p.decl.name,
                p.match_mode.as_deref().unwrap_or("first"),
                p.rules.len()
            )
        }
        Target::Rule(pi, ri) => {
            let (p, r) = s.rule(pi, ri)?;
            let mut md = format!(
                "**rule** `{}` → effect `{}`\n\nin policy `{}` (match `{}`), rule {} of {}",
                r.decl.name,
                r.effect,
                p.decl.name,
                p.match_mode.as_deref().unwrap_or("first"),
                ri + 1,
                p.rules.len()
            );
            if let Some(reason) = &r.reason {
                md.push_str(&format!("\n\nreason: {reason}"));
            }
            let findings: Vec<&Diagnostic> = file_diagnostics(db, file)
                .iter()
                .filter(|d| d.rule.as_deref() == Some(&r.decl.name) && d.policy.as_deref() == Some(&p.decl.name))
                .filter(|d| d.code.as_str() < "V100")
                .collect();
            let never = findings.iter().any(|d| matches!(d.code.as_str(), "V001" | "V002"));
            md.push_str(if never {
                "\n\nreachability: **it never decides** (proved by the rule analysis)"
            } else {
                "\n\nreachability: the rule analysis found nothing against it"
            });
            if !findings.is_empty() {
                md.push_str("\n\nfindings:");
                for d in findings {
                    md.push_str(&format!("\n- {} {}", d.code.as_str(), d.message));
                }
            }
            md
        }
        Target::Effect(e) => match s.effects.iter().position(|(x, _)| *x == e) {
            Some(i) => format!(
                "**effect** `{e}`: {} of {} by severity (most severe first){}",
                i + 1,
                s.effects.len(),
                if s.effects_declared { "" } else { "; the default effects" }
            ),
            None => format!("`{e}` is not one of the bundle's effects"),
        },
        Target::Path(segments) => path_hover(s, &segments),
    };
    Some((md, span))
}

fn path_hover(s: &Symbols, segments: &[String]) -> String {
    let shown = verdict_grammar::printer::path_of(segments.iter().map(String::as_str));
    let mut md = format!("**path** `{shown}`");
    match &s.schema {
        None => md.push_str("\n\ntype: unchecked (the bundle declares no `schema`)"),
        Some(schema) => match path_type(schema, segments) {
            Some(ty) => md.push_str(&format!("\n\ntype: `{}` (from the schema)", ty.name())),
            None => md.push_str("\n\ntype: unknown: not declared in the schema (V007)"),
        },
    }
    let uses: Vec<&PathUse> = s.paths.iter().filter(|u| u.segments == segments).collect();
    md.push_str(&format!("\n\nused {} time{}", uses.len(), plural(uses.len())));
    let mut owners: Vec<String> = Vec::new();
    for u in uses {
        let o = match u.owner {
            Owner::Rule(p, r) => s.rule(p, r).map(|(p, r)| format!("`{}` / `{}`", p.decl.name, r.decl.name)),
            Owner::Let(i) => s.lets.get(i).map(|l| format!("`let {}`", l.name)),
            Owner::None => None,
        };
        if let Some(o) = o
            && !owners.contains(&o)
        {
            owners.push(o);
        }
    }
    for o in owners.iter().take(10) {
        md.push_str(&format!("\n- {o}"));
    }
    if owners.len() > 10 {
        md.push_str(&format!("\n- … and {} more", owners.len() - 10));
    }
    md
}

/// The declared type of a path: exact, an object above declared paths, or reached through
/// `list<T>` indices and `object`/`any` (what the lowering checks against).
pub fn path_type(schema: &[crate::symbols::SchemaSym], segments: &[String]) -> Option<Type> {
    let mut best = None;
    for entry in schema {
        let declared = entry.segments.as_slice();
        let Some(ty) = verdict_compiler::lower::parse_type(&entry.ty) else { continue };
        if declared == segments {
            return Some(ty);
        }
        if declared.len() > segments.len() && declared.get(..segments.len()) == Some(segments) {
            best = Some(Type::Object);
        } else if declared.len() < segments.len() && segments.get(..declared.len()) == Some(declared) {
            let mut ty = Some(ty);
            for seg in segments.iter().skip(declared.len()) {
                ty = match ty {
                    Some(Type::Any | Type::Object) => Some(Type::Any),
                    Some(Type::List(inner)) if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) => {
                        Some(*inner)
                    }
                    _ => None,
                };
            }
            if ty.is_some() {
                best = ty;
            }
        }
    }
    best
}

fn most_severe(s: &Symbols) -> &str {
    s.effects.first().map_or("deny", |e| e.0.as_str())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---- definition and references -----------------------------------------------------------------

/// Where the symbol at `offset` is declared.
pub fn definition(db: &dyn Db, file: SourceInput, offset: u32) -> Vec<Span> {
    if !offset_ok(db, file, offset) {
        return Vec::new();
    }
    let s = symbols(db, file);
    let Some((target, _)) = target_at(s, offset) else { return Vec::new() };
    match target {
        Target::Let(i) => s.lets.get(i).map(|l| l.name_span).into_iter().collect(),
        Target::UnknownName(_) => Vec::new(),
        Target::Policy(pi) => {
            let name = s.policies.get(pi).map(|p| &p.decl.name);
            s.policies.iter().find(|p| Some(&p.decl.name) == name).map(|p| p.decl.name_span).into_iter().collect()
        }
        Target::Rule(pi, ri) => {
            // A rule id is declared once per policy; the first declaration wins for duplicates.
            let Some((p, r)) = s.rule(pi, ri) else { return Vec::new() };
            p.rules.iter().find(|x| x.decl.name == r.decl.name).map(|x| x.decl.name_span).into_iter().collect()
        }
        Target::Effect(e) => {
            s.effects.iter().filter(|(x, span)| *x == e && *span != Span::default()).map(|(_, span)| *span).collect()
        }
        Target::Path(segments) => {
            s.schema.iter().flatten().filter(|d| d.segments == segments).map(|d| d.span).collect()
        }
    }
}

/// Every occurrence of the symbol at `offset`: uses, and declarations when asked.
pub fn references(db: &dyn Db, file: SourceInput, offset: u32, include_declaration: bool) -> Vec<Span> {
    if !offset_ok(db, file, offset) {
        return Vec::new();
    }
    let s = symbols(db, file);
    let Some((target, _)) = target_at(s, offset) else { return Vec::new() };
    let mut decls: Vec<Span> = Vec::new();
    let mut uses: Vec<Span> = Vec::new();
    match target {
        Target::Let(i) => {
            let Some(l) = s.lets.get(i) else { return Vec::new() };
            decls.push(l.name_span);
            uses.extend(s.refs.iter().filter(|r| r.0 == l.name).map(|r| r.1));
        }
        Target::UnknownName(name) => uses.extend(s.refs.iter().filter(|r| r.0 == name).map(|r| r.1)),
        Target::Policy(pi) => {
            let name = s.policies.get(pi).map(|p| p.decl.name.clone()).unwrap_or_default();
            decls.extend(s.policies.iter().filter(|p| p.decl.name == name).map(|p| p.decl.name_span));
        }
        Target::Rule(pi, ri) => {
            let name = s.rule(pi, ri).map(|(_, r)| r.decl.name.clone()).unwrap_or_default();
            for p in &s.policies {
                decls.extend(p.rules.iter().filter(|r| r.decl.name == name).map(|r| r.decl.name_span));
            }
        }
        Target::Effect(e) => {
            decls.extend(
                s.effects.iter().filter(|(x, span)| *x == e && *span != Span::default()).map(|(_, span)| *span),
            );
            for p in &s.policies {
                uses.extend(p.default.iter().filter(|(d, _)| *d == e).map(|(_, span)| *span));
                uses.extend(p.rules.iter().filter(|r| r.effect == e).map(|r| r.effect_span));
            }
        }
        Target::Path(segments) => {
            decls.extend(s.schema.iter().flatten().filter(|d| d.segments == segments).map(|d| d.span));
            uses.extend(s.paths.iter().filter(|u| u.segments == segments).map(|u| u.span));
        }
    }
    if include_declaration {
        decls.extend(uses);
        decls.sort_by_key(|s| s.start);
        decls
    } else {
        uses.sort_by_key(|s| s.start);
        uses
    }
}

// ---- outline -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlineKind {
    Bundle,
    Let,
    Policy,
    Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineNode {
    pub name: String,
    pub detail: Option<String>,
    pub kind: OutlineKind,
    pub span: Span,
    pub selection: Span,
    pub children: Vec<OutlineNode>,
}

/// The document's symbols: the bundle, holding its `let`s and policies, each holding its rules.
pub fn outline(db: &dyn Db, file: SourceInput) -> Vec<OutlineNode> {
    if bundle_kind(db, file).is_none() {
        return Vec::new();
    }
    let s = symbols(db, file);
    let mut items: Vec<OutlineNode> = Vec::new();
    for l in &s.lets {
        items.push(OutlineNode {
            name: l.name.clone(),
            detail: Some("let".into()),
            kind: OutlineKind::Let,
            span: l.span,
            selection: l.name_span,
            children: Vec::new(),
        });
    }
    for p in &s.policies {
        let rules = p
            .rules
            .iter()
            .map(|r| OutlineNode {
                name: r.decl.name.clone(),
                detail: Some(r.effect.clone()),
                kind: OutlineKind::Rule,
                span: r.decl.span.cover(r.decl.name_span),
                selection: r.decl.name_span,
                children: Vec::new(),
            })
            .collect();
        items.push(OutlineNode {
            name: p.decl.name.clone(),
            detail: p.default.as_ref().map(|d| format!("default {}", d.0)),
            kind: OutlineKind::Policy,
            span: p.decl.span.cover(p.decl.name_span),
            selection: p.decl.name_span,
            children: rules,
        });
    }
    items.sort_by_key(|n| n.span.start);
    match &s.bundle {
        Some(b) => {
            let span = items.iter().fold(b.span.cover(b.name_span), |acc, n| acc.cover(n.span));
            vec![OutlineNode {
                name: b.name.clone(),
                detail: Some("bundle".into()),
                kind: OutlineKind::Bundle,
                span,
                selection: b.name_span,
                children: items,
            }]
        }
        None => items,
    }
}

// ---- completion --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionKind {
    Keyword,
    Effect,
    Path,
    Let,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub label: String,
    pub kind: CompletionKind,
    pub detail: Option<String>,
}

const TOP: &[&str] = &["bundle", "let", "policy"];
const BUNDLE: &[&str] = &[
    "version",
    "description",
    "source",
    "effects",
    "combine",
    "effective_from",
    "effective_until",
    "card_scope",
    "schema",
];
const POLICY: &[&str] = &["rule", "description", "default", "match", "card_derived", "none", "first", "priority"];
const RULE: &[&str] = &["when", "reason", "codes", "obligations", "priority", "tags"];
const CONDITION: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "contains",
    "matches",
    "starts_with",
    "ends_with",
    "exists",
    "missing",
    "true",
    "false",
    "null",
    "input",
];

/// Completions at `offset`: after `a.b.`, the known continuations of the path; elsewhere the
/// keywords of the enclosing block, the declared effects, `let` names and known paths.
pub fn completions(db: &dyn Db, file: SourceInput, offset: u32) -> Vec<Completion> {
    if !offset_ok(db, file, offset) {
        return Vec::new();
    }
    let s = symbols(db, file);
    let text = file.text(db);
    let before = text.get(..offset as usize).unwrap_or("");
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(before.len(), |(i, _)| i);
    let word = before.get(word_start..).unwrap_or("");
    let paths = s.known_paths();
    if let Some((parent, _)) = word.rsplit_once('.') {
        // `subject.ro|`: the segments that follow `subject` in known paths.
        let parent: Vec<&str> = parent.split('.').collect();
        let mut out: Vec<Completion> = Vec::new();
        for p in &paths {
            if p.len() > parent.len() && p.iter().zip(&parent).all(|(a, b)| a == b) {
                let Some(next) = p.get(parent.len()) else { continue };
                if !out.iter().any(|c| &c.label == next) {
                    let full: Vec<&str> = p.iter().take(parent.len() + 1).map(String::as_str).collect();
                    out.push(Completion {
                        label: next.clone(),
                        kind: CompletionKind::Path,
                        detail: type_detail(s, &full),
                    });
                }
            }
        }
        return out;
    }
    let mut out: Vec<Completion> = Vec::new();
    let keywords = |words: &[&str], out: &mut Vec<Completion>| {
        out.extend(words.iter().map(|w| Completion {
            label: (*w).to_owned(),
            kind: CompletionKind::Keyword,
            detail: None,
        }));
    };
    let effects = |out: &mut Vec<Completion>| {
        out.extend(s.effects.iter().map(|(e, _)| Completion {
            label: e.clone(),
            kind: CompletionKind::Effect,
            detail: Some("effect".into()),
        }));
    };
    let conditions = |out: &mut Vec<Completion>| {
        out.extend(s.lets.iter().map(|l| Completion {
            label: l.name.clone(),
            kind: CompletionKind::Let,
            detail: Some("let".into()),
        }));
        for p in &paths {
            let label = verdict_grammar::printer::path_of(p.iter().map(String::as_str));
            let segs: Vec<&str> = p.iter().map(String::as_str).collect();
            out.push(Completion { label, kind: CompletionKind::Path, detail: type_detail(s, &segs) });
        }
    };
    if bundle_kind(db, file) != Some(SourceKind::Verdict) {
        effects(&mut out);
        conditions(&mut out);
        return out;
    }
    let in_rule = s.policies.iter().flat_map(|p| &p.rules).any(|r| contains(r.decl.span, offset));
    let in_policy = s.policies.iter().any(|p| contains(p.decl.span, offset));
    let in_bundle = s.bundle.as_ref().is_some_and(|b| contains(b.span, offset) && offset > b.name_span.end);
    if in_rule {
        keywords(RULE, &mut out);
        keywords(CONDITION, &mut out);
        effects(&mut out);
        conditions(&mut out);
    } else if in_policy {
        keywords(POLICY, &mut out);
        effects(&mut out);
    } else if in_bundle {
        keywords(BUNDLE, &mut out);
        keywords(&["overrides", "first"], &mut out);
    } else {
        keywords(TOP, &mut out);
    }
    out
}

fn type_detail(s: &Symbols, segments: &[&str]) -> Option<String> {
    let owned: Vec<String> = segments.iter().map(|x| (*x).to_owned()).collect();
    let schema = s.schema.as_ref()?;
    path_type(schema, &owned).map(|t| t.name())
}

// ---- formatting --------------------------------------------------------------------------------

/// The canonical text of a `.verdict` document when it differs from the current text; `None` when
/// it is already formatted, cannot be formatted (syntax errors) or is not a `.verdict` file.
pub fn format(db: &dyn Db, file: SourceInput) -> Option<String> {
    if bundle_kind(db, file) != Some(SourceKind::Verdict) {
        return None;
    }
    let text = file.text(db);
    let formatted = verdict_compiler::format::format_verdict(text).ok()?;
    (formatted != *text).then_some(formatted)
}
