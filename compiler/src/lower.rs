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
use std::collections::{HashMap, HashSet};
use verdict_grammar::ast::{self, Expr, ExprKind, MAX_DEPTH, Span};
use verdict_runtime::request::split_field;

/// Which source form the tree came from: it only changes the names used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Yaml,
    Dsl,
}

/// Lowers a bundle tree. Returns the bundle when no error was reported.
pub fn lower(root: &Node, file: &SourceFile, form: Form, diags: &mut Vec<Diagnostic>) -> Option<Bundle> {
    lower_with(root, file, form, diags, &|| {})
}

/// [`lower`], calling `checkpoint` before each policy, rule and definition (see
/// [`crate::compile_with`]).
pub fn lower_with(
    root: &Node,
    file: &SourceFile,
    form: Form,
    diags: &mut Vec<Diagnostic>,
    checkpoint: &dyn Fn(),
) -> Option<Bundle> {
    let mut cx = Lower {
        checkpoint,
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
        schema_index: None,
        after_syntax_error: false,
        last_position: None,
        terms: Vec::new(),
        term_ids: HashMap::new(),
        externs: Vec::new(),
        extern_ids: HashMap::new(),
        states: Vec::new(),
        state_ids: HashMap::new(),
        roots: HashSet::new(),
    };
    cx.after_syntax_error = form == Form::Dsl && cx.diags.iter().any(|d| d.code == Code::Syntax);
    let errors_before = cx.diags.iter().filter(|d| d.severity == Severity::Error).count();
    let bundle = cx.bundle(root);
    let errors_after = cx.diags.iter().filter(|d| d.severity == Severity::Error).count();
    if errors_after > errors_before { None } else { bundle }
}

struct Lower<'a> {
    /// Called before each policy, rule and definition: it may unwind to abandon the work.
    checkpoint: &'a dyn Fn(),
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
    schema_index: Option<SchemaIndex>,
    /// A `.verdict` file whose parser already reported errors: what recovery skipped may be the
    /// very setting or block that now looks missing, so missing keys are not reported again.
    after_syntax_error: bool,
    /// The byte offset, line and column of the last atom placed, see [`Lower::line_col`].
    last_position: Option<(u32, u32, u32)>,
    terms: Vec<TermNode>,
    term_ids: HashMap<Term, TermId>,
    externs: Vec<ExternDecl>,
    extern_ids: HashMap<String, ExternId>,
    states: Vec<StateDecl>,
    state_ids: HashMap<String, StateId>,
    /// The names declared so far that a request path's first segment must not be read as
    /// (lets, states, externs): printing asks once per path, so a set, not a scan.
    roots: HashSet<String>,
}

/// The declared type of a path, `Some(None)` when known but untyped, `None` when unknown.
///
/// The schema's entries are considered in order: an entry for the path itself decides; one for
/// a prefix of it gives the type reached through `list<T>` indices and `object`/`any` (or
/// makes the path unknown when it cannot be descended); one for a longer path makes it an
/// object; the last of these wins. Only the entries related to the path are visited, through
/// [`SchemaIndex`], so checking every atom of a bundle stays linear in the schema's size.
fn schema_type(
    schema: &[SchemaEntry],
    index: &SchemaIndex,
    paths: &[Vec<String>],
    segments: &[String],
) -> Option<Option<Type>> {
    // The entries for the path itself and for its prefixes, in schema order.
    let (related, longer) = index.related(segments);
    let mut best: Option<(usize, Type)> = None;
    for i in related {
        let Some(entry) = schema.get(i) else { continue };
        let declared = paths.get(entry.path.index()).map_or(&[][..], Vec::as_slice);
        if declared == segments {
            return Some(Some(entry.ty.clone()));
        }
        let mut ty = entry.ty.clone();
        for seg in segments.iter().skip(declared.len()) {
            ty = match ty {
                Type::Any | Type::Object => Type::Any,
                Type::List(inner) if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() => *inner,
                _ => return None,
            };
        }
        best = Some((i, ty));
    }
    // An entry for a longer path, after the last prefix entry, makes it an object.
    match (best, longer) {
        (Some((i, _)), Some(j)) if j > i => Some(Some(Type::Object)),
        (None, Some(_)) => Some(Some(Type::Object)),
        (Some((_, ty)), _) => Some(Some(ty)),
        (None, None) => None,
    }
}

/// The schema's entries in a trie of path segments, so that typing an atom visits only the
/// entries related to its paths (a linear scan per atom made a 40,000-path schema cost seconds).
/// Building it is linear in the schema's segments.
struct SchemaIndex {
    /// Child nodes by (parent node, segment); node 0 is the root (the empty path).
    children: HashMap<(usize, String), usize>,
    /// Per node: the entries declaring exactly its path, and the last entry declaring a path below it.
    nodes: Vec<(Vec<usize>, Option<usize>)>,
}

