//! Lowering of the spanned document tree (from YAML, JSON or the DSL) to the [`ir`](crate::ir),
//! with every structural check: unknown keys, wrong types, missing keys, duplicate ids, unknown
//! effects, invalid regexes, definition cycles (V008), nesting depth (V107), ill-typed atoms
//! (V006) and unknown schema paths (V007).
//!
//! Lowering goes on after an error so that one run reports every problem; the bundle is only
//! returned when no error was found.

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::ir::*;
use crate::source::SourceFile;
use crate::tree::{Key, Node, NodeKind};
use petgraph::graph::DiGraph;
use serde_json::{Map, Value};
use std::collections::HashMap;
use verdict_grammar::ast::{self, CmpOp, Expr, ExprKind, MAX_DEPTH, Span};
use verdict_runtime::request::split_field;

/// Which source form the tree came from: it only changes the names used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Yaml,
    Dsl,
}

/// Lowers a bundle tree. Returns the bundle when no error was reported.
pub fn lower(root: &Node, file: &SourceFile, form: Form, diags: &mut Vec<Diagnostic>) -> Option<Bundle> {
    let mut cx = Lower {
        file,
        form,
        diags,
        paths: Vec::new(),
        path_ids: HashMap::new(),
        consts: Vec::new(),
        const_ids: HashMap::new(),
        conds: Vec::new(),
        defs: Vec::new(),
        def_ids: HashMap::new(),
        def_edges: Vec::new(),
        current_def: None,
        schema: None,
        after_syntax_error: false,
        last_position: None,
    };
    cx.after_syntax_error = form == Form::Dsl && cx.diags.iter().any(|d| d.code == Code::Syntax);
    let errors_before = cx.diags.iter().filter(|d| d.severity == Severity::Error).count();
    let bundle = cx.bundle(root);
    let errors_after = cx.diags.iter().filter(|d| d.severity == Severity::Error).count();
    if errors_after > errors_before { None } else { bundle }
}

struct Lower<'a> {
    file: &'a SourceFile,
    form: Form,
    diags: &'a mut Vec<Diagnostic>,
    paths: Vec<Vec<String>>,
    path_ids: HashMap<Vec<String>, PathId>,
    consts: Vec<Value>,
    const_ids: HashMap<String, ConstId>,
    conds: Vec<CondNode>,
    defs: Vec<Def>,
    def_ids: HashMap<String, DefId>,
    /// (from, to, span of the reference) among definitions.
    def_edges: Vec<(DefId, DefId, Span)>,
    current_def: Option<DefId>,
    schema: Option<Vec<SchemaEntry>>,
    /// A `.verdict` file whose parser already reported errors: what recovery skipped may be the
    /// very setting or block that now looks missing, so missing keys are not reported again.
    after_syntax_error: bool,
    /// The byte offset, line and column of the last atom placed, see [`Lower::line_col`].
    last_position: Option<(u32, u32, u32)>,
}

/// The keys of one mapping, taken one by one; [`Fields::finish`] reports those never taken.
struct Fields<'n> {
    what: &'static str,
    span: Span,
    entries: Vec<(&'n Key, &'n Node, bool)>,
}

impl<'n> Fields<'n> {
    fn take(&mut self, key: &str) -> Option<&'n Node> {
        for e in &mut self.entries {
            if e.0.text == key {
                e.2 = true;
                return Some(e.1);
            }
        }
        None
    }

    /// Takes a key whose null value means "absent" (the reference's optional fields).
    fn take_opt(&mut self, key: &str) -> Option<&'n Node> {
        self.take(key).filter(|n| !matches!(n.kind, NodeKind::Null))
    }
}

