//! Printing the IR back out: as `.verdict` text (through the grammar's one printer), as the
//! reference JSON/YAML format, and as the canonical text the fingerprint hashes.

use crate::ir::*;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use verdict_grammar::ast::{self, CmpOp, Expr, ExprKind, Lit, LitKind, Name, Path, Prop, Segment, Span};
use verdict_grammar::printer;
use verdict_runtime::request::join_field;

fn sp() -> Span {
    Span::default()
}

fn name(text: &str) -> Name {
    Name { text: text.to_owned(), span: sp() }
}

fn lit(kind: LitKind) -> Lit {
    Lit { kind, span: sp() }
}

/// A JSON value as a literal.
pub fn value_lit(v: &Value) -> Lit {
    lit(match v {
        Value::Null => LitKind::Null,
        Value::Bool(b) => LitKind::Bool(*b),
        Value::Number(n) => LitKind::Number(n.to_string()),
        Value::String(s) => LitKind::Str(s.clone()),
        Value::Array(items) => LitKind::List(items.iter().map(value_lit).collect()),
        Value::Object(m) => LitKind::Object(m.iter().map(|(k, v)| (name(k), value_lit(v))).collect()),
    })
}

fn path_ast(segments: &[String]) -> Path {
    Path { segments: segments.iter().map(|s| Segment { text: s.clone(), span: sp() }).collect(), span: sp() }
}

fn operand_ast(o: Operand, paths: &[Vec<String>], consts: &[Value]) -> ast::Operand {
    match o {
        Operand::Path(p) => ast::Operand::Path(path_ast(paths.get(p.index()).map_or(&[][..], Vec::as_slice))),
        Operand::Const(c) => ast::Operand::Lit(value_lit(consts.get(c.index()).unwrap_or(&Value::Null))),
        Operand::Term(_) | Operand::None => ast::Operand::Lit(lit(LitKind::Null)),
    }
}

fn atom_expr(op: AtomOp, lhs: Operand, rhs: Operand, paths: &[Vec<String>], consts: &[Value]) -> Expr {
    let path_of = |o: Operand| match o {
        Operand::Path(p) => path_ast(paths.get(p.index()).map_or(&[][..], Vec::as_slice)),
        _ => path_ast(&[]),
    };
    let kind = match op {
        AtomOp::Exists => ExprKind::Exists(path_of(lhs)),
        AtomOp::Missing => ExprKind::Missing(path_of(lhs)),
        _ => {
            let op = match op {
                AtomOp::Eq => CmpOp::Eq,
                AtomOp::Ne => CmpOp::Ne,
                AtomOp::Lt => CmpOp::Lt,
                AtomOp::Le => CmpOp::Le,
                AtomOp::Gt => CmpOp::Gt,
                AtomOp::Ge => CmpOp::Ge,
                AtomOp::In => CmpOp::In,
                AtomOp::NotIn => CmpOp::NotIn,
                AtomOp::Contains => CmpOp::Contains,
                AtomOp::Matches => CmpOp::Matches,
                AtomOp::StartsWith => CmpOp::StartsWith,
                _ => CmpOp::EndsWith,
            };
            ExprKind::Cmp { op, lhs: operand_ast(lhs, paths, consts), rhs: operand_ast(rhs, paths, consts) }
        }
    };
    Expr { kind, span: sp() }
}

/// The canonical DSL text of an atom (traces, diagnostics).
pub fn atom_text(op: AtomOp, lhs: Operand, rhs: Operand, paths: &[Vec<String>], consts: &[Value]) -> String {
    printer::print_expr(&atom_expr(op, lhs, rhs, paths, consts))
}

/// A condition as a DSL expression. The IR's depth bound keeps the recursion bounded.
pub fn cond_expr(b: &Bundle, id: CondId) -> Expr {
    let Some(node) = b.cond(id) else {
        return Expr { kind: ExprKind::Error, span: sp() };
    };
    let kind = match &node.cond {
        Cond::Const(v) => ExprKind::Bool(*v),
        Cond::Atom(a) => return atom_expr(a.op, a.lhs, a.rhs, &b.paths, &b.consts),
        Cond::Not(c) => ExprKind::Not(Box::new(cond_expr(b, *c))),
        Cond::All(v) if v.len() == 1 => {
            return v.first().map_or(Expr { kind: ExprKind::Bool(true), span: sp() }, |c| cond_expr(b, *c));
        }
        Cond::Any(v) if v.len() == 1 => {
            return v.first().map_or(Expr { kind: ExprKind::Bool(false), span: sp() }, |c| cond_expr(b, *c));
        }
        Cond::All(v) => ExprKind::And(v.iter().map(|c| cond_expr(b, *c)).collect()),
        Cond::Any(v) => ExprKind::Or(v.iter().map(|c| cond_expr(b, *c)).collect()),
        Cond::Ref(d) => ExprKind::Name(path_ast(&[b.defs.get(d.index()).map_or(String::new(), |d| d.name.clone())])),
    };
    Expr { kind, span: sp() }
}

fn prop(key: &str, value: Lit) -> Prop {
    Prop { key: name(key), value, span: sp() }
}

