//! `verdict._native`: the Python binding of Verdict (EMBEDDING.md), a thin layer over the runtime
//! (and the compiler, for sources). It converts between Python objects and the runtime's types
//! and never decides anything itself: every semantic question goes to `verdict-runtime` or
//! `verdict-compiler`.
//!
//! - [`engine`]: `Engine` (load, evaluate, observers, the `guard` entry point),
//! - [`context`]: Python request contexts read along the bundle's paths,
//! - [`host`]: externs as Python callables, `MemoryStore` and `RedisStore`,
//! - [`result`]: the result objects, [`pyjson`]: JSON values → Python objects,
//! - [`source`]: paths, texts and artifacts; compiling with diagnostics,
//! - [`errors`]: the exceptions (Python classes in `verdict/_errors.py`).
//!
//! The enforcement helpers (`guard`, `Guarded`, `Enforcer`) are Python (`verdict/_enforce.py`).

mod context;
mod engine;
mod errors;
mod host;
mod pyjson;
mod result;
mod source;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// mimalloc for the extension's own allocations (a decision reads a few short-lived JSON values
/// and strings); Python objects keep Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The diagnostics of `verdict check --format json` for one bundle (a path or source text): the
/// compiler's, then the rule analysis' when the bundle compiled.
#[pyfunction]
#[pyo3(signature = (path_or_text, form = None))]
fn check<'py>(py: Python<'py>, path_or_text: &Bound<'py, PyAny>, form: Option<&str>) -> PyResult<Bound<'py, PyList>> {
    let kind = source::form(form)?;
    match source::path_or_text(py, path_or_text, kind)? {
        source::Input::Artifact { name, .. } => {
            Err(errors::verdict_error(py, format!("{name} is a compiled artifact; `check` needs the bundle's source")))
        }
        source::Input::Source(file) => {
            let kind = kind.unwrap_or_else(|| verdict_compiler::SourceKind::detect(&file.name, &file.text));
            let diags = py.detach(|| verdict_compiler::check_as(&file, kind));
            source::diagnostics(py, &file, &diags)
        }
    }
}

/// Compiles a bundle (a path or source text) to the bytes of a `.vdc` artifact.
#[pyfunction]
#[pyo3(signature = (path_or_text, form = None))]
fn compile<'py>(
    py: Python<'py>,
    path_or_text: &Bound<'py, PyAny>,
    form: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = source::form(form)?;
    match source::path_or_text(py, path_or_text, kind)? {
        source::Input::Artifact { name, .. } => {
            Err(errors::verdict_error(py, format!("{name} is already a compiled artifact")))
        }
        source::Input::Source(file) => {
            let bundle = source::compile(py, &file, kind)?;
            let bytes = verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&bundle));
            Ok(PyBytes::new(py, &bytes))
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_class::<result::EvaluationResult>()?;
    m.add_class::<result::Decision>()?;
    m.add_class::<host::MemoryStore>()?;
    m.add_class::<host::RedisStore>()?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
