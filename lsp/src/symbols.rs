//! The symbol index of one document: the bundle, its effects and schema, `let`s, state series,
//! externs, policies and rules with their spans, and every use of a `let`, a path and a term that
//! names something (a state read, a call, a time field), in conditions, `state` blocks and reason
//! templates alike. Built from the `.verdict` syntax tree or from the YAML/JSON document tree;
//! hover, definition, references, document symbols and completion all read it.
//!
//! Names resolve as the compiler resolves them (LANGUAGE.md §5): in a term, `now` and a declared
//! state's name come before a request path's root, and `input.` forces a request path; a call is
//! a built-in function, an extern, or a sliding state window. What a call names is decided by
//! [`crate::ide`] from `verdict_vocab`'s table of functions and the declared externs.
//!
//! Expressions written inside strings (YAML/JSON `when`, `add` and `reason_template`, DSL
//! `f"…"` templates) are placed character by character through the string's quoting and escapes
//! ([`value_offsets`]); where the spelling cannot be followed (block scalars, folded lines), their
//! symbols cover the whole string.
//!
//! Both walks use explicit stacks: conditions nest without bound in hostile files.

use crate::db::{Db, SourceInput, bundle_kind, parse};
use std::collections::HashSet;
use verdict_compiler::SourceKind;
use verdict_compiler::tree::{Node, NodeKind};
use verdict_grammar::ast::{Expr, ExprKind, Item, Lit, LitKind, MAX_DEPTH, Path, Span};

/// A name with where it is written, and the extent of what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    /// The name as written (a quoted name includes its quotes).
    pub name_span: Span,
    /// The whole declaration.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySym {
    pub decl: Named,
    pub default: Option<(String, Span)>,
    pub match_mode: Option<String>,
    pub rules: Vec<RuleSym>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSym {
    pub decl: Named,
    pub effect: String,
    pub effect_span: Span,
    /// The condition's extent, when there is one.
    pub when: Option<Span>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSym {
    pub segments: Vec<String>,
    pub ty: String,
    /// The key as written.
    pub span: Span,
}

/// A `state NAME { … }` declaration (YAML: an entry of the `state:` map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSym {
    pub decl: Named,
    /// Each member (`add`, `key`, `on`, `apply`) with its value as written, on one line.
    pub members: Vec<(String, String)>,
}

impl StateSym {
    /// The value of a member as written.
    pub fn member(&self, key: &str) -> Option<&str> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// An `extern NAME(TYPE, …) -> TYPE` declaration (YAML: an entry of the `externs:` map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternSym {
    pub decl: Named,
    /// The signature as written (`no_pii(string) -> bool`).
    pub signature: String,
    pub params: usize,
    pub returns: String,
}

/// A term that names something other than a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermKind {
    /// `STATE.WINDOW` or `STATE.WINDOW(ARGS)` of a declared state (the window as written, which
    /// may be no window at all); `duration` is the one string argument of a call, if that is what
    /// it has.
    State { state: String, window: String, called: bool, duration: Option<String> },
    /// `NAME(…)`: a built-in function, an extern, or neither (the callee as written).
    Call { name: String, args: usize },
    /// `now.FIELD` (the field as written, which may be no field at all).
    Now { field: String },
}

/// A use of a term with where it is written and what it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermUse {
    pub kind: TermKind,
    /// What hovering finds: a state read or a time field whole (`spend.last("1h")`), a call's
    /// callee (its arguments have symbols of their own).
    pub span: Span,
    /// The name that resolves to a declaration: the state's name, the callee, `now`.
    pub name_span: Span,
    pub owner: Owner,
}

/// A use of a path in a condition, and which rule (policy index, rule index) or `let` it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    pub segments: Vec<String>,
    pub span: Span,
    pub owner: Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Rule(usize, usize),
    Let(usize),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Symbols {
    pub bundle: Option<Named>,
    /// Declared effects, most severe first, with the span of each (empty spans when the bundle
    /// uses the default `[deny, allow]`).
    pub effects: Vec<(String, Span)>,
    pub effects_declared: bool,
    pub schema: Option<Vec<SchemaSym>>,
    pub lets: Vec<Named>,
    /// Extent of each `let`'s body, in the order of `lets`.
    pub let_bodies: Vec<Span>,
    /// The bundle's `timezone` and `hold_ttl` settings, as written.
    pub timezone: Option<String>,
    pub hold_ttl: Option<String>,
    /// State series declarations (`state NAME { … }`).
    pub states: Vec<StateSym>,
    /// Extern declarations.
    pub externs: Vec<ExternSym>,
    pub policies: Vec<PolicySym>,
    /// Bare names used as conditions (`let` references), with the rule or `let` they are in.
    pub refs: Vec<(String, Span, Owner)>,
    pub paths: Vec<PathUse>,
    /// State reads, calls and time fields, in conditions, `add` terms and reason templates.
    pub terms: Vec<TermUse>,
}

