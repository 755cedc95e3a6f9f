//! The server loop: one thread owns the database and applies edits; requests and diagnostics run
//! on a small pool of workers, each on a snapshot (a clone of the database). An edit cancels the
//! queries running on snapshots (salsa unwinds them with `Cancelled`): a cancelled request is
//! dispatched again on the new text (as rust-analyzer retries; the protocol asks servers not to
//! answer `ContentModified` for edits they have in hand), up to [`RETRIES`] times, then answered
//! with `ContentModified`; a cancelled diagnostics run is scheduled again.
//!
//! Work per document is bounded: the compiles inside queries stop at the compiler's checkpoints
//! when an edit is pending, so an edit waits milliseconds, not a whole compile; diagnostics start
//! once a document has been unchanged for [`DEBOUNCE`]; edits that queue up while the loop is
//! busy are applied to one copy of the text and written to the database once.
//!
//! No message can stop the server: malformed frames and invalid requests get error responses,
//! unknown methods `MethodNotFound`, bad parameters `InvalidParams`, positions out of range are
//! clamped, documents that are not bundles get empty results, and every handler runs under
//! `catch_unwind` (a panic is logged to stderr and answered with `InternalError`).

use crate::db::{
    Database, Lang, SourceInput, TestTarget, file_diagnostics, is_test_file, line_index, test_diagnostics,
};
use crate::ide;
use crate::proto::{self, Doc};
use crate::transport::{Incoming, Outgoing, raw_error};
use crossbeam_channel::{Receiver, Sender};
use lsp_server::{ErrorCode, Message, Notification, Request, RequestId, Response, ResponseError};
use lsp_types as lsp;
use salsa::Setter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The capabilities announced in the `initialize` response.
pub fn capabilities() -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        position_encoding: Some(lsp::PositionEncodingKind::UTF16),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(lsp::TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(lsp::TextDocumentSyncKind::INCREMENTAL),
            ..Default::default()
        })),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![".".into()]),
            ..Default::default()
        }),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        ..Default::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Uninitialized,
    Running,
    ShutDown,
}

/// An open document.
struct OpenDoc {
    file: SourceInput,
    version: i32,
    /// The text with edits not yet given to the database: edits that queue up (a burst, while the
    /// main loop was busy) are applied here and written once, so each does not copy the text.
    pending: Option<String>,
}

/// How many times a request cancelled by edits is run again before `ContentModified`.
pub const RETRIES: u8 = 3;

