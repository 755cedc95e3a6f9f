//! Editor features as plain data over the database: hover, definition, references, the outline,
//! completion and formatting. Offsets and spans are bytes; [`crate::proto`] converts them to LSP.
//!
//! What the language itself names — built-in functions, state windows, time fields, atom words —
//! comes from `verdict_vocab`'s tables (names, signatures, descriptions), never from a list kept
//! here; what the bundle names (states, externs, `let`s, paths) comes from [`crate::symbols`].
//!
//! Every function answers "nothing" (`None`, an empty list) for offsets outside the text and for
//! documents that are not bundles.

use crate::db::{Db, SourceInput, bundle_kind, file_diagnostics};
use crate::symbols::{Owner, PathUse, Symbols, TermKind, TermUse, symbols};
use verdict_compiler::SourceKind;
use verdict_compiler::diagnostic::Diagnostic;
use verdict_compiler::ir::Type;
use verdict_grammar::ast::Span;
use verdict_vocab::{AtomForm, AtomOp, Func, NowField, Window};

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
    /// A state series (by index), at its declaration.
    State(usize),
    /// An extern (by index), at its declaration.
    Extern(usize),
    /// A term (by index into [`Symbols::terms`]): a state read, a call, a time field.
    Term(usize),
}

/// What a term names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A state series, by index.
    State(usize),
    /// An extern, by index.
    Extern(usize),
    /// A built-in function.
    Func(Func),
    /// A field of the evaluation time.
    Now,
    /// A call of a name that is neither a function nor a declared extern.
    Unknown,
}

/// What a term names, as the compiler resolves it: a built-in function before an extern of the
/// same name.
pub fn resolve(s: &Symbols, t: &TermUse) -> Resolved {
    match &t.kind {
        TermKind::State { state, .. } => s.state(state).map_or(Resolved::Unknown, Resolved::State),
        TermKind::Call { name, .. } => match (Func::from_name(name), s.extern_decl(name)) {
            (Some(f), _) => Resolved::Func(f),
            (None, Some(i)) => Resolved::Extern(i),
            (None, None) => Resolved::Unknown,
        },
        TermKind::Now { .. } => Resolved::Now,
    }
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
    // The narrowest term: a term inside a template string placed on the whole string (its
    // spelling could not be followed) must not hide one placed exactly.
    if let Some((i, t)) = s
        .terms
        .iter()
        .enumerate()
        .filter(|(_, t)| contains(t.span, offset))
        .min_by_key(|(_, t)| t.span.end - t.span.start)
    {
        return Some((Target::Term(i), t.span));
    }
    if let Some(u) = s.paths.iter().find(|u| contains(u.span, offset)) {
        return Some((Target::Path(u.segments.clone()), u.span));
    }
    if let Some(i) = s.lets.iter().position(|l| contains(l.name_span, offset)) {
        return s.lets.get(i).map(|l| (Target::Let(i), l.name_span));
    }
    if let Some(i) = s.states.iter().position(|x| contains(x.decl.name_span, offset)) {
        return s.states.get(i).map(|x| (Target::State(i), x.decl.name_span));
    }
    if let Some(i) = s.externs.iter().position(|x| contains(x.decl.name_span, offset)) {
        return s.externs.get(i).map(|x| (Target::Extern(i), x.decl.name_span));
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
        Target::State(i) => state_hover(s, i),
        Target::Extern(i) => extern_hover(s, i),
        Target::Term(i) => {
            let t = s.terms.get(i)?;
            match resolve(s, t) {
                Resolved::State(j) => {
                    let TermKind::State { state, window, called, duration } = &t.kind else { return None };
                    let shown = match (called, duration) {
                        (false, _) => format!("{state}.{window}"),
                        (true, Some(d)) => format!("{state}.{window}({})", verdict_grammar::lexer::quote(d)),
                        (true, None) => format!("{state}.{window}(…)"),
                    };
                    let what = match window_words(s, state, window, *called, duration.as_deref()) {
                        Ok(words) => format!(
                            "**state read**: the sum of what `{state}` recorded for the request's series over {words}; \
                             0 when nothing was"
                        ),
                        Err(problem) => problem,
                    };
                    format!("```verdict\n{shown}\n```\n{what}\n\n{}", state_hover(s, j))
                }
                Resolved::Extern(j) => {
                    let mut md = extern_hover(s, j);
                    let TermKind::Call { args, .. } = &t.kind else { return Some((md, span)) };
                    if let Some(x) = s.externs.get(j)
                        && x.params != *args
                    {
                        md.push_str(&format!(
                            "\n\n**this call has {args} argument{}**: `{}` takes {}",
                            plural(*args),
                            x.decl.name,
                            x.params
                        ));
                    }
                    md
                }
                Resolved::Func(f) => {
                    let info = f.info();
                    let mut md = format!("```verdict\n{}\n```\n**function** (built in): {}", info.signature, info.doc);
                    if let TermKind::Call { args, .. } = &t.kind
                        && *args != 1
                    {
                        md.push_str(&format!(
                            "\n\n**this call has {args} argument{}**: `{}` takes one",
                            plural(*args),
                            info.name
                        ));
                    }
                    md
                }
                Resolved::Now => {
                    let TermKind::Now { field } = &t.kind else { return None };
                    now_hover(s, field)
                }
                Resolved::Unknown => {
                    let TermKind::Call { name, .. } = &t.kind else { return None };
                    let functions: Vec<String> = Func::ALL.iter().map(|f| format!("`{}`", f.name())).collect();
                    format!(
                        "`{name}` is neither a function nor a declared extern: the functions are {}; host functions \
                         are declared with `extern`",
                        functions.join(", ")
                    )
                }
            }
        }
    };
    Some((md, span))
}

