//! What a decision runs against besides the request (LANGUAGE.md §5): Python callables bound to
//! the bundle's `extern` declarations ([`PyExterns`]), and the state stores `verdict.MemoryStore`
//! and `verdict.RedisStore` (the runtime's `MemoryStore`, `verdict-store-redis`'s `RedisStore`).
//!
//! GIL discipline. An extern call attaches to the interpreter (a no-op when the decision runs
//! attached); everything else a store does runs detached ([`with_store`]): a Redis round trip
//! never holds the GIL, and no thread ever waits for a store's lock while holding the GIL, so a
//! decision that holds the in-memory store's lock can always attach for its externs.
//!
//! INVARIANT: a thread inside a store operation never starts another one (the in-memory store's
//! lock is not re-entrant): an extern that evaluates a stateful decision, commits or releases
//! from inside a stateful decision gets a `VerdictError` instead of a deadlock.

use crate::{context, errors, pyjson};
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use verdict_runtime::externs::{ExternError, Externs};
use verdict_runtime::state::{self, StateStore, StoreError};

thread_local! {
    /// Whether this thread is inside a store operation (see the module's invariant).
    static IN_STORE: Cell<bool> = const { Cell::new(false) };
    /// A `BaseException` that is not an `Exception` (`KeyboardInterrupt`, `SystemExit`) raised by
    /// an extern during the decision running on this thread: the decision fails closed, then the
    /// evaluation raises it.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Python callables by extern name.
pub struct PyExterns {
    fns: HashMap<String, Py<PyAny>>,
}

/// The text a raised exception leaves in a fail-closed reason: `ExcType: message`, or the
/// type's name alone when the message is empty.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let ty = e.get_type(py);
    let name = ty.name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".to_owned());
    let message = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    if message.is_empty() { name } else { format!("{name}: {message}") }
}

impl PyExterns {
    /// Reads `externs=`: a mapping of declared extern names to callables. A name the bundle does
    /// not declare is refused (a misspelt binding would otherwise fail closed at every call).
    pub fn new(externs: &Bound<'_, PyAny>, declared: &[String]) -> PyResult<PyExterns> {
        let py = externs.py();
        let dict = externs.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "externs must be a dict of extern name to callable, not `{}`",
                context::type_name(externs)
            ))
        })?;
        let mut fns = HashMap::new();
        for (name, f) in dict.iter() {
            let name: String = name.extract().map_err(|_| {
                PyTypeError::new_err(format!("an extern name must be a str, not `{}`", context::type_name(&name)))
            })?;
            if !f.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "the extern `{name}` must be bound to a callable, not `{}`",
                    context::type_name(&f)
                )));
            }
            if !declared.contains(&name) {
                let known = if declared.is_empty() { "none".to_owned() } else { declared.join(", ") };
                return Err(errors::verdict_error(
                    py,
                    format!("the bundle declares no extern `{name}` (it declares: {known})"),
                ));
            }
            fns.insert(name, f.unbind());
        }
        Ok(PyExterns { fns })
    }

    /// The callables, for the garbage collector.
    pub fn callables(&self) -> impl Iterator<Item = &Py<PyAny>> {
        self.fns.values()
    }

    fn call_attached(py: Python<'_>, f: &Py<PyAny>, args: &[Value]) -> Result<Value, String> {
        let failed = |e: PyErr| {
            let text = describe(py, &e);
            if !e.is_instance_of::<PyException>(py) {
                PENDING.with(|p| {
                    if let Ok(mut slot) = p.try_borrow_mut() {
                        slot.get_or_insert(e);
                    }
                });
            }
            text
        };
        let args = args.iter().map(|a| pyjson::to_py(py, a)).collect::<PyResult<Vec<_>>>().map_err(failed)?;
        let args = PyTuple::new(py, args).map_err(failed)?;
        let out = f.bind(py).call1(args).map_err(failed)?;
        context::to_value(&out, 0).map_err(|fault| match fault {
            context::Fault::Refused { path, message } => {
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!(" at `{}`", path.iter().rev().cloned().collect::<Vec<_>>().join("."))
                };
                format!("the result is not JSON{at}: {message}")
            }
            context::Fault::Python(e) => failed(e),
        })
    }
}

impl Externs for PyExterns {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, ExternError> {
        let Some(f) = self.fns.get(name) else { return Err(ExternError::Unbound) };
        Python::attach(|py| PyExterns::call_attached(py, f, args)).map_err(ExternError::Failed)
    }
}