impl SchemaIndex {
    fn new(schema: &[SchemaEntry], paths: &[Vec<String>]) -> SchemaIndex {
        let mut index = SchemaIndex { children: HashMap::new(), nodes: vec![(Vec::new(), None)] };
        for (i, entry) in schema.iter().enumerate() {
            let declared = paths.get(entry.path.index()).map_or(&[][..], Vec::as_slice);
            let mut node = 0;
            for seg in declared {
                if let Some(n) = index.nodes.get_mut(node) {
                    n.1 = Some(i);
                }
                let next = index.nodes.len();
                node = *index.children.entry((node, seg.clone())).or_insert(next);
                if node == next {
                    index.nodes.push((Vec::new(), None));
                }
            }
            if let Some(n) = index.nodes.get_mut(node) {
                n.0.push(i);
            }
        }
        index
    }

    /// The entries declaring the path or one of its prefixes (in schema order), and the last entry
    /// declaring a longer path under it.
    fn related(&self, segments: &[String]) -> (Vec<usize>, Option<usize>) {
        let mut found: Vec<usize> = self.nodes.first().map(|n| n.0.clone()).unwrap_or_default();
        let mut node = 0;
        for seg in segments {
            // A lookup by (node, segment) needs an owned key; segments are short.
            let Some(next) = self.children.get(&(node, seg.clone())) else {
                found.sort_unstable();
                return (found, None);
            };
            node = *next;
            if let Some(n) = self.nodes.get(node) {
                found.extend(&n.0);
            }
        }
        found.sort_unstable();
        (found, self.nodes.get(node).and_then(|n| n.1))
    }
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