fn str_lit(s: &str) -> Lit {
    lit(LitKind::Str(s.to_owned()))
}

fn word(s: &str) -> Lit {
    lit(LitKind::Ident(s.to_owned()))
}

fn strings(v: &[String]) -> Lit {
    lit(LitKind::List(v.iter().map(|s| str_lit(s)).collect()))
}

/// The bundle as a `.verdict` syntax tree, ready for [`printer::print_file`].
pub fn to_ast(b: &Bundle) -> ast::File {
    let mut props = vec![prop("version", str_lit(&b.version))];
    if let Some(d) = &b.description {
        props.push(prop("description", str_lit(d)));
    }
    if let Some(s) = &b.source {
        props.push(prop("source", str_lit(s)));
    }
    if b.effects != ["deny", "allow"] {
        props.push(prop("effects", lit(LitKind::List(b.effects.iter().map(|e| word(e)).collect()))));
    }
    if b.combine != Combine::Overrides {
        props.push(prop("combine", word(b.combine.as_str())));
    }
    if let Some(t) = &b.effective_from {
        props.push(prop("effective_from", str_lit(&t.text)));
    }
    if let Some(t) = &b.effective_until {
        props.push(prop("effective_until", str_lit(&t.text)));
    }
    if let Some(cs) = &b.card_scope {
        props.push(prop(
            "card_scope",
            lit(LitKind::Object(vec![
                (name("vendor_id"), str_lit(&cs.vendor_id)),
                (name("allowed_actions"), strings(&cs.allowed_actions)),
                (name("condition_ids"), strings(&cs.condition_ids)),
            ])),
        ));
    }
    if let Some(schema) = &b.schema {
        let entries = schema.iter().map(|e| (name(&join_field(b.path(e.path))), word(&e.ty.name()))).collect();
        props.push(prop("schema", lit(LitKind::Object(entries))));
    }
    let mut items = vec![ast::Item::Bundle(ast::BundleDecl { name: name(&b.id), props, span: sp() })];
    for d in &b.defs {
        items.push(ast::Item::Let(ast::LetDecl { name: name(&d.name), expr: cond_expr(b, d.cond), span: sp() }));
    }
    for p in &b.policies {
        let mut props = Vec::new();
        if let Some(d) = &p.description {
            props.push(prop("description", str_lit(d)));
        }
        if p.card_derived {
            props.push(prop("card_derived", lit(LitKind::Bool(true))));
        }
        if p.match_mode == MatchMode::Priority {
            props.push(prop("match", word("priority")));
        }
        match p.default {
            None => props.push(prop("default", word("none"))),
            Some(e) if e.0 != 0 => props.push(prop("default", word(b.effect(e)))),
            Some(_) => {}
        }
        let rules = p
            .rules
            .iter()
            .map(|r| {
                let mut props = Vec::new();
                if let Some(d) = &r.description {
                    props.push(prop("reason", str_lit(d)));
                }
                if !r.codes.is_empty() {
                    props.push(prop("codes", strings(&r.codes)));
                }
                if !r.obligations.is_empty() {
                    props.push(prop("obligations", value_lit(&Value::Object(r.obligations.clone()))));
                }
                if r.priority != 0 {
                    props.push(prop("priority", lit(LitKind::Number(r.priority.to_string()))));
                }
                if let Some(t) = &r.tags {
                    props.push(prop("tags", strings(t)));
                }
                ast::RuleDecl {
                    name: name(&r.id),
                    effect: name(b.effect(r.effect)),
                    when: Some(cond_expr(b, r.cond)),
                    props,
                    span: sp(),
                }
            })
            .collect();
        items.push(ast::Item::Policy(ast::PolicyDecl { name: name(&p.id), props, rules, span: sp() }));
    }
    ast::File { items }
}

/// The bundle as canonical `.verdict` text.
pub fn to_dsl(b: &Bundle) -> String {
    printer::print_file(&to_ast(b), &[])
}