/// A window of a state series in words (`the calendar day containing now, …`), or what is wrong
/// with it, from `verdict_vocab`'s table of windows.
fn window_words(
    s: &Symbols,
    state: &str,
    window: &str,
    called: bool,
    duration: Option<&str>,
) -> Result<String, String> {
    let windows: Vec<String> = Window::ALL
        .iter()
        .map(|w| if w.info().takes_duration { format!("`{}(\"…\")`", w.name()) } else { format!("`{}`", w.name()) })
        .collect();
    let Some(w) = Window::from_name(window) else {
        return Err(format!(
            "`{state}.{window}` is not a state read: the windows of `{state}` are {}; `input.{state}` reaches a request path",
            windows.join(", ")
        ));
    };
    let info = w.info();
    if info.takes_duration != called {
        return Err(if called {
            format!("`{state}.{window}` takes no argument")
        } else {
            format!("`{state}.{window}` needs a duration: `{state}.{window}(\"90m\")`")
        });
    }
    if info.takes_duration {
        let max = u64::from(verdict_runtime::program::MAX_WINDOW_SECONDS);
        let seconds = duration.and_then(verdict_compiler::emit::parse_duration).filter(|s| (1..=max).contains(s));
        let (Some(d), Some(seconds)) = (duration, seconds) else {
            return Err(format!(
                "`{state}.{window}` needs a duration from {}: `Ns`, `Nm`, `Nh` or `Nd`, e.g. `\"90m\"`",
                verdict_compiler::emit::window_range_text()
            ));
        };
        let (n, unit) = d.split_at(d.len().saturating_sub(1));
        let unit = match unit {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            _ => "day",
        };
        let n = n.trim_start_matches('0');
        let n = if n.is_empty() { "0" } else { n };
        return Ok(format!(
            "the last {n} {unit}{} (a sliding window: the updates with time in (now − {seconds} s, now], exact to the second)",
            if n == "1" { "" } else { "s" }
        ));
    }
    if info.calendar {
        let week = if w == Window::Week { " (weeks start on Monday 00:00)" } else { "" };
        return Ok(format!("the calendar {} containing now, in {}{week}", info.name, timezone(s)));
    }
    Ok("all time".into())
}

/// The bundle's timezone in words.
fn timezone(s: &Symbols) -> String {
    match &s.timezone {
        Some(tz) => format!("the bundle's timezone `{tz}`"),
        None => "the bundle's timezone `UTC` (the default)".into(),
    }
}