    /// An id (of the bundle, a policy, a rule, a vendor): a string, or a bare word in the DSL; not
    /// empty, and free of characters that would let it rewrite the lines it is printed on (logs,
    /// audit lines, traces): see [`forbidden_in_id`].
    fn name(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_text() {
            Some(s) if !s.is_empty() => {
                self.id_chars(s, node.span, what)?;
                Some(s.to_owned())
            }
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

    /// Refuses an id with a character [`forbidden_in_id`] names (V108).
    fn id_chars(&mut self, text: &str, span: Span, what: &str) -> Option<()> {
        let Some(c) = text.chars().find(|c| forbidden_in_id(*c)) else {
            return Some(());
        };
        self.diags.push(
            Diagnostic::error(
                Code::BadValue,
                span,
                format!("{what} `{}` contains the character U+{:04X}", text.escape_debug(), u32::from(c)),
            )
            .with_help(
                "ids may not contain control characters, line separators or bidirectional formatting characters",
            ),
        );
        None
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
            self.schema_index = self.schema.as_ref().map(|s| SchemaIndex::new(s, &self.paths));
        }
        let timezone = f.take_opt("timezone").and_then(|n| {
            let name = self.string(n, "`timezone`")?;
            if jiff::tz::TimeZone::get(&name).is_err() {
                self.diags.push(
                    Diagnostic::error(Code::BadValue, n.span, format!("unknown timezone `{name}`"))
                        .with_help("timezones are IANA names such as `UTC` or `Europe/Berlin`"),
                );
                return None;
            }
            Some(name)
        });
        let hold_ttl = f.take_opt("hold_ttl").and_then(|n| self.duration(n, "`hold_ttl`"));
        let required_node = f.take_opt("required");
        let externs_node = f.take_opt("externs");
        let state_node = f.take_opt("state");
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
                "required",
                "timezone",
                "hold_ttl",
                "externs",
                "state",
                "definitions",
                "policies",
            ],
        );
        let effects = effects.unwrap_or_default();
        let required = required_node.map(|n| self.required_paths(n)).unwrap_or_default();
        if let Some(n) = externs_node {
            self.externs_decl(n);
        }
        if let Some(n) = state_node {
            self.states_decl(n, &effects);
        }
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
            roots: std::mem::take(&mut self.roots),
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
            terms: std::mem::take(&mut self.terms),
            externs: std::mem::take(&mut self.externs),
            states: std::mem::take(&mut self.states),
            timezone,
            hold_ttl,
            required,
        })
    }

    fn effects(&mut self, n: &Node) -> Option<Vec<String>> {
        let list = self.string_list(n, "`effects`")?;
        if list.is_empty() {
            self.error(Code::BadValue, n.span, "`effects` needs at least one effect");
            return None;
        }
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(list.len());
        for e in &list {
            if e.is_empty() || e == "none" || e == "not_applicable" {
                self.error(Code::BadValue, n.span, format!("`{e}` cannot be an effect name"));
                return None;
            }
            self.id_chars(e, n.span, "the effect")?;
            if !seen.insert(e) {
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
            self.roots.insert(k.text.clone());
            self.def_ids.insert(k.text.clone(), id);
            bodies.push((id, v));
        }
        for (id, body) in bodies {
            (self.checkpoint)();
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
        // Nesting depth through definitions: one memoised post-order walk over the arena, where
        // a definition use continues into the definition's condition (the graph is acyclic, as
        // checked above), so the work is linear in the nodes and edges however much is shared.
        let children = |i: usize| -> Vec<usize> {
            match self.conds.get(i).map(|n| &n.cond) {
                Some(Cond::Not(c)) => vec![c.index()],
                Some(Cond::All(v) | Cond::Any(v)) => v.iter().map(|c| c.index()).collect(),
                Some(Cond::Ref(d)) => self.defs.get(d.index()).map(|d| d.cond.index()).into_iter().collect(),
                Some(Cond::Const(_) | Cond::Atom(_)) | None => Vec::new(),
            }
        };
        let mut depth: Vec<Option<usize>> = vec![None; self.conds.len()];
        for root in 0..self.conds.len() {
            let mut stack = vec![(root, false)];
            while let Some((i, expanded)) = stack.pop() {
                if depth.get(i).copied().flatten().is_some() {
                    continue;
                }
                let kids = children(i);
                if expanded {
                    let d = 1 + kids.iter().filter_map(|k| depth.get(*k).copied().flatten()).max().unwrap_or(0);
                    if let Some(slot) = depth.get_mut(i) {
                        *slot = Some(d);
                    }
                } else {
                    stack.push((i, true));
                    stack.extend(
                        kids.into_iter().filter(|k| depth.get(*k).copied().flatten().is_none()).map(|k| (k, false)),
                    );
                }
            }
        }
        let depth: Vec<usize> = depth.into_iter().map(|d| d.unwrap_or(0)).collect();
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
        (self.checkpoint)();
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
                // A policy without rules decides its default: a bundle-level default.
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
        (self.checkpoint)();
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
        let description_node = f.take_opt("description");
        let template_node = f.take_opt("reason_template");
        if let (Some(_), Some(t)) = (description_node, template_node) {
            self.error(Code::BadValue, t.span, "a rule has a `description` or a `reason_template`, not both");
        }
        let description = description_node.and_then(|n| self.string(n, "the description"));
        let template = template_node.and_then(|n| {
            let text = self.string(n, "the reason template")?;
            self.template(&text, n.span)
        });
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
        self.finish(
            f,
            &["id", "effect", "when", "description", "reason_template", "tags", "codes", "obligations", "priority"],
        );
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
            template,
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

    /// Lowers a DSL expression in condition position. `base` is added to its spans (for
    /// expressions inside YAML strings).
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
            ExprKind::Name(p) => {
                let single = p.segments.len() == 1 && !p.input;
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
            ExprKind::Call { callee, args } => {
                let name = callee.segments.first().map(|s| s.text.as_str()).unwrap_or("");
                if callee.segments.len() == 1 && !callee.input {
                    if let Some(op) = AtomOp::from_presence(name) {
                        let [arg] = args.as_slice() else {
                            self.error(Code::BadValue, span, format!("`{name}` takes one path"));
                            return None;
                        };
                        let ExprKind::Name(p) = &arg.kind else {
                            self.error(Code::WrongType, arg.span.shift(base), format!("`{name}` takes a path"));
                            return None;
                        };
                        let path = self.intern_path(p.segments.iter().map(|s| s.text.clone()).collect());
                        return self.atom(op, Operand::Path(path), Operand::None, span);
                    }
                    if let Some(&x) = self.extern_ids.get(name) {
                        let returns = self.externs.get(x.index()).map(|d| d.returns.clone());
                        if returns != Some(Type::Bool) {
                            let shown = returns.map_or_else(String::new, |t| t.name());
                            self.diags.push(
                                Diagnostic::error(
                                    Code::WrongType,
                                    span,
                                    format!("`{name}` returns {shown}, not bool: it is a value, not a condition"),
                                )
                                .with_help(format!("compare it, e.g. `{name}(…) > 0.5`")),
                            );
                            return None;
                        }
                        let t = self.term(e, base, depth + 1)?;
                        return self.atom(AtomOp::Holds, t, Operand::None, span);
                    }
                }
                self.not_a_condition(e, base);
                None
            }
            ExprKind::Cmp { op, lhs, rhs } => {
                let (op, lhs, rhs) = normalize(*op, lhs, rhs);
                let l = self.term(lhs, base, depth + 1)?;
                let r = self.term(rhs, base, depth + 1)?;
                let rhs_span = rhs.span.shift(base);
                if op == AtomOp::Matches {
                    match r {
                        Operand::Const(c) => {
                            let pattern = self.consts.get(c.index()).cloned();
                            match pattern {
                                Some(Value::String(p)) => self.check_regex(&p, rhs_span)?,
                                _ => {
                                    self.error(Code::WrongType, rhs_span, "`matches` needs a string pattern");
                                    return None;
                                }
                            }
                        }
                        _ => {
                            self.error(Code::WrongType, rhs_span, "`matches` needs a literal pattern, not a path");
                            return None;
                        }
                    }
                }
                if matches!(op, AtomOp::In | AtomOp::NotIn)
                    && let Operand::Const(c) = r
                    && !self.consts.get(c.index()).is_some_and(Value::is_array)
                {
                    self.error(Code::WrongType, rhs_span, format!("`{}` needs a list on its right", op.name()));
                    return None;
                }
                self.atom(op, l, r, span)
            }
            ExprKind::Lit(_) | ExprKind::List(_) | ExprKind::Arith { .. } | ExprKind::Neg(_) => {
                self.not_a_condition(e, base);
                None
            }
            ExprKind::Error => None,
        }
    }

    fn not_a_condition(&mut self, e: &Expr, base: u32) {
        let shown = verdict_grammar::printer::print_expr(e);
        self.diags.push(
            Diagnostic::error(Code::WrongType, e.span.shift(base), format!("`{shown}` is a value, not a condition"))
                .with_help(format!("compare it, e.g. `{shown} == true` or `{shown} > 0`")),
        );
    }

    /// Lowers an expression in term position: a path, a literal, or a term (arithmetic, a
    /// function, an extern call, a state read, a time field).
    fn term(&mut self, e: &Expr, base: u32, depth: usize) -> Option<Operand> {
        if depth > MAX_DEPTH {
            self.error(Code::TooDeep, e.span.shift(base), format!("term nested deeper than {MAX_DEPTH} levels"));
            return None;
        }
        let span = e.span.shift(base);
        match &e.kind {
            ExprKind::Paren(inner) => self.term(inner, base, depth + 1),
            ExprKind::Bool(b) => Some(Operand::Const(self.intern_const(Value::Bool(*b)))),
            ExprKind::Lit(l) => {
                let node = match crate::dsl::lit_node(l, base, depth) {
                    Ok(node) => node,
                    Err(d) => {
                        self.diags.push(d);
                        return None;
                    }
                };
                match node.to_json() {
                    Ok(v) => Some(Operand::Const(self.intern_const(v))),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                }
            }
            ExprKind::Name(p) => self.name_term(p, span),
            ExprKind::Arith { op, lhs, rhs } => {
                let l = self.term(lhs, base, depth + 1);
                let r = self.term(rhs, base, depth + 1);
                Some(self.intern_term(Term::Arith(*op, l?, r?), span))
            }
            ExprKind::Neg(inner) => {
                let x = self.term(inner, base, depth + 1)?;
                Some(self.intern_term(Term::Arith(verdict_vocab::Arith::Neg, x, Operand::None), span))
            }
            ExprKind::Call { callee, args } => self.call_term(callee, args, span, base, depth),
            ExprKind::List(_) => {
                self.error(Code::WrongType, span, "a list in a condition holds only literals");
                None
            }
            ExprKind::Cmp { .. } | ExprKind::And(_) | ExprKind::Or(_) | ExprKind::Not(_) => {
                let shown = verdict_grammar::printer::print_expr(e);
                self.error(Code::WrongType, span, format!("`{shown}` is a condition, not a value"));
                None
            }
            ExprKind::Error => None,
        }
    }

    /// A bare name in term position: `now.FIELD`, a state read `STATE.WINDOW`, or a request path
    /// (`input.` forces a request path).
    fn name_term(&mut self, p: &ast::Path, span: Span) -> Option<Operand> {
        let segs: Vec<&str> = p.segments.iter().map(|s| s.text.as_str()).collect();
        let root = segs.first().copied().unwrap_or("");
        if !p.input {
            if root == verdict_vocab::NOW {
                let field = match segs.as_slice() {
                    [_, f] => verdict_vocab::NowField::from_name(f),
                    _ => None,
                };
                let Some(field) = field else {
                    let fields: Vec<String> =
                        verdict_vocab::NowField::ALL.iter().map(|f| format!("`now.{}`", f.name())).collect();
                    self.diags.push(
                        Diagnostic::error(Code::UnknownName, span, format!("`{}` is not a time field", segs.join(".")))
                            .with_help(format!(
                                "the time fields are {}; `input.now` reaches a request path",
                                fields.join(", ")
                            )),
                    );
                    return None;
                };
                return Some(self.intern_term(Term::Now(field), span));
            }
            if let Some(&state) = self.state_ids.get(root) {
                let window = match segs.as_slice() {
                    [_, w] => verdict_vocab::Window::from_name(w).filter(|w| !w.info().takes_duration),
                    _ => None,
                };
                let Some(window) = window else {
                    self.diags.push(
                        Diagnostic::error(Code::UnknownName, span, format!("`{}` is not a state read", segs.join(".")))
                            .with_help(format!(
                                "read a window of `{root}`: `{root}.hour`, `.day`, `.week`, `.month`, `.year`, `.total` or `.last(\"90m\")`; `input.{root}` reaches a request path"
                            )),
                    );
                    return None;
                };
                return Some(self.intern_term(Term::State { state, window, seconds: 0 }, span));
            }
            if segs.len() == 1 && self.def_ids.contains_key(root) {
                self.error(Code::WrongType, span, format!("`{root}` is a condition (a `let`), not a value"));
                return None;
            }
        }
        Some(Operand::Path(self.intern_path(segs.iter().map(|s| (*s).to_owned()).collect())))
    }

    /// A call in term position: a function, an extern, or a sliding state window.
    fn call_term(&mut self, callee: &ast::Path, args: &[Expr], span: Span, base: u32, depth: usize) -> Option<Operand> {
        let segs: Vec<&str> = callee.segments.iter().map(|s| s.text.as_str()).collect();
        match segs.as_slice() {
            [name] if !callee.input => {
                if let Some(f) = verdict_vocab::Func::from_name(name) {
                    let [arg] = args else {
                        self.diags.push(
                            Diagnostic::error(Code::BadValue, span, format!("`{name}` takes one argument"))
                                .with_help(f.info().signature),
                        );
                        return None;
                    };
                    let a = self.term(arg, base, depth + 1)?;
                    return Some(self.intern_term(Term::Func(f, a), span));
                }
                if let Some(&x) = self.extern_ids.get(*name) {
                    let arity = self.externs.get(x.index()).map_or(0, |d| d.params.len());
                    if args.len() != arity {
                        self.error(
                            Code::BadValue,
                            span,
                            format!(
                                "`{name}` takes {arity} argument{}, not {}",
                                if arity == 1 { "" } else { "s" },
                                args.len()
                            ),
                        );
                        return None;
                    }
                    let mut ops = Vec::with_capacity(args.len());
                    for a in args {
                        ops.push(self.term(a, base, depth + 1));
                    }
                    let ops: Vec<Operand> = ops.into_iter().collect::<Option<_>>()?;
                    return Some(self.intern_term(Term::Extern(x, ops), span));
                }
                if AtomOp::from_presence(name).is_some() {
                    self.error(Code::WrongType, span, format!("`{name}(…)` is a condition, not a value"));
                    return None;
                }
            }
            [state, w] if !callee.input && self.state_ids.contains_key(*state) => {
                let window = verdict_vocab::Window::from_name(w).filter(|w| w.info().takes_duration);
                let (Some(window), Some(&id)) = (window, self.state_ids.get(*state)) else {
                    self.error(Code::UnknownName, span, format!("`{state}.{w}` takes no argument"));
                    return None;
                };
                let seconds = match args {
                    [Expr { kind: ExprKind::Lit(ast::Lit { kind: ast::LitKind::Str(d), .. }), .. }] => {
                        crate::emit::parse_duration(d)
                            .filter(|s| (1..=u64::from(verdict_runtime::program::MAX_WINDOW_SECONDS)).contains(s))
                    }
                    _ => None,
                };
                let Some(seconds) = seconds.and_then(|s| u32::try_from(s).ok()) else {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadValue,
                            span,
                            format!("`{state}.last` needs a duration from {}", crate::emit::window_range_text()),
                        )
                        .with_help("write `Ns`, `Nm`, `Nh` or `Nd`, e.g. `spend.last(\"90m\")`"),
                    );
                    return None;
                };
                return Some(self.intern_term(Term::State { state: id, window, seconds }, span));
            }
            _ => {}
        }
        let shown = verdict_grammar::printer::path(callee);
        let functions: Vec<&str> = verdict_vocab::Func::ALL.iter().map(|f| f.name()).collect();
        self.diags.push(Diagnostic::error(Code::UnknownName, span, format!("unknown function `{shown}`")).with_help(
            format!("the functions are {}; host functions are declared with `extern`", functions.join(", ")),
        ));
        None
    }

    /// Interns a term (equal terms share one id) with its canonical text.
    fn intern_term(&mut self, term: Term, span: Span) -> Operand {
        if let Some(id) = self.term_ids.get(&term) {
            return Operand::Term(*id);
        }
        let id = TermId(u32::try_from(self.terms.len()).unwrap_or(u32::MAX));
        self.terms.push(TermNode { term: term.clone(), span, text: String::new() });
        let text = self.names().term_text(id);
        if let Some(node) = self.terms.get_mut(id.index()) {
            node.text = text;
        }
        self.term_ids.insert(term, id);
        Operand::Term(id)
    }

    /// What printing needs, from the tables built so far.
    fn names(&self) -> crate::emit::Names<'_> {
        crate::emit::Names {
            paths: &self.paths,
            consts: &self.consts,
            terms: &self.terms,
            states: &self.states,
            externs: &self.externs,
            roots: &self.roots,
        }
    }

    /// Builds an atom node, with its canonical text, position and type checks.
    fn atom(&mut self, op: AtomOp, lhs: Operand, rhs: Operand, span: Span) -> Option<CondId> {
        let text = self.names().atom_text(op, lhs, rhs);
        self.type_check(op, lhs, rhs, span, &text);
        let (line, column) = self.line_col(span.start);
        Some(self.push(Cond::Atom(Atom { op, lhs, rhs, text, line, column }), span))
    }

    // ---- declarations of §5 ----------------------------------------------------------------

    /// A duration setting (`"10m"`): seconds.
    fn duration(&mut self, n: &Node, what: &str) -> Option<u64> {
        let text = self.string(n, what)?;
        match crate::emit::parse_duration(&text).filter(|s| *s > 0) {
            Some(s) => Some(s),
            None => {
                self.diags.push(
                    Diagnostic::error(Code::BadValue, n.span, format!("{what} `{text}` is not a duration"))
                        .with_help("write `Ns`, `Nm`, `Nh` or `Nd`, e.g. `10m`"),
                );
                None
            }
        }
    }

    /// `required`: a list of paths in the reference format's field spelling.
    fn required_paths(&mut self, n: &Node) -> Vec<(PathId, Span)> {
        let NodeKind::Seq(items) = &n.kind else {
            self.error(
                Code::WrongType,
                n.span,
                format!("expected `required` (a list of paths), found {}", n.describe()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(text) = item.as_text().filter(|t| !t.is_empty()) else {
                self.error(Code::WrongType, item.span, format!("expected a path, found {}", item.describe()));
                continue;
            };
            out.push((self.intern_path(split_field(text)), item.span));
        }
        out
    }

    /// `externs: {name: {params: [types], returns: type}}`.
    fn externs_decl(&mut self, n: &Node) {
        let NodeKind::Map(entries) = &n.kind else {
            self.error(Code::WrongType, n.span, format!("expected `externs` (a mapping), found {}", n.describe()));
            return;
        };
        for (k, v) in entries {
            if !verdict_grammar::lexer::is_bare_ident(&k.text) || k.text == verdict_vocab::NOW {
                self.error(Code::BadValue, k.span, format!("`{}` is not a valid extern name", k.text));
                continue;
            }
            if verdict_vocab::Func::from_name(&k.text).is_some() || AtomOp::from_presence(&k.text).is_some() {
                self.error(Code::DuplicateId, k.span, format!("`{}` is a built-in function", k.text));
                continue;
            }
            if self.extern_ids.contains_key(&k.text) {
                self.error(Code::DuplicateId, k.span, format!("extern `{}` is declared twice", k.text));
                continue;
            }
            let Some(mut f) = self.fields(v, "an extern") else { continue };
            let params_node = self.required(&mut f, "params");
            let returns_node = self.required(&mut f, "returns");
            self.finish(f, &["params", "returns"]);
            let ty = |cx: &mut Self, n: &Node| -> Option<Type> {
                let text = cx.name_or_string(n, "a type")?;
                let t = parse_type(&text);
                if t.is_none() {
                    cx.error(Code::BadValue, n.span, format!("unknown type `{text}`"));
                }
                t
            };
            let params: Option<Vec<Type>> = match params_node.map(|n| &n.kind) {
                Some(NodeKind::Seq(items)) => items.iter().map(|i| ty(self, i)).collect(),
                Some(_) => {
                    if let Some(n) = params_node {
                        self.error(Code::WrongType, n.span, "expected `params` (a list of types)");
                    }
                    None
                }
                None => None,
            };
            let returns = returns_node.and_then(|n| ty(self, n));
            if let (Some(params), Some(returns)) = (params, returns) {
                let id = ExternId(u32::try_from(self.externs.len()).unwrap_or(u32::MAX));
                self.externs.push(ExternDecl { name: k.text.clone(), params, returns, span: k.span });
                self.roots.insert(k.text.clone());
                self.extern_ids.insert(k.text.clone(), id);
            }
        }
    }

    /// `state: {name: {add, key, on, apply}}` (LANGUAGE.md §5.2). Names are declared first, so a
    /// series' `add` may read any of them.
    fn states_decl(&mut self, n: &Node, effects: &[String]) {
        let NodeKind::Map(entries) = &n.kind else {
            self.error(Code::WrongType, n.span, format!("expected `state` (a mapping), found {}", n.describe()));
            return;
        };
        let mut bodies = Vec::new();
        for (k, v) in entries {
            if !verdict_grammar::lexer::is_bare_ident(&k.text) || k.text == verdict_vocab::NOW {
                self.error(Code::BadValue, k.span, format!("`{}` is not a valid state name", k.text));
                continue;
            }
            if self.state_ids.contains_key(&k.text) || self.extern_ids.contains_key(&k.text) {
                self.error(Code::DuplicateId, k.span, format!("`{}` is declared twice", k.text));
                continue;
            }
            let id = StateId(u32::try_from(self.states.len()).unwrap_or(u32::MAX));
            self.states.push(StateDecl {
                name: k.text.clone(),
                add: Operand::None,
                key: Vec::new(),
                on: Vec::new(),
                apply: Apply::Commit,
                span: k.span,
            });
            self.state_ids.insert(k.text.clone(), id);
            self.roots.insert(k.text.clone());
            bodies.push((id, v));
        }
        for (id, v) in bodies {
            let Some(mut f) = self.fields(v, "a state series") else { continue };
            let add_node = self.required(&mut f, "add");
            let key_node = f.take_opt("key");
            let on_node = f.take_opt("on");
            let apply_node = f.take_opt("apply");
            self.finish(f, &["add", "key", "on", "apply"]);
            let add = add_node.and_then(|n| match &n.kind {
                NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) => {
                    n.to_json().ok().map(|v| Operand::Const(self.intern_const(v)))
                }
                NodeKind::Cond(e) => self.term(e, 0, 1),
                NodeKind::Str(text) | NodeKind::Word(text) => {
                    let parsed = verdict_grammar::parse_expr(text);
                    let raw = self.file.slice(n.span);
                    let base = if raw.get(1..).is_some_and(|r| r.starts_with(text.as_str())) {
                        n.span.start + 1
                    } else {
                        n.span.start
                    };
                    for err in &parsed.errors {
                        self.diags.push(Diagnostic::error(
                            Code::Syntax,
                            err.span.shift(base),
                            format!("in `add`: {}", err.message),
                        ));
                    }
                    if parsed.errors.is_empty() { parsed.tree.and_then(|e| self.term(&e, base, 1)) } else { None }
                }
                _ => {
                    self.error(Code::WrongType, n.span, format!("expected `add` (a term), found {}", n.describe()));
                    None
                }
            });
            let key = match key_node {
                None => Vec::new(),
                Some(n) => self.required_paths(n).into_iter().map(|(p, _)| p).collect(),
            };
            let on = match on_node {
                // The least severe effect: what a budget counts.
                None => {
                    effects.len().checked_sub(1).and_then(|i| u32::try_from(i).ok()).map(EffectId).into_iter().collect()
                }
                Some(n) => {
                    let names = self.string_list(n, "`on`").unwrap_or_default();
                    names.iter().filter_map(|e| self.effect_id(e, n.span, effects)).collect()
                }
            };
            let apply = match apply_node.map(|n| (n, n.as_text())) {
                None => Apply::Commit,
                Some((_, Some("commit"))) => Apply::Commit,
                Some((_, Some("decision"))) => Apply::Decision,
                Some((n, _)) => {
                    self.error(Code::BadValue, n.span, "`apply` must be `commit` or `decision`");
                    Apply::Commit
                }
            };
            if let (Some(add), Some(decl)) = (add, self.states.get_mut(id.index())) {
                decl.add = add;
                decl.key = key;
                decl.on = on;
                decl.apply = apply;
            }
        }
    }

    /// A reason template (LANGUAGE.md §5.5): text with `{term}` and `{term:.Nf}` pieces, `{{`
    /// and `}}` for braces.
    fn template(&mut self, text: &str, span: Span) -> Option<Template> {
        let raw = self.file.slice(span);
        // Positions map into the file when the text appears verbatim after its quote.
        let base = if raw.get(1..).is_some_and(|r| r.starts_with(text)) {
            Some(span.start + 1)
        } else if raw.get(2..).is_some_and(|r| r.starts_with(text)) {
            Some(span.start + 2)
        } else {
            None
        };
        let at = |i: usize| base.map_or(span, |b| Span::new(b as usize + i, b as usize + i + 1));
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    self.error(Code::BadValue, at(i), "a single `}` in a reason template: write `}}`");
                    return None;
                }
                '{' => {
                    let rest = text.get(i + 1..).unwrap_or("");
                    let Some(close) = rest.find('}') else {
                        self.error(
                            Code::BadValue,
                            at(i),
                            "a `{` in a reason template is not closed: write `{{` for a brace",
                        );
                        return None;
                    };
                    let inner = rest.get(..close).unwrap_or("");
                    let (expr_text, spec) = match inner.rfind(':') {
                        Some(colon) => (inner.get(..colon).unwrap_or(""), Some(inner.get(colon + 1..).unwrap_or(""))),
                        None => (inner, None),
                    };
                    let decimals = match spec {
                        None => None,
                        Some(spec) => {
                            let n = spec
                                .strip_prefix('.')
                                .and_then(|s| s.strip_suffix('f'))
                                .and_then(|d| d.parse::<u8>().ok());
                            match n.filter(|d| *d <= 17) {
                                Some(d) => Some(d),
                                None => {
                                    self.diags.push(
                                        Diagnostic::error(
                                            Code::BadValue,
                                            at(i),
                                            format!("unknown format `{spec}` in a reason template"),
                                        )
                                        .with_help("write `{term}` or `{term:.2f}` (0 to 17 decimals)"),
                                    );
                                    return None;
                                }
                            }
                        }
                    };
                    let expr_base = base.map_or(span.start, |b| b + u32::try_from(i + 1).unwrap_or(0));
                    let parsed = verdict_grammar::parse_expr(expr_text);
                    for err in &parsed.errors {
                        let s = if base.is_some() { err.span.shift(expr_base) } else { span };
                        self.diags.push(Diagnostic::error(
                            Code::Syntax,
                            s,
                            format!("in a reason template: {}", err.message),
                        ));
                    }
                    if !parsed.errors.is_empty() {
                        return None;
                    }
                    let operand = parsed.tree.and_then(|e| self.term(&e, expr_base, 1))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Term { operand, decimals });
                    for _ in 0..=close {
                        chars.next();
                    }
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Some(Template { text: text.to_owned(), pieces })
    }

    // ---- types ---------------------------------------------------------------------------

    /// The declared type of a path: see [`schema_type`].
    fn path_type(&self, segments: &[String]) -> Option<Option<Type>> {
        schema_type(self.schema.as_ref()?, self.schema_index.as_ref()?, &self.paths, segments)
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
                Operand::Term(t) => match &cx.terms.get(t.index())?.term {
                    Term::Arith(..) | Term::Now(_) | Term::State { .. } => Some(Kind::Number),
                    Term::Func(f, _) => kind_of_type(&Type::of_head(f.info().returns)),
                    Term::Extern(x, _) => cx.externs.get(x.index()).and_then(|d| kind_of_type(&d.returns)),
                },
                Operand::None => None,
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
fn normalize<'e>(op: AtomOp, lhs: &'e Expr, rhs: &'e Expr) -> (AtomOp, &'e Expr, &'e Expr) {
    let literal = |e: &Expr| matches!(e.kind, ExprKind::Lit(_) | ExprKind::Bool(_));
    if literal(lhs) && !literal(rhs) {
        let flipped = match op {
            AtomOp::Eq => Some(AtomOp::Eq),
            AtomOp::Ne => Some(AtomOp::Ne),
            AtomOp::Lt => Some(AtomOp::Gt),
            AtomOp::Le => Some(AtomOp::Ge),
            AtomOp::Gt => Some(AtomOp::Lt),
            AtomOp::Ge => Some(AtomOp::Le),
            _ => None,
        };
        if let Some(f) = flipped {
            return (f, rhs, lhs);
        }
    }
    (op, lhs, rhs)
}