/// How long a document must stay unchanged before its diagnostics are computed: a burst of edits
/// (typing, an editor replaying changes) starts one diagnostics run at its end instead of one per
/// edit, each of which the next edit would have to wait to cancel.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Work that finished on a worker and needs the main loop.
enum Task {
    /// A diagnostics run was cancelled by an edit (possibly of another document).
    DiagnosticsCancelled { uri: lsp::Uri, version: i32 },
    /// A request was cancelled by an edit: run it again on the new text.
    Retry { req: Request, attempt: u8 },
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads.
struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(n: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let threads = (0..n)
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("verdict-lsp-worker-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })
                    .ok()
            })
            .collect();
        Pool { jobs: Some(tx), threads }
    }

    fn execute(&self, job: Job) {
        if self.threads.is_empty() {
            // No worker could be started: run here rather than never.
            job();
        } else if let Some(tx) = &self.jobs
            && let Err(e) = tx.send(job)
        {
            (e.0)();
        }
    }

    fn join(mut self) {
        self.jobs = None;
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

struct Server {
    db: Database,
    out: Sender<Outgoing>,
    state: State,
    /// Every document ever opened has an input (salsa inputs live as long as the database).
    inputs: HashMap<lsp::Uri, SourceInput>,
    open: HashMap<lsp::Uri, OpenDoc>,
    pool: Pool,
    tasks: (Sender<Task>, Receiver<Task>),
    /// Documents whose diagnostics are due, and when (see [`DEBOUNCE`]).
    due: HashMap<lsp::Uri, Instant>,
    /// Bundles named by test files and read from disk (not open in the editor), by path.
    disk: HashMap<PathBuf, SourceInput>,
}

/// Serves until `exit` (or the end of input). Returns the process exit code: 0 when `shutdown`
/// came before `exit`, 1 otherwise (as the protocol asks).
pub fn serve(incoming: Receiver<Incoming>, out: Sender<Outgoing>) -> u8 {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let mut server = Server {
        db: Database::default(),
        out,
        state: State::Uninitialized,
        inputs: HashMap::new(),
        open: HashMap::new(),
        pool: Pool::new(workers),
        tasks: crossbeam_channel::unbounded(),
        due: HashMap::new(),
        disk: HashMap::new(),
    };
    let code = server.run(&incoming);
    // Cancel what is still running, then let the workers drain their queue and stop.
    salsa::Database::trigger_cancellation(&mut server.db);
    let Server { pool, .. } = server;
    pool.join();
    code
}

impl Server {
    fn run(&mut self, incoming: &Receiver<Incoming>) -> u8 {
        let tasks = self.tasks.1.clone();
        loop {
            // Edits reach the database (and cancel the work on the old text) once no message waits.
            if incoming.is_empty() {
                self.flush_edits();
            }
            self.start_due_diagnostics();
            // Wake up when the next debounced diagnostics run is due, if any.
            let wake = match self.due.values().min() {
                Some(at) => crossbeam_channel::at(*at),
                None => crossbeam_channel::never(),
            };
            crossbeam_channel::select! {
                recv(wake) -> _ => {}
                recv(incoming) -> msg => {
                    let Ok(msg) = msg else {
                        // End of input without `exit`.
                        return if self.state == State::ShutDown { 0 } else { 1 };
                    };
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.on_incoming(msg)));
                    match outcome {
                        Ok(Some(code)) => return code,
                        Ok(None) => {}
                        Err(panic) => log(&format!("message handling panicked: {}", panic_text(&panic))),
                    }
                }
                recv(tasks) -> task => {
                    if let Ok(task) = task {
                        let _ = catch_unwind(AssertUnwindSafe(|| self.on_task(task)));
                    }
                }
            }
        }
    }

    /// Starts the diagnostics runs whose debounce delay is over.
    fn start_due_diagnostics(&mut self) {
        let now = Instant::now();
        let ready: Vec<lsp::Uri> = self.due.iter().filter(|(_, at)| **at <= now).map(|(u, _)| u.clone()).collect();
        for uri in ready {
            self.due.remove(&uri);
            self.schedule_diagnostics(uri);
        }
    }

    fn send(&self, msg: Message) {
        let _ = self.out.send(Outgoing::Message(msg));
    }

    fn respond_err(&self, id: RequestId, code: ErrorCode, message: impl Into<String>) {
        self.send(Message::Response(error_response(id, code, message)));
    }

    /// Handles one message; `Some(code)` when the server must exit.
    fn on_incoming(&mut self, msg: Incoming) -> Option<u8> {
        match msg {
            Incoming::Malformed { id, code, message } => {
                log(&format!("malformed message: {message}"));
                let _ = self.out.send(Outgoing::Raw(raw_error(id, code, &message)));
                None
            }
            Incoming::Message(Message::Request(req)) => {
                self.on_request(req, 0);
                None
            }
            Incoming::Message(Message::Notification(n)) => self.on_notification(n),
            // We send no requests, so responses are unexpected: ignored.
            Incoming::Message(Message::Response(_)) => None,
        }
    }

    fn on_request(&mut self, req: Request, attempt: u8) {
        match self.state {
            State::Uninitialized => {
                if req.method == "initialize" {
                    let result = lsp::InitializeResult {
                        capabilities: capabilities(),
                        server_info: Some(lsp::ServerInfo {
                            name: "verdict".into(),
                            version: Some(env!("CARGO_PKG_VERSION").into()),
                        }),
                    };
                    self.send(Message::Response(ok_response(req.id, &result)));
                    self.state = State::Running;
                } else {
                    self.respond_err(req.id, ErrorCode::ServerNotInitialized, "the server is not initialized");
                }
                return;
            }
            State::ShutDown => {
                self.respond_err(req.id, ErrorCode::InvalidRequest, "the server is shutting down");
                return;
            }
            State::Running => {}
        }
        match req.method.as_str() {
            "initialize" => self.respond_err(req.id, ErrorCode::InvalidRequest, "the server is already initialized"),
            "shutdown" => {
                self.state = State::ShutDown;
                self.send(Message::Response(ok_response(req.id, &())));
            }
            "textDocument/hover" => self.spawn(
                req,
                attempt,
                |p: &lsp::HoverParams| &p.text_document_position_params.text_document.uri,
                hover,
            ),
            "textDocument/definition" => self.spawn(
                req,
                attempt,
                |p: &lsp::GotoDefinitionParams| &p.text_document_position_params.text_document.uri,
                definition,
            ),
            "textDocument/references" => self.spawn(
                req,
                attempt,
                |p: &lsp::ReferenceParams| &p.text_document_position.text_document.uri,
                references,
            ),
            "textDocument/documentSymbol" => {
                self.spawn(req, attempt, |p: &lsp::DocumentSymbolParams| &p.text_document.uri, document_symbols)
            }
            "textDocument/completion" => self.spawn(
                req,
                attempt,
                |p: &lsp::CompletionParams| &p.text_document_position.text_document.uri,
                completion,
            ),
            "textDocument/formatting" => {
                self.spawn(req, attempt, |p: &lsp::DocumentFormattingParams| &p.text_document.uri, formatting)
            }
            other => {
                let message = format!("unknown method `{other}`");
                self.respond_err(req.id, ErrorCode::MethodNotFound, message);
            }
        }
    }

    /// Runs a request on a worker with a snapshot; answers `null` for documents that are not open.
    fn spawn<P, R>(
        &mut self,
        req: Request,
        attempt: u8,
        uri_of: fn(&P) -> &lsp::Uri,
        handler: fn(&Database, SourceInput, &lsp::Uri, P) -> R,
    ) where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
    {
        let retry = req.clone();
        let params: P = match serde_json::from_value(req.params) {
            Ok(p) => p,
            Err(e) => {
                self.respond_err(
                    req.id,
                    ErrorCode::InvalidParams,
                    format!("invalid parameters for `{}`: {e}", req.method),
                );
                return;
            }
        };
        let uri = uri_of(&params).clone();
        let Some(doc) = self.open.get(&uri) else {
            self.send(Message::Response(ok_response(req.id, &())));
            return;
        };
        let file = doc.file;
        self.flush_edits();
        let snapshot = self.db.clone();
        let out = self.out.clone();
        let tasks = self.tasks.0.clone();
        let (id, method) = (req.id, req.method);
        self.pool.execute(Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                salsa::Cancelled::catch(AssertUnwindSafe(|| handler(&snapshot, file, &uri, params)))
            }));
            let response = match result {
                Ok(Ok(r)) => ok_response(id, &r),
                Ok(Err(_cancelled)) if attempt < RETRIES => {
                    drop(snapshot);
                    let _ = tasks.send(Task::Retry { req: retry, attempt: attempt + 1 });
                    return;
                }
                Ok(Err(_cancelled)) => error_response(id, ErrorCode::ContentModified, "the document changed"),
                Err(panic) => {
                    let text = panic_text(&panic);
                    log(&format!("`{method}` panicked: {text}"));
                    error_response(id, ErrorCode::InternalError, format!("internal error in `{method}`: {text}"))
                }
            };
            drop(snapshot);
            let _ = out.send(Outgoing::Message(Message::Response(response)));
        }));
    }

    fn on_notification(&mut self, n: Notification) -> Option<u8> {
        if n.method == "exit" {
            return Some(if self.state == State::ShutDown { 0 } else { 1 });
        }
        if self.state != State::Running {
            return None;
        }
        match n.method.as_str() {
            "textDocument/didOpen" => {
                if let Some(p) = params::<lsp::DidOpenTextDocumentParams>(n) {
                    self.did_open(p);
                }
            }
            "textDocument/didChange" => {
                if let Some(p) = params::<lsp::DidChangeTextDocumentParams>(n) {
                    self.did_change(p);
                }
            }
            "textDocument/didClose" => {
                if let Some(p) = params::<lsp::DidCloseTextDocumentParams>(n) {
                    self.did_close(p);
                }
            }
            // `initialized`, `didSave`, `$/cancelRequest`, configuration changes and anything
            // unknown: nothing to do (requests finish quickly; edits cancel them anyway).
            _ => {}
        }
        None
    }

    fn did_open(&mut self, p: lsp::DidOpenTextDocumentParams) {
        let doc = p.text_document;
        let lang = Lang::detect(&doc.language_id, doc.uri.path().as_str());
        let file = match self.inputs.get(&doc.uri) {
            Some(f) => {
                let f = *f;
                f.set_text(&mut self.db).to(doc.text);
                if f.lang(&self.db) != lang {
                    f.set_lang(&mut self.db).to(lang);
                }
                f
            }
            None => {
                let f = SourceInput::new(&self.db, doc.uri.as_str().to_owned(), doc.text, lang);
                self.inputs.insert(doc.uri.clone(), f);
                f
            }
        };
        self.open.insert(doc.uri.clone(), OpenDoc { file, version: doc.version, pending: None });
        self.schedule_diagnostics(doc.uri);
    }

    fn did_change(&mut self, p: lsp::DidChangeTextDocumentParams) {
        let uri = p.text_document.uri;
        let Some(doc) = self.open.get_mut(&uri) else {
            log(&format!("change to a document that is not open: {}", uri.as_str()));
            return;
        };
        doc.version = p.text_document.version;
        let file = doc.file;
        let text = doc.pending.get_or_insert_with(|| file.text(&self.db).clone());
        for change in p.content_changes {
            apply_change(text, change);
        }
        self.due.insert(uri, Instant::now() + DEBOUNCE);
    }

    /// Writes the pending edits of every document to the database.
    fn flush_edits(&mut self) {
        for doc in self.open.values_mut() {
            if let Some(text) = doc.pending.take() {
                doc.file.set_text(&mut self.db).to(text);
            }
        }
    }

    fn did_close(&mut self, p: lsp::DidCloseTextDocumentParams) {
        let uri = p.text_document.uri;
        self.due.remove(&uri);
        if let Some(doc) = self.open.remove(&uri) {
            // Free the text; the input itself stays (salsa inputs cannot be removed).
            doc.file.set_text(&mut self.db).to(String::new());
        }
        let params = lsp::PublishDiagnosticsParams { uri, diagnostics: Vec::new(), version: None };
        self.send(Message::Notification(notification::<lsp::notification::PublishDiagnostics>(params)));
    }

    fn on_task(&mut self, task: Task) {
        match task {
            Task::Retry { req, attempt } => self.on_request(req, attempt),
            Task::DiagnosticsCancelled { uri, version } => {
                if self.open.get(&uri).is_some_and(|d| d.version == version) {
                    self.schedule_diagnostics(uri);
                }
            }
        }
    }

    /// Computes and publishes a document's diagnostics on a worker. The snapshot is dropped only
    /// after the notification is queued, so diagnostics of an older text are never sent after
    /// those of a newer one (the next edit waits for the snapshot).
    fn schedule_diagnostics(&mut self, uri: lsp::Uri) {
        self.flush_edits();
        let Some(doc) = self.open.get(&uri) else { return };
        let (file, version) = (doc.file, doc.version);
        let test = if is_test_file(uri.as_str()) {
            Some(self.test_bundle(&uri, file))
        } else {
            // A bundle may have changed: the open test files are checked again against it.
            let later = Instant::now() + DEBOUNCE;
            for u in self.open.keys().filter(|u| is_test_file(u.as_str())) {
                self.due.entry(u.clone()).or_insert(later);
            }
            None
        };
        let snapshot = self.db.clone();
        let out = self.out.clone();
        let tasks = self.tasks.0.clone();
        self.pool.execute(Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                salsa::Cancelled::catch(AssertUnwindSafe(|| match test {
                    Some(bundle) => publish_test_params(&snapshot, file, bundle, &uri, Some(version)),
                    None => publish_params(&snapshot, file, &uri, Some(version)),
                }))
            }));
            match result {
                Ok(Ok(params)) => {
                    let n = notification::<lsp::notification::PublishDiagnostics>(params);
                    let _ = out.send(Outgoing::Message(Message::Notification(n)));
                }
                Ok(Err(_cancelled)) => {
                    let _ = tasks.send(Task::DiagnosticsCancelled { uri, version });
                }
                Err(panic) => log(&format!("diagnostics of {} panicked: {}", uri.as_str(), panic_text(&panic))),
            }
            drop(snapshot);
        }));
    }
}