impl Lower<'_> {
    // ---- structure helpers ---------------------------------------------------------------

    fn error(&mut self, code: Code, span: Span, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, span, message));
    }

    fn key_name(&self, key: &str) -> String {
        if self.form == Form::Dsl {
            match key {
                "description" => "reason",
                "default_effect" => "default",
                "bundle_id" => "bundle",
                other => other,
            }
            .to_owned()
        } else {
            key.to_owned()
        }
    }

    fn fields<'n>(&mut self, node: &'n Node, what: &'static str) -> Option<Fields<'n>> {
        match &node.kind {
            NodeKind::Map(entries) => {
                Some(Fields { what, span: node.span, entries: entries.iter().map(|(k, v)| (k, v, false)).collect() })
            }
            _ => {
                self.error(
                    Code::WrongType,
                    node.span,
                    format!("expected {what} (a mapping), found {}", node.describe()),
                );
                None
            }
        }
    }

    fn finish(&mut self, f: Fields<'_>, allowed: &[&str]) {
        for (k, _, taken) in &f.entries {
            if !*taken {
                let expected: Vec<String> = allowed.iter().map(|a| format!("`{}`", self.key_name(a))).collect();
                let d = Diagnostic::error(Code::UnknownKey, k.span, format!("unknown key `{}` in {}", k.text, f.what))
                    .with_help(format!("expected one of {}", expected.join(", ")));
                self.diags.push(d);
            }
        }
    }

    fn required<'n>(&mut self, f: &mut Fields<'n>, key: &str) -> Option<&'n Node> {
        let n = f.take_opt(key);
        if n.is_none() && !self.after_syntax_error {
            let message = match (self.form, key) {
                (Form::Dsl, "bundle_id") => "the file has no `bundle NAME { … }` declaration".to_owned(),
                (Form::Dsl, "policies") => "the file declares no `policy`".to_owned(),
                _ => format!("missing required key `{}` in {}", self.key_name(key), f.what),
            };
            self.error(Code::MissingKey, f.span, message);
        }
        n
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            _ => {
                self.error(
                    Code::WrongType,
                    node.span,
                    format!("expected {what} (a string), found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A name: a string, or a bare word in the DSL.
    fn name(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_text() {
            Some(s) if !s.is_empty() => Some(s.to_owned()),
            Some(_) => {
                self.error(Code::BadValue, node.span, format!("{what} must not be empty"));
                None
            }
            None => {
                self.error(
                    Code::WrongType,
                    node.span,
                    format!("expected {what} (a string), found {}", node.describe()),
                );
                None
            }
        }
    }

    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let NodeKind::Seq(items) = &node.kind else {
            self.error(
                Code::WrongType,
                node.span,
                format!("expected {what} (a list of strings), found {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.name_or_string(item, what)?);
        }
        Some(out)
    }

    fn name_or_string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_text() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.error(
                    Code::WrongType,
                    node.span,
                    format!("expected {what} (a list of strings), found {} in it", node.describe()),
                );
                None
            }
        }
    }

    fn instant(&mut self, node: &Node, what: &str) -> Option<Instant> {
        let text = self.string(node, what)?;
        match text.parse::<jiff::Timestamp>() {
            Ok(at) => Some(Instant { text, at }),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadValue,
                        node.span,
                        format!("`{text}` is not an RFC 3339 date-time with an offset"),
                    )
                    .with_help(format!("write e.g. \"2026-01-01T00:00:00Z\" ({e})")),
                );
                None
            }
        }
    }

    /// The line and column of an atom. Atoms come mostly in text order, so the column is counted
    /// on from the previous atom when it is on the same line: counting from the line's start each
    /// time is quadratic on one-line (minified) bundles.
    fn line_col(&mut self, offset: u32) -> (u32, u32) {
        if let Some((prev, line, col)) = self.last_position
            && prev <= offset
            && let Some(between) = self.file.text.get(prev as usize..offset as usize)
            && !between.contains('\n')
        {
            let col = col.saturating_add(u32::try_from(between.chars().count()).unwrap_or(u32::MAX));
            self.last_position = Some((offset, line, col));
            return (line, col);
        }
        let (line, col) = self.file.line_col(offset);
        self.last_position = Some((offset, line, col));
        (line, col)
    }

    // ---- interning -----------------------------------------------------------------------

    fn intern_path(&mut self, segments: Vec<String>) -> PathId {
        if let Some(id) = self.path_ids.get(&segments) {
            return *id;
        }
        let id = PathId(u32::try_from(self.paths.len()).unwrap_or(u32::MAX));
        self.paths.push(segments.clone());
        self.path_ids.insert(segments, id);
        id
    }

    fn intern_const(&mut self, value: Value) -> ConstId {
        // Numbers are keyed by their JSON text, so `1` and `1.0` stay distinct constants (they
        // compare equal, but print differently).
        let key = value.to_string();
        if let Some(id) = self.const_ids.get(&key) {
            return *id;
        }
        let id = ConstId(u32::try_from(self.consts.len()).unwrap_or(u32::MAX));
        self.consts.push(value);
        self.const_ids.insert(key, id);
        id
    }

    fn push(&mut self, cond: Cond, span: Span) -> CondId {
        let id = CondId(u32::try_from(self.conds.len()).unwrap_or(u32::MAX));
        self.conds.push(CondNode { cond, span });
        id
    }

    // ---- bundle --------------------------------------------------------------------------

    fn bundle(&mut self, root: &Node) -> Option<Bundle> {
        let mut f = self.fields(root, "the bundle")?;
        let id = self.required(&mut f, "bundle_id").and_then(|n| self.name(n, "the bundle id"));
        let version = match f.take("version") {
            Some(n) => self.string(n, "the version"),
            None => Some("0.1.0".to_owned()),
        };
        let description = f.take_opt("description").and_then(|n| self.string(n, "the description"));
        let source = f.take_opt("source").and_then(|n| self.string(n, "the source"));
        let effects_node = f.take_opt("effects");
        let effects = match effects_node {
            Some(n) => self.effects(n),
            None => Some(vec!["deny".to_owned(), "allow".to_owned()]),
        };
        let combine = match f.take_opt("combine") {
            None => Some(Combine::Overrides),
            Some(n) => match n.as_text() {
                Some("overrides") => Some(Combine::Overrides),
                Some("first") => Some(Combine::First),
                _ => {
                    self.error(Code::BadValue, n.span, "`combine` must be `overrides` or `first`");
                    None
                }
            },
        };
        let from_node = f.take_opt("effective_from");
        let effective_from = from_node.and_then(|n| self.instant(n, "`effective_from`"));
        let until_node = f.take_opt("effective_until");
        let effective_until = until_node.and_then(|n| self.instant(n, "`effective_until`"));
        if let (Some(a), Some(b), Some(n)) = (&effective_from, &effective_until, until_node)
            && b.at <= a.at
        {
            self.error(Code::BadValue, n.span, "`effective_until` must be after `effective_from`");
        }
        let card_scope = f.take_opt("card_scope").and_then(|n| self.card_scope(n));
        if let Some(n) = f.take_opt("schema") {
            self.schema = self.schema_decl(n);
        }
        // Definitions are declared before policies are lowered, so order does not matter.
        let defs_node = f.take_opt("definitions");
        let policies_node = self.required(&mut f, "policies");
        self.finish(
            f,
            &[
                "bundle_id",
                "version",
                "description",
                "source",
                "effects",
                "combine",
                "effective_from",
                "effective_until",
                "card_scope",
                "schema",
                "definitions",
                "policies",
            ],
        );
        let effects = effects.unwrap_or_default();
        if let Some(n) = defs_node {
            self.definitions(n);
        }
        let mut policies = Vec::new();
        if let Some(n) = policies_node {
            match &n.kind {
                NodeKind::Seq(items) if items.is_empty() => {
                    self.error(Code::BadValue, n.span, "a bundle needs at least one policy");
                }
                NodeKind::Seq(items) => {
                    let mut seen: HashMap<String, Span> = HashMap::new();
                    for item in items {
                        if let Some(p) = self.policy(item, &effects) {
                            let at = id_span(item);
                            if let Some(first) = seen.get(&p.id) {
                                self.diags.push(
                                    Diagnostic::error(Code::DuplicateId, at, format!("duplicate policy id `{}`", p.id))
                                        .with_label(*first, "first defined here"),
                                );
                            } else {
                                seen.insert(p.id.clone(), at);
                            }
                            policies.push(p);
                        }
                    }
                }
                _ => {
                    self.error(Code::WrongType, n.span, format!("expected `policies` (a list), found {}", n.describe()))
                }
            }
        }
        self.check_definitions();
        Some(Bundle {
            id: id?,
            version: version?,
            description,
            source,
            effects,
            combine: combine?,
            effective_from,
            effective_until,
            card_scope,
            schema: self.schema.take(),
            paths: std::mem::take(&mut self.paths),
            consts: std::mem::take(&mut self.consts),
            conds: std::mem::take(&mut self.conds),
            defs: std::mem::take(&mut self.defs),
            policies,
            terms: Vec::new(),
            externs: Vec::new(),
            states: Vec::new(),
            timezone: None,
            hold_ttl: None,
            required: Vec::new(),
        })
    }

    fn effects(&mut self, n: &Node) -> Option<Vec<String>> {
        let list = self.string_list(n, "`effects`")?;
        if list.is_empty() {
            self.error(Code::BadValue, n.span, "`effects` needs at least one effect");
            return None;
        }
        for (i, e) in list.iter().enumerate() {
            if e.is_empty() || e == "none" || e == "not_applicable" {
                self.error(Code::BadValue, n.span, format!("`{e}` cannot be an effect name"));
                return None;
            }
            if list.iter().take(i).any(|x| x == e) {
                self.error(Code::DuplicateId, n.span, format!("effect `{e}` is listed twice"));
                return None;
            }
        }
        Some(list)
    }

    fn card_scope(&mut self, n: &Node) -> Option<CardScope> {
        let mut f = self.fields(n, "`card_scope`")?;
        let vendor_id = self.required(&mut f, "vendor_id").and_then(|n| self.name(n, "`vendor_id`"));
        let allowed_actions = self.required(&mut f, "allowed_actions").and_then(|n| {
            let l = self.string_list(n, "`allowed_actions`")?;
            if l.is_empty() {
                self.error(Code::BadValue, n.span, "`allowed_actions` needs at least one action");
                return None;
            }
            Some(l)
        });
        let condition_ids = match f.take_opt("condition_ids") {
            Some(n) => self.string_list(n, "`condition_ids`"),
            None => Some(Vec::new()),
        };
        self.finish(f, &["vendor_id", "allowed_actions", "condition_ids"]);
        Some(CardScope { vendor_id: vendor_id?, allowed_actions: allowed_actions?, condition_ids: condition_ids? })
    }

    fn schema_decl(&mut self, n: &Node) -> Option<Vec<SchemaEntry>> {
        let NodeKind::Map(entries) = &n.kind else {
            self.error(
                Code::WrongType,
                n.span,
                format!("expected `schema` (a mapping of paths to types), found {}", n.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(ty_text) = v.as_text() else {
                self.error(Code::WrongType, v.span, format!("expected a type name, found {}", v.describe()));
                continue;
            };
            let Some(ty) = parse_type(ty_text) else {
                self.diags.push(
                    Diagnostic::error(Code::BadValue, v.span, format!("unknown type `{ty_text}`"))
                        .with_help("types are `string`, `number`, `bool`, `list<T>`, `object` and `any`"),
                );
                continue;
            };
            let path = self.intern_path(split_field(&k.text));
            out.push(SchemaEntry { path, ty, span: k.span });
        }
        Some(out)
    }

    fn definitions(&mut self, n: &Node) {
        let NodeKind::Map(entries) = &n.kind else {
            self.error(Code::WrongType, n.span, format!("expected `definitions` (a mapping), found {}", n.describe()));
            return;
        };
        // Declare every name first, so definitions may refer to each other in any order.
        let mut bodies = Vec::new();
        for (k, v) in entries {
            if !verdict_grammar::lexer::is_bare_ident(&k.text) {
                self.error(Code::BadValue, k.span, format!("`{}` is not a valid definition name", k.text));
                continue;
            }
            if self.def_ids.contains_key(&k.text) {
                self.error(Code::DuplicateId, k.span, format!("`{}` is defined twice", k.text));
                continue;
            }
            let id = DefId(u32::try_from(self.defs.len()).unwrap_or(u32::MAX));
            self.defs.push(Def { name: k.text.clone(), cond: CondId(u32::MAX), span: k.span });
            self.def_ids.insert(k.text.clone(), id);
            bodies.push((id, v));
        }
        for (id, body) in bodies {
            self.current_def = Some(id);
            let cond = self.condition(body, 1);
            self.current_def = None;
            if let (Some(c), Some(d)) = (cond, self.defs.get_mut(id.index())) {
                d.cond = c;
            }
        }
    }

    /// V008: definitions must not refer to themselves, directly or through others. V107: the
    /// nesting through definitions is bounded.
    fn check_definitions(&mut self) {
        let mut g: DiGraph<DefId, Span> = DiGraph::new();
        let nodes: Vec<_> =
            (0..self.defs.len()).map(|i| g.add_node(DefId(u32::try_from(i).unwrap_or(u32::MAX)))).collect();
        for (from, to, span) in &self.def_edges {
            if let (Some(a), Some(b)) = (nodes.get(from.index()), nodes.get(to.index())) {
                g.add_edge(*a, *b, *span);
            }
        }
        let mut cyclic = false;
        for scc in petgraph::algo::tarjan_scc(&g) {
            let self_loop = scc.len() == 1 && scc.first().is_some_and(|n| g.contains_edge(*n, *n));
            if scc.len() < 2 && !self_loop {
                continue;
            }
            cyclic = true;
            let mut members: Vec<DefId> = scc.iter().filter_map(|n| g.node_weight(*n).copied()).collect();
            members.sort();
            let names: Vec<String> =
                members.iter().filter_map(|d| self.defs.get(d.index())).map(|d| format!("`{}`", d.name)).collect();
            let first = members.first().and_then(|d| self.defs.get(d.index()));
            let span = first.map_or(Span::default(), |d| d.span);
            let mut diag = Diagnostic::error(
                Code::DefinitionCycle,
                span,
                format!(
                    "definitions refer to themselves in a cycle: {} → {}",
                    names.join(" → "),
                    names.first().cloned().unwrap_or_default()
                ),
            );
            for (from, to, span) in &self.def_edges {
                if members.contains(from) && members.contains(to) {
                    let to_name = self.defs.get(to.index()).map_or("", |d| d.name.as_str());
                    diag = diag.with_label(*span, format!("refers to `{to_name}` here"));
                }
            }
            self.diags.push(diag.with_help("a definition cannot depend on itself; inline or split the condition"));
        }
        if cyclic {
            return;
        }
        // Nesting depth through definitions (children precede parents in the arena, and the
        // definition graph is acyclic, so a fixed point is reached in at most |defs| rounds).
        let mut depth = vec![0usize; self.conds.len()];
        let mut def_depth = vec![0usize; self.defs.len()];
        for _ in 0..=self.defs.len() {
            let mut changed = false;
            for (i, node) in self.conds.iter().enumerate() {
                let d = 1 + match &node.cond {
                    Cond::Const(_) | Cond::Atom(_) => 0,
                    Cond::Not(c) => depth.get(c.index()).copied().unwrap_or(0),
                    Cond::All(v) | Cond::Any(v) => {
                        v.iter().map(|c| depth.get(c.index()).copied().unwrap_or(0)).max().unwrap_or(0)
                    }
                    Cond::Ref(d) => def_depth.get(d.index()).copied().unwrap_or(0),
                };
                if let Some(slot) = depth.get_mut(i)
                    && *slot != d
                {
                    *slot = d;
                    changed = true;
                }
            }
            for (i, def) in self.defs.iter().enumerate() {
                let d = depth.get(def.cond.index()).copied().unwrap_or(0);
                if let Some(slot) = def_depth.get_mut(i)
                    && *slot != d
                {
                    *slot = d;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if let Some((i, _)) = depth.iter().enumerate().find(|(_, d)| **d > MAX_DEPTH) {
            let span = self.conds.get(i).map_or(Span::default(), |c| c.span);
            self.error(
                Code::TooDeep,
                span,
                format!("condition nested deeper than {MAX_DEPTH} levels through definitions"),
            );
        }
    }

    fn policy(&mut self, n: &Node, effects: &[String]) -> Option<Policy> {
        let mut f = self.fields(n, "a policy")?;
        let id = self.required(&mut f, "id").and_then(|n| self.name(n, "the policy id"));
        let description = f.take_opt("description").and_then(|n| self.string(n, "the description"));
        let card_derived = match f.take_opt("card_derived") {
            None => false,
            Some(Node { kind: NodeKind::Bool(b), .. }) => *b,
            Some(other) => {
                self.error(
                    Code::WrongType,
                    other.span,
                    format!("expected `card_derived` (a boolean), found {}", other.describe()),
                );
                false
            }
        };
        let match_mode = match f.take_opt("match") {
            None => Some(MatchMode::First),
            Some(n) => match n.as_text() {
                Some("first") => Some(MatchMode::First),
                Some("priority") => Some(MatchMode::Priority),
                _ => {
                    self.error(Code::BadValue, n.span, "`match` must be `first` or `priority`");
                    None
                }
            },
        };
        let default_node = f.take_opt("default_effect");
        let default = match default_node {
            None => Some(Some(EffectId(0))),
            Some(n) => match n.as_text() {
                Some("none") => Some(None),
                Some(e) => self.effect_id(e, n.span, effects).map(Some),
                None => {
                    self.error(Code::WrongType, n.span, format!("expected an effect name, found {}", n.describe()));
                    None
                }
            },
        };
        let rules_node = self.required(&mut f, "rules");
        self.finish(f, &["id", "description", "card_derived", "match", "default_effect", "rules"]);
        let mut rules = Vec::new();
        if let Some(rn) = rules_node {
            match &rn.kind {
                NodeKind::Seq(items) if items.is_empty() => {
                    self.error(Code::BadValue, rn.span, "a policy needs at least one rule")
                }
                NodeKind::Seq(items) => {
                    let mut seen: HashMap<String, Span> = HashMap::new();
                    for item in items {
                        if let Some(r) = self.rule(item, effects, id.as_deref()) {
                            let at = id_span(item);
                            if let Some(first) = seen.get(&r.id) {
                                self.diags.push(
                                    Diagnostic::error(Code::DuplicateId, at, format!("duplicate rule id `{}`", r.id))
                                        .with_label(*first, "first defined here")
                                        .in_rule(id.as_deref(), Some(&r.id)),
                                );
                            } else {
                                seen.insert(r.id.clone(), at);
                            }
                            rules.push(r);
                        }
                    }
                }
                _ => {
                    self.error(Code::WrongType, rn.span, format!("expected `rules` (a list), found {}", rn.describe()))
                }
            }
        }
        Some(Policy {
            id: id?,
            span: n.span,
            description,
            card_derived,
            match_mode: match_mode?,
            default: default?,
            rules,
        })
    }

    fn effect_id(&mut self, name: &str, span: Span, effects: &[String]) -> Option<EffectId> {
        match effects.iter().position(|e| e == name) {
            Some(i) => Some(EffectId(u32::try_from(i).unwrap_or(u32::MAX))),
            None => {
                let list: Vec<String> = effects.iter().map(|e| format!("`{e}`")).collect();
                self.diags.push(
                    Diagnostic::error(Code::UnknownEffect, span, format!("unknown effect `{name}`"))
                        .with_help(format!("the bundle's effects are {}", list.join(", "))),
                );
                None
            }
        }
    }

    fn rule(&mut self, n: &Node, effects: &[String], policy: Option<&str>) -> Option<Rule> {
        // Every finding inside the rule (keys, effect, priority, condition) names the rule.
        let before = self.diags.len();
        let mut f = self.fields(n, "a rule")?;
        let id = self.required(&mut f, "id").and_then(|n| self.name(n, "the rule id"));
        let effect = self.required(&mut f, "effect").and_then(|n| match n.as_text() {
            Some(e) => self.effect_id(e, n.span, effects),
            None => {
                self.error(Code::WrongType, n.span, format!("expected an effect name, found {}", n.describe()));
                None
            }
        });
        let when = self.required(&mut f, "when");
        let description = f.take_opt("description").and_then(|n| self.string(n, "the description"));
        let tags = f.take_opt("tags").and_then(|n| self.string_list(n, "`tags`"));
        let codes = match f.take_opt("codes") {
            Some(n) => self.string_list(n, "`codes`").unwrap_or_default(),
            None => Vec::new(),
        };
        let obligations = match f.take_opt("obligations") {
            None => Map::new(),
            Some(n) => match n.to_json() {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    self.error(
                        Code::WrongType,
                        n.span,
                        format!("expected `obligations` (a mapping), found {}", n.describe()),
                    );
                    Map::new()
                }
                Err(d) => {
                    self.diags.push(d);
                    Map::new()
                }
            },
        };
        let priority = match f.take_opt("priority") {
            None => 0,
            Some(Node { kind: NodeKind::Int(i), .. }) => *i,
            Some(other) => {
                self.error(
                    Code::WrongType,
                    other.span,
                    format!("expected `priority` (an integer), found {}", other.describe()),
                );
                0
            }
        };
        self.finish(f, &["id", "effect", "when", "description", "tags", "codes", "obligations", "priority"]);
        let cond = when.and_then(|w| self.condition(w, 1));
        for d in self.diags.iter_mut().skip(before) {
            if d.rule.is_none() {
                d.policy = policy.map(str::to_owned);
                d.rule = id.clone();
            }
        }
        Some(Rule {
            id: id?,
            span: n.span,
            effect: effect?,
            cond: cond?,
            description,
            codes,
            obligations,
            priority,
            tags,
            template: None,
        })
    }

    // ---- conditions ----------------------------------------------------------------------

    /// A condition: a matcher mapping, an expression string, or a parsed DSL expression.
    fn condition(&mut self, n: &Node, depth: usize) -> Option<CondId> {
        if depth > MAX_DEPTH {
            self.error(Code::TooDeep, n.span, format!("condition nested deeper than {MAX_DEPTH} levels"));
            return None;
        }
        match &n.kind {
            NodeKind::Cond(e) => self.expr(e, 0, depth),
            NodeKind::Str(s) => self.expr_string(s, n.span, depth),
            NodeKind::Map(_) => self.matcher(n, depth),
            _ => {
                self.error(
                    Code::WrongType,
                    n.span,
                    format!("expected a condition (a matcher or an expression string), found {}", n.describe()),
                );
                None
            }
        }
    }

    /// Parses a condition written as a string inside YAML/JSON and lowers it with spans in the file.
    fn expr_string(&mut self, text: &str, span: Span, depth: usize) -> Option<CondId> {
        let parsed = verdict_grammar::parse_expr(text);
        // Map offsets into the file when the scalar's text appears verbatim after its quote.
        let raw = self.file.slice(span);
        let offset =
            if raw.get(1..).is_some_and(|r| r.starts_with(text)) && (raw.starts_with('"') || raw.starts_with('\'')) {
                Some(span.start + 1)
            } else if raw.starts_with(text) {
                Some(span.start)
            } else {
                None
            };
        let place = |s: Span| offset.map_or(span, |o| s.shift(o));
        let mut failed = false;
        for e in &parsed.errors {
            failed = true;
            self.diags.push(Diagnostic::error(Code::Syntax, place(e.span), format!("in condition: {}", e.message)));
        }
        let expr = parsed.tree?;
        if failed {
            return None;
        }
        self.expr(&expr, offset.unwrap_or(span.start), depth).inspect(|_| {
            let _ = place;
        })
    }

    fn matcher(&mut self, n: &Node, depth: usize) -> Option<CondId> {
        let mut f = self.fields(n, "a matcher")?;
        let kind_node = self.required(&mut f, "kind");
        let kind = kind_node.and_then(|k| self.string(k, "the matcher kind"))?;
        match kind.as_str() {
            "always" => {
                self.finish(f, &["kind"]);
                Some(self.push(Cond::Const(true), n.span))
            }
            "all_of" | "any_of" => {
                let list = self.required(&mut f, "matchers");
                self.finish(f, &["kind", "matchers"]);
                let list = list?;
                let NodeKind::Seq(items) = &list.kind else {
                    self.error(
                        Code::WrongType,
                        list.span,
                        format!("expected `matchers` (a list), found {}", list.describe()),
                    );
                    return None;
                };
                if items.is_empty() {
                    self.error(Code::BadValue, list.span, format!("`{kind}` needs at least one matcher"));
                    return None;
                }
                let mut children = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.condition(item, depth + 1) {
                        Some(c) => children.push(c),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                let cond = if kind == "all_of" { Cond::All(children) } else { Cond::Any(children) };
                Some(self.push(cond, n.span))
            }
            "not" => {
                let inner = self.required(&mut f, "matcher");
                self.finish(f, &["kind", "matcher"]);
                let c = self.condition(inner?, depth + 1)?;
                Some(self.push(Cond::Not(c), n.span))
            }
            other => {
                let Some(op) = AtomOp::from_yaml_kind(other) else {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadValue,
                            kind_node.map_or(n.span, |k| k.span),
                            format!("unknown matcher kind `{other}`"),
                        )
                        .with_help(format!("matcher kinds are {}", matcher_kinds().join(", "))),
                    );
                    return None;
                };
                let field = self.required(&mut f, "field");
                let value = f.take("value");
                self.finish(f, &["kind", "field", "value"]);
                let field_node = field?;
                let field = self.string(field_node, "`field`")?;
                if field.is_empty() {
                    self.error(Code::BadValue, field_node.span, "`field` must not be empty");
                    return None;
                }
                let path = self.intern_path(split_field(&field));
                let rhs = if op.is_unary() {
                    Operand::None
                } else {
                    let Some(v) =
                        value.filter(|v| !matches!(v.kind, NodeKind::Null) || matches!(op, AtomOp::Eq | AtomOp::Ne))
                    else {
                        self.error(Code::MissingKey, n.span, format!("matcher `{other}` requires a `value`"));
                        return None;
                    };
                    let json = match v.to_json() {
                        Ok(j) => j,
                        Err(d) => {
                            self.diags.push(d);
                            return None;
                        }
                    };
                    if matches!(op, AtomOp::In | AtomOp::NotIn) && !json.is_array() {
                        self.error(Code::WrongType, v.span, format!("matcher `{other}` requires `value` to be a list"));
                        return None;
                    }
                    if op == AtomOp::Matches {
                        let Value::String(p) = &json else {
                            self.error(Code::WrongType, v.span, "regex matcher requires a string pattern");
                            return None;
                        };
                        self.check_regex(p, v.span)?;
                    }
                    Operand::Const(self.intern_const(json))
                };
                self.atom(op, Operand::Path(path), rhs, n.span)
            }
        }
    }

    fn check_regex(&mut self, pattern: &str, span: Span) -> Option<()> {
        match regex::Regex::new(pattern) {
            Ok(_) => Some(()),
            Err(e) => {
                let msg = e.to_string();
                let short = msg.lines().last().unwrap_or(&msg).trim().trim_start_matches("error: ").to_owned();
                self.diags.push(
                    Diagnostic::error(Code::BadRegex, span, format!("invalid regular expression `{pattern}`: {short}"))
                        .with_help("patterns use Rust `regex` syntax: no look-around or back-references"),
                );
                None
            }
        }
    }

    /// Lowers a DSL expression. `base` is added to its spans (for expressions inside YAML strings).
    fn expr(&mut self, e: &Expr, base: u32, depth: usize) -> Option<CondId> {
        if depth > MAX_DEPTH {
            self.error(Code::TooDeep, e.span.shift(base), format!("condition nested deeper than {MAX_DEPTH} levels"));
            return None;
        }
        let span = e.span.shift(base);
        match &e.kind {
            ExprKind::Bool(b) => Some(self.push(Cond::Const(*b), span)),
            ExprKind::Paren(inner) => self.expr(inner, base, depth + 1),
            ExprKind::Not(inner) => {
                let c = self.expr(inner, base, depth + 1)?;
                Some(self.push(Cond::Not(c), span))
            }
            ExprKind::And(v) | ExprKind::Or(v) => {
                let mut children = Vec::with_capacity(v.len());
                let mut ok = true;
                for c in v {
                    match self.expr(c, base, depth + 1) {
                        Some(id) => children.push(id),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                let cond = if matches!(e.kind, ExprKind::And(_)) { Cond::All(children) } else { Cond::Any(children) };
                Some(self.push(cond, span))
            }
            ExprKind::Exists(p) | ExprKind::Missing(p) => {
                let op = if matches!(e.kind, ExprKind::Exists(_)) { AtomOp::Exists } else { AtomOp::Missing };
                let path = self.intern_path(p.segments.iter().map(|s| s.text.clone()).collect());
                self.atom(op, Operand::Path(path), Operand::None, span)
            }
            ExprKind::Name(p) => {
                let single = p.segments.len() == 1;
                let name = p.segments.first().map(|s| s.text.as_str()).unwrap_or("");
                match self.def_ids.get(name) {
                    Some(d) if single => {
                        let d = *d;
                        if let Some(cur) = self.current_def {
                            self.def_edges.push((cur, d, span));
                        }
                        Some(self.push(Cond::Ref(d), span))
                    }
                    _ => {
                        let shown = verdict_grammar::printer::path(p);
                        self.diags.push(
                            Diagnostic::error(Code::UnknownName, span, format!("`{shown}` is not a definition"))
                                .with_help(format!("to test a boolean path write `{shown} == true`; to name a condition write `let {shown} = …`")),
                        );
                        None
                    }
                }
            }
            ExprKind::Cmp { op, lhs, rhs } => {
                let (op, lhs, rhs) = normalize(*op, lhs, rhs);
                let l = self.operand(lhs, base, depth + 1)?;
                let r = self.operand(rhs, base, depth + 1)?;
                let atom_op = match op {
                    CmpOp::Eq => AtomOp::Eq,
                    CmpOp::Ne => AtomOp::Ne,
                    CmpOp::Lt => AtomOp::Lt,
                    CmpOp::Le => AtomOp::Le,
                    CmpOp::Gt => AtomOp::Gt,
                    CmpOp::Ge => AtomOp::Ge,
                    CmpOp::In => AtomOp::In,
                    CmpOp::NotIn => AtomOp::NotIn,
                    CmpOp::Contains => AtomOp::Contains,
                    CmpOp::Matches => AtomOp::Matches,
                    CmpOp::StartsWith => AtomOp::StartsWith,
                    CmpOp::EndsWith => AtomOp::EndsWith,
                };
                if atom_op == AtomOp::Matches {
                    match r {
                        Operand::Const(c) => {
                            let pattern = self.consts.get(c.index()).cloned();
                            match pattern {
                                Some(Value::String(p)) => self.check_regex(&p, rhs.span().shift(base))?,
                                _ => {
                                    self.error(
                                        Code::WrongType,
                                        rhs.span().shift(base),
                                        "`matches` needs a string pattern",
                                    );
                                    return None;
                                }
                            }
                        }
                        _ => {
                            self.error(
                                Code::WrongType,
                                rhs.span().shift(base),
                                "`matches` needs a literal pattern, not a path",
                            );
                            return None;
                        }
                    }
                }
                if matches!(atom_op, AtomOp::In | AtomOp::NotIn)
                    && let Operand::Const(c) = r
                    && !self.consts.get(c.index()).is_some_and(Value::is_array)
                {
                    self.error(
                        Code::WrongType,
                        rhs.span().shift(base),
                        format!("`{}` needs a list on its right", op.text()),
                    );
                    return None;
                }
                self.atom(atom_op, l, r, span)
            }
            ExprKind::Error => None,
        }
    }

    fn operand(&mut self, o: &ast::Operand, base: u32, depth: usize) -> Option<Operand> {
        match o {
            ast::Operand::Path(p) => {
                Some(Operand::Path(self.intern_path(p.segments.iter().map(|s| s.text.clone()).collect())))
            }
            ast::Operand::Lit(l) => {
                let Some(node) = crate::dsl::lit_node(l, base, depth) else {
                    self.error(
                        Code::TooDeep,
                        l.span.shift(base),
                        format!("value nested deeper than {MAX_DEPTH} levels"),
                    );
                    return None;
                };
                match node.to_json() {
                    Ok(v) => Some(Operand::Const(self.intern_const(v))),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                }
            }
        }
    }

    /// Builds an atom node, with its canonical text, position and type checks.
    fn atom(&mut self, op: AtomOp, lhs: Operand, rhs: Operand, span: Span) -> Option<CondId> {
        let text = crate::emit::atom_text(op, lhs, rhs, &self.paths, &self.consts);
        self.type_check(op, lhs, rhs, span, &text);
        let (line, column) = self.line_col(span.start);
        Some(self.push(Cond::Atom(Atom { op, lhs, rhs, text, line, column }), span))
    }

    // ---- types ---------------------------------------------------------------------------

    /// The declared type of a path, `Some(None)` when known but untyped, `None` when unknown.
    fn path_type(&self, segments: &[String]) -> Option<Option<Type>> {
        let schema = self.schema.as_ref()?;
        let mut best: Option<Option<Type>> = None;
        for entry in schema {
            let declared = self.paths.get(entry.path.index()).map_or(&[][..], Vec::as_slice);
            if declared == segments {
                return Some(Some(entry.ty.clone()));
            }
            if declared.len() > segments.len() && declared.get(..segments.len()) == Some(segments) {
                best = Some(Some(Type::Object));
            } else if declared.len() < segments.len() && segments.get(..declared.len()) == Some(declared) {
                let mut ty = entry.ty.clone();
                for seg in segments.iter().skip(declared.len()) {
                    ty = match ty {
                        Type::Any | Type::Object => Type::Any,
                        Type::List(inner) if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() => *inner,
                        _ => return best.or(Some(None)).filter(|_| false),
                    };
                }
                best = Some(Some(ty));
            }
        }
        best
    }

    fn type_check(&mut self, op: AtomOp, lhs: Operand, rhs: Operand, span: Span, text: &str) {
        let has_schema = self.schema.is_some();
        let severity_error = has_schema;
        let mut problems: Vec<String> = Vec::new();
        // Unknown paths (V007) against the schema.
        for o in [lhs, rhs] {
            if let Operand::Path(p) = o {
                let segs = self.paths.get(p.index()).cloned().unwrap_or_default();
                if has_schema && self.path_type(&segs).is_none() {
                    let shown = verdict_grammar::printer::path_of(segs.iter().map(String::as_str));
                    self.diags.push(
                        Diagnostic::error(Code::UnknownPath, span, format!("unknown path `{shown}`"))
                            .with_help("declare it in the bundle's `schema`, or fix the spelling"),
                    );
                }
            }
        }
        let ty_of = |cx: &Self, o: Operand| -> Option<Kind> {
            match o {
                Operand::Const(c) => cx.consts.get(c.index()).map(kind_of_value),
                Operand::Path(p) => {
                    let segs = cx.paths.get(p.index())?;
                    match cx.path_type(segs) {
                        Some(Some(t)) => kind_of_type(&t),
                        _ => None,
                    }
                }
                Operand::Term(_) | Operand::None => None,
            }
        };
        let (l, r) = (ty_of(self, lhs), ty_of(self, rhs));
        use Kind as K;
        match op {
            AtomOp::Lt | AtomOp::Le | AtomOp::Gt | AtomOp::Ge => {
                for k in [l, r].into_iter().flatten() {
                    if !matches!(k, K::Number | K::String) {
                        problems.push(format!(
                            "`{}` orders only numbers and strings, and this operand is {}",
                            op.name(),
                            k.name()
                        ));
                    }
                }
                if let (Some(a), Some(b)) = (l, r)
                    && matches!(a, K::Number | K::String)
                    && matches!(b, K::Number | K::String)
                    && a != b
                {
                    problems.push(format!("it compares {} with {}", a.name(), b.name()));
                }
            }
            AtomOp::Eq | AtomOp::Ne => {
                if let (Some(a), Some(b)) = (l, r)
                    && a != b
                    && (matches!(lhs, Operand::Path(_)) || matches!(rhs, Operand::Path(_)))
                {
                    problems.push(format!("it compares {} with {}", a.name(), b.name()));
                }
            }
            AtomOp::StartsWith | AtomOp::EndsWith | AtomOp::Matches => {
                for k in [l, r].into_iter().flatten() {
                    if k != K::String {
                        problems.push(format!("`{}` applies to strings, and this operand is {}", op.name(), k.name()));
                    }
                }
            }
            AtomOp::Contains => {
                if let Some(a) = l
                    && !matches!(a, K::String | K::List | K::Object)
                {
                    problems.push(format!(
                        "`contains` looks into strings, lists and objects, and the left side is {}",
                        a.name()
                    ));
                }
                if let (Some(K::String), Some(b)) = (l, r)
                    && b != K::String
                {
                    problems.push(format!("a string contains only strings, and the right side is {}", b.name()));
                }
                if let (Some(K::Object), Some(b)) = (l, r)
                    && b != K::String
                {
                    problems.push(format!("an object's keys are strings, and the right side is {}", b.name()));
                }
            }
            AtomOp::In | AtomOp::NotIn => {
                if let Some(b) = r
                    && b != K::List
                {
                    problems.push(format!("`in` needs a list on its right, and it is {}", b.name()));
                }
            }
            AtomOp::Exists | AtomOp::Missing | AtomOp::Holds => {}
        }
        if let Some(p) = problems.into_iter().next() {
            let msg = format!("`{text}` is always false: {p}");
            let d = if severity_error {
                Diagnostic::error(Code::IllTyped, span, msg)
            } else {
                Diagnostic::warning(Code::IllTyped, span, msg)
            };
            self.diags.push(d);
        }
    }
}

/// The span of a policy's or rule's `id` value (the whole mapping's when there is none): where a
/// duplicate id is reported. A YAML mapping's span runs on to the next item, so it would mislead.
fn id_span(n: &Node) -> Span {
    match &n.kind {
        NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.text == "id").map_or(n.span, |(_, v)| v.span),
        _ => n.span,
    }
}

/// The coarse type of an operand, for V006.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    List,
    Object,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::List => "a list",
            Kind::Object => "an object",
        }
    }
}