/// A state series: its declaration's members, with the defaults of those it leaves out, and
/// where it is read.
fn state_hover(s: &Symbols, i: usize) -> String {
    let Some(x) = s.states.get(i) else { return String::new() };
    let name = &x.decl.name;
    let mut md = format!("**state** `{name}`");
    match x.member("add") {
        Some(add) => md.push_str(&format!("\n- add: `{add}`: what one decision adds")),
        None => md.push_str("\n- add: missing (required)"),
    }
    match x.member("key") {
        Some(key) => md.push_str(&format!("\n- key: `{key}`: the request's values there select its series")),
        None => md.push_str("\n- key: `[]` (the default): one series"),
    }
    match x.member("on") {
        Some(on) => md.push_str(&format!("\n- on: `{on}`: the decisions that update it")),
        None => {
            let least = s.effects.last().map_or("allow", |e| e.0.as_str());
            md.push_str(&format!("\n- on: `[{least}]` (the default: the least severe effect)"));
        }
    }
    let ttl = s.hold_ttl.as_deref().map_or_else(
        || {
            let default = verdict_compiler::emit::duration_text(verdict_runtime::program::DEFAULT_HOLD_TTL);
            format!("`{default}` (the default)")
        },
        |t| format!("`{t}`"),
    );
    let commit = format!(
        "a hold: it counts in reads at once, becomes permanent when the caller commits the decision, \
         and is dropped when the caller releases it or after `hold_ttl` {ttl}"
    );
    match x.member("apply") {
        Some("decision") => md.push_str("\n- apply: `decision`: recorded at once"),
        Some("commit") => md.push_str(&format!("\n- apply: `commit`: {commit}")),
        Some(other) => md.push_str(&format!("\n- apply: `{other}`: must be `commit` or `decision`")),
        None => md.push_str(&format!("\n- apply: `commit` (the default): {commit}")),
    }
    for (k, v) in &x.members {
        if !matches!(k.as_str(), "add" | "key" | "on" | "apply") {
            md.push_str(&format!("\n- {k}: `{v}`: not a member of a state (`add`, `key`, `on`, `apply`)"));
        }
    }
    let reads: Vec<&TermUse> = s.terms.iter().filter(|t| resolve(s, t) == Resolved::State(i)).collect();
    md.push_str(&format!("\n\nread {} time{}", reads.len(), plural(reads.len())));
    md.push_str(&owners(s, reads.iter().map(|t| t.owner)));
    md
}

/// An extern: its signature, how a failing call decides, and where it is called.
fn extern_hover(s: &Symbols, i: usize) -> String {
    let Some(x) = s.externs.get(i) else { return String::new() };
    let calls: Vec<&TermUse> = s.terms.iter().filter(|t| resolve(s, t) == Resolved::Extern(i)).collect();
    let mut md = format!(
        "```verdict\nextern {}\n```\n**extern**: a host function the embedding program binds. An unbound extern, a \
         call that raises, a result that is not `{}` or an undefined argument fails closed: the policy decides `{}`, \
         its most severe effect, and names the rule.",
        x.signature,
        x.returns,
        most_severe(s)
    );
    if let Some(f) = Func::from_name(&x.decl.name) {
        md.push_str(&format!("\n\n**shadowed**: calls of `{}` call the built-in function", f.name()));
    }
    md.push_str(&format!("\n\ncalled {} time{}", calls.len(), plural(calls.len())));
    md.push_str(&owners(s, calls.iter().map(|t| t.owner)));
    md
}

/// A field of the evaluation time, from `verdict_vocab`'s table.
fn now_hover(s: &Symbols, field: &str) -> String {
    let Some(f) = NowField::from_name(field) else {
        let fields: Vec<String> = NowField::ALL.iter().map(|f| format!("`now.{}`", f.name())).collect();
        return format!(
            "`now.{field}` is not a time field: the time fields are {}; `input.now` reaches a request path",
            fields.join(", ")
        );
    };
    let zone = if f == NowField::Epoch { String::new() } else { format!(", in {}", timezone(s)) };
    format!("```verdict\nnow.{}\n```\n**time field** of the evaluation time: {}{zone}", f.name(), f.info().doc)
}

/// The rules and `let`s of some uses, each once, as a Markdown list (ten at most).
fn owners(s: &Symbols, uses: impl Iterator<Item = Owner>) -> String {
    let mut names: Vec<String> = Vec::new();
    for owner in uses {
        let o = match owner {
            Owner::Rule(p, r) => s.rule(p, r).map(|(p, r)| format!("`{}` / `{}`", p.decl.name, r.decl.name)),
            Owner::Let(i) => s.lets.get(i).map(|l| format!("`let {}`", l.name)),
            Owner::None => None,
        };
        if let Some(o) = o
            && !names.contains(&o)
        {
            names.push(o);
        }
    }
    let mut md = String::new();
    for o in names.iter().take(10) {
        md.push_str(&format!("\n- {o}"));
    }
    if names.len() > 10 {
        md.push_str(&format!("\n- … and {} more", names.len() - 10));
    }
    md
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
    md.push_str(&owners(s, uses.iter().map(|u| u.owner)));
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
        Target::State(_) | Target::Extern(_) | Target::Term(_) => match declared(s, &target) {
            Some(Resolved::State(i)) => s.states.get(i).map(|x| x.decl.name_span).into_iter().collect(),
            Some(Resolved::Extern(i)) => s.externs.get(i).map(|x| x.decl.name_span).into_iter().collect(),
            // Built in: declared nowhere in the document.
            _ => Vec::new(),
        },
    }
}