/// The `BaseException` an extern raised during this thread's last decision, if any.
pub fn take_pending() -> Option<PyErr> {
    PENDING.with(|p| p.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
}

/// Resets the pending exception before a decision.
pub fn clear_pending() {
    let _ = take_pending();
}

/// Clears the in-store flag when a store operation ends, however it ends.
struct InStore;

impl Drop for InStore {
    fn drop(&mut self) {
        IN_STORE.with(|f| f.set(false));
    }
}

/// Runs a store operation detached from the interpreter; refused on a thread already inside one.
pub fn with_store<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> PyResult<R> {
    if IN_STORE.with(Cell::get) {
        return Err(errors::verdict_error(
            py,
            "a stateful decision, commit or release cannot run inside an extern called by a stateful decision",
        ));
    }
    Ok(py.detach(|| {
        IN_STORE.with(|flag| flag.set(true));
        let _reset = InStore;
        f()
    }))
}

/// A store error as `verdict.StoreError`.
pub fn store_error(py: Python<'_>, e: &StoreError) -> PyErr {
    errors::store_error(py, e.to_string())
}

/// How a commit or release ended, as Python sees it.
pub fn settled(s: state::Settled) -> &'static str {
    match s {
        state::Settled::Committed => "committed",
        state::Settled::Released => "released",
    }
}

/// `verdict.MemoryStore`: one process's state series, holds and decisions (the runtime's
/// in-memory store). Give one to several engines to share it between them.
#[pyclass(frozen, module = "verdict", name = "MemoryStore")]
pub struct MemoryStore {
    pub store: Arc<state::MemoryStore>,
}

#[pymethods]
impl MemoryStore {
    #[new]
    fn py_new() -> MemoryStore {
        MemoryStore { store: Arc::new(state::MemoryStore::new()) }
    }

    fn __repr__(&self) -> &'static str {
        "MemoryStore()"
    }
}

/// `verdict.RedisStore`: state series, holds and decisions in Redis, shared by every process
/// (and by `verdict serve --store` on the same Redis and prefix). Nothing connects until the
/// first operation; a Redis that is down makes decisions fail closed with `state error: ...`.
#[pyclass(frozen, module = "verdict", name = "RedisStore")]
pub struct RedisStore {
    pub store: Arc<verdict_store_redis::RedisStore>,
}

/// A timeout in seconds, as a `Duration`.
fn seconds(name: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("{name} must be a positive number of seconds, not {s}"))
    })
}

#[pymethods]
impl RedisStore {
    /// `url`: `redis://[:password@]host[:port][/db]` or `redis+unix:///path`; `prefix` is
    /// prepended to every key (`verdict:` by default, as `verdict serve` uses).
    #[new]
    #[pyo3(signature = (url, *, prefix = None, connect_timeout = None, io_timeout = None))]
    fn py_new(
        py: Python<'_>,
        url: &str,
        prefix: Option<String>,
        connect_timeout: Option<f64>,
        io_timeout: Option<f64>,
    ) -> PyResult<RedisStore> {
        let mut options = verdict_store_redis::Options::default();
        if let Some(p) = prefix {
            options.prefix = p;
        }
        if let Some(s) = connect_timeout {
            options.connect_timeout = seconds("connect_timeout", s)?;
        }
        if let Some(s) = io_timeout {
            options.io_timeout = seconds("io_timeout", s)?;
        }
        let store = verdict_store_redis::RedisStore::open(url, options)
            .map_err(|e| errors::verdict_error(py, e.to_string()))?;
        Ok(RedisStore { store: Arc::new(store) })
    }

    /// Checks that Redis answers; raises `StoreError` when it does not.
    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        let store = Arc::clone(&self.store);
        with_store(py, move || store.ping())?.map_err(|e| store_error(py, &e))
    }

    /// The key prefix.
    #[getter]
    fn prefix(&self) -> &str {
        &self.store.options().prefix
    }

    fn __repr__(&self) -> String {
        // The URL is not repeated: it may hold a password.
        format!("RedisStore(prefix={:?})", self.store.options().prefix)
    }
}

/// The store behind a `store=` argument.
pub fn store_of(obj: &Bound<'_, PyAny>) -> PyResult<Arc<dyn StateStore>> {
    if let Ok(m) = obj.cast::<MemoryStore>() {
        return Ok(Arc::clone(&m.get().store) as Arc<dyn StateStore>);
    }
    if let Ok(r) = obj.cast::<RedisStore>() {
        return Ok(Arc::clone(&r.get().store) as Arc<dyn StateStore>);
    }
    Err(PyTypeError::new_err(format!(
        "store must be a verdict.MemoryStore or a verdict.RedisStore, not `{}`",
        context::type_name(obj)
    )))
}