fn kind_of_value(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::List,
        Value::Object(_) => Kind::Object,
    }
}

fn kind_of_type(t: &Type) -> Option<Kind> {
    match t {
        Type::String => Some(Kind::String),
        Type::Number => Some(Kind::Number),
        Type::Bool => Some(Kind::Bool),
        Type::List(_) => Some(Kind::List),
        Type::Object => Some(Kind::Object),
        Type::Any => None,
    }
}

/// The matcher kinds of the reference format: every atom the matcher form can write (from the
/// vocabulary), then the structural kinds.
fn matcher_kinds() -> Vec<&'static str> {
    AtomOp::ALL.iter().filter_map(|a| a.info().yaml).chain(["always", "all_of", "any_of", "not"]).collect()
}

/// Puts the path first in symmetric and ordering comparisons written literal-first
/// (`"admin" == subject.role`, `3 < x`), so equal atoms intern alike.
fn normalize<'e>(
    op: CmpOp,
    lhs: &'e ast::Operand,
    rhs: &'e ast::Operand,
) -> (CmpOp, &'e ast::Operand, &'e ast::Operand) {
    if matches!(lhs, ast::Operand::Lit(_)) && matches!(rhs, ast::Operand::Path(_)) {
        let flipped = match op {
            CmpOp::Eq => Some(CmpOp::Eq),
            CmpOp::Ne => Some(CmpOp::Ne),
            CmpOp::Lt => Some(CmpOp::Gt),
            CmpOp::Le => Some(CmpOp::Ge),
            CmpOp::Gt => Some(CmpOp::Lt),
            CmpOp::Ge => Some(CmpOp::Le),
            _ => None,
        };
        if let Some(f) = flipped {
            return (f, rhs, lhs);
        }
    }
    (op, lhs, rhs)
}

/// Parses `string`, `number`, `bool`, `object`, `any`, `list<T>`.
pub fn parse_type(text: &str) -> Option<Type> {
    let t = text.trim();
    match t {
        "string" => Some(Type::String),
        "number" => Some(Type::Number),
        "bool" | "boolean" => Some(Type::Bool),
        "object" => Some(Type::Object),
        "any" => Some(Type::Any),
        "list" => Some(Type::List(Box::new(Type::Any))),
        _ => {
            let inner = t.strip_prefix("list<")?.strip_suffix('>')?;
            Some(Type::List(Box::new(parse_type(inner)?)))
        }
    }
}