impl Server {
    /// The document of the bundle a test file names: the open document of that path, or the file
    /// read from disk again (its input's text set only when it changed, so the bundle's compile
    /// is reused); `None` when it cannot be read.
    fn test_bundle(&mut self, uri: &lsp::Uri, file: SourceInput) -> Option<SourceInput> {
        let written = crate::db::test_bundle_path(&self.db, file)?;
        let dir = file_path(uri)?.parent()?.to_path_buf();
        let path = normalize(&dir.join(written));
        let open = self.open.iter().find(|(u, _)| file_path(u).is_some_and(|p| normalize(&p) == path));
        if let Some((_, doc)) = open {
            return Some(doc.file);
        }
        let text = read_source(&path)?;
        match self.disk.get(&path) {
            Some(f) => {
                let f = *f;
                if *f.text(&self.db) != text {
                    f.set_text(&mut self.db).to(text);
                }
                Some(f)
            }
            None => {
                let name = path.display().to_string();
                let lang = Lang::detect("", &name);
                let f = SourceInput::new(&self.db, name, text, lang);
                self.disk.insert(path, f);
                Some(f)
            }
        }
    }
}

/// A bundle file's text, if it is a regular file that can be read within the source size limit
/// ([`verdict_compiler::source::MAX_SOURCE_BYTES`]).
///
/// The path comes from a document, and this runs on the main loop: anything but a regular file
/// is refused before it is opened (opening a FIFO blocks until a writer comes; `/dev/stdin` is the
/// server's own input; `/dev/zero` never ends), and what is read stops one byte past the limit.
fn read_source(path: &Path) -> Option<String> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    read_opened(path)
}

