//! Maps a parsed `.verdict` file onto the document tree, so that the one lowering in
//! [`crate::lower`] checks DSL and YAML bundles alike. DSL setting names map to the reference
//! format's keys (`reason` → `description`, `default` → `default_effect`).

use crate::diagnostic::{Code, Diagnostic};
use crate::tree::{Key, Node, NodeKind, number};
use verdict_grammar::ast::{Expr, ExprKind, File, Item, Lit, LitKind, MAX_DEPTH, Name, Prop, Span};

/// Builds the bundle tree of a DSL file. Items the parser could not read are skipped (their
/// syntax errors are reported by the parser).
pub fn file_to_tree(file: &File, diags: &mut Vec<Diagnostic>) -> Node {
    let mut top: Vec<(Key, Node)> = Vec::new();
    let mut defs: Vec<(Key, Node)> = Vec::new();
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
                    let rest: Vec<Prop> = rest.into_iter().cloned().collect();
                    re.extend(props(
                        &rest,
                        |k| match k {
                            "reason" => "description".to_owned(),
                            other => other.to_owned(),
                        },
                        diags,
                    ));
                    rules.push(Node::new(NodeKind::Map(re), r.span));
                }
                entries.push((key("rules", p.name.span), Node::new(NodeKind::Seq(rules), p.span)));
                policies.push(Node::new(NodeKind::Map(entries), p.span));
            }
            Item::Error(_) => {}
        }
    }
    let whole = whole.unwrap_or_default();
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

fn key(text: &str, span: Span) -> Key {
    Key { text: text.to_owned(), span }
}

fn name_node(n: &Name) -> Node {
    Node::new(NodeKind::Str(n.text.clone()), n.span)
}

fn word_node(n: &Name) -> Node {
    Node::new(NodeKind::Word(n.text.clone()), n.span)
}

fn props(props: &[Prop], rename: impl Fn(&str) -> String, diags: &mut Vec<Diagnostic>) -> Vec<(Key, Node)> {
    let mut out: Vec<(Key, Node)> = Vec::new();
    for p in props {
        let k = rename(&p.key.text);
        if let Some((first, _)) = out.iter().find(|(e, _)| e.text == k) {
            diags.push(
                Diagnostic::error(Code::DuplicateId, p.key.span, format!("`{}` is set twice", p.key.text))
                    .with_label(first.span, "first set here"),
            );
            continue;
        }
        if let Some(v) = lit_node(&p.value, 0, 1) {
            out.push((Key { text: k, span: p.key.span }, v));
        } else {
            diags.push(Diagnostic::error(
                Code::TooDeep,
                p.value.span,
                format!("value nested deeper than {MAX_DEPTH} levels"),
            ));
        }
    }
    out
}

/// A literal as a tree node (spans moved by `base`); `None` when nested deeper than
/// [`MAX_DEPTH`]. Bad numbers become strings the lowering will refuse with a message.
pub fn lit_node(l: &Lit, base: u32, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH + 1 {
        return None;
    }
    let span = l.span.shift(base);
    let kind = match &l.kind {
        LitKind::Null => NodeKind::Null,
        LitKind::Bool(b) => NodeKind::Bool(*b),
        LitKind::Number(n) => number(n).unwrap_or_else(|| NodeKind::Str(n.clone())),
        LitKind::Str(s) => NodeKind::Str(s.clone()),
        LitKind::Ident(s) => NodeKind::Word(s.clone()),
        LitKind::Apply(f, a) => {
            let inner = lit_node(a, base, depth + 1)?;
            NodeKind::Word(format!("{}<{}>", f.text, inner.as_text().unwrap_or("?")))
        }
        LitKind::List(items) => {
            NodeKind::Seq(items.iter().map(|i| lit_node(i, base, depth + 1)).collect::<Option<Vec<_>>>()?)
        }
        LitKind::Object(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                out.push((Key { text: k.text.clone(), span: k.span.shift(base) }, lit_node(v, base, depth + 1)?));
            }
            NodeKind::Map(out)
        }
        LitKind::Error => NodeKind::Null,
    };
    Some(Node::new(kind, span))
}