/// `sha256:` and the hex SHA-256 of the canonical text: equal bundles, equal prints, whatever
/// form they were written in.
pub fn fingerprint(b: &Bundle) -> String {
    let digest = Sha256::digest(to_dsl(b).as_bytes());
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A condition as a reference-format matcher; what matchers cannot say becomes an expression string.
fn cond_json(b: &Bundle, id: CondId) -> Value {
    let Some(node) = b.cond(id) else {
        return Value::Null;
    };
    match &node.cond {
        Cond::Const(true) => json!({"kind": "always"}),
        Cond::Const(false) => json!({"kind": "not", "matcher": {"kind": "always"}}),
        Cond::Atom(a) => match (a.lhs, a.rhs) {
            (Operand::Path(p), Operand::Const(c)) => {
                json!({"kind": a.op.yaml_kind(), "field": join_field(b.path(p)), "value": b.constant(c).cloned().unwrap_or(Value::Null)})
            }
            (Operand::Path(p), Operand::None) => {
                json!({"kind": a.op.yaml_kind(), "field": join_field(b.path(p))})
            }
            _ => Value::String(a.text.clone()),
        },
        Cond::Not(c) => json!({"kind": "not", "matcher": cond_json(b, *c)}),
        Cond::All(v) => {
            json!({"kind": "all_of", "matchers": v.iter().map(|c| cond_json(b, *c)).collect::<Vec<_>>()})
        }
        Cond::Any(v) => {
            json!({"kind": "any_of", "matchers": v.iter().map(|c| cond_json(b, *c)).collect::<Vec<_>>()})
        }
        Cond::Ref(d) => Value::String(b.defs.get(d.index()).map_or(String::new(), |d| d.name.clone())),
    }
}

/// The bundle in the reference JSON format, with Verdict's extensions where used.
pub fn to_json(b: &Bundle) -> Value {
    let mut m = Map::new();
    m.insert("bundle_id".into(), json!(b.id));
    m.insert("version".into(), json!(b.version));
    if let Some(d) = &b.description {
        m.insert("description".into(), json!(d));
    }
    if let Some(s) = &b.source {
        m.insert("source".into(), json!(s));
    }
    if b.effects != ["deny", "allow"] {
        m.insert("effects".into(), json!(b.effects));
    }
    if b.combine != Combine::Overrides {
        m.insert("combine".into(), json!(b.combine.as_str()));
    }
    if let Some(t) = &b.effective_from {
        m.insert("effective_from".into(), json!(t.text));
    }
    if let Some(t) = &b.effective_until {
        m.insert("effective_until".into(), json!(t.text));
    }
    if let Some(cs) = &b.card_scope {
        m.insert(
            "card_scope".into(),
            json!({"vendor_id": cs.vendor_id, "allowed_actions": cs.allowed_actions, "condition_ids": cs.condition_ids}),
        );
    }
    if let Some(schema) = &b.schema {
        let s: Map<String, Value> = schema.iter().map(|e| (join_field(b.path(e.path)), json!(e.ty.name()))).collect();
        m.insert("schema".into(), Value::Object(s));
    }
    if !b.defs.is_empty() {
        let d: Map<String, Value> = b.defs.iter().map(|d| (d.name.clone(), cond_json(b, d.cond))).collect();
        m.insert("definitions".into(), Value::Object(d));
    }
    let policies: Vec<Value> = b
        .policies
        .iter()
        .map(|p| {
            let mut pm = Map::new();
            pm.insert("id".into(), json!(p.id));
            if let Some(d) = &p.description {
                pm.insert("description".into(), json!(d));
            }
            if p.card_derived {
                pm.insert("card_derived".into(), json!(true));
            }
            if p.match_mode == MatchMode::Priority {
                pm.insert("match".into(), json!("priority"));
            }
            match p.default {
                None => {
                    pm.insert("default_effect".into(), json!("none"));
                }
                Some(e) if e.0 != 0 => {
                    pm.insert("default_effect".into(), json!(b.effect(e)));
                }
                Some(_) => {}
            }
            let rules: Vec<Value> = p
                .rules
                .iter()
                .map(|r| {
                    let mut rm = Map::new();
                    rm.insert("id".into(), json!(r.id));
                    rm.insert("effect".into(), json!(b.effect(r.effect)));
                    rm.insert("when".into(), cond_json(b, r.cond));
                    if let Some(d) = &r.description {
                        rm.insert("description".into(), json!(d));
                    }
                    if let Some(t) = &r.tags {
                        rm.insert("tags".into(), json!(t));
                    }
                    if !r.codes.is_empty() {
                        rm.insert("codes".into(), json!(r.codes));
                    }
                    if !r.obligations.is_empty() {
                        rm.insert("obligations".into(), Value::Object(r.obligations.clone()));
                    }
                    if r.priority != 0 {
                        rm.insert("priority".into(), json!(r.priority));
                    }
                    Value::Object(rm)
                })
                .collect();
            pm.insert("rules".into(), Value::Array(rules));
            Value::Object(pm)
        })
        .collect();
    m.insert("policies".into(), Value::Array(policies));
    Value::Object(m)
}

/// A JSON value as block-style YAML (strings quoted JSON-style when plain style could misread them).
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml_value(v, 0, &mut out, true);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
                && !matches!(
                    s.as_str(),
                    "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "null" | "Null" | "NULL"
                );
            if plain { s.clone() } else { Value::String(s.clone()).to_string() }
        }
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn yaml_key(k: &str) -> String {
    yaml_scalar(&Value::String(k.to_owned()))
}

fn yaml_value(v: &Value, indent: usize, out: &mut String, top: bool) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, val)) in m.iter().enumerate() {
                if i != 0 || top {
                    out.push_str(&pad);
                }
                out.push_str(&yaml_key(k));
                out.push(':');
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push('\n');
                        yaml_value(val, indent + 1, out, true);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        yaml_value(val, indent, out, true);
                    }
                    _ => {
                        out.push(' ');
                        out.push_str(&yaml_scalar(val));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    Value::Object(o) if !o.is_empty() => yaml_value(item, indent + 1, out, false),
                    Value::Array(x) if !x.is_empty() => {
                        // Nested lists are written in flow style.
                        out.push_str(&item.to_string());
                        out.push('\n');
                    }
                    _ => {
                        out.push_str(&yaml_scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}