/// [`read_source`] past its first look: the path may have been replaced by a FIFO since, so it
/// is opened without blocking and the opened file is checked again.
fn read_opened(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let limit = verdict_compiler::source::MAX_SOURCE_BYTES as u64;
    let nonblock = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).ok()?;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(nonblock).open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > limit {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The local path of a `file:` URI (percent-decoded), or `None` for other schemes.
fn file_path(uri: &lsp::Uri) -> Option<PathBuf> {
    let text = uri.as_str();
    let rest = text.strip_prefix("file://")?;
    // `file://host/path` names a host; only local files (empty host or localhost) are read.
    let path = if rest.starts_with('/') { rest } else { rest.strip_prefix("localhost")? };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |k: usize| bytes.get(k).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(PathBuf::from)
}

/// A path with `.` and `..` resolved lexically (the file need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Applies one content change: the whole text, or a UTF-16 range (clamped, and put in order).
pub fn apply_change(text: &mut String, change: lsp::TextDocumentContentChangeEvent) {
    let Some(range) = change.range else {
        *text = change.text;
        return;
    };
    let (a, b) = (offset_of(text, range.start), offset_of(text, range.end));
    let (start, end) = (a.min(b), a.max(b));
    if text.is_char_boundary(start) && text.is_char_boundary(end) && end <= text.len() {
        text.replace_range(start..end, &change.text);
    }
}

/// The byte offset of a position (clamped as [`verdict_compiler::source::LineIndex::offset_utf16`]
/// clamps), found by scanning to its line: an edit needs two positions, and a line index would
/// read the whole text on every keystroke.
fn offset_of(text: &str, p: lsp::Position) -> usize {
    let mut start = 0usize;
    for _ in 0..p.line {
        match text.get(start..).and_then(|rest| rest.find('\n')) {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0u32;
    for (i, c) in text.get(start..).unwrap_or("").char_indices() {
        if units >= p.character || c == '\n' {
            return start + i;
        }
        units = units.saturating_add(u32::try_from(c.len_utf16()).unwrap_or(1));
    }
    text.len()
}

/// The diagnostics notification of a document.
pub fn publish_params(
    db: &Database,
    file: SourceInput,
    uri: &lsp::Uri,
    version: Option<i32>,
) -> lsp::PublishDiagnosticsParams {
    let doc = Doc { text: file.text(db), lines: line_index(db, file) };
    let diagnostics = file_diagnostics(db, file).iter().map(|d| proto::diagnostic(doc, uri, d)).collect();
    lsp::PublishDiagnosticsParams { uri: uri.clone(), diagnostics, version }
}

/// The diagnostics notification of a policy test file.
pub fn publish_test_params(
    db: &Database,
    file: SourceInput,
    bundle: Option<SourceInput>,
    uri: &lsp::Uri,
    version: Option<i32>,
) -> lsp::PublishDiagnosticsParams {
    let target = TestTarget::new(db, file, bundle);
    let doc = Doc { text: file.text(db), lines: line_index(db, file) };
    let diagnostics = test_diagnostics(db, target).iter().map(|d| proto::diagnostic(doc, uri, d)).collect();
    lsp::PublishDiagnosticsParams { uri: uri.clone(), diagnostics, version }
}

// ---- request handlers (run on workers) --------------------------------------------------------

fn doc(db: &Database, file: SourceInput) -> Doc<'_> {
    Doc { text: file.text(db), lines: line_index(db, file) }
}

fn hover(db: &Database, file: SourceInput, _: &lsp::Uri, p: lsp::HoverParams) -> Option<lsp::Hover> {
    let d = doc(db, file);
    let offset = d.offset(p.text_document_position_params.position);
    let (markdown, span) = ide::hover(db, file, offset)?;
    Some(lsp::Hover {
        contents: lsp::HoverContents::Markup(lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value: markdown }),
        range: Some(d.range(span)),
    })
}

fn locations(d: Doc<'_>, uri: &lsp::Uri, spans: Vec<verdict_grammar::ast::Span>) -> Vec<lsp::Location> {
    spans.into_iter().map(|s| lsp::Location { uri: uri.clone(), range: d.range(s) }).collect()
}

fn definition(
    db: &Database,
    file: SourceInput,
    uri: &lsp::Uri,
    p: lsp::GotoDefinitionParams,
) -> Option<lsp::GotoDefinitionResponse> {
    let d = doc(db, file);
    let offset = d.offset(p.text_document_position_params.position);
    let found = locations(d, uri, ide::definition(db, file, offset));
    (!found.is_empty()).then_some(lsp::GotoDefinitionResponse::Array(found))
}

fn references(db: &Database, file: SourceInput, uri: &lsp::Uri, p: lsp::ReferenceParams) -> Option<Vec<lsp::Location>> {
    let d = doc(db, file);
    let offset = d.offset(p.text_document_position.position);
    let found = locations(d, uri, ide::references(db, file, offset, p.context.include_declaration));
    (!found.is_empty()).then_some(found)
}

fn document_symbols(
    db: &Database,
    file: SourceInput,
    _: &lsp::Uri,
    _: lsp::DocumentSymbolParams,
) -> Option<lsp::DocumentSymbolResponse> {
    let d = doc(db, file);
    let nodes = ide::outline(db, file);
    Some(lsp::DocumentSymbolResponse::Nested(nodes.iter().map(|n| proto::outline(d, n)).collect()))
}

fn completion(
    db: &Database,
    file: SourceInput,
    _: &lsp::Uri,
    p: lsp::CompletionParams,
) -> Option<lsp::CompletionResponse> {
    let d = doc(db, file);
    let offset = d.offset(p.text_document_position.position);
    let items: Vec<lsp::CompletionItem> = ide::completions(db, file, offset).iter().map(proto::completion).collect();
    Some(lsp::CompletionResponse::Array(items))
}

fn formatting(
    db: &Database,
    file: SourceInput,
    _: &lsp::Uri,
    _: lsp::DocumentFormattingParams,
) -> Option<Vec<lsp::TextEdit>> {
    let formatted = ide::format(db, file)?;
    Some(vec![lsp::TextEdit { range: doc(db, file).full_range(), new_text: formatted }])
}

// ---- helpers -----------------------------------------------------------------------------------

fn params<P: DeserializeOwned>(n: Notification) -> Option<P> {
    match serde_json::from_value(n.params) {
        Ok(p) => Some(p),
        Err(e) => {
            log(&format!("invalid parameters for `{}`: {e}", n.method));
            None
        }
    }
}

fn notification<N: lsp::notification::Notification>(params: N::Params) -> Notification {
    Notification { method: N::METHOD.to_owned(), params: serde_json::to_value(params).unwrap_or_default() }
}

fn ok_response(id: RequestId, result: &impl Serialize) -> Response {
    match serde_json::to_value(result) {
        Ok(v) => Response { id, response_result: Ok(v) },
        Err(e) => error_response(id, ErrorCode::InternalError, format!("cannot serialize the result: {e}")),
    }
}

fn error_response(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Response {
    Response { id, response_result: Err(ResponseError { code: code as i32, message: message.into(), data: None }) }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The server's log: stderr, which editors show as the server's output.
fn log(message: &str) {
    eprintln!("verdict-lsp: {message}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use serde_json::json;

    fn server() -> (Server, Receiver<Outgoing>) {
        let (out, rx) = crossbeam_channel::unbounded();
        let server = Server {
            db: Database::default(),
            out,
            state: State::Running,
            inputs: HashMap::new(),
            open: HashMap::new(),
            pool: Pool::new(1),
            tasks: crossbeam_channel::unbounded(),
            due: HashMap::new(),
            disk: HashMap::new(),
        };
        (server, rx)
    }

    #[test]
    fn file_uris_become_paths() {
        let uri = |s: &str| s.parse::<lsp::Uri>().unwrap();
        assert_eq!(file_path(&uri("file:///a%20b/c%C3%A9.test.yaml")), Some(PathBuf::from("/a b/cé.test.yaml")));
        assert_eq!(file_path(&uri("file://localhost/x/y.yaml")), Some(PathBuf::from("/x/y.yaml")));
        assert_eq!(file_path(&uri("untitled:Untitled-1")), None);
        assert_eq!(file_path(&uri("file://server/share/y.yaml")), None);
        assert_eq!(normalize(Path::new("/a/b/../c/./d.yaml")), PathBuf::from("/a/c/d.yaml"));
    }

    /// A FIFO put where a regular file was seen is opened without waiting for a writer, then
    /// refused (the check [`read_source`] makes before it opens cannot see a later swap).
    #[test]
    fn a_fifo_swapped_in_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("verdict-lsp-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("swapped.yaml");
        let _ = std::fs::remove_file(&fifo);
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(read_opened(&path)).unwrap());
        // A hang guard, not a timing: a blocking open never answers.
        let read = rx.recv_timeout(std::time::Duration::from_secs(30));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read, Ok(None));
        // A regular file is read as before.
        let file = std::env::temp_dir().join(format!("verdict-lsp-regular-{}.yaml", std::process::id()));
        std::fs::write(&file, "bundle_id: b").unwrap();
        assert_eq!(read_opened(&file).as_deref(), Some("bundle_id: b"));
        std::fs::remove_file(&file).unwrap();
    }

    fn response(rx: &Receiver<Outgoing>, id: i32) -> serde_json::Value {
        loop {
            let Ok(Outgoing::Message(m)) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
                panic!("no response {id}");
            };
            let v = serde_json::to_value(m).unwrap();
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Edits find their positions by scanning, without a line index: the same offsets as the
    /// index gives, clamping included.
    #[test]
    fn edit_positions_agree_with_the_line_index() {
        let text = "ab😀c\n\né\r\nlast 😀😀\nx";
        let lines = verdict_compiler::source::LineIndex::new(text);
        for line in 0..7 {
            for character in 0..12 {
                let p = lsp::Position { line, character };
                assert_eq!(offset_of(text, p), lines.offset_utf16(text, line, character) as usize, "{p:?}");
            }
        }
    }

    /// The last line of defence: a handler that panics is answered with `InternalError`, and the
    /// same document is served afterwards.
    #[test]
    fn a_panicking_handler_is_answered_and_the_server_goes_on() {
        let (mut s, rx) = server();
        let uri = "file:///p.verdict";
        s.did_open(
            serde_json::from_value(
                json!({"textDocument": {"uri": uri, "languageId": "verdict", "version": 1, "text": "policy p {"}}),
            )
            .unwrap(),
        );
        let req = |id: i32| Request {
            id: RequestId::from(id),
            method: "textDocument/documentSymbol".into(),
            params: json!({"textDocument": {"uri": uri}}),
        };
        s.spawn(
            req(1),
            0,
            |p: &lsp::DocumentSymbolParams| &p.text_document.uri,
            |_, _, _, _| -> Option<()> { panic!("a bug in a handler") },
        );
        let r = response(&rx, 1);
        assert_eq!(r["error"]["code"], ErrorCode::InternalError as i32, "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("a bug in a handler"), "{r}");
        s.on_request(req(2), 0);
        let r = response(&rx, 2);
        assert!(r["result"].is_array(), "{r}");
        s.pool.join();
    }
}
