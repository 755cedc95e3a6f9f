//! The salsa database: source files are inputs, every stage of the compiler is a tracked query.
//!
//! ```text
//! SourceInput(text) ─▶ parse ─┬─▶ context_text ─▶ check_context ───────────────────────┐
//!                             ├─▶ PolicyItem(text) ─▶ compile_policy ─┬─▶ check_policy   ─┤
//!                             │                                       └─▶ analyze_policy ─┼─▶ file_diagnostics
//!                             └─▶ symbols (index for hover, definition, …)               │
//! SourceInput ─▶ compile_file (whole file) ─▶ analysis_diagnostics (cross-policy) ───────┘
//! ```
//!
//! Incrementality for `.verdict` files comes from keying the expensive work on position-independent
//! text. Each `policy` item is interned by its own text ([`PolicyItem`]); [`check_policy`] lowers
//! that text together with the file's *context* (the `bundle` declaration and the `let` items,
//! [`context_text`]) through the ordinary [`verdict_compiler::compile_as`], and keeps the
//! diagnostics that fall inside the policy, with spans relative to it. An edit inside one policy
//! changes that policy's text only: every other policy is the same interned value whose memo is
//! still valid (the context query re-runs, produces equal text and is backdated), so it is neither
//! re-parsed nor re-lowered. [`file_diagnostics`] then moves the per-item results to their current
//! offsets, which is the only work proportional to the number of items.
//!
//! The rule analysis splits the same way: [`analyze_policy`] finds what concerns one policy
//! (unreachable, unsatisfiable and redundant rules, ambiguity, a dead default) on that policy's
//! compile, so it too runs again only for the policy an edit touched. What concerns the bundle
//! as a whole (conflicts between policies, gaps, unsatisfiable definitions) needs every policy:
//! [`analysis_diagnostics`] runs it on the whole file's IR, after each edit that leaves the file
//! free of errors.
//!
//! Architecture invariant: nothing here knows LSP types; spans are byte offsets into the input text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use verdict_compiler::analysis::{self, Scope};
use verdict_compiler::diagnostic::{Code, Diagnostic, Label, Severity};
use verdict_compiler::source::{LineIndex, SourceFile, too_large};
use verdict_compiler::{SourceKind, ir};
use verdict_grammar::ast::{File, Item, LitKind, Span};
use verdict_grammar::parse::Parsed;

/// The language a document was opened as (by the client's language id or the file extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Verdict,
    Yaml,
    Json,
    /// Not a bundle language: every feature answers with nothing.
    Other,
}

impl Lang {
    /// From the client's `languageId` first, the path's extension otherwise.
    pub fn detect(language_id: &str, path: &str) -> Lang {
        match language_id {
            "verdict" => return Lang::Verdict,
            "yaml" => return Lang::Yaml,
            "json" | "jsonc" => return Lang::Json,
            _ => {}
        }
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".verdict") {
            Lang::Verdict
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Lang::Yaml
        } else if lower.ends_with(".json") {
            Lang::Json
        } else {
            Lang::Other
        }
    }
}

/// One open document.
#[salsa::input(debug)]
pub struct SourceInput {
    /// The document's path or URI, for messages only.
    #[returns(ref)]
    pub name: String,
    #[returns(ref)]
    pub text: String,
    #[returns(copy)]
    pub lang: Lang,
}

/// A `policy` item of a `.verdict` file, identified by its text alone (not its position), and the
/// file whose context (bundle settings, `let`s) it is checked in.
#[salsa::interned(debug)]
pub struct PolicyItem<'db> {
    #[returns(copy)]
    pub file: SourceInput,
    #[returns(ref)]
    pub text: String,
}

#[salsa::db]
pub trait Db: salsa::Database {}

/// The database. Cloning it gives a snapshot for another thread; a write on the original cancels
/// the queries running on snapshots (they unwind with `salsa::Cancelled`).
#[salsa::db]
#[derive(Clone)]
pub struct Database {
    storage: salsa::Storage<Self>,
    log: ExecutionLog,
}