/// Parses `string`, `number`, `bool`, `object`, `any`, `list<T>`, with `list<` nested at most
/// [`MAX_DEPTH`] times (without recursion).
pub fn parse_type(text: &str) -> Option<Type> {
    Type::parse(text, MAX_DEPTH)
}

/// Characters an id may not contain: control characters (C0, DEL, C1), the line and paragraph
/// separators, and the bidirectional formatting characters (which can make a printed id read as
/// another: "Trojan Source").
pub fn forbidden_in_id(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    /// The linear scan [`schema_type`] replaced, kept as its specification.
    fn schema_type_linear(schema: &[SchemaEntry], paths: &[Vec<String>], segments: &[String]) -> Option<Option<Type>> {
        let mut best: Option<Option<Type>> = None;
        for entry in schema {
            let declared = paths.get(entry.path.index()).map_or(&[][..], Vec::as_slice);
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
                        _ => return None,
                    };
                }
                best = Some(Some(ty));
            }
        }
        best
    }

    /// The indexed lookup agrees with the linear scan on schemas whose entries nest, repeat
    /// prefixes in every order and have every type, for every path near them.
    #[test]
    fn the_schema_index_agrees_with_a_linear_scan() {
        let segs = |p: &str| -> Vec<String> { p.split('.').map(str::to_owned).collect() };
        let types = ["string", "object", "any", "list<number>", "list<object>", "list<list<string>>", "number"];
        let declared = ["a", "a.b", "a.0", "a.b.c", "x", "x.1.y", "a.b.c.d", "q.r"];
        let probes = [
            "a",
            "a.b",
            "a.c",
            "a.0",
            "a.0.1",
            "a.b.c",
            "a.b.c.d",
            "a.b.c.d.e",
            "x",
            "x.1",
            "x.1.y",
            "x.y",
            "q",
            "q.r.s",
            "z",
            "a.1.2",
        ];
        let mut checked = 0;
        // Every rotation of the declarations, with types drawn in several patterns.
        for rot in 0..declared.len() {
            for shift in 0..types.len() {
                let mut paths: Vec<Vec<String>> = Vec::new();
                let mut schema = Vec::new();
                for k in 0..declared.len() {
                    let path = declared[(rot + k) % declared.len()];
                    paths.push(segs(path));
                    let ty = parse_type(types[(k * 3 + shift) % types.len()]).unwrap();
                    schema.push(SchemaEntry { path: PathId(u32::try_from(k).unwrap()), ty, span: Span::default() });
                }
                let index = SchemaIndex::new(&schema, &paths);
                for probe in probes {
                    let p = segs(probe);
                    assert_eq!(
                        schema_type(&schema, &index, &paths, &p),
                        schema_type_linear(&schema, &paths, &p),
                        "{probe} in {:?}",
                        schema.iter().map(|e| (&paths[e.path.index()], &e.ty)).collect::<Vec<_>>()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 800);
    }
}
