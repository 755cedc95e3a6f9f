//! Maps a parsed `.verdict` file onto the document tree, so that the one lowering in
//! [`crate::lower`] checks DSL and YAML bundles alike. DSL setting names map to the reference
//! format's keys (`reason` → `description`, `default` → `default_effect`).

use crate::diagnostic::{Code, Diagnostic};
use crate::tree::{Key, Node, NodeKind, number};
use std::collections::HashMap;
use verdict_grammar::ast::{Expr, ExprKind, File, Item, Lit, LitKind, MAX_DEPTH, Name, Prop, Span};

/// Builds the bundle tree of a DSL file. Items the parser could not read are skipped (their
/// syntax errors are reported by the parser).
pub fn file_to_tree(file: &File, diags: &mut Vec<Diagnostic>) -> Node {
    let mut top: Vec<(Key, Node)> = Vec::new();
    let mut defs: Vec<(Key, Node)> = Vec::new();
    let mut states: Vec<(Key, Node)> = Vec::new();
    let mut externs: Vec<(Key, Node)> = Vec::new();
    let mut policies: Vec<Node> = Vec::new();
    let mut bundle_span: Option<Span> = None;
    // The items' extent (not from offset 0, so that it starts at the first item, not a comment).
    let mut whole: Option<Span> = None;
    for item in &file.items {
        match item {
            Item::Bundle(b) => {
                whole = Some(whole.map_or(b.span, |w| w.cover(b.span)));
                if let Some(first) = bundle_span {
                    diags.push(
                        Diagnostic::error(Code::DuplicateId, b.name.span, "a file declares one bundle")
                            .with_label(first, "the bundle is declared here"),
                    );
                    continue;
                }
                bundle_span = Some(b.span);
                top.push((key("bundle_id", b.name.span), name_node(&b.name)));
                top.extend(props(&b.props, |k| k.to_owned(), diags));
            }
            Item::Let(l) => {
                whole = Some(whole.map_or(l.span, |w| w.cover(l.span)));
                defs.push((Key { text: l.name.text.clone(), span: l.name.span }, cond_node(&l.expr, None, diags)));
            }
            Item::State(st) => {
                whole = Some(whole.map_or(st.span, |w| w.cover(st.span)));
                let mut entries = Vec::new();
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for (k, v) in &st.members {
                    if let Some(first) = seen.insert(&k.text, k.span) {
                        diags.push(
                            Diagnostic::error(Code::DuplicateId, k.span, format!("`{}` is set twice", k.text))
                                .with_label(first, "first set here"),
                        );
                        continue;
                    }
                    // `add` is a term; the other members are names, paths and lists of them.
                    let node = if k.text == "add" { cond_node(v, None, diags) } else { value_node(v, diags) };
                    entries.push((key(&k.text, k.span), node));
                }
                states.push((
                    Key { text: st.name.text.clone(), span: st.name.span },
                    Node::new(NodeKind::Map(entries), st.span),
                ));
            }
            Item::Extern(x) => {
                whole = Some(whole.map_or(x.span, |w| w.cover(x.span)));
                let mut params = Vec::new();
                for t in &x.params {
                    match lit_node(t, 0, 1) {
                        Ok(n) => params.push(n),
                        Err(d) => diags.push(d),
                    }
                }
                let mut entries = vec![(key("params", x.name.span), Node::new(NodeKind::Seq(params), x.span))];
                match lit_node(&x.returns, 0, 1) {
                    Ok(n) => entries.push((key("returns", x.returns.span), n)),
                    Err(d) => diags.push(d),
                }
                externs.push((
                    Key { text: x.name.text.clone(), span: x.name.span },
                    Node::new(NodeKind::Map(entries), x.span),
                ));
            }
            Item::Policy(p) => {
                whole = Some(whole.map_or(p.span, |w| w.cover(p.span)));
                let mut entries = vec![(key("id", p.name.span), name_node(&p.name))];
                entries.extend(props(
                    &p.props,
                    |k| match k {
                        "default" => "default_effect".to_owned(),
                        other => other.to_owned(),
                    },
                    diags,
                ));
                let mut rules = Vec::new();
                for r in &p.rules {
                    let mut re = vec![
                        (key("id", r.name.span), name_node(&r.name)),
                        (key("effect", r.effect.span), word_node(&r.effect)),
                    ];
                    if let Some(w) = &r.when {
                        re.push((key("when", w.span), cond_node(w, Some((&p.name.text, &r.name.text)), diags)));
                    }
                    // The parser keeps a second `when` as an error prop: say what it is.
                    let (extra_whens, rest): (Vec<&Prop>, Vec<&Prop>) =
                        r.props.iter().partition(|p| p.key.text == "when" && matches!(p.value.kind, LitKind::Error));
                    for extra in extra_whens {
                        let mut d = Diagnostic::error(
                            Code::DuplicateId,
                            extra.span,
                            "a rule has one `when`: join the conditions with `and` (or `or`)",
                        );
                        if let Some(w) = &r.when {
                            d = d.with_label(w.span, "the rule's condition");
                        }
                        diags.push(d.in_rule(Some(&p.name.text), Some(&r.name.text)));
                    }
                    let before = diags.len();
                    // `reason f"…"` is a template; `reason "…"` the description.
                    let (templates, rest): (Vec<&Prop>, Vec<&Prop>) = rest
                        .into_iter()
                        .partition(|p| p.key.text == "reason" && matches!(p.value.kind, LitKind::Template(_)));
                    re.extend(props(
                        rest,
                        |k| match k {
                            "reason" => "description".to_owned(),
                            other => other.to_owned(),
                        },
                        diags,
                    ));
                    re.extend(props(templates, |_| "reason_template".to_owned(), diags));
                    for d in diags.iter_mut().skip(before) {
                        d.policy = Some(p.name.text.clone());
                        d.rule = Some(r.name.text.clone());
                    }
                    rules.push(Node::new(NodeKind::Map(re), r.span));
                }
                entries.push((key("rules", p.name.span), Node::new(NodeKind::Seq(rules), p.span)));
                policies.push(Node::new(NodeKind::Map(entries), p.span));
            }
            Item::Error(_) => {}
        }
    }
    let whole = whole.unwrap_or_default();
    if !externs.is_empty() {
        top.push((key("externs", whole), Node::new(NodeKind::Map(externs), whole)));
    }
    if !states.is_empty() {
        top.push((key("state", whole), Node::new(NodeKind::Map(states), whole)));
    }
    if !defs.is_empty() {
        top.push((key("definitions", whole), Node::new(NodeKind::Map(defs), whole)));
    }
    if !policies.is_empty() {
        top.push((key("policies", whole), Node::new(NodeKind::Seq(policies), whole)));
    }
    Node::new(NodeKind::Map(top), bundle_span.unwrap_or(whole))
}

