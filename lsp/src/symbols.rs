//! The symbol index of one document: the bundle, its effects and schema, `let`s, policies and
//! rules with their spans, and every use of a `let`, an effect and a path. Built from the `.verdict`
//! syntax tree or from the YAML/JSON document tree; hover, definition, references, document
//! symbols and completion all read it.
//!
//! Both walks use explicit stacks: conditions nest without bound in hostile files.

use crate::db::{Db, SourceInput, bundle_kind, parse};
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
    /// State series declarations (`state NAME { … }`).
    pub states: Vec<Named>,
    /// Extern declarations, each with its signature as written (`no_pii(string) -> bool`).
    pub externs: Vec<(Named, String)>,
    pub policies: Vec<PolicySym>,
    /// Bare names used as conditions (`let` references), with the rule or `let` they are in.
    pub refs: Vec<(String, Span, Owner)>,
    pub paths: Vec<PathUse>,
}

impl Symbols {
    pub fn rule(&self, p: usize, r: usize) -> Option<(&PolicySym, &RuleSym)> {
        let policy = self.policies.get(p)?;
        Some((policy, policy.rules.get(r)?))
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
        Some(SourceKind::Verdict) => dsl_symbols(&parse(db, file).0.tree.items),
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

fn dsl_symbols(items: &[Item]) -> Symbols {
    let mut s = Symbols::default();
    // Each expression with its owner and whether it is a term (its names are paths).
    let mut exprs: Vec<(&Expr, Owner, bool)> = Vec::new();
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
                        _ => {}
                    }
                }
            }
            Item::Let(l) => {
                exprs.push((&l.expr, Owner::Let(s.lets.len()), false));
                s.lets.push(named(&l.name, l.span));
                s.let_bodies.push(l.expr.span);
            }
            Item::State(st) => {
                // `add` is a term: its names are paths.
                for (k, v) in &st.members {
                    if k.text == "add" {
                        exprs.push((v, Owner::None, true));
                    }
                }
                s.states.push(named(&st.name, st.span));
            }
            Item::Extern(x) => {
                let params: Vec<String> = x.params.iter().filter_map(lit_text).collect();
                let signature =
                    format!("{}({}) -> {}", x.name.text, params.join(", "), lit_text(&x.returns).unwrap_or_default());
                s.externs.push((named(&x.name, x.span), signature));
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
                    if let Some(w) = &r.when {
                        exprs.push((w, Owner::Rule(pi, ri), false));
                    }
                    let reason = r.props.iter().find(|p| p.key.text == "reason").and_then(|p| match &p.value.kind {
                        LitKind::Str(s) => Some(s.clone()),
                        _ => None,
                    });
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
    for (e, owner, term) in exprs {
        uses(e, owner, term, &|sp| sp, &mut s);
    }
    s.paths.sort_by_key(|u| u.span.start);
    s.refs.sort_by_key(|r| r.1.start);
    s
}

/// The path uses and `let` references of an expression, placed by `place`. In condition position
/// a bare name is a reference (to a `let`); in term position (operands, arguments) it is a path.
/// INVARIANT: an explicit stack, so hostile nesting cannot overflow the call stack.
fn uses(e: &Expr, owner: Owner, term: bool, place: &dyn Fn(Span) -> Span, s: &mut Symbols) {
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
            ExprKind::Call { args, .. } | ExprKind::List(args) => stack.extend(args.iter().map(|c| (c, true))),
            ExprKind::Name(p) if term => {
                let mut u = path_use(p, 0, owner);
                u.span = place(p.span);
                s.paths.push(u);
            }
            ExprKind::Name(p) => s.refs.push((verdict_grammar::printer::path(p), place(p.span), owner)),
            ExprKind::Bool(_) | ExprKind::Lit(_) | ExprKind::Error => {}
        }
    }
}

fn path_use(p: &Path, base: u32, owner: Owner) -> PathUse {
    PathUse { segments: p.segments.iter().map(|s| s.text.clone()).collect(), span: p.span.shift(base), owner }
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

fn tree_symbols(root: &Node, text: &str) -> Symbols {
    let mut s = Symbols::default();
    let mut conds: Vec<(&Node, Owner)> = Vec::new();
    if let Some(id) = entry(root, "bundle_id") {
        s.bundle = tree_named(root, id);
    }
    if let Some(effects) = entry(root, "effects") {
        s.effects_declared = true;
        s.effects = seq(Some(effects)).iter().filter_map(|e| Some((e.as_text()?.to_owned(), e.span))).collect();
    } else {
        s.effects = vec![("deny".into(), Span::default()), ("allow".into(), Span::default())];
    }
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
            let effect = entry(r, "effect");
            let when = entry(r, "when");
            if let Some(w) = when {
                conds.push((w, Owner::Rule(pi, sym.rules.len())));
            }
            sym.rules.push(RuleSym {
                decl,
                effect: effect.and_then(Node::as_text).unwrap_or_default().to_owned(),
                effect_span: effect.map_or(Span::default(), |e| e.span),
                when: when.map(|w| w.span),
                reason: entry(r, "description").and_then(Node::as_text).map(str::to_owned),
            });
        }
        s.policies.push(sym);
    }
    // INVARIANT: an explicit stack over matchers (the loader bounds the depth, but no recursion).
    while let Some((n, owner)) = conds.pop() {
        match &n.kind {
            NodeKind::Str(expr) => expr_string_uses(expr, n.span, text, owner, &mut s),
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
    s.paths.sort_by_key(|u| u.span.start);
    s.refs.sort_by_key(|r| r.1.start);
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

/// Paths and names in a condition written as a string, placed in the file when the string appears
/// verbatim (as the lowering places its diagnostics), on the whole scalar otherwise.
fn expr_string_uses(expr: &str, span: Span, text: &str, owner: Owner, s: &mut Symbols) {
    let raw = text.get(span.range()).unwrap_or("");
    let offset = if raw.get(1..).is_some_and(|r| r.starts_with(expr)) && (raw.starts_with('"') || raw.starts_with('\''))
    {
        Some(span.start + 1)
    } else if raw.starts_with(expr) {
        Some(span.start)
    } else {
        None
    };
    let parsed = verdict_grammar::parse_expr(expr);
    let Some(e) = parsed.tree else { return };
    uses(&e, owner, false, &|sp: Span| offset.map_or(span, |o| sp.shift(o)), s);
}
