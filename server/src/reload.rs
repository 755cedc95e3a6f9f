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
use crate::engine::Engine;
use crate::store::{Loaded, Origin, Outcome, Put};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use verdict_compiler::diagnostic::Severity;
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
    pub failed: Vec<(PathBuf, String)>,
    /// Bundle ids removed with their files.
    pub removed: Vec<String>,
}

impl Files {
    pub fn new(explicit: Vec<PathBuf>, watch: Option<PathBuf>) -> Files {
        Files { explicit, watch, seen: HashMap::new() }
    }
}

/// Compiles a bundle file (or loads a `.vdc` artifact, recognised by its header) into a
/// [`Loaded`]; the error lists the diagnostics with positions, or says why an artifact is refused.
/// With trusted keys, only artifacts one of them signed load.
pub fn compile_file(path: &Path, bytes: Vec<u8>, keys: &TrustedKeys) -> Result<Loaded, String> {
    let digest = signature::digest(&bytes);
    if verdict_runtime::artifact::is_artifact(&bytes) {
        let (engine, signer) = Engine::from_artifact(&bytes, keys).map_err(|e| format!("{}: {e}", path.display()))?;
        let json = crate::engine::describe_artifact(&engine, &digest, signer);
        return Ok(Loaded { engine, json, origin: Origin::File(path.to_owned()), digest, signer: signer.verified() });
    }
    if !keys.is_empty() {
        return Err(format!("{}: {}", path.display(), crate::engine::SOURCE_UNTRUSTED));
    }
    let text =
        String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))?;
    let file = SourceFile::new(path.display().to_string(), text);
    let compiled = verdict_compiler::compile_for_use(&file);
    let bundle = match compiled.bundle {
        Some(b) if !compiled.has_errors() => b,
        _ => return Err(describe_errors(&file, &compiled.diagnostics)),
    };
    let engine = Engine::new(bundle)?;
    let json = engine.describe();
    Ok(Loaded { engine, json, origin: Origin::File(path.to_owned()), digest, signer: None })
}

/// The errors of a compilation as `file:line:column: CODE message` lines (at most five).
pub fn describe_errors(file: &SourceFile, diags: &[verdict_compiler::diagnostic::Diagnostic]) -> String {
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .take(5)
        .map(|d| {
            let (line, col) = file.line_col(d.span.start);
            format!("{}:{line}:{col}: {} {}", file.name, d.code.as_str(), d.message)
        })
        .collect();
    if errors.is_empty() { format!("{}: does not compile", file.name) } else { errors.join("; ") }
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

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
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
                let why = format!("cannot read {}: {e}", path.display());
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
                st.audit.emit_blocking("bundle_rejected", fields(&[("file", json!(file)), ("errors", json!(why))]));
                report.failed.push((path.clone(), why));
                continue;
            }
        };
        let (id, version, fingerprint) =
            (loaded.id().to_owned(), loaded.version().to_owned(), loaded.engine.fingerprint().to_owned());
        let (digest, signer) = (loaded.digest.clone(), loaded.signer.map(|k| k.to_string()));
        match st.store.put(loaded, Put::File) {
            Ok(outcome) => {
                if let Some(old) = seen.id.replace(id.clone())
                    && old != id
                {
                    st.store.remove_if(&old, &Origin::File(path.clone()));
                }
                let event = if outcome == Outcome::Created { "bundle_loaded" } else { "bundle_reloaded" };
                tracing::info!(file, bundle_id = id, version, fingerprint, "{event}");
                st.audit.emit_blocking(
                    event,
                    fields(&[
                        ("bundle_id", json!(id)),
                        ("bundle_version", json!(version)),
                        ("fingerprint", json!(fingerprint)),
                        ("bundle_digest", json!(digest)),
                        ("signed_by", json!(signer)),
                        ("origin", json!(format!("file:{file}"))),
                    ]),
                );
                report.loaded.push(id);
            }
            Err(e) => {
                let why = match e {
                    crate::store::PutError::OwnedBy(o) => {
                        format!("bundle id `{id}` is already registered by {}", o.describe())
                    }
                    crate::store::PutError::Full(n) => format!("the bundle store is full ({n} bundles)"),
                    crate::store::PutError::Exists => format!("bundle id `{id}` is already registered"),
                };
                st.metrics.reload_failed();
                tracing::error!(file, "{why}");
                st.audit.emit_blocking("bundle_rejected", fields(&[("file", json!(file)), ("errors", json!(why))]));
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
                st.audit.emit_blocking(
                    "bundle_removed",
                    fields(&[("bundle_id", json!(id)), ("origin", json!(format!("file:{}", p.display())))]),
                );
                report.removed.push(id);
            }
        }
    }
    report
}
