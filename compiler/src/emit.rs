//! Printing the IR back out: as `.verdict` text (through the grammar's one printer), as the
//! reference JSON/YAML format, and as the canonical text the fingerprint hashes.

use crate::ir::*;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use verdict_grammar::ast::{self, Expr, ExprKind, Lit, LitKind, Name, Path, Prop, Segment, Span};
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

fn path_ast(segments: &[String], input: bool) -> Path {
    Path { segments: segments.iter().map(|s| Segment { text: s.clone(), span: sp() }).collect(), input, span: sp() }
}

fn expr(kind: ExprKind) -> Expr {
    Expr { kind, span: sp() }
}

/// What printing an atom or a term needs besides it: the tables its operands index, and the
/// names a request path's first segment must not be mistaken for.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub paths: &'a [Vec<String>],
    pub consts: &'a [Value],
    pub terms: &'a [TermNode],
    pub states: &'a [StateDecl],
    pub externs: &'a [ExternDecl],
    /// The names of lets, states and externs (a bare first segment would be read as one).
    pub roots: &'a std::collections::HashSet<String>,
}

impl Names<'_> {
    /// Whether a request path whose first segment is `root` must be written `input.root…`:
    /// a `let`, a state series, an extern or `now` would take a bare name first.
    fn reserved(&self, root: &str) -> bool {
        root == verdict_vocab::NOW || self.roots.contains(root)
    }

    fn path(&self, p: PathId) -> Path {
        let segs = self.paths.get(p.index()).map_or(&[][..], Vec::as_slice);
        path_ast(segs, segs.first().is_some_and(|r| self.reserved(r)))
    }

    /// An operand as an expression.
    pub fn operand(&self, o: Operand) -> Expr {
        match o {
            Operand::Path(p) => expr(ExprKind::Name(self.path(p))),
            Operand::Const(c) => expr(ExprKind::Lit(value_lit(self.consts.get(c.index()).unwrap_or(&Value::Null)))),
            Operand::Term(t) => self.term(t),
            Operand::None => expr(ExprKind::Lit(lit(LitKind::Null))),
        }
    }

    /// A term as an expression. Recursion follows the term's nesting, which lowering bounds.
    pub fn term(&self, t: TermId) -> Expr {
        let Some(node) = self.terms.get(t.index()) else { return expr(ExprKind::Error) };
        let call =
            |name: &str, args: Vec<Expr>| expr(ExprKind::Call { callee: path_ast(&[name.to_owned()], false), args });
        match &node.term {
            Term::Arith(verdict_vocab::Arith::Neg, a, _) => expr(ExprKind::Neg(Box::new(self.operand(*a)))),
            Term::Arith(op, l, r) => {
                expr(ExprKind::Arith { op: *op, lhs: Box::new(self.operand(*l)), rhs: Box::new(self.operand(*r)) })
            }
            Term::Func(f, a) => call(f.name(), vec![self.operand(*a)]),
            Term::Now(field) => {
                expr(ExprKind::Name(path_ast(&[verdict_vocab::NOW.to_owned(), field.name().to_owned()], false)))
            }
            Term::State { state, window, seconds } => {
                let name = self.states.get(state.index()).map_or("", |s| s.name.as_str());
                let path = path_ast(&[name.to_owned(), window.name().to_owned()], false);
                if window.info().takes_duration {
                    let d = lit(LitKind::Str(duration_text(u64::from(*seconds))));
                    expr(ExprKind::Call { callee: path, args: vec![expr(ExprKind::Lit(d))] })
                } else {
                    expr(ExprKind::Name(path))
                }
            }
            Term::Extern(e, args) => {
                let name = self.externs.get(e.index()).map_or("", |x| x.name.as_str());
                call(name, args.iter().map(|a| self.operand(*a)).collect())
            }
        }
    }

    fn atom(&self, op: AtomOp, lhs: Operand, rhs: Operand) -> Expr {
        match op.info().form {
            verdict_vocab::AtomForm::Presence => {
                expr(ExprKind::Call { callee: path_ast(&[op.name().to_owned()], false), args: vec![self.operand(lhs)] })
            }
            verdict_vocab::AtomForm::Holds => self.operand(lhs),
            verdict_vocab::AtomForm::Symbol | verdict_vocab::AtomForm::Word => {
                expr(ExprKind::Cmp { op, lhs: Box::new(self.operand(lhs)), rhs: Box::new(self.operand(rhs)) })
            }
        }
    }

    /// The canonical DSL text of an atom (traces, diagnostics).
    pub fn atom_text(&self, op: AtomOp, lhs: Operand, rhs: Operand) -> String {
        printer::print_expr(&self.atom(op, lhs, rhs))
    }

    /// The canonical DSL text of a term.
    pub fn term_text(&self, t: TermId) -> String {
        printer::print_expr(&self.term(t))
    }
}

/// A duration in seconds as the shortest of `Nd`, `Nh`, `Nm`, `Ns` that is exact.
pub fn duration_text(seconds: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds.is_multiple_of(n) && seconds > 0 {
            return format!("{}{unit}", seconds / n);
        }
    }
    format!("{seconds}s")
}

/// The range of a sliding window's length as messages write it (`1s to 400d`).
pub fn window_range_text() -> String {
    format!("1s to {}", duration_text(u64::from(verdict_runtime::program::MAX_WINDOW_SECONDS)))
}