/// The query executions seen through salsa's events, recorded while enabled (tests, benchmarks).
#[derive(Clone, Default)]
pub struct ExecutionLog {
    enabled: Arc<std::sync::atomic::AtomicBool>,
    executed: Arc<Mutex<Vec<salsa::DatabaseKeyIndex>>>,
}

impl Default for Database {
    fn default() -> Database {
        let log = ExecutionLog::default();
        let sink = log.clone();
        let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
            if let salsa::EventKind::WillExecute { database_key } = event.kind
                && sink.enabled.load(std::sync::atomic::Ordering::Relaxed)
                && let Ok(mut v) = sink.executed.lock()
            {
                v.push(database_key);
            }
        })));
        Database { storage, log }
    }
}

impl Database {
    /// Starts (or restarts) recording which queries execute.
    pub fn enable_execution_log(&self) {
        self.log.enabled.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut v) = self.log.executed.lock() {
            v.clear();
        }
    }

    /// The queries executed since the log was enabled or last taken: one name per execution.
    pub fn take_executed(&self) -> Vec<String> {
        let keys = self.log.executed.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        keys.into_iter()
            .map(|k| salsa::Database::ingredient_debug_name(self, k.ingredient_index()).into_owned())
            .collect()
    }
}

#[salsa::db]
impl salsa::Database for Database {}

#[salsa::db]
impl Db for Database {}

// ---- whole-file stages -------------------------------------------------------------------------

/// The form of the bundle a document holds, or `None` when it is not a bundle: a `.verdict` file
/// always is; a YAML or JSON file is when it mentions `bundle_id` or `policies` (so that request
/// contexts and other JSON opened in the same editor get no bundle diagnostics).
///
/// A document over [`verdict_compiler::source::MAX_SOURCE_BYTES`] is none of these: nothing but [`file_diagnostics`]'
/// one V112 diagnostic is computed for it.
#[salsa::tracked(returns(copy))]
pub fn bundle_kind(db: &dyn Db, file: SourceInput) -> Option<SourceKind> {
    if too_large(file.text(db).len()).is_some() {
        return None;
    }
    // A policy test file is YAML or JSON that is not a bundle (see [`test_diagnostics`]).
    if is_test_file(file.name(db)) {
        return None;
    }
    match file.lang(db) {
        Lang::Verdict => Some(SourceKind::Verdict),
        Lang::Yaml | Lang::Json => {
            let text = file.text(db);
            if !(text.contains("bundle_id") || text.contains("policies")) {
                return None;
            }
            Some(if file.lang(db) == Lang::Json { SourceKind::Json } else { SourceKind::Yaml })
        }
        Lang::Other => None,
    }
}

/// Line starts of the document, for UTF-16 positions.
#[salsa::tracked(returns(ref))]
pub fn line_index(db: &dyn Db, file: SourceInput) -> LineIndex {
    LineIndex::new(file.text(db))
}

/// The parsed `.verdict` file (empty for other forms). Parsing never fails.
#[salsa::tracked(returns(ref), no_eq)]
pub fn parse(db: &dyn Db, file: SourceInput) -> ParsedFile {
    if bundle_kind(db, file) != Some(SourceKind::Verdict) {
        return ParsedFile(Parsed { tree: File::default(), errors: Vec::new(), comments: Vec::new() });
    }
    ParsedFile(verdict_grammar::parse::parse_file_with(file.text(db), &|| db.unwind_if_revision_cancelled()))
}

/// A parse result as a query value.
#[derive(Debug, Clone)]
pub struct ParsedFile(pub Parsed<File>);