impl Symbols {
    pub fn rule(&self, p: usize, r: usize) -> Option<(&PolicySym, &RuleSym)> {
        let policy = self.policies.get(p)?;
        Some((policy, policy.rules.get(r)?))
    }

    /// The first state series declared with this name.
    pub fn state(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|x| x.decl.name == name)
    }

    /// The first extern declared with this name.
    pub fn extern_decl(&self, name: &str) -> Option<usize> {
        self.externs.iter().position(|x| x.decl.name == name)
    }

    /// Every path the bundle knows: the schema's, then those used, without repeats.
    pub fn known_paths(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        let mut seen: std::collections::HashSet<&[String]> = std::collections::HashSet::new();
        let declared = self.schema.iter().flatten().map(|s| &s.segments);
        for p in declared.chain(self.paths.iter().map(|u| &u.segments)) {
            if seen.insert(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// The symbol index of a document (empty for documents that are not bundles).
#[salsa::tracked(returns(ref))]
pub fn symbols(db: &dyn Db, file: SourceInput) -> Symbols {
    match bundle_kind(db, file) {
        Some(SourceKind::Verdict) => dsl_symbols(&parse(db, file).0.tree.items, file.text(db)),
        Some(SourceKind::Yaml) => {
            verdict_compiler::yaml::load_yaml_with(file.text(db), &|| db.unwind_if_revision_cancelled())
                .map_or_else(|_| Symbols::default(), |n| tree_symbols(&n, file.text(db)))
        }
        Some(SourceKind::Json) => {
            verdict_compiler::yaml::load_json_with(file.text(db), &|| db.unwind_if_revision_cancelled())
                .map_or_else(|_| Symbols::default(), |n| tree_symbols(&n, file.text(db)))
        }
        None => Symbols::default(),
    }
}

// ---- `.verdict` ------------------------------------------------------------------------------

fn named(n: &verdict_grammar::ast::Name, span: Span) -> Named {
    Named { name: n.text.clone(), name_span: n.span, span }
}

/// The text of a name or type literal (`deny`, `"deny"`, `list<string>`). Type applications are
/// unwound with a loop, not recursion, and nest at most [`MAX_DEPTH`] deep (the compiler refuses
/// deeper ones).
fn lit_text(l: &Lit) -> Option<String> {
    let mut heads: Vec<&str> = Vec::new();
    let mut l = l;
    while let LitKind::Apply(f, a) = &l.kind {
        if heads.len() >= MAX_DEPTH {
            return None;
        }
        heads.push(&f.text);
        l = a;
    }
    let mut text = match &l.kind {
        LitKind::Ident(s) | LitKind::Str(s) => s.clone(),
        _ => return None,
    };
    for head in heads.into_iter().rev() {
        text = format!("{head}<{text}>");
    }
    Some(text)
}

/// A source text on one line, shortened past 200 characters (hovers show values as written).
fn as_written(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", joined.get(..cut).unwrap_or("")),
        None => joined,
    }
}

/// An expression to collect uses from: where it is, what owns it, and how to read it.
enum Source<'a> {
    /// A condition (bare names are `let` references) or, when `term`, a term (they are paths).
    Expr { e: &'a Expr, owner: Owner, term: bool },
    /// A reason template's text and the span of its literal (`f"…"`).
    Template { text: &'a str, span: Span, owner: Owner },
}

fn dsl_symbols(items: &[Item], text: &str) -> Symbols {
    let mut s = Symbols::default();
    let mut sources: Vec<Source<'_>> = Vec::new();
    for item in items {
        match item {
            Item::Bundle(b) => {
                if s.bundle.is_some() {
                    continue;
                }
                s.bundle = Some(named(&b.name, b.span));
                for p in &b.props {
                    match (p.key.text.as_str(), &p.value.kind) {
                        ("effects", LitKind::List(list)) => {
                            s.effects_declared = true;
                            s.effects = list.iter().filter_map(|l| Some((lit_text(l)?, l.span))).collect();
                        }
                        ("schema", LitKind::Object(entries)) => {
                            let mut schema = Vec::new();
                            for (k, v) in entries {
                                schema.push(SchemaSym {
                                    segments: verdict_runtime::request::split_field(&k.text),
                                    ty: lit_text(v).unwrap_or_default(),
                                    span: k.span,
                                });
                            }
                            s.schema = Some(schema);
                        }
                        ("timezone", _) => s.timezone = lit_text(&p.value),
                        ("hold_ttl", _) => s.hold_ttl = lit_text(&p.value),
                        _ => {}
                    }
                }
            }
            Item::Let(l) => {
                sources.push(Source::Expr { e: &l.expr, owner: Owner::Let(s.lets.len()), term: false });
                s.lets.push(named(&l.name, l.span));
                s.let_bodies.push(l.expr.span);
            }
            Item::State(st) => {
                // `add` is a term and `key` a list of paths: their names are paths.
                for (k, v) in &st.members {
                    if k.text == "add" || k.text == "key" {
                        sources.push(Source::Expr { e: v, owner: Owner::None, term: true });
                    }
                }
                let members = st
                    .members
                    .iter()
                    .map(|(k, v)| (k.text.clone(), as_written(text.get(v.span.range()).unwrap_or(""))))
                    .collect();
                s.states.push(StateSym { decl: named(&st.name, st.span), members });
            }
            Item::Extern(x) => {
                let params: Vec<String> = x.params.iter().filter_map(lit_text).collect();
                let returns = lit_text(&x.returns).unwrap_or_default();
                let signature = format!("{}({}) -> {returns}", x.name.text, params.join(", "));
                s.externs.push(ExternSym { decl: named(&x.name, x.span), signature, params: x.params.len(), returns });
            }
            Item::Policy(p) => {
                let pi = s.policies.len();
                let mut sym =
                    PolicySym { decl: named(&p.name, p.span), default: None, match_mode: None, rules: Vec::new() };
                for prop in &p.props {
                    match prop.key.text.as_str() {
                        "default" => sym.default = lit_text(&prop.value).map(|t| (t, prop.value.span)),
                        "match" => sym.match_mode = lit_text(&prop.value),
                        _ => {}
                    }
                }
                for (ri, r) in p.rules.iter().enumerate() {
                    let owner = Owner::Rule(pi, ri);
                    if let Some(w) = &r.when {
                        sources.push(Source::Expr { e: w, owner, term: false });
                    }
                    let mut reason = None;
                    for prop in r.props.iter().filter(|p| p.key.text == "reason") {
                        match &prop.value.kind {
                            LitKind::Str(t) => reason = Some(t.clone()),
                            LitKind::Template(t) => {
                                sources.push(Source::Template { text: t, span: prop.value.span, owner });
                                reason = Some(t.clone());
                            }
                            _ => {}
                        }
                    }
                    sym.rules.push(RuleSym {
                        decl: named(&r.name, r.span),
                        effect: r.effect.text.clone(),
                        effect_span: r.effect.span,
                        when: r.when.as_ref().map(|w| w.span),
                        reason,
                    });
                }
                s.policies.push(sym);
            }
            Item::Error(_) => {}
        }
    }
    if !s.effects_declared {
        s.effects = vec![("deny".into(), Span::default()), ("allow".into(), Span::default())];
    }
    // Every state is known before any use is resolved: a read may precede its declaration.
    let states: HashSet<String> = s.states.iter().map(|x| x.decl.name.clone()).collect();
    for source in sources {
        match source {
            Source::Expr { e, owner, term } => uses(e, owner, term, &|sp| sp, &states, &mut s),
            Source::Template { text: t, span, owner } => {
                template_uses(t, span, value_offsets(t, span, text).as_deref(), owner, &states, &mut s);
            }
        }
    }
    finish(&mut s);
    s
}

/// Sorts the uses by position.
fn finish(s: &mut Symbols) {
    s.paths.sort_by_key(|u| u.span.start);
    s.refs.sort_by_key(|r| r.1.start);
    s.terms.sort_by_key(|t| t.span.start);
}

/// The path uses, `let` references and terms of an expression, placed by `place`. In condition
/// position a bare name is a reference (to a `let`); in term position (operands, arguments) it is
/// a path, a state read or a time field (LANGUAGE.md §5.1, §5.2).
/// INVARIANT: an explicit stack, so hostile nesting cannot overflow the call stack.
fn uses(e: &Expr, owner: Owner, term: bool, place: &dyn Fn(Span) -> Span, states: &HashSet<String>, s: &mut Symbols) {
    let mut stack: Vec<(&Expr, bool)> = vec![(e, term)];
    while let Some((e, term)) = stack.pop() {
        match &e.kind {
            ExprKind::Or(v) | ExprKind::And(v) => stack.extend(v.iter().map(|c| (c, false))),
            ExprKind::Not(c) => stack.push((c, false)),
            ExprKind::Paren(c) => stack.push((c, term)),
            ExprKind::Neg(c) => stack.push((c, true)),
            ExprKind::Cmp { lhs, rhs, .. } | ExprKind::Arith { lhs, rhs, .. } => {
                stack.push((lhs, true));
                stack.push((rhs, true));
            }
            ExprKind::Call { callee, args } => {
                stack.extend(args.iter().map(|c| (c, true)));
                if let Some(t) = call_use(callee, args, e.span, owner, states) {
                    s.terms.push(TermUse { span: place(t.span), name_span: place(t.name_span), ..t });
                }
            }
            ExprKind::List(args) => stack.extend(args.iter().map(|c| (c, true))),
            ExprKind::Name(p) if term => match name_use(p, owner, states) {
                Some(t) => s.terms.push(TermUse { span: place(t.span), name_span: place(t.name_span), ..t }),
                None => {
                    let mut u = path_use(p, 0, owner);
                    u.span = place(p.span);
                    s.paths.push(u);
                }
            },
            ExprKind::Name(p) => s.refs.push((verdict_grammar::printer::path(p), place(p.span), owner)),
            ExprKind::Bool(_) | ExprKind::Lit(_) | ExprKind::Error => {}
        }
    }
}

/// A bare name in term position that is not a request path: `now.FIELD` or a read of a declared
/// state (as the compiler's `name_term` resolves them).
fn name_use(p: &Path, owner: Owner, states: &HashSet<String>) -> Option<TermUse> {
    let (root, rest) = p.segments.split_first()?;
    if p.input {
        return None;
    }
    let rest_text = || rest.iter().map(|x| x.text.as_str()).collect::<Vec<_>>().join(".");
    let kind = if root.text == verdict_vocab::NOW {
        TermKind::Now { field: rest_text() }
    } else if states.contains(&root.text) {
        TermKind::State { state: root.text.clone(), window: rest_text(), called: false, duration: None }
    } else {
        return None;
    };
    Some(TermUse { kind, span: p.span, name_span: root.span, owner })
}

/// A call: a state window with an argument (`spend.last("1h")`), or a function or extern by its
/// callee; `exists(…)`/`missing(…)` are atoms, not terms.
fn call_use(callee: &Path, args: &[Expr], span: Span, owner: Owner, states: &HashSet<String>) -> Option<TermUse> {
    let root = callee.segments.first()?;
    if !callee.input
        && let [state, window] = callee.segments.as_slice()
        && states.contains(&state.text)
    {
        let duration = match args {
            [Expr { kind: ExprKind::Lit(Lit { kind: LitKind::Str(d), .. }), .. }] => Some(d.clone()),
            _ => None,
        };
        let kind = TermKind::State { state: state.text.clone(), window: window.text.clone(), called: true, duration };
        return Some(TermUse { kind, span, name_span: root.span, owner });
    }
    if !callee.input && callee.segments.len() == 1 && verdict_vocab::AtomOp::from_presence(&root.text).is_some() {
        return None;
    }
    let name = verdict_grammar::printer::path(callee);
    Some(TermUse { kind: TermKind::Call { name, args: args.len() }, span: callee.span, name_span: callee.span, owner })
}

fn path_use(p: &Path, base: u32, owner: Owner) -> PathUse {
    PathUse { segments: p.segments.iter().map(|s| s.text.clone()).collect(), span: p.span.shift(base), owner }
}

/// The terms of a reason template (LANGUAGE.md §5.5), read as the compiler reads them: `{{` and
/// `}}` are braces, `{TERM}` and `{TERM:SPEC}` (the spec after the last `:`) hold a term. `offsets`
/// places the template's characters in the file ([`value_offsets`]); without it every symbol
/// covers the whole literal.
fn template_uses(
    t: &str,
    span: Span,
    offsets: Option<&[u32]>,
    owner: Owner,
    states: &HashSet<String>,
    s: &mut Symbols,
) {
    let mut i = 0;
    while let Some(c) = t.get(i..).and_then(|r| r.chars().next()) {
        let rest = t.get(i..).unwrap_or("");
        if rest.starts_with("{{") || rest.starts_with("}}") {
            i += 2;
            continue;
        }
        if c != '{' {
            i += c.len_utf8();
            continue;
        }
        let Some(close) = rest.find('}') else { return };
        let inner = rest.get(1..close).unwrap_or("");
        let expr_text = inner.rfind(':').map_or(inner, |colon| inner.get(..colon).unwrap_or(""));
        let base = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let parsed = verdict_grammar::parse_expr(expr_text);
        if let Some(e) = parsed.tree {
            uses(&e, owner, true, &|sp: Span| place_in(offsets, span, sp.shift(base)), states, s);
        }
        i += close + 1;
    }
}

/// Where each byte of a string's value is written in the file: entry `i` is the offset of the
/// spelling of the character that byte `i` belongs to, the last entry the end of the value. The
/// string at `span` is a DSL template (`f"…"`), a double-quoted string with backslash escapes
/// (DSL, YAML, JSON), a single-quoted YAML string (`''` for a quote) or a plain scalar written
/// as its value. `None` when the spelling does not decode to `value` character by character
/// (block scalars, folded lines, escapes this reading does not know): callers then place what
/// they find on the whole string.
pub fn value_offsets(value: &str, span: Span, text: &str) -> Option<Vec<u32>> {
    let raw = text.get(span.range())?;
    let mut out: Vec<u32> = Vec::with_capacity(value.len() + 1);
    let at = |pos: usize| span.start.saturating_add(u32::try_from(pos).unwrap_or(u32::MAX));
    let (quote, mut pos) = if raw.starts_with("f\"") {
        (Some('"'), 2)
    } else if raw.starts_with('"') {
        (Some('"'), 1)
    } else if raw.starts_with('\'') {
        (Some('\''), 1)
    } else {
        (None, 0)
    };
    for c in value.chars() {
        let rest = raw.get(pos..)?;
        let len = match quote {
            Some('"') if rest.starts_with('\\') => escape_len(rest, c)?,
            Some('\'') if c == '\'' => rest.starts_with("''").then_some(2)?,
            _ => rest.starts_with(c).then_some(c.len_utf8())?,
        };
        out.extend(std::iter::repeat_n(at(pos), c.len_utf8()));
        pos += len;
    }
    let tail = raw.get(pos..)?;
    // A plain scalar's span may run past its value (the loader's choice); a quoted one ends at
    // its closing quote.
    let closed = quote.is_none_or(|q| tail.len() == 1 && tail.starts_with(q));
    closed.then(|| {
        out.push(at(pos));
        out
    })
}

/// A span of a string's value moved to where it is written, or the whole string.
fn place_in(offsets: Option<&[u32]>, whole: Span, sp: Span) -> Span {
    match offsets.and_then(|o| Some((o.get(sp.start as usize)?, o.get(sp.end as usize)?))) {
        Some((&start, &end)) => Span { start, end },
        None => whole,
    }
}

/// The length of the backslash escape at the start of `rest` when it spells `c`.
fn escape_len(rest: &str, c: char) -> Option<usize> {
    let e = rest.get(1..)?.chars().next()?;
    let hex = |digits: &str| u32::from_str_radix(digits, 16).ok().and_then(char::from_u32);
    let (decoded, len) = match e {
        'n' => ('\n', 2),
        't' => ('\t', 2),
        'r' => ('\r', 2),
        '0' => ('\0', 2),
        'b' => ('\u{8}', 2),
        'f' => ('\u{c}', 2),
        '\\' | '"' | '\'' | '/' | ' ' => (e, 2),
        'x' => (hex(rest.get(2..4)?)?, 4),
        'U' => (hex(rest.get(2..10)?)?, 10),
        'u' if rest.get(2..3) == Some("{") => {
            let close = rest.get(3..)?.find('}')?;
            (hex(rest.get(3..3 + close)?)?, close + 4)
        }
        'u' => {
            let unit = u32::from_str_radix(rest.get(2..6)?, 16).ok()?;
            if (0xD800..0xDC00).contains(&unit) {
                // A JSON surrogate pair: `\uD83D\uDE00`.
                let low = u32::from_str_radix(rest.get(6..12)?.strip_prefix("\\u")?, 16).ok()?;
                let code = 0x10000 + ((unit - 0xD800) << 10) + low.checked_sub(0xDC00)?;
                (char::from_u32(code)?, 12)
            } else {
                (char::from_u32(unit)?, 6)
            }
        }
        _ => return None,
    };
    (decoded == c).then_some(len)
}

// ---- YAML and JSON ---------------------------------------------------------------------------

fn entry<'n>(n: &'n Node, key: &str) -> Option<&'n Node> {
    match &n.kind {
        NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
        _ => None,
    }
}

fn seq(n: Option<&Node>) -> &[Node] {
    match n.map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items,
        _ => &[],
    }
}