/// A condition as a tree node. A condition nested far deeper than the lowering accepts is not
/// copied (the syntax tree's `Clone` recurses, and 30,000 levels overflow the stack): it is
/// reported here, as the lowering would, and replaced by an error node.
fn cond_node(e: &Expr, rule: Option<(&str, &str)>, diags: &mut Vec<Diagnostic>) -> Node {
    if let Some((at, what)) = too_deep(e) {
        diags.push(
            Diagnostic::error(Code::TooDeep, at, format!("{what} nested deeper than {MAX_DEPTH} levels"))
                .in_rule(rule.map(|r| r.0), rule.map(|r| r.1)),
        );
        return Node::new(NodeKind::Cond(Box::new(Expr { kind: ExprKind::Error, span: e.span })), e.span);
    }
    Node::new(NodeKind::Cond(Box::new(e.clone())), e.span)
}

/// When `e` nests conditions and literals more than twice [`MAX_DEPTH`] deep: the span of a node
/// just past [`MAX_DEPTH`] levels (where the lowering reports) and what it is. Walks without
/// recursion.
fn too_deep(e: &Expr) -> Option<(Span, &'static str)> {
    const LIMIT: usize = 2 * MAX_DEPTH + 2;
    let mut first_past: Option<(Span, &'static str)> = None;
    let mut found = None;
    verdict_grammar::ast::walk_depths(vec![(e, 1)], Vec::new(), |span, depth, what| {
        if depth == MAX_DEPTH + 1 && first_past.is_none() {
            first_past = Some((span, what));
        }
        if depth > LIMIT {
            found = first_past.or(Some((span, what)));
            return false;
        }
        true
    });
    found
}

/// A `state` member's value as a tree node: a literal as itself, a path or name as a word (the
/// reference format's field spelling), a list of those as a list; anything else as an
/// expression, which the lowering refuses where it expects a name.
fn value_node(e: &Expr, diags: &mut Vec<Diagnostic>) -> Node {
    if too_deep(e).is_some() {
        // Reported, and replaced by an error node, where conditions are.
        return cond_node(e, None, diags);
    }
    match &e.kind {
        ExprKind::Lit(l) => match lit_node(l, 0, 1) {
            Ok(n) => n,
            Err(d) => {
                diags.push(d);
                Node::new(NodeKind::Null, e.span)
            }
        },
        ExprKind::Name(p) => Node::new(NodeKind::Word(verdict_grammar::ast::field_text(p)), e.span),
        ExprKind::List(items) => Node::new(NodeKind::Seq(items.iter().map(|i| value_node(i, diags)).collect()), e.span),
        _ => cond_node(e, None, diags),
    }
}

fn key(text: &str, span: Span) -> Key {
    Key { text: text.to_owned(), span }
}

fn name_node(n: &Name) -> Node {
    Node::new(NodeKind::Str(n.text.clone()), n.span)
}

fn word_node(n: &Name) -> Node {
    Node::new(NodeKind::Word(n.text.clone()), n.span)
}

/// The settings of a block as tree entries (keys renamed to the reference format's). A setting
/// given twice, or whose value cannot be read, is reported and left out.
fn props<'p>(
    props: impl IntoIterator<Item = &'p Prop>,
    rename: impl Fn(&str) -> String,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(Key, Node)> {
    let mut out: Vec<(Key, Node)> = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for p in props {
        let k = rename(&p.key.text);
        if let Some(first) = seen.get(&k) {
            diags.push(
                Diagnostic::error(Code::DuplicateId, p.key.span, format!("`{}` is set twice", p.key.text))
                    .with_label(*first, "first set here"),
            );
            continue;
        }
        seen.insert(k.clone(), p.key.span);
        match lit_node(&p.value, 0, 1) {
            Ok(v) => out.push((Key { text: k, span: p.key.span }, v)),
            Err(d) => diags.push(d),
        }
    }
    out
}

/// A literal as a tree node, its spans moved by `base`; `depth` is the literal's own depth (1 for
/// a setting's value, one more than the comparison's for a condition's operand).
///
/// Refused with a diagnostic: nesting deeper than [`MAX_DEPTH`] (V107), an object literal that
/// gives a key twice (V104), a number out of the range of a 64-bit float (V108). Walks with an
/// explicit stack: no recursion whatever the nesting.
pub fn lit_node(l: &Lit, base: u32, depth: usize) -> Result<Node, Diagnostic> {
    /// A list, object or type application whose children are being converted.
    enum Open<'l> {
        List {
            span: Span,
            items: Vec<Node>,
            rest: std::slice::Iter<'l, Lit>,
        },
        Object {
            span: Span,
            entries: Vec<(Key, Node)>,
            rest: std::slice::Iter<'l, (Name, Lit)>,
            key: Option<Key>,
            seen: HashMap<&'l str, Span>,
        },
        Apply {
            span: Span,
            name: &'l str,
        },
    }
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut next: Option<&Lit> = Some(l);
    loop {
        let mut done: Option<Node> = None;
        if let Some(l) = next.take() {
            let span = l.span.shift(base);
            // INVARIANT: `stack.len()` containers enclose `l`.
            if depth.saturating_add(stack.len()) > MAX_DEPTH {
                // Pointed at by its first character, not its whole (possibly huge) extent.
                let at = Span { start: span.start, end: span.end.min(span.start.saturating_add(1)) };
                return Err(Diagnostic::error(
                    Code::TooDeep,
                    at,
                    format!("value nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            let kind = match &l.kind {
                LitKind::Null | LitKind::Error => Some(NodeKind::Null),
                LitKind::Bool(b) => Some(NodeKind::Bool(*b)),
                LitKind::Number(n) => Some(number(n).ok_or_else(|| bad_number(n, span))?),
                LitKind::Str(s) => Some(NodeKind::Str(s.clone())),
                LitKind::Ident(s) => Some(NodeKind::Word(s.clone())),
                LitKind::Template(t) => Some(NodeKind::Str(t.clone())),
                LitKind::List(items) => {
                    stack.push(Open::List { span, items: Vec::with_capacity(items.len()), rest: items.iter() });
                    None
                }
                LitKind::Object(entries) => {
                    stack.push(Open::Object {
                        span,
                        entries: Vec::with_capacity(entries.len()),
                        rest: entries.iter(),
                        key: None,
                        seen: HashMap::with_capacity(entries.len()),
                    });
                    None
                }
                LitKind::Apply(f, inner) => {
                    stack.push(Open::Apply { span, name: &f.text });
                    next = Some(inner);
                    continue;
                }
            };
            done = kind.map(|k| Node::new(k, span));
        }
        // Hand the finished node to its container; open the next child or close the container.
        loop {
            let Some(top) = stack.last_mut() else {
                return done.ok_or_else(|| Diagnostic::error(Code::BadValue, l.span.shift(base), "unreadable value"));
            };
            match top {
                Open::List { items, rest, .. } => {
                    items.extend(done.take());
                    if let Some(child) = rest.next() {
                        next = Some(child);
                        break;
                    }
                }
                Open::Object { entries, rest, key, seen, .. } => {
                    if let (Some(k), Some(v)) = (key.take(), done.take()) {
                        entries.push((k, v));
                    }
                    if let Some((k, child)) = rest.next() {
                        let at = k.span.shift(base);
                        if let Some(first) = seen.insert(&k.text, at) {
                            return Err(Diagnostic::error(
                                Code::DuplicateId,
                                at,
                                format!("duplicate key `{}` in an object", k.text),
                            )
                            .with_label(first, "first given here"));
                        }
                        *key = Some(Key { text: k.text.clone(), span: at });
                        next = Some(child);
                        break;
                    }
                }
                Open::Apply { .. } => {}
            }
            done = match stack.pop() {
                Some(Open::List { span, items, .. }) => Some(Node::new(NodeKind::Seq(items), span)),
                Some(Open::Object { span, entries, .. }) => Some(Node::new(NodeKind::Map(entries), span)),
                Some(Open::Apply { span, name }) => {
                    let inner = done.as_ref().and_then(Node::as_text).unwrap_or("?");
                    Some(Node::new(NodeKind::Word(format!("{name}<{inner}>")), span))
                }
                None => None,
            };
        }
    }
}

/// A number literal that is not a finite 64-bit float (`1e400`).
fn bad_number(text: &str, span: Span) -> Diagnostic {
    Diagnostic::error(Code::BadValue, span, format!("the number `{text}` is out of range"))
        .with_help("numbers are 64-bit floats (integers within i64/u64 are exact): at most about ±1.8e308")
}