/// A whole-file compile: what YAML and JSON files are checked with, and the IR that whole-bundle
/// stages (the rule-graph analysis) start from.
#[salsa::tracked(returns(ref))]
pub fn compile_file(db: &dyn Db, file: SourceInput) -> CompiledFile {
    let Some(kind) = bundle_kind(db, file) else {
        return CompiledFile::default();
    };
    let source = SourceFile::new(file.name(db).clone(), file.text(db).clone());
    let compiled = compile(db, &source, kind);
    CompiledFile { bundle: compiled.bundle.map(Arc::new), diagnostics: compiled.diagnostics }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompiledFile {
    pub bundle: Option<Arc<ir::Bundle>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The bundle's IR when the file compiles without errors.
pub fn bundle_ir(db: &dyn Db, file: SourceInput) -> Option<Arc<ir::Bundle>> {
    compile_file(db, file).bundle.clone()
}

/// The rule-graph analysis findings about the bundle as a whole. For YAML and JSON files that is
/// every finding (V001–V010); for `.verdict` files the per-policy findings come from
/// [`analyze_policy`], item by item, and this query adds those that need every policy: unsatisfiable
/// definitions (V002), conflicts between policies (V004) and gaps (V010). It needs the whole file
/// to compile, so while any error stands it reports nothing.
#[salsa::tracked(returns(ref))]
pub fn analysis_diagnostics(db: &dyn Db, file: SourceInput) -> Vec<Diagnostic> {
    let Some(bundle) = bundle_ir(db, file) else { return Vec::new() };
    let scope = if bundle_kind(db, file) == Some(SourceKind::Verdict) { Scope::Bundle } else { Scope::All };
    analysis::analyze_with(&bundle, &analysis::Options { scope, ..analysis::Options::default() }).diagnostics
}

/// Compiles in a query: an edit (a pending write) unwinds the compile at its next checkpoint, so a
/// large document does not hold the edit up until the compile ends.
fn compile(db: &dyn Db, source: &SourceFile, kind: SourceKind) -> verdict_compiler::Compiled {
    verdict_compiler::compile_with(source, kind, &|| db.unwind_if_revision_cancelled())
}

// ---- per-item stages of `.verdict` files -------------------------------------------------------

/// A policy that is always present when the context is checked, so that "the file declares no
/// policy" is never reported there (it is a whole-file finding), and that bounds every checked
/// text, so that findings about the whole synthetic file never land inside a checked item. It
/// decides the bundle's most severe effect, so that it is valid whatever effects the bundle
/// declares (a compile without errors is what the analysis starts from), by default: it has no
/// rules, so the analysis finds nothing about it.
#[salsa::tracked(returns(ref))]
pub fn stub_text(db: &dyn Db, file: SourceInput) -> String {
    let declared = parse(db, file).0.tree.items.iter().find_map(|item| match item {
        Item::Bundle(b) => b.props.iter().find(|p| p.key.text == "effects").and_then(|p| match &p.value.kind {
            LitKind::List(items) => items.first().and_then(|l| match &l.kind {
                LitKind::Ident(s) | LitKind::Str(s) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    });
    let effect = serde_json::to_string(declared.as_deref().unwrap_or("deny")).unwrap_or_default();
    format!("policy \"verdict-lsp stub\" {{ default {effect} }}")
}

/// Where the pieces of the context text come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextPiece {
    /// Offset of the piece in the context text.
    pub at: u32,
    /// Offset of the item in the file.
    pub from: u32,
    pub len: u32,
}

/// The context every policy is checked in: the texts of the `bundle` and `let` items, in file
/// order, one per line. Independent of where the items are, so moving them does not re-check.
#[salsa::tracked(returns(ref))]
pub fn context_text(db: &dyn Db, file: SourceInput) -> String {
    context_pieces(db, file).0
}

fn context_pieces(db: &dyn Db, file: SourceInput) -> (String, Vec<ContextPiece>) {
    let text = file.text(db);
    let mut out = String::new();
    let mut pieces = Vec::new();
    for item in &parse(db, file).0.tree.items {
        let span = match item {
            Item::Bundle(b) => b.span,
            Item::Let(l) => l.span,
            // Declarations every policy's terms may name.
            Item::State(st) => st.span,
            Item::Extern(x) => x.span,
            Item::Policy(_) | Item::Error(_) => continue,
        };
        if !out.is_empty() {
            out.push('\n');
        }
        let at = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out.push_str(text.get(span.range()).unwrap_or(""));
        pieces.push(ContextPiece { at, from: span.start, len: span.end.saturating_sub(span.start) });
    }
    (out, pieces)
}

/// Findings about the context (bundle settings, `let` bodies, definition cycles), with spans
/// relative to [`context_text`].
#[salsa::tracked(returns(ref))]
pub fn check_context(db: &dyn Db, file: SourceInput) -> Vec<Diagnostic> {
    let ctx = context_text(db, file);
    let stub = stub_text(db, file);
    let offset = u32::try_from(stub.len() + 1).unwrap_or(u32::MAX);
    let len = u32::try_from(ctx.len()).unwrap_or(u32::MAX);
    let source = SourceFile::new("context.verdict", format!("{stub}\n{ctx}"));
    let compiled = compile(db, &source, SourceKind::Verdict);
    compiled
        .diagnostics
        .into_iter()
        .filter(|d| d.code != Code::Syntax && d.span.start >= offset && d.span.end <= offset.saturating_add(len))
        .filter_map(|d| relocate(d, |s| shift_back(s, offset, len)))
        .collect()
}

/// One policy compiled in the file's context: the text checked is `policy text + "\n" + context +
/// "\n" + stub`, so spans up to the policy's length are in the policy.
#[salsa::tracked(returns(ref))]
pub fn compile_policy<'db>(db: &'db dyn Db, item: PolicyItem<'db>) -> CompiledFile {
    let text = item.text(db);
    let ctx = context_text(db, item.file(db));
    let stub = stub_text(db, item.file(db));
    let source = SourceFile::new("policy.verdict", format!("{text}\n{ctx}\n{stub}"));
    let compiled = compile(db, &source, SourceKind::Verdict);
    CompiledFile { bundle: compiled.bundle.map(Arc::new), diagnostics: compiled.diagnostics }
}

/// Findings about one policy, with spans relative to the policy's text. Labels that point into
/// the context keep their offset in the checked text (`policy text + "\n" + context`), which
/// [`file_diagnostics`] maps back.
#[salsa::tracked(returns(ref))]
pub fn check_policy<'db>(db: &'db dyn Db, item: PolicyItem<'db>) -> Vec<Diagnostic> {
    let len = u32::try_from(item.text(db).len()).unwrap_or(u32::MAX);
    compile_policy(db, item)
        .diagnostics
        .iter()
        .filter(|d| d.code != Code::Syntax && d.span.end <= len)
        .cloned()
        .collect()
}

/// The rule analysis's findings about one policy (V001, V002, V003, V005, V009), on the policy
/// compiled in the file's context: they depend on nothing else, so an edit elsewhere does not
/// analyse this policy again. Spans as [`check_policy`]'s.
#[salsa::tracked(returns(ref))]
pub fn analyze_policy<'db>(db: &'db dyn Db, item: PolicyItem<'db>) -> Vec<Diagnostic> {
    let Some(bundle) = compile_policy(db, item).bundle.as_ref() else { return Vec::new() };
    let len = u32::try_from(item.text(db).len()).unwrap_or(u32::MAX);
    let options = analysis::Options { scope: Scope::Policies, ..analysis::Options::default() };
    let mut found = analysis::analyze_with(bundle, &options).diagnostics;
    // Findings about the context and the stub lie after the policy's text; a run that stopped on
    // its budget says so at offset 0, the policy's head.
    found.retain(|d| d.span.end <= len);
    found
}

/// Every diagnostic of a document, from every stage, with spans in the document, sorted.
#[salsa::tracked(returns(ref))]
pub fn file_diagnostics(db: &dyn Db, file: SourceInput) -> Vec<Diagnostic> {
    if file.lang(db) != Lang::Other
        && let Some(d) = too_large(file.text(db).len())
    {
        return vec![d];
    }
    let mut out = match bundle_kind(db, file) {
        None => return Vec::new(),
        Some(SourceKind::Verdict) => verdict_diagnostics(db, file),
        Some(_) => compile_file(db, file).diagnostics.clone(),
    };
    out.extend(analysis_diagnostics(db, file).iter().cloned());
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

fn verdict_diagnostics(db: &dyn Db, file: SourceInput) -> Vec<Diagnostic> {
    let parsed = &parse(db, file).0;
    let text = file.text(db);
    let mut out: Vec<Diagnostic> =
        parsed.errors.iter().map(|e| Diagnostic::error(Code::Syntax, e.span, e.message.clone())).collect();
    let syntax_ok = parsed.errors.is_empty();

    // Whole-file findings the per-item checks cannot see.
    let mut whole: Option<Span> = None;
    let mut bundle_span: Option<Span> = None;
    let mut has_policy = false;
    let mut policy_ids: HashMap<&str, Span> = HashMap::new();
    for item in &parsed.tree.items {
        let span = match item {
            Item::Bundle(b) => {
                bundle_span = bundle_span.or(Some(b.span));
                b.span
            }
            Item::Let(l) => l.span,
            Item::State(st) => st.span,
            Item::Extern(x) => x.span,
            Item::Policy(p) => {
                has_policy = true;
                if let Some(first) = policy_ids.get(p.name.text.as_str()) {
                    out.push(
                        Diagnostic::error(
                            Code::DuplicateId,
                            p.name.span,
                            format!("duplicate policy id `{}`", p.name.text),
                        )
                        .with_label(*first, "first defined here"),
                    );
                } else {
                    policy_ids.insert(&p.name.text, p.name.span);
                }
                p.span
            }
            Item::Error(_) => continue,
        };
        whole = Some(whole.map_or(span, |w| w.cover(span)));
    }
    let root = bundle_span.or(whole).unwrap_or_default();
    if syntax_ok && bundle_span.is_none() {
        out.push(Diagnostic::error(Code::MissingKey, root, "the file has no `bundle NAME { … }` declaration"));
    }
    if syntax_ok && !has_policy {
        out.push(Diagnostic::error(Code::MissingKey, root, "the file declares no `policy`"));
    }

    // The context, mapped back through its pieces.
    let (_, pieces) = context_pieces(db, file);
    let from_context = |s: Span| -> Option<Span> {
        let piece = pieces.iter().find(|p| s.start >= p.at && s.start <= p.at.saturating_add(p.len))?;
        let start = piece.from.saturating_add(s.start - piece.at);
        let end = piece.from.saturating_add(s.end.saturating_sub(piece.at).min(piece.len));
        Some(Span { start, end: end.max(start) })
    };
    for d in check_context(db, file) {
        if let Some(d) = relocate(d.clone(), from_context) {
            out.push(d);
        }
    }

    // Each policy, checked on its own text and moved to where it is now.
    for item in &parsed.tree.items {
        let Item::Policy(p) = item else { continue };
        let item_text = text.get(p.span.range()).unwrap_or("");
        let key = PolicyItem::new(db, file, item_text.to_owned());
        let len = u32::try_from(item_text.len()).unwrap_or(u32::MAX);
        let ctx_at = len.saturating_add(1);
        let place = |s: Span| -> Option<Span> {
            if s.end <= len {
                Some(s.shift(p.span.start))
            } else if s.start >= ctx_at {
                from_context(Span { start: s.start - ctx_at, end: s.end.saturating_sub(ctx_at) })
            } else {
                None
            }
        };
        for d in check_policy(db, key).iter().chain(analyze_policy(db, key)) {
            if let Some(d) = relocate(d.clone(), place) {
                out.push(d);
            }
        }
    }
    out
}

/// Moves a diagnostic's span and labels; a diagnostic whose primary span has no place is dropped,
/// a label without one is dropped alone.
fn relocate(mut d: Diagnostic, place: impl Fn(Span) -> Option<Span>) -> Option<Diagnostic> {
    d.span = place(d.span)?;
    d.labels = std::mem::take(&mut d.labels)
        .into_iter()
        .filter_map(|l| place(l.span).map(|span| Label { span, message: l.message }))
        .collect();
    Some(d)
}

/// A span of `text[offset..offset + len]` made relative to that window (labels outside it are
/// dropped by [`relocate`]).
fn shift_back(s: Span, offset: u32, len: u32) -> Option<Span> {
    if s.start >= offset && s.end <= offset.saturating_add(len) {
        Some(Span { start: s.start - offset, end: s.end - offset })
    } else {
        None
    }
}

// ---- policy test files ---------------------------------------------------------------------

/// Whether a document (by its path or URI) is a policy test file (`*.test.yaml`, `*.test.yml`,
/// `*.test.json`).
pub fn is_test_file(name: &str) -> bool {
    verdict_compiler::testfile::is_test_file(&name.to_ascii_lowercase())
}

/// A parsed test file and the diagnostics of its structure.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTest {
    pub file: Option<verdict_compiler::testfile::TestFile>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The test file's model (as `verdict test` reads it); empty for documents that are not test
/// files or are over the size limit.
#[salsa::tracked(returns(ref))]
pub fn parse_test(db: &dyn Db, file: SourceInput) -> ParsedTest {
    if !is_test_file(file.name(db)) || too_large(file.text(db).len()).is_some() {
        return ParsedTest { file: None, diagnostics: Vec::new() };
    }
    let (file, diagnostics) = verdict_compiler::testfile::parse(file.text(db));
    ParsedTest { file, diagnostics }
}

/// The bundle path a test file names, as written (relative to the test file).
pub fn test_bundle_path(db: &dyn Db, file: SourceInput) -> Option<String> {
    parse_test(db, file).file.as_ref().map(|f| f.bundle.value.clone())
}

/// A test file and the document of the bundle it names (`None`: the bundle could not be read),
/// which the server resolves: an open document, or the file on disk.
#[salsa::interned(debug)]
pub struct TestTarget<'db> {
    #[returns(copy)]
    pub test: SourceInput,
    #[returns(copy)]
    pub bundle: Option<SourceInput>,
}

/// The diagnostics of a test file: its structure, then its expectations and contexts checked
/// against the bundle's IR (`testfile::check`: unknown policies, rules and effects, contexts that
/// are not request contexts or that the bundle's schema refuses). The bundle's compile is the
/// bundle document's own query, shared with its diagnostics when it is open.
#[salsa::tracked(returns(ref))]
pub fn test_diagnostics<'db>(db: &'db dyn Db, target: TestTarget<'db>) -> Vec<Diagnostic> {
    let test = target.test(db);
    if let Some(d) = too_large(test.text(db).len()) {
        return vec![d];
    }
    let parsed = parse_test(db, test);
    let mut out = parsed.diagnostics.clone();
    if let Some(file) = &parsed.file {
        let written = &file.bundle.value;
        match target.bundle(db) {
            None => out.push(Diagnostic::error(
                Code::BadValue,
                file.bundle.span,
                format!("cannot read the bundle `{written}` (relative to this file)"),
            )),
            Some(b) => match bundle_ir(db, b) {
                Some(ir) => out.extend(verdict_compiler::testfile::check(file, &ir)),
                None => {
                    let errors =
                        compile_file(db, b).diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
                    let why = if bundle_kind(db, b).is_none() {
                        "is not a bundle".to_owned()
                    } else {
                        format!("does not compile ({errors} errors)")
                    };
                    out.push(Diagnostic {
                        severity: Severity::Warning,
                        ..Diagnostic::error(
                            Code::BadValue,
                            file.bundle.span,
                            format!("the bundle `{written}` {why}: the cases are not checked against it"),
                        )
                    });
                }
            },
        }
    }
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

/// Whether any error-severity diagnostic is present (for tests and the CLI-equivalence check).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}