/// Parses a duration `Ns`, `Nm`, `Nh` or `Nd` into seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    // The unit is the last byte; a text ending in a multi-byte character is no duration.
    let (n, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

impl Bundle {
    /// The tables printing needs.
    pub fn names(&self) -> Names<'_> {
        Names {
            paths: &self.paths,
            consts: &self.consts,
            terms: &self.terms,
            states: &self.states,
            externs: &self.externs,
            roots: &self.roots,
        }
    }
}

/// A condition as a DSL expression. The IR's depth bound keeps the recursion bounded.
pub fn cond_expr(b: &Bundle, id: CondId) -> Expr {
    let Some(node) = b.cond(id) else {
        return Expr { kind: ExprKind::Error, span: sp() };
    };
    let kind = match &node.cond {
        Cond::Const(v) => ExprKind::Bool(*v),
        Cond::Atom(a) => return b.names().atom(a.op, a.lhs, a.rhs),
        Cond::Not(c) => ExprKind::Not(Box::new(cond_expr(b, *c))),
        Cond::All(v) if v.len() == 1 => {
            return v.first().map_or(Expr { kind: ExprKind::Bool(true), span: sp() }, |c| cond_expr(b, *c));
        }
        Cond::Any(v) if v.len() == 1 => {
            return v.first().map_or(Expr { kind: ExprKind::Bool(false), span: sp() }, |c| cond_expr(b, *c));
        }
        Cond::All(v) => ExprKind::And(v.iter().map(|c| cond_expr(b, *c)).collect()),
        Cond::Any(v) => ExprKind::Or(v.iter().map(|c| cond_expr(b, *c)).collect()),
        Cond::Ref(d) => {
            ExprKind::Name(path_ast(&[b.defs.get(d.index()).map_or(String::new(), |d| d.name.clone())], false))
        }
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

/// A declared type as a settings literal (`string`, `list<number>`).
fn type_lit(t: &Type) -> Lit {
    match t {
        Type::List(inner) => lit(LitKind::Apply(name("list"), Box::new(type_lit(inner)))),
        other => word(&other.name()),
    }
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
        let entries = schema.iter().map(|e| (name(&join_field(b.path(e.path))), type_lit(&e.ty))).collect();
        props.push(prop("schema", lit(LitKind::Object(entries))));
    }
    if !b.required.is_empty() {
        props.push(prop(
            "required",
            lit(LitKind::List(b.required.iter().map(|(p, _)| word(&join_field(b.path(*p)))).collect())),
        ));
    }
    if let Some(tz) = &b.timezone {
        props.push(prop("timezone", str_lit(tz)));
    }
    if let Some(ttl) = b.hold_ttl {
        props.push(prop("hold_ttl", str_lit(&duration_text(ttl))));
    }
    let mut items = vec![ast::Item::Bundle(ast::BundleDecl { name: name(&b.id), props, span: sp() })];
    for e in &b.externs {
        items.push(ast::Item::Extern(ast::ExternDecl {
            name: name(&e.name),
            params: e.params.iter().map(type_lit).collect(),
            returns: type_lit(&e.returns),
            span: sp(),
        }));
    }
    let names = b.names();
    for st in &b.states {
        let word_expr = |w: &str| {
            if verdict_grammar::lexer::is_bare_ident(w) {
                expr(ExprKind::Name(path_ast(&[w.to_owned()], false)))
            } else {
                expr(ExprKind::Lit(str_lit(w)))
            }
        };
        let members = vec![
            (name("add"), names.operand(st.add)),
            (name("key"), expr(ExprKind::List(st.key.iter().map(|p| expr(ExprKind::Name(names.path(*p)))).collect()))),
            (name("on"), expr(ExprKind::List(st.on.iter().map(|e| word_expr(b.effect(*e))).collect()))),
            (name("apply"), word_expr(st.apply.as_str())),
        ];
        items.push(ast::Item::State(ast::StateDecl { name: name(&st.name), members, span: sp() }));
    }
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
                if let Some(t) = &r.template {
                    props.push(prop("reason", lit(LitKind::Template(t.text.clone()))));
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
    if !b.required.is_empty() {
        m.insert("required".into(), json!(b.required.iter().map(|(p, _)| join_field(b.path(*p))).collect::<Vec<_>>()));
    }
    if let Some(tz) = &b.timezone {
        m.insert("timezone".into(), json!(tz));
    }
    if let Some(ttl) = b.hold_ttl {
        m.insert("hold_ttl".into(), json!(duration_text(ttl)));
    }
    if !b.externs.is_empty() {
        let e: Map<String, Value> = b
            .externs
            .iter()
            .map(|e| {
                let params: Vec<String> = e.params.iter().map(Type::name).collect();
                (e.name.clone(), json!({"params": params, "returns": e.returns.name()}))
            })
            .collect();
        m.insert("externs".into(), Value::Object(e));
    }
    if !b.states.is_empty() {
        let names = b.names();
        let st: Map<String, Value> = b
            .states
            .iter()
            .map(|s| {
                let add = match s.add {
                    Operand::Const(c) => b.constant(c).cloned().unwrap_or(Value::Null),
                    other => Value::String(printer::print_expr(&names.operand(other))),
                };
                let key: Vec<String> = s.key.iter().map(|p| join_field(b.path(*p))).collect();
                let on: Vec<&str> = s.on.iter().map(|e| b.effect(*e)).collect();
                (s.name.clone(), json!({"add": add, "key": key, "on": on, "apply": s.apply.as_str()}))
            })
            .collect();
        m.insert("state".into(), Value::Object(st));
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
                    if let Some(t) = &r.template {
                        rm.insert("reason_template".into(), json!(t.text));
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
