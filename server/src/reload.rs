//! Bundles from files: those given on the command line and those in the watched directory,
//! loaded at start and reloaded when their content changes (polled) or on SIGHUP (forced).
//!
//! A file that fails to compile never replaces the bundle it had loaded: the error is logged,
//! written to the audit log and counted, and the old version keeps serving. A file removed from
//! the watched directory takes its bundle with it. Write files atomically (write a temporary
//! file, then rename it into place): a half-written file is read as it is.
//!
//! Everything here is blocking (file reads, compilation): it runs on blocking threads.

use crate::AppState;
use crate::audit::BundleSummary;
use crate::engine::{Engine, EngineError};
use crate::store::{Loaded, Origin, Outcome, Put, PutError};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use verdict_compiler::SourceKind;
use verdict_compiler::diagnostic::{Diagnostic, Severity};
use verdict_compiler::source::SourceFile;
use verdict_runtime::signature::{self, TrustedKeys};

/// The extensions of bundle files in a watched directory.
pub const EXTENSIONS: [&str; 5] = ["verdict", "yaml", "yml", "json", "vdc"];

#[derive(Debug, Default)]
pub(crate) struct Files {
    pub explicit: Vec<PathBuf>,
    pub watch: Option<PathBuf>,
    seen: HashMap<PathBuf, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Hash of the content last tried, loaded or not.
    hash: Option<u64>,
    /// The bundle this file loaded.
    id: Option<String>,
}

/// What one reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Bundle ids loaded or reloaded.
    pub loaded: Vec<String>,
    /// Files that failed, with why.
    pub failed: Vec<(PathBuf, LoadError)>,
    /// Bundle ids removed with their files.
    pub removed: Vec<String>,
}

impl Files {
    pub fn new(explicit: Vec<PathBuf>, watch: Option<PathBuf>) -> Files {
        Files { explicit, watch, seen: HashMap::new() }
    }
}

/// Why a bundle file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file cannot be read.
    Read(ReadError),
    /// A source file that is not UTF-8.
    NotUtf8(NotUtf8),
    /// A source with compile errors.
    Compile(CompileErrors),
    /// An artifact refused, or a bundle the backends cannot prepare.
    Engine(EngineFailed),
    /// A source file while trusted keys are configured (only signed artifacts load then).
    Untrusted(PathBuf),
    /// The bundle compiled but the store refused it (its id belongs to another origin, or the
    /// store is full).
    Store(StoreRefused),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub path: PathBuf,
    pub kind: std::io::ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    pub path: PathBuf,
    /// The offset of the first byte that is not UTF-8.
    pub at: usize,
}

/// The error diagnostics of a compilation (the first five), with positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileErrors {
    /// The file's name as the diagnostics show it.
    pub file: String,
    pub errors: Vec<CompileError>,
}

/// One error diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub code: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFailed {
    pub path: PathBuf,
    pub source: EngineError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRefused {
    pub path: PathBuf,
    pub bundle_id: String,
    pub source: PutError,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(e) => write!(f, "cannot read `{}`: {}", e.path.display(), e.message),
            LoadError::NotUtf8(e) => write!(f, "`{}` is not UTF-8 text (byte {})", e.path.display(), e.at),
            LoadError::Compile(e) => write!(f, "{e}"),
            LoadError::Engine(e) => write!(f, "`{}`: {}", e.path.display(), e.source),
            LoadError::Untrusted(path) => write!(f, "`{}`: {}", path.display(), crate::engine::SOURCE_UNTRUSTED),
            LoadError::Store(e) => write!(f, "`{}`: {}", e.path.display(), e.source),
        }
    }
}

impl std::error::Error for LoadError {}

impl std::fmt::Display for CompileErrors {
    /// `file:line:column: CODE message` for each error, separated by `; `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "{}: does not compile", self.file);
        }
        for (i, e) in self.errors.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{}:{}:{}: {} {}", self.file, e.line, e.column, e.code, e.message)?;
        }
        Ok(())
    }
}

impl CompileErrors {
    /// The error diagnostics of a compilation (at most five).
    pub fn of(file: &SourceFile, diags: &[verdict_compiler::diagnostic::Diagnostic]) -> CompileErrors {
        let errors = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .take(5)
            .map(|d| {
                let (line, column) = file.line_col(d.span.start);
                CompileError { code: d.code.as_str().to_owned(), line, column, message: d.message.clone() }
            })
            .collect();
        CompileErrors { file: file.name.clone(), errors }
    }
}

