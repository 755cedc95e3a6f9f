//! `verdict.Engine`: a loaded bundle on one backend, shared by every thread that evaluates with
//! it (a frozen class: no lock on the evaluation path).
//!
//! An evaluation reads the request with the GIL held (a `dict` walked along the bundle's paths,
//! or JSON text through the runtime's projection parser), decides, and calls the observers.
//! The decision itself runs detached from the interpreter when it is long enough for another
//! thread to gain from it (see [`Core::decide`]); decisions against a state store always do
//! (see `host`). A plain result of a bundle without state or externs whose outcome computed no
//! reason depends only on the outcome (which rule or default each policy took, and what decided
//! the bundle), so the runtime builds it once per distinct outcome and evaluations share it
//! ([`Results`]).

use crate::context::{Fault, PreparedDict, Trie};
use crate::errors;
use crate::host::{self, PyExterns};
use crate::result::EvaluationResult;
use crate::source::{self, Input};
use pyo3::exceptions::{PyException, PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir;
use verdict_runtime::decision;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::policy::Gate;
use verdict_runtime::project::PathTrie;
use verdict_runtime::request::Request;
use verdict_runtime::signature::{TrustedKeys, parse_public_keys};
use verdict_runtime::state::{self, MemoryStore, StateStore};
use verdict_runtime::{artifact, vm};

self_cell::self_cell!(
    /// A bundle and the reference interpreter that borrows it, owned together.
    struct InterpCell {
        owner: ir::Bundle,
        #[covariant]
        dependent: Interpreter,
    }
);

/// What evaluates: the runtime's engine (JIT or VM), or the compiler's reference interpreter.
enum Backend {
    Native(Box<vm::Engine>),
    Interp(InterpCell),
}

/// Untraced native decisions of programs with at most this many bytecode bytes stay attached:
/// detaching and attaching again costs more than the decision (see BENCHMARKS.md, "Python").
const DETACH_ABOVE_CODE_BYTES: usize = 4096;

/// Distinct outcomes kept at most; past this, results are built for each decision.
const MAX_CACHED_RESULTS: usize = 4096;

/// Untraced results by outcome, built by the runtime (`vm::Engine::result`) the first time an
/// outcome occurs.
///
/// INVARIANT: only results that depend on nothing but the outcome are shared: plain decisions
/// (neither traced nor exhaustive: no trace, `matches` or `rules_evaluated`) of bundles that
/// declare no state (no `decision_id`, `holds` or state reads) and no extern (no host call),
/// whose outcome computed no reason (`Outcome::reasons` empty: no rendered template, no fault, no
/// schema refusal). The evaluation time reaches a result only through the outcome (effective
/// windows, `now` conditions) and rendered reasons, so it needs no exclusion of its own.
/// Bundles with externs are excluded although their results, too, only depend on the outcome and
/// the reasons: a host call costs more than building the result, and nothing a host returns is
/// ever kept beyond its decision.
#[derive(Default)]
struct Results {
    by_outcome: RwLock<FxHashMap<Box<[u64]>, Arc<Kept>>>,
}

/// A result kept for every decision of its outcome, and its Python object, made the first
/// time a `dict` evaluation hands it out: the object is immutable (a frozen class without a
/// `__dict__`), so every such evaluation returns the same one.
struct Kept {
    result: Arc<decision::EvaluationResult>,
    object: PyOnceLock<Py<EvaluationResult>>,
}

/// A decision's result: one kept for its outcome, or its own.
enum Shared {
    Kept(Arc<Kept>),
    Own(Arc<decision::EvaluationResult>),
}

impl Shared {
    fn result(self) -> Arc<decision::EvaluationResult> {
        match self {
            Shared::Kept(k) => Arc::clone(&k.result),
            Shared::Own(r) => r,
        }
    }
}

/// An outcome as a key: what decided the bundle, then each policy's result.
fn outcome_key(outcome: &vm::Outcome<'_>, key: &mut Vec<u64>) {
    key.clear();
    key.push(match outcome.bundle {
        vm::BundleResult::Policy(i) => 5 + i as u64,
        vm::BundleResult::NotApplicable => 0,
        vm::BundleResult::Gate(Gate::NotYetEffective) => 1,
        vm::BundleResult::Gate(Gate::Ended) => 2,
        vm::BundleResult::Gate(Gate::OutOfScope) => 3,
        vm::BundleResult::Schema => 4,
        vm::BundleResult::Refused => u64::MAX,
    });
    key.extend(outcome.policies.iter().map(|p| match p {
        vm::PolicyResult::Default => 0,
        vm::PolicyResult::Rule(i) => 2 + 2 * u64::from(*i),
        vm::PolicyResult::Fault(i) => 3 + 2 * u64::from(*i),
    }));
}

impl Results {
    /// The result of an outcome: the one kept for every decision of that outcome, or its own.
    fn get(&self, engine: &vm::Engine, outcome: &vm::Outcome<'_>, key: &mut Vec<u64>) -> Shared {
        // Reasons computed for this decision make its result its own (see the invariant).
        if !outcome.reasons.is_empty() {
            return Shared::Own(Arc::new(engine.result(outcome, None)));
        }
        outcome_key(outcome, key);
        if let Ok(map) = self.by_outcome.read()
            && let Some(k) = map.get(key.as_slice())
        {
            return Shared::Kept(Arc::clone(k));
        }
        let result = Arc::new(engine.result(outcome, None));
        if let Ok(mut map) = self.by_outcome.write()
            && map.len() < MAX_CACHED_RESULTS
        {
            // Another thread may have kept one meanwhile: that one stays.
            let kept = map
                .entry(key.as_slice().into())
                .or_insert_with(|| Arc::new(Kept { result, object: PyOnceLock::new() }));
            return Shared::Kept(Arc::clone(kept));
        }
        Shared::Own(result)
    }
}

/// A thread's buffers for plain decisions: the runtime's scratch (its caches), the outcome key,
/// and the last `dict` read (whose values the next one overwrites in place).
#[derive(Default)]
struct Buffers {
    scratch: vm::Scratch,
    key: Vec<u64>,
    dict: PreparedDict,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` on this thread's buffers, or on fresh ones when they are in use (an extern, an
/// observer or a dict key's `__eq__` evaluating during a decision on this thread).
fn with_buffers<T>(f: impl FnOnce(&mut Buffers) -> T) -> T {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut Buffers::default()),
    })
}

/// A bundle ready to evaluate with the request readers for it.
struct Core {
    backend: Backend,
    /// The runtime's projection trie, for JSON text.
    trie: PathTrie,
    /// The same paths with Python keys, for dicts.
    walker: Trie,
    effects: Vec<String>,
    /// The bundle's extern names, in declaration order.
    externs: Vec<String>,
    /// Whether the bundle declares state series.
    stateful: bool,
    /// Whether plain results may be shared between decisions of the same outcome (no state, no
    /// externs: see [`Results`]).
    share: bool,
    /// Whether untraced decisions are worth detaching for.
    detach: bool,
    /// Whether a decision may depend on the evaluation time (`Program::reads_clock`): when not,
    /// an evaluation without `now` does not read the clock.
    clock: bool,
    results: Results,
}

/// A request as a decision reads it: the runtime's `Request`, or its paths' values.
#[derive(Clone, Copy)]
enum Read<'a> {
    Request(&'a Request),
    Prepared(&'a vm::PreparedRequest),
}

/// One evaluation's arguments besides the request.
#[derive(Clone, Copy)]
struct Ask<'a> {
    now: jiff::Timestamp,
    mode: Mode,
    decision_id: Option<&'a str>,
    externs: Option<&'a PyExterns>,
}

impl Ask<'_> {
    fn env(&self) -> Env<'_> {
        Env { now: self.now, decision_id: self.decision_id, state: None, externs: self.externs.map(|e| e as _) }
    }
}

impl Core {
    fn native(py: Python<'_>, engine: vm::Engine) -> Core {
        let p = engine.program();
        let trie = PathTrie::new(p.paths.iter().map(Vec::as_slice));
        let walker = Trie::new(py, &trie).index(&p.paths, p.card_scope.is_some());
        let effects = p.effects.clone();
        let externs: Vec<String> = p.externs.iter().map(|e| e.name.clone()).collect();
        let stateful = engine.is_stateful();
        let share = !stateful && externs.is_empty();
        let detach = p.code.len() > DETACH_ABOVE_CODE_BYTES;
        let clock = p.reads_clock();
        Core {
            backend: Backend::Native(Box::new(engine)),
            trie,
            walker,
            effects,
            externs,
            stateful,
            share,
            detach,
            clock,
            results: Results::default(),
        }
    }

    fn interp(py: Python<'_>, cell: InterpCell) -> Core {
        let b = cell.borrow_owner();
        let trie = PathTrie::new(b.paths.iter().map(Vec::as_slice));
        let walker = Trie::new(py, &trie);
        let effects = b.effects.clone();
        let externs = b.externs.iter().map(|e| e.name.clone()).collect();
        let stateful = !b.states.is_empty();
        Core {
            backend: Backend::Interp(cell),
            trie,
            walker,
            effects,
            externs,
            stateful,
            share: false,
            detach: true,
            clock: true,
            results: Results::default(),
        }
    }

    /// Reads a request context: JSON text (str, bytes, bytearray) through the runtime's
    /// projection parser, anything else through the dict walker.
    fn request(&self, context: &Bound<'_, PyAny>) -> PyResult<Request> {
        let py = context.py();
        let refused = |e: verdict_runtime::request::RequestError| errors::request_error(py, e.to_string());
        if let Ok(s) = context.cast::<PyString>() {
            return self.trie.parse(s.to_str()?.as_bytes()).map_err(refused);
        }
        if let Ok(b) = context.cast::<PyBytes>() {
            return self.trie.parse(b.as_bytes()).map_err(refused);
        }
        if let Ok(b) = context.cast::<PyByteArray>() {
            return self.trie.parse(&b.to_vec()).map_err(refused);
        }
        self.walker.request(context).map_err(|f| match f {
            Fault::Refused { path, message } => errors::request_error(py, Fault::message(&path, &message)),
            Fault::Python(e) => e,
        })
    }

    /// Decides one request of a stateless bundle. Plain decisions of bundles without externs
    /// share their results ([`Results`]) and run attached unless the program is large; every
    /// other decision (traced, exhaustive, interpreted, or calling externs) runs detached so
    /// other threads can run Python meanwhile (externs attach again for their calls).
    fn decide(&self, py: Python<'_>, req: &Request, ask: Ask<'_>) -> Arc<decision::EvaluationResult> {
        let shared = self.share && ask.mode == Mode::PLAIN;
        match &self.backend {
            Backend::Native(e) if shared => self
                .run(py, || with_buffers(|b| self.shared(e, Read::Request(req), ask, &mut b.scratch, &mut b.key)))
                .result(),
            // Externs attach again for each call only (EMBEDDING.md, "Threads").
            Backend::Native(e) => Arc::new(py.detach(|| e.evaluate(req, &ask.env(), ask.mode))),
            Backend::Interp(c) => Arc::new(py.detach(|| c.borrow_dependent().evaluate(req, &ask.env(), ask.mode))),
        }
    }

    /// Decides one request of a stateful bundle against a store: the read-decide-record step
    /// runs in the store, detached (see `host`).
    fn decide_with_store(
        &self,
        py: Python<'_>,
        req: &Request,
        ask: Ask<'_>,
        store: &dyn StateStore,
    ) -> PyResult<Arc<decision::EvaluationResult>> {
        let r = host::with_store(py, || match &self.backend {
            Backend::Native(e) => e.evaluate_with_store(req, &ask.env(), ask.mode, store),
            Backend::Interp(c) => c.borrow_dependent().evaluate_with_store(req, &ask.env(), ask.mode, store),
        })?;
        Ok(Arc::new(r))
    }

    /// Runs a plain decision: detached from the interpreter when the program is large enough for
    /// another thread to gain from it ([`DETACH_ABOVE_CODE_BYTES`]), attached otherwise.
    fn run<T: Send>(&self, py: Python<'_>, f: impl Send + FnOnce() -> T) -> T {
        if self.detach { py.detach(f) } else { f() }
    }

    /// An untraced decision on the runtime's engine, its result shared with every decision of
    /// the same outcome when it depends on nothing else (see [`Results`]).
    fn shared(
        &self,
        engine: &vm::Engine,
        req: Read<'_>,
        ask: Ask<'_>,
        scratch: &mut vm::Scratch,
        key: &mut Vec<u64>,
    ) -> Shared {
        let env = ask.env();
        let outcome = match req {
            Read::Request(r) => engine.decide(r, &env, scratch),
            Read::Prepared(r) => engine.decide_prepared(r, &env, scratch),
        };
        self.results.get(engine, &outcome, key)
    }

    /// A plain decision of a `dict` context read straight into the bundle's path values
    /// ([`Trie::prepare_into`], into this thread's last read), for decisions whose results are
    /// shared ([`Results`]: no state, no externs, untraced) on the runtime's engine; `None` for
    /// every other decision, or a context that the general reader must read (it refuses it, or
    /// Python raised).
    fn decide_dict(&self, py: Python<'_>, context: &Bound<'_, PyAny>, ask: Ask<'_>) -> Option<Shared> {
        let Backend::Native(e) = &self.backend else { return None };
        if !self.share || ask.mode != Mode::PLAIN {
            return None;
        }
        let dict = context.cast::<PyDict>().ok()?;
        with_buffers(|b| {
            self.walker.prepare_into(dict, &mut b.dict)?;
            let Buffers { scratch, key, dict } = b;
            let req = Read::Prepared(dict.request());
            Some(self.run(py, || self.shared(e, req, ask, scratch, key)))
        })
    }

    /// The Python object of a kept result, made the first time.
    fn object<'py>(py: Python<'py>, kept: &Kept) -> PyResult<Bound<'py, EvaluationResult>> {
        let object = kept
            .object
            .get_or_try_init(py, || Py::new(py, EvaluationResult { result: Arc::clone(&kept.result), store: None }))?;
        Ok(object.bind(py).clone())
    }

    fn program_meta(&self) -> (&str, &str) {
        match &self.backend {
            Backend::Native(e) => (&e.program().bundle_id, &e.program().version),
            Backend::Interp(c) => (&c.borrow_owner().id, &c.borrow_owner().version),
        }
    }

    fn fingerprint(&self) -> &str {
        match &self.backend {
            Backend::Native(e) => &e.program().fingerprint,
            Backend::Interp(c) => c.borrow_dependent().fingerprint(),
        }
    }
}

/// How `evaluate` reads a `dict` context.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Straight into the paths' values where the decision allows it ([`Core::decide_dict`]).
    Fastest,
    /// Always through the runtime's `Request`.
    General,
}

/// A backend asked for by name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Jit,
    Vm,
    Interp,
}

fn wanted(name: &str) -> PyResult<Wanted> {
    match name {
        "jit" => Ok(Wanted::Jit),
        "vm" => Ok(Wanted::Vm),
        "interp" => Ok(Wanted::Interp),
        other => Err(PyValueError::new_err(format!("backend must be \"jit\", \"vm\" or \"interp\", not {other:?}"))),
    }
}

/// The host side of an engine: `externs=`, `store=` and, with keys, the signers it trusts.
struct Host<'py> {
    externs: Option<Bound<'py, PyAny>>,
    store: Option<Bound<'py, PyAny>>,
}

/// A compiled, loaded bundle that decides requests. Build one with `Engine.load`,
/// `Engine.from_source` or `Engine.from_artifact`; share it between threads freely.
#[pyclass(frozen, module = "verdict", name = "Engine")]
pub struct Engine {
    core: Core,
    /// The `on_decision` callbacks, in registration order.
    observers: Py<PyList>,
    observer_errors: AtomicU64,
    jit_fallback: Option<String>,
    /// The callables bound to the bundle's externs.
    externs: Option<PyExterns>,
    /// Where stateful decisions read and record (for a stateful bundle given none: its own
    /// in-memory store, as `verdict eval`'s default `memory`).
    store: Option<Arc<dyn StateStore>>,
}

impl Engine {
    fn new(py: Python<'_>, core: Core, jit_fallback: Option<String>, host: Host<'_>) -> PyResult<Engine> {
        let externs = host.externs.filter(|e| !e.is_none()).map(|e| PyExterns::new(&e, &core.externs)).transpose()?;
        let store = match host.store.filter(|s| !s.is_none()) {
            Some(s) => Some(host::store_of(&s)?),
            None if core.stateful => Some(Arc::new(MemoryStore::new()) as Arc<dyn StateStore>),
            None => None,
        };
        if let Some(reason) = &jit_fallback {
            let message = CString::new(format!("{reason}; evaluating on the VM")).unwrap_or_default();
            PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &message, 2)?;
        }
        Ok(Engine {
            core,
            observers: PyList::empty(py).unbind(),
            observer_errors: AtomicU64::new(0),
            jit_fallback,
            externs,
            store,
        })
    }

    /// An engine over a compiled bundle on the wanted backend.
    fn from_bundle(py: Python<'_>, bundle: ir::Bundle, backend: Wanted, host: Host<'_>) -> PyResult<Engine> {
        match backend {
            Wanted::Interp => {
                let cell = InterpCell::try_new(bundle, |b| Interpreter::new(b))
                    .map_err(|e| errors::verdict_error(py, format!("the interpreter refused the bundle: {e}")))?;
                Engine::new(py, Core::interp(py, cell), None, host)
            }
            Wanted::Jit | Wanted::Vm => {
                let program = py.detach(|| verdict_compiler::codegen::program(&bundle));
                Engine::from_program(py, program, backend, host)
            }
        }
    }

    fn from_program(
        py: Python<'_>,
        program: verdict_runtime::program::Program,
        backend: Wanted,
        host: Host<'_>,
    ) -> PyResult<Engine> {
        let b = if backend == Wanted::Vm { vm::Backend::Vm } else { vm::Backend::Jit };
        // Verifying and compiling to native code run detached: other threads may run Python.
        let engine = py
            .detach(|| vm::Engine::with_backend(program, b))
            .map_err(|e| errors::verdict_error(py, format!("the runtime refused the program: {e}")))?;
        let fallback = engine.jit_fallback().map(|r| r.to_string());
        Engine::new(py, Core::native(py, engine), fallback, host)
    }

    fn from_artifact_bytes(
        py: Python<'_>,
        name: &str,
        bytes: &[u8],
        backend: Wanted,
        keys: &TrustedKeys,
        host: Host<'_>,
    ) -> PyResult<Engine> {
        if backend == Wanted::Interp {
            return Err(errors::verdict_error(
                py,
                format!(
                    "{name} is a compiled artifact; the interpreter needs the bundle's source (use backend=\"jit\" or \"vm\")"
                ),
            ));
        }
        // Signed artifacts load on their checksum without keys, as in `verdict eval`; with keys,
        // only artifacts signed by one of them.
        let trusted =
            artifact::read_trusted(bytes, keys).map_err(|e| errors::verdict_error(py, format!("{name}: {e}")))?;
        Engine::from_program(py, trusted.program, backend, host)
    }

    fn from_input(
        py: Python<'_>,
        input: Input,
        kind: Option<verdict_compiler::SourceKind>,
        backend: Wanted,
        keys: &TrustedKeys,
        host: Host<'_>,
    ) -> PyResult<Engine> {
        match input {
            Input::Artifact { name, bytes } => Engine::from_artifact_bytes(py, &name, &bytes, backend, keys, host),
            Input::Source(file) => {
                if !keys.is_empty() {
                    return Err(errors::verdict_error(
                        py,
                        format!(
                            "{}: not a signed artifact: with trusted keys only artifacts signed by one of them are loaded (compile with `verdict compile --sign KEY`)",
                            file.name
                        ),
                    ));
                }
                let bundle = source::compile(py, &file, kind)?;
                Engine::from_bundle(py, bundle, backend, host)
            }
        }
    }

    /// Decides one request context and calls the observers (see `evaluate`).
    fn evaluate_as<'py>(
        slf: &Bound<'py, Self>,
        context: &Bound<'py, PyAny>,
        now: Option<&Bound<'py, PyAny>>,
        mode: Mode,
        decision_id: Option<&str>,
        reader: Reader,
    ) -> PyResult<Bound<'py, EvaluationResult>> {
        let py = slf.py();
        let this = slf.get();
        // A decision that cannot depend on the time is decided at the epoch when no time is
        // given: the clock is not read (a `now` given is still checked).
        let now = match now {
            None if !this.core.clock => jiff::Timestamp::UNIX_EPOCH,
            _ => timestamp(py, now)?,
        };
        let ask = Ask { now, mode, decision_id, externs: this.externs.as_ref() };
        // Plain decisions of `dict`s whose results are shared read only the paths' values.
        if reader == Reader::Fastest
            && let Some(shared) = this.core.decide_dict(py, context, ask)
        {
            let result = match shared {
                Shared::Kept(kept) => Core::object(py, &kept)?,
                Shared::Own(result) => Bound::new(py, EvaluationResult { result, store: None })?,
            };
            this.notify(py, &result)?;
            return Ok(result);
        }
        let req = this.core.request(context)?;
        host::clear_pending();
        let (result, store) = match (&this.store, this.core.stateful) {
            (Some(store), true) => {
                (this.core.decide_with_store(py, &req, ask, store.as_ref())?, Some(Arc::clone(store)))
            }
            _ => (this.core.decide(py, &req, ask), None),
        };
        // An extern raised a `BaseException` (`KeyboardInterrupt`, ...): the decision failed
        // closed; its holds are released and the exception goes on.
        if let Some(e) = host::take_pending() {
            if let (Some(store), Some(id)) = (&store, result.decision_id.as_deref())
                && !result.holds.is_empty()
            {
                let at = state::micros(now);
                let _ = host::with_store(py, || store.release(id, at));
            }
            return Err(e);
        }
        let result = Bound::new(py, EvaluationResult { result, store })?;
        this.notify(py, &result)?;
        Ok(result)
    }

    /// Calls every observer with the result; an `Exception` an observer raises is counted,
    /// never propagated (a `BaseException` such as `KeyboardInterrupt` still is).
    fn notify(&self, py: Python<'_>, result: &Bound<'_, EvaluationResult>) -> PyResult<()> {
        let observers = self.observers.bind(py);
        if observers.is_empty() {
            return Ok(());
        }
        let snapshot = observers.to_tuple();
        for callback in snapshot.iter() {
            if let Err(e) = callback.call1((result,)) {
                if !e.is_instance_of::<PyException>(py) {
                    return Err(e);
                }
                self.observer_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The store commits and releases go to.
    fn settling_store(&self, py: Python<'_>) -> PyResult<&Arc<dyn StateStore>> {
        self.store.as_ref().ok_or_else(|| {
            errors::verdict_error(py, "this engine has no state store: its bundle declares no state and none was given")
        })
    }
}

/// The signers an engine trusts (`trusted_keys=`: key texts, PEM or base64, one str or several).
fn trusted_keys(py: Python<'_>, given: Option<&Bound<'_, PyAny>>) -> PyResult<TrustedKeys> {
    let mut keys = TrustedKeys::none();
    let Some(given) = given.filter(|g| !g.is_none()) else { return Ok(keys) };
    let texts: Vec<String> = match given.extract::<String>() {
        Ok(one) => vec![one],
        Err(_) => given.extract().map_err(|_| {
            PyTypeError::new_err("trusted_keys must be a key text (str) or a list of them (PEM or base64)")
        })?,
    };
    for text in texts {
        let parsed = parse_public_keys(&text).map_err(|e| errors::verdict_error(py, format!("trusted_keys: {e}")))?;
        keys.extend(parsed);
    }
    Ok(keys)
}

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The evaluation time: now, an RFC 3339 string with an offset, or an aware `datetime`.
pub fn timestamp(py: Python<'_>, now: Option<&Bound<'_, PyAny>>) -> PyResult<jiff::Timestamp> {
    let Some(now) = now.filter(|n| !n.is_none()) else { return Ok(jiff::Timestamp::now()) };
    let parse = |text: &str| {
        text.parse::<jiff::Timestamp>().map_err(|e| {
            errors::request_error(py, format!("`now` {text:?} is not an RFC 3339 date-time with an offset: {e}"))
        })
    };
    if let Ok(s) = now.cast::<PyString>() {
        return parse(s.to_str()?);
    }
    let datetime = DATETIME.import(py, "datetime", "datetime")?;
    if !now.is_instance(datetime)? {
        return Err(errors::request_error(
            py,
            format!("`now` must be an aware datetime or an RFC 3339 string, not `{}`", crate::context::type_name(now)),
        ));
    }
    if now.call_method0("utcoffset")?.is_none() {
        return Err(errors::request_error(
            py,
            "`now` is a naive datetime: give it a timezone (for example `datetime.now(timezone.utc)`)",
        ));
    }
    let utc = UTC.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("datetime")?.getattr("timezone")?.getattr("utc")?.unbind())
    })?;
    let text: String = now.call_method1("astimezone", (utc.bind(py),))?.call_method0("isoformat")?.extract()?;
    parse(&text)
}

#[pymethods]
impl Engine {
    /// Loads a bundle file: a `.verdict`, `.yaml`/`.yml` or `.json` source, or a `.vdc`
    /// artifact (recognised by its header, whatever its name).
    #[staticmethod]
    #[pyo3(signature = (path, *, backend = "jit", form = None, externs = None, store = None, trusted_keys = None))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        backend: &str,
        form: Option<&str>,
        externs: Option<Bound<'_, PyAny>>,
        store: Option<Bound<'_, PyAny>>,
        trusted_keys: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Engine> {
        let backend = wanted(backend)?;
        let kind = source::form(form)?;
        let keys = self::trusted_keys(py, trusted_keys.as_ref())?;
        let input = source::load(py, &path)?;
        Engine::from_input(py, input, kind, backend, &keys, Host { externs, store })
    }

    /// Compiles source text (`form`: "verdict", "yaml" or "json"; by content when omitted).
    #[staticmethod]
    #[pyo3(signature = (text, form = None, *, backend = "jit", externs = None, store = None))]
    fn from_source(
        py: Python<'_>,
        text: &str,
        form: Option<&str>,
        backend: &str,
        externs: Option<Bound<'_, PyAny>>,
        store: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Engine> {
        let backend = wanted(backend)?;
        let kind = source::form(form)?;
        let file = verdict_compiler::source::SourceFile::new(source::TEXT_NAME, text);
        Engine::from_input(py, Input::Source(file), kind, backend, &TrustedKeys::none(), Host { externs, store })
    }

    /// Loads the bytes of a `.vdc` artifact (verified before use; with `trusted_keys`, only one
    /// signed by one of them).
    #[staticmethod]
    #[pyo3(signature = (data, *, backend = "jit", externs = None, store = None, trusted_keys = None))]
    fn from_artifact(
        py: Python<'_>,
        data: &[u8],
        backend: &str,
        externs: Option<Bound<'_, PyAny>>,
        store: Option<Bound<'_, PyAny>>,
        trusted_keys: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Engine> {
        let backend = wanted(backend)?;
        let keys = self::trusted_keys(py, trusted_keys.as_ref())?;
        Engine::from_artifact_bytes(py, "the artifact", data, backend, &keys, Host { externs, store })
    }

    /// Decides one request context (a dict, or JSON text as str or bytes) at `now` (an aware
    /// datetime or an RFC 3339 string; the current time when omitted). `exhaustive` lists every
    /// matching rule; `decision_id` names a stateful decision (generated when omitted).
    #[pyo3(signature = (context, now = None, trace = false, exhaustive = false, *, decision_id = None))]
    fn evaluate<'py>(
        slf: &Bound<'py, Self>,
        context: &Bound<'py, PyAny>,
        now: Option<&Bound<'py, PyAny>>,
        trace: bool,
        exhaustive: bool,
        decision_id: Option<&str>,
    ) -> PyResult<Bound<'py, EvaluationResult>> {
        Engine::evaluate_as(slf, context, now, Mode { trace, exhaustive }, decision_id, Reader::Fastest)
    }

    /// `evaluate(context, now)` reading a `dict` context through the general reader (the
    /// runtime's `Request` built from it) even where it could be read straight into the paths'
    /// values: for the tests that compare both readers. Not part of the API.
    #[pyo3(signature = (context, now = None))]
    fn _evaluate_general<'py>(
        slf: &Bound<'py, Self>,
        context: &Bound<'py, PyAny>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, EvaluationResult>> {
        Engine::evaluate_as(slf, context, now, Mode::PLAIN, None, Reader::General)
    }

    /// Whether `evaluate(context)` (plain) reads this context straight into the paths' values
    /// rather than through the runtime's `Request`: for the tests that compare both readers.
    /// Not part of the API.
    fn _prepares(&self, context: &Bound<'_, PyAny>) -> bool {
        matches!(self.core.backend, Backend::Native(_))
            && self.core.share
            && context.cast::<PyDict>().is_ok_and(|d| self.core.walker.prepare(d).is_some())
    }

    /// Makes the holds of a decision permanent (after the action it allowed succeeded): returns
    /// "committed". Idempotent; raises `StoreError` for a released, expired or unknown decision.
    #[pyo3(signature = (decision_id, *, now = None))]
    fn commit(&self, py: Python<'_>, decision_id: &str, now: Option<&Bound<'_, PyAny>>) -> PyResult<&'static str> {
        let at = state::micros(timestamp(py, now)?);
        let store = self.settling_store(py)?;
        host::with_store(py, || store.commit(decision_id, at))?
            .map(host::settled)
            .map_err(|e| host::store_error(py, &e))
    }

    /// Drops the holds of a decision (the action failed or was abandoned): returns "released".
    /// Idempotent; raises `StoreError` for a committed or unknown decision.
    #[pyo3(signature = (decision_id, *, now = None))]
    fn release(&self, py: Python<'_>, decision_id: &str, now: Option<&Bound<'_, PyAny>>) -> PyResult<&'static str> {
        let at = state::micros(timestamp(py, now)?);
        let store = self.settling_store(py)?;
        host::with_store(py, || store.release(decision_id, at))?
            .map(host::settled)
            .map_err(|e| host::store_error(py, &e))
    }

    /// Whether the bundle declares state series (its decisions carry ids and may make holds).
    #[getter]
    fn stateful(&self) -> bool {
        self.core.stateful
    }

    /// The names of the bundle's extern declarations.
    #[getter]
    fn externs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.core.externs)
    }

    /// Registers an observer called with every result (after the decision, on the evaluating
    /// thread). Returns the callback, so this works as a decorator.
    fn on_decision<'py>(&self, callback: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "on_decision takes a callable, not `{}`",
                crate::context::type_name(&callback)
            )));
        }
        self.observers.bind(callback.py()).append(&callback)?;
        Ok(callback)
    }

    /// How many times an observer raised (its exceptions are counted, never propagated).
    #[getter]
    fn observer_errors(&self) -> u64 {
        self.observer_errors.load(Ordering::Relaxed)
    }

    /// The backend that evaluates: "jit", "vm" or "interp".
    #[getter]
    fn backend(&self) -> &'static str {
        match &self.core.backend {
            Backend::Native(e) => match e.backend() {
                vm::Backend::Jit => "jit",
                vm::Backend::Vm => "vm",
            },
            Backend::Interp(_) => "interp",
        }
    }

    /// Why the JIT was asked for and not used (the engine then runs on the VM).
    #[getter]
    fn jit_fallback(&self) -> Option<&str> {
        self.jit_fallback.as_deref()
    }

    #[getter]
    fn bundle_id(&self) -> &str {
        self.core.program_meta().0
    }

    #[getter]
    fn bundle_version(&self) -> &str {
        self.core.program_meta().1
    }

    #[getter]
    fn fingerprint(&self) -> &str {
        self.core.fingerprint()
    }

    /// The bundle's effects, most severe first (a decision's kind is one of them or
    /// "not_applicable").
    #[getter]
    fn effects<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.core.effects)
    }

    /// A decorator that runs the function only when the bundle allows it (EMBEDDING.md):
    /// `mode="hard"` raises `PolicyViolation` otherwise, `mode="soft"` returns
    /// `Guarded(result, value)`. `now`: the evaluation time, or a callable giving it (also used
    /// to commit or release the holds). Implemented in `verdict._enforce`.
    #[pyo3(signature = (context = None, *, mode = "hard", now = None))]
    fn guard<'py>(
        slf: &Bound<'py, Self>,
        context: Option<Bound<'py, PyAny>>,
        mode: &str,
        now: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("verdict._enforce")?.getattr("guard")?.call1((slf, context, mode, now))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.observers)?;
        for f in self.externs.iter().flat_map(PyExterns::callables) {
            visit.call(f)?;
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        let (id, version) = self.core.program_meta();
        format!("Engine(bundle_id={id:?}, bundle_version={version:?}, backend={:?})", self.backend())
    }
}
