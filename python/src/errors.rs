//! The package's exceptions are Python classes (`verdict/_errors.py`: `CompileError` carries
//! `.diagnostics`); the extension raises them through the types it imports once.

use pyo3::PyErrArguments;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static VERDICT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static COMPILE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static REQUEST_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static STORE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn raise<A: PyErrArguments + Send + Sync + 'static>(
    py: Python<'_>,
    cell: &PyOnceLock<Py<PyType>>,
    name: &str,
    args: A,
) -> PyErr {
    match cell.import(py, "verdict._errors", name) {
        Ok(ty) => PyErr::from_type(ty.clone(), args),
        Err(e) => e,
    }
}

/// `verdict.VerdictError`: anything Verdict refuses that has no more specific class.
pub fn verdict_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &VERDICT_ERROR, "VerdictError", (message.into(),))
}

/// `verdict.RequestError`: a request context or an evaluation argument (`now`) refused.
pub fn request_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &REQUEST_ERROR, "RequestError", (message.into(),))
}

/// `verdict.CompileError` with the diagnostics (a list of dicts, as `verdict check --format json`).
pub fn compile_error(py: Python<'_>, message: String, diagnostics: Py<PyAny>) -> PyErr {
    raise(py, &COMPILE_ERROR, "CompileError", (message, diagnostics))
}

/// `verdict.StoreError`: a state store could not commit or release (or be reached).
pub fn store_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, &STORE_ERROR, "StoreError", (message.into(),))
}