/// Compiles a bundle file (or loads a `.vdc` artifact, recognised by its header) into a
/// [`Loaded`]; the error has the diagnostics with positions, or says why an artifact is refused.
/// With trusted keys, only artifacts one of them signed load.
pub fn compile_file(path: &Path, bytes: Vec<u8>, keys: &TrustedKeys) -> Result<Loaded, LoadError> {
    let engine_failed = |source| LoadError::Engine(EngineFailed { path: path.to_owned(), source });
    let origin = Origin::File(path.to_owned());
    if verdict_runtime::artifact::is_artifact(&bytes) {
        return load_artifact(&bytes, keys, origin).map_err(engine_failed);
    }
    if !keys.is_empty() {
        return Err(LoadError::Untrusted(path.to_owned()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| LoadError::NotUtf8(NotUtf8 { path: path.to_owned(), at: e.utf8_error().valid_up_to() }))?;
    let file = SourceFile::new(path.display().to_string(), text);
    let kind = SourceKind::detect(&file.name, &file.text);
    compile_source(&file, kind, origin).map_err(|e| match e {
        SourceFailure::Diagnostics(d) => LoadError::Compile(CompileErrors::of(&file, &d)),
        SourceFailure::Engine(e) => engine_failed(e),
    })
}

/// Loads the bytes of a `.vdc` artifact under the trusted keys (the one way artifacts load, from
/// files, Redis and the API).
pub(crate) fn load_artifact(bytes: &[u8], keys: &TrustedKeys, origin: Origin) -> Result<Loaded, EngineError> {
    let (engine, signer) = Engine::from_artifact(bytes, keys)?;
    let digest = signature::digest(bytes);
    let json = crate::engine::describe_artifact(&engine, &digest, signer);
    Ok(Loaded::new(engine, json, origin, digest, signer.verified()))
}

/// Why a bundle source did not load.
#[derive(Debug)]
pub(crate) enum SourceFailure {
    /// It has errors: every diagnostic of the compilation.
    Diagnostics(Vec<Diagnostic>),
    /// It compiled, but the backends cannot prepare it.
    Engine(EngineError),
}

/// Compiles a bundle source of a given form for use (the one way sources load, from files, Redis
/// and the API).
pub(crate) fn compile_source(file: &SourceFile, kind: SourceKind, origin: Origin) -> Result<Loaded, SourceFailure> {
    let compiled = verdict_compiler::compile_for_use_as(file, kind);
    let bundle = match compiled.bundle {
        Some(b) if !compiled.has_errors() => b,
        _ => return Err(SourceFailure::Diagnostics(compiled.diagnostics)),
    };
    let engine = Engine::new(bundle).map_err(SourceFailure::Engine)?;
    let json = engine.describe();
    Ok(Loaded::new(engine, json, origin, signature::digest(file.text.as_bytes()), None))
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The bundle files of a directory, sorted (hidden files skipped).
fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
        let ext_ok = path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e));
        if !name.starts_with('.') && ext_ok && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a reload event to the audit log (the change is made: a failure is logged).
fn audit<'a>(st: &AppState, event: &str, pairs: impl IntoIterator<Item = (&'a str, Value)>) {
    st.audit.emit_or_log(event, crate::audit::fields(pairs));
}

/// Loads every changed file (every file with `force`), and drops the bundles of files gone
/// from the watched directory.
pub(crate) fn reload(st: &AppState, force: bool) -> ReloadReport {
    let mut report = ReloadReport::default();
    let mut files = match st.files.lock() {
        Ok(f) => f,
        Err(p) => p.into_inner(),
    };
    let mut paths = files.explicit.clone();
    let mut listed = true;
    if let Some(dir) = files.watch.clone() {
        match list_dir(&dir) {
            Ok(found) => paths.extend(found.into_iter().filter(|p| !files.explicit.contains(p))),
            Err(e) => {
                listed = false;
                tracing::error!(dir = %dir.display(), error = %e, "cannot list the watched directory");
            }
        }
    }
    for path in &paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                let why = LoadError::Read(ReadError { path: path.clone(), kind: e.kind(), message: e.to_string() });
                tracing::error!("{why}; the loaded version (if any) stays");
                report.failed.push((path.clone(), why));
                continue;
            }
        };
        let hash = content_hash(&bytes);
        let seen = files.seen.entry(path.clone()).or_default();
        if !force && seen.hash == Some(hash) {
            continue;
        }
        seen.hash = Some(hash);
        let file = path.display().to_string();
        let loaded = match compile_file(path, bytes, &st.trusted_keys) {
            Ok(l) => l,
            Err(why) => {
                st.metrics.reload_failed();
                tracing::error!(file, errors = %why, "bundle file does not compile; the loaded version (if any) stays");
                audit(st, "bundle_rejected", [("file", json!(file)), ("errors", json!(why.to_string()))]);
                report.failed.push((path.clone(), why));
                continue;
            }
        };
        let summary = BundleSummary::of(&loaded);
        let id = summary.id.clone();
        match st.store.put(loaded, Put::File) {
            Ok(outcome) => {
                if let Some(old) = seen.id.replace(id.clone())
                    && old != id
                {
                    st.store.remove_if(&old, &Origin::File(path.clone()));
                }
                let event = if outcome == Outcome::Created { "bundle_loaded" } else { "bundle_reloaded" };
                let (version, fingerprint) = (&summary.version, &summary.fingerprint);
                tracing::info!(file, bundle_id = id, version, fingerprint, "{event}");
                st.audit.emit_or_log(event, summary.fields());
                report.loaded.push(id);
            }
            Err(source) => {
                let why = LoadError::Store(StoreRefused { path: path.clone(), bundle_id: id, source });
                st.metrics.reload_failed();
                tracing::error!(file, "{why}");
                audit(st, "bundle_rejected", [("file", json!(file)), ("errors", json!(why.to_string()))]);
                report.failed.push((path.clone(), why));
            }
        }
    }
    if listed {
        let gone: Vec<PathBuf> = files.seen.keys().filter(|p| !paths.contains(p)).cloned().collect();
        for p in gone {
            let Some(seen) = files.seen.remove(&p) else { continue };
            if let Some(id) = seen.id
                && st.store.remove_if(&id, &Origin::File(p.clone()))
            {
                tracing::info!(file = %p.display(), bundle_id = id, "bundle file removed; bundle unloaded");
                audit(
                    st,
                    "bundle_removed",
                    [("bundle_id", json!(id)), ("origin", json!(Origin::File(p.clone()).describe()))],
                );
                report.removed.push(id);
            }
        }
    }
    report
}