/// What a state, extern or term target names.
fn declared(s: &Symbols, target: &Target) -> Option<Resolved> {
    match target {
        Target::State(i) => Some(Resolved::State(*i)),
        Target::Extern(i) => Some(Resolved::Extern(*i)),
        Target::Term(i) => s.terms.get(*i).map(|t| resolve(s, t)),
        _ => None,
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
        Target::State(_) | Target::Extern(_) | Target::Term(_) => {
            let Some(what) = declared(s, &target) else { return Vec::new() };
            match what {
                Resolved::State(i) => decls.extend(s.states.get(i).map(|x| x.decl.name_span)),
                Resolved::Extern(i) => decls.extend(s.externs.get(i).map(|x| x.decl.name_span)),
                Resolved::Func(_) | Resolved::Now | Resolved::Unknown => {}
            }
            // The same field of `now`, the same unknown callee, or whatever resolves the same.
            let kind = match &target {
                Target::Term(i) => s.terms.get(*i).map(|t| &t.kind),
                _ => None,
            };
            let same = |t: &TermUse| match (what, kind, &t.kind) {
                (Resolved::Now, Some(k), _) => t.kind == *k,
                (Resolved::Unknown, Some(TermKind::Call { name, .. }), TermKind::Call { name: other, .. }) => {
                    name == other
                }
                _ => resolve(s, t) == what,
            };
            // A time field whole (`now.hour`); otherwise the name that resolves.
            let at = |t: &TermUse| if what == Resolved::Now { t.span } else { t.name_span };
            uses.extend(s.terms.iter().filter(|t| same(t)).map(at));
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
    State,
    Extern,
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

/// The document's symbols: the bundle, holding its `let`s, states, externs and policies, each
/// policy holding its rules.
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
    for x in &s.states {
        items.push(OutlineNode {
            name: x.decl.name.clone(),
            detail: Some("state".into()),
            kind: OutlineKind::State,
            span: x.decl.span.cover(x.decl.name_span),
            selection: x.decl.name_span,
            children: Vec::new(),
        });
    }
    for x in &s.externs {
        items.push(OutlineNode {
            name: x.decl.name.clone(),
            detail: Some(format!("extern {}", x.signature)),
            kind: OutlineKind::Extern,
            span: x.decl.span.cover(x.decl.name_span),
            selection: x.decl.name_span,
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
    State,
    Extern,
    Function,
    /// A window of a state series (`day`, `last("…")`).
    Window,
    /// A field of `now`.
    TimeField,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub label: String,
    pub kind: CompletionKind,
    pub detail: Option<String>,
    /// The text to insert, when it is not the label (`last("1h")` for `last("…")`).
    pub insert: Option<String>,
}

const TOP: &[&str] = &["bundle", "let", "state", "extern", "policy"];
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
    "required",
    "timezone",
    "hold_ttl",
];
const POLICY: &[&str] = &["rule", "description", "default", "match", "card_derived", "none", "first", "priority"];
const RULE: &[&str] = &["when", "reason", "codes", "obligations", "priority", "tags"];
const STATE: &[&str] = &["add", "key", "on", "apply", "commit", "decision"];

/// The words of conditions: the connectives, the atoms written as words (from `verdict_vocab`),
/// the literals, `input` and `now`.
fn condition_words() -> Vec<&'static str> {
    let mut words = vec!["and", "or", "not"];
    words.extend(
        AtomOp::ALL
            .iter()
            .filter(|op| matches!(op.info().form, AtomForm::Word | AtomForm::Presence))
            .map(|op| op.name())
            // `not in` is `not` then `in`.
            .filter(|name| !name.contains(' ')),
    );
    words.extend(["true", "false", "null", "input", verdict_vocab::NOW]);
    words
}

fn item(label: impl Into<String>, kind: CompletionKind, detail: Option<String>) -> Completion {
    Completion { label: label.into(), kind, detail, insert: None }
}

/// Completions at `offset`: after `STATE.`, the windows; after `now.`, the time fields; after
/// `a.b.`, the known continuations of the path; elsewhere the keywords of the enclosing block, the
/// declared effects, and what a condition may name (`let`s, states, externs, functions, paths).
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
        // `spend.|`: the windows of a state; `now.|`: the time fields (they resolve before paths).
        if s.state(parent).is_some() {
            return Window::ALL
                .iter()
                .map(|w| {
                    let info = w.info();
                    if info.takes_duration {
                        Completion {
                            label: format!("{}(\"…\")", info.name),
                            kind: CompletionKind::Window,
                            detail: Some(format!(
                                "a sliding window: `Ns`, `Nm`, `Nh` or `Nd`, {}",
                                verdict_compiler::emit::window_range_text()
                            )),
                            insert: Some(format!("{}(\"1h\")", info.name)),
                        }
                    } else if info.calendar {
                        let detail = format!("the calendar {} containing now", info.name);
                        item(info.name, CompletionKind::Window, Some(detail))
                    } else {
                        item(info.name, CompletionKind::Window, Some("all time".into()))
                    }
                })
                .collect();
        }
        if parent == verdict_vocab::NOW {
            return NowField::ALL
                .iter()
                .map(|f| item(f.name(), CompletionKind::TimeField, Some(f.info().doc.to_owned())))
                .collect();
        }
        // `subject.ro|`: the segments that follow `subject` in known paths.
        let parent: Vec<&str> = parent.split('.').collect();
        let mut out: Vec<Completion> = Vec::new();
        for p in &paths {
            if p.len() > parent.len() && p.iter().zip(&parent).all(|(a, b)| a == b) {
                let Some(next) = p.get(parent.len()) else { continue };
                if !out.iter().any(|c| &c.label == next) {
                    let full: Vec<&str> = p.iter().take(parent.len() + 1).map(String::as_str).collect();
                    out.push(item(next.clone(), CompletionKind::Path, type_detail(s, &full)));
                }
            }
        }
        return out;
    }
    let mut out: Vec<Completion> = Vec::new();
    let keywords = |words: &[&str], out: &mut Vec<Completion>| {
        out.extend(words.iter().map(|w| item(*w, CompletionKind::Keyword, None)));
    };
    let effects = |out: &mut Vec<Completion>| {
        out.extend(s.effects.iter().map(|(e, _)| item(e.clone(), CompletionKind::Effect, Some("effect".into()))));
    };
    let conditions = |out: &mut Vec<Completion>| {
        out.extend(s.lets.iter().map(|l| item(l.name.clone(), CompletionKind::Let, Some("let".into()))));
        out.extend(s.states.iter().map(|x| item(x.decl.name.clone(), CompletionKind::State, Some("state".into()))));
        out.extend(
            s.externs
                .iter()
                .map(|x| item(x.decl.name.clone(), CompletionKind::Extern, Some(format!("extern {}", x.signature)))),
        );
        out.extend(
            Func::ALL.iter().map(|f| item(f.name(), CompletionKind::Function, Some(f.info().signature.to_owned()))),
        );
        for p in &paths {
            let label = verdict_grammar::printer::path_of(p.iter().map(String::as_str));
            let segs: Vec<&str> = p.iter().map(String::as_str).collect();
            out.push(item(label, CompletionKind::Path, type_detail(s, &segs)));
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
    // A `let` being written has no body yet, and no item: its line says what it is.
    let line = before.rsplit('\n').next().unwrap_or("").trim_start();
    let in_let = s.lets.iter().any(|l| contains(l.span, offset) && offset > l.name_span.end)
        || line.starts_with("let ") && line.contains('=');
    let in_state = s.states.iter().any(|x| contains(x.decl.span, offset) && offset > x.decl.name_span.end);
    if in_rule {
        keywords(RULE, &mut out);
        keywords(&condition_words(), &mut out);
        effects(&mut out);
        conditions(&mut out);
    } else if in_policy {
        keywords(POLICY, &mut out);
        effects(&mut out);
    } else if in_bundle {
        keywords(BUNDLE, &mut out);
        keywords(&["overrides", "first"], &mut out);
    } else if in_let {
        keywords(&condition_words(), &mut out);
        conditions(&mut out);
    } else if in_state {
        keywords(STATE, &mut out);
        effects(&mut out);
        conditions(&mut out);
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
