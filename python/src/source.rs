//! Sources and artifacts as the package receives them: paths (`str` or `os.PathLike`), source
//! texts with an optional form, `.vdc` bytes; compiling them with the compiler's diagnostics.

use crate::{errors, pyjson};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use std::path::{Path, PathBuf};
use verdict_compiler::diagnostic::Severity;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, ir};
use verdict_runtime::artifact;

/// The name diagnostics give a source passed as text.
pub const TEXT_NAME: &str = "<source>";

/// The extensions that make a one-line `str` a path rather than source text.
const PATH_EXTENSIONS: [&str; 5] = [".verdict", ".yaml", ".yml", ".json", ".vdc"];

/// A bundle as given: a source file, or the bytes of a compiled artifact.
pub enum Input {
    Source(SourceFile),
    Artifact { name: String, bytes: Vec<u8> },
}

/// The source form named by `form=` (`None`: by extension, else by content).
pub fn form(form: Option<&str>) -> PyResult<Option<SourceKind>> {
    match form {
        None => Ok(None),
        Some("verdict") => Ok(Some(SourceKind::Verdict)),
        Some("yaml" | "yml") => Ok(Some(SourceKind::Yaml)),
        Some("json") => Ok(Some(SourceKind::Json)),
        Some(other) => {
            Err(PyValueError::new_err(format!("form must be \"verdict\", \"yaml\" or \"json\", not {other:?}")))
        }
    }
}

/// Reads a file; an I/O error becomes the `OSError` subclass Python would raise (with the
/// file name).
pub fn read(path: &Path) -> PyResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let name = path.display().to_string();
        match e.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, e.to_string(), name)),
            None => PyOSError::new_err(format!("cannot read {name}: {e}")),
        }
    })
}

/// A file as an input: an artifact by its header, else UTF-8 source text.
pub fn load(py: Python<'_>, path: &Path) -> PyResult<Input> {
    let bytes = read(path)?;
    let name = path.display().to_string();
    if artifact::is_artifact(&bytes) {
        return Ok(Input::Artifact { name, bytes });
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Input::Source(SourceFile::new(name, text))),
        Err(e) => Err(errors::verdict_error(
            py,
            format!("{name}: not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        )),
    }
}

/// `path_or_text` of `check` and `compile`: an `os.PathLike` is a path; a one-line `str` is a
/// path when it names a file, or, without a `form`, when it ends in a bundle extension (so a
/// missing file is `FileNotFoundError`, not a syntax error); any other `str` is source text.
pub fn path_or_text(py: Python<'_>, obj: &Bound<'_, PyAny>, kind: Option<SourceKind>) -> PyResult<Input> {
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str()?;
        let one_line = !text.contains('\n');
        let lower = text.trim_end().to_ascii_lowercase();
        let named = kind.is_none() && PATH_EXTENSIONS.iter().any(|ext| lower.ends_with(ext));
        if one_line && (named || Path::new(text).is_file()) {
            return load(py, Path::new(text));
        }
        return Ok(Input::Source(SourceFile::new(TEXT_NAME, text)));
    }
    match obj.extract::<PathBuf>() {
        Ok(path) => load(py, &path),
        Err(_) => Err(PyTypeError::new_err("give a path (str or os.PathLike) or the source text (str)")),
    }
}

/// The diagnostics as the list of dicts of `verdict check --format json`.
pub fn diagnostics<'py>(
    py: Python<'py>,
    file: &SourceFile,
    diags: &[verdict_compiler::diagnostic::Diagnostic],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for d in diags {
        list.append(pyjson::to_py(py, &verdict_compiler::diagnostic::to_json(file, d))?)?;
    }
    Ok(list)
}

/// Compiles a source for use (the compiler's `compile_for_use`, as `verdict eval` and `verdict
/// compile` do: ambiguous priority levels, V005, are refused); errors raise `CompileError` with
/// every diagnostic.
pub fn compile(py: Python<'_>, file: &SourceFile, kind: Option<SourceKind>) -> PyResult<ir::Bundle> {
    let kind = kind.unwrap_or_else(|| SourceKind::detect(&file.name, &file.text));
    // Other threads may run Python while a large bundle compiles.
    let compiled = py.detach(|| verdict_compiler::compile_for_use_as(file, kind));
    if let Some(bundle) = compiled.bundle {
        return Ok(bundle);
    }
    let errors: Vec<_> = compiled.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    let mut message = format!("{} does not compile", file.name);
    if let Some(first) = errors.first() {
        let (line, column) = file.line_col(first.span.start);
        message.push_str(&format!(": {} at line {line} column {column}: {}", first.code.as_str(), first.message));
        if errors.len() > 1 {
            message.push_str(&format!(" (and {} more errors)", errors.len() - 1));
        }
    }
    let diags = diagnostics(py, file, &compiled.diagnostics)?;
    Err(errors::compile_error(py, message, diags.into_any().unbind()))
}