fn tree_named(n: &Node, what: &Node) -> Option<Named> {
    Some(Named { name: what.as_text()?.to_owned(), name_span: what.span, span: n.span })
}

/// A scalar or a list of scalars as one line (`amount`, `[subject.id]`); anything else as written.
fn render(n: &Node, text: &str) -> String {
    let scalar = |n: &Node| match &n.kind {
        NodeKind::Str(t) | NodeKind::Word(t) => Some(t.clone()),
        NodeKind::Seq(_) | NodeKind::Map(_) | NodeKind::Cond(_) => None,
        _ => text.get(n.span.range()).map(str::to_owned),
    };
    match &n.kind {
        NodeKind::Seq(items) => {
            let texts: Option<Vec<String>> = items.iter().map(scalar).collect();
            texts.map_or_else(|| as_written(text.get(n.span.range()).unwrap_or("")), |t| format!("[{}]", t.join(", ")))
        }
        _ => scalar(n).map_or_else(|| as_written(text.get(n.span.range()).unwrap_or("")), |t| as_written(&t)),
    }
}

fn tree_symbols(root: &Node, text: &str) -> Symbols {
    let mut s = Symbols::default();
    let mut conds: Vec<(&Node, Owner)> = Vec::new();
    // Expression strings in term position (`add`) and reason templates.
    let mut terms: Vec<&Node> = Vec::new();
    let mut templates: Vec<(&Node, Owner)> = Vec::new();
    if let Some(id) = entry(root, "bundle_id") {
        s.bundle = tree_named(root, id);
    }
    if let Some(effects) = entry(root, "effects") {
        s.effects_declared = true;
        s.effects = seq(Some(effects)).iter().filter_map(|e| Some((e.as_text()?.to_owned(), e.span))).collect();
    } else {
        s.effects = vec![("deny".into(), Span::default()), ("allow".into(), Span::default())];
    }
    s.timezone = entry(root, "timezone").map(|n| render(n, text));
    s.hold_ttl = entry(root, "hold_ttl").map(|n| render(n, text));
    if let Some(Node { kind: NodeKind::Map(entries), .. }) = entry(root, "schema") {
        s.schema = Some(
            entries
                .iter()
                .map(|(k, v)| SchemaSym {
                    segments: verdict_runtime::request::split_field(&k.text),
                    ty: v.as_text().unwrap_or_default().to_owned(),
                    span: k.span,
                })
                .collect(),
        );
    }
    if let Some(Node { kind: NodeKind::Map(entries), .. }) = entry(root, "definitions") {
        for (k, v) in entries {
            conds.push((v, Owner::Let(s.lets.len())));
            s.lets.push(Named { name: k.text.clone(), name_span: k.span, span: k.span.cover(v.span) });
            s.let_bodies.push(v.span);
        }
    }
    if let Some(Node { kind: NodeKind::Map(entries), .. }) = entry(root, "state") {
        for (k, v) in entries {
            let mut members = Vec::new();
            if let NodeKind::Map(fields) = &v.kind {
                for (f, value) in fields {
                    members.push((f.text.clone(), render(value, text)));
                }
            }
            if let Some(add) = entry(v, "add") {
                terms.push(add);
            }
            for key in seq(entry(v, "key")) {
                if let Some(f) = key.as_text() {
                    let segments = verdict_runtime::request::split_field(f);
                    s.paths.push(PathUse { segments, span: string_inner(key.span, text), owner: Owner::None });
                }
            }
            let decl = Named { name: k.text.clone(), name_span: k.span, span: k.span.cover(v.span) };
            s.states.push(StateSym { decl, members });
        }
    }
    if let Some(Node { kind: NodeKind::Map(entries), .. }) = entry(root, "externs") {
        for (k, v) in entries {
            let params: Vec<String> = seq(entry(v, "params")).iter().map(|p| render(p, text)).collect();
            let returns = entry(v, "returns").map(|r| render(r, text)).unwrap_or_default();
            let signature = format!("{}({}) -> {returns}", k.text, params.join(", "));
            let decl = Named { name: k.text.clone(), name_span: k.span, span: k.span.cover(v.span) };
            s.externs.push(ExternSym { decl, signature, params: params.len(), returns });
        }
    }
    for p in seq(entry(root, "policies")) {
        let Some(decl) = entry(p, "id").and_then(|id| tree_named(p, id)) else {
            continue;
        };
        let pi = s.policies.len();
        let mut sym = PolicySym {
            decl,
            default: entry(p, "default_effect").and_then(|d| Some((d.as_text()?.to_owned(), d.span))),
            match_mode: entry(p, "match").and_then(|m| m.as_text()).map(str::to_owned),
            rules: Vec::new(),
        };
        for r in seq(entry(p, "rules")) {
            let Some(decl) = entry(r, "id").and_then(|id| tree_named(r, id)) else {
                continue;
            };
            let owner = Owner::Rule(pi, sym.rules.len());
            let effect = entry(r, "effect");
            let when = entry(r, "when");
            if let Some(w) = when {
                conds.push((w, owner));
            }
            let template = entry(r, "reason_template");
            if let Some(t) = template {
                templates.push((t, owner));
            }
            sym.rules.push(RuleSym {
                decl,
                effect: effect.and_then(Node::as_text).unwrap_or_default().to_owned(),
                effect_span: effect.map_or(Span::default(), |e| e.span),
                when: when.map(|w| w.span),
                reason: entry(r, "description").or(template).and_then(Node::as_text).map(str::to_owned),
            });
        }
        s.policies.push(sym);
    }
    let states: HashSet<String> = s.states.iter().map(|x| x.decl.name.clone()).collect();
    for n in terms {
        if let NodeKind::Str(expr) = &n.kind {
            expr_string_uses(expr, n.span, text, Owner::None, true, &states, &mut s);
        }
    }
    for (n, owner) in templates {
        if let NodeKind::Str(t) = &n.kind {
            template_uses(t, n.span, value_offsets(t, n.span, text).as_deref(), owner, &states, &mut s);
        }
    }
    // INVARIANT: an explicit stack over matchers (the loader bounds the depth, but no recursion).
    while let Some((n, owner)) = conds.pop() {
        match &n.kind {
            NodeKind::Str(expr) => expr_string_uses(expr, n.span, text, owner, false, &states, &mut s),
            NodeKind::Map(_) => {
                if let Some(field) = entry(n, "field")
                    && let Some(f) = field.as_text()
                {
                    let segments = verdict_runtime::request::split_field(f);
                    s.paths.push(PathUse { segments, span: string_inner(field.span, text), owner });
                }
                if let Some(m) = entry(n, "matcher") {
                    conds.push((m, owner));
                }
                conds.extend(seq(entry(n, "matchers")).iter().map(|m| (m, owner)));
            }
            _ => {}
        }
    }
    finish(&mut s);
    s
}

/// The span of a scalar's text without its quotes.
fn string_inner(span: Span, text: &str) -> Span {
    let raw = text.get(span.range()).unwrap_or("");
    if raw.len() >= 2 && (raw.starts_with('"') && raw.ends_with('"') || raw.starts_with('\'') && raw.ends_with('\'')) {
        Span { start: span.start + 1, end: span.end - 1 }
    } else {
        span
    }
}

/// Paths, names and terms in an expression written as a string (a condition, or a term when
/// `term`), placed character by character ([`value_offsets`]), on the whole scalar otherwise.
fn expr_string_uses(
    expr: &str,
    span: Span,
    text: &str,
    owner: Owner,
    term: bool,
    states: &HashSet<String>,
    s: &mut Symbols,
) {
    let parsed = verdict_grammar::parse_expr(expr);
    let Some(e) = parsed.tree else { return };
    let offsets = value_offsets(expr, span, text);
    uses(&e, owner, term, &|sp: Span| place_in(offsets.as_deref(), span, sp), states, s);
}
