//! The seam between the service and the evaluation backends.
//!
//! [`Engine`] owns a compiled bundle and whatever a backend prepared from it, and evaluates
//! requests with `&self` (engines are shared by every request through an `Arc`). Today the
//! reference interpreter is the only backend; the VM and the JIT (being written in `runtime/`)
//! become new variants here, chosen by [`Engine::new`] as "the fastest available", and nothing
//! else in the service changes.

use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::request::Request;

self_cell::self_cell!(
    /// A bundle and the interpreter that borrows it, owned together so the pair can live in an
    /// `Arc` snapshot.
    pub struct InterpCell {
        owner: ir::Bundle,
        #[covariant]
        dependent: Interpreter,
    }
    impl {Debug}
);

/// A bundle ready to evaluate, by backend.
#[derive(Debug)]
pub enum Engine {
    /// The reference interpreter over the IR (`verdict_compiler::interp`).
    Interp(InterpCell),
}

impl Engine {
    /// Prepares a compiled bundle with the fastest backend available.
    pub fn new(bundle: ir::Bundle) -> Result<Engine, String> {
        InterpCell::try_new(bundle, |b| Interpreter::new(b)).map(Engine::Interp).map_err(|e| e.0)
    }

    /// The backend's name, as `GET /version` reports it.
    pub fn backend(&self) -> &'static str {
        match self {
            Engine::Interp(_) => "interp",
        }
    }

    pub fn bundle(&self) -> &ir::Bundle {
        match self {
            Engine::Interp(c) => c.borrow_owner(),
        }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            Engine::Interp(c) => c.borrow_dependent().fingerprint(),
        }
    }

    /// Evaluates one request at `now`; with `trace`, records every step.
    pub fn evaluate(&self, req: &Request, now: jiff::Timestamp, trace: bool) -> EvaluationResult {
        match self {
            Engine::Interp(c) => c.borrow_dependent().evaluate(req, now, trace),
        }
    }
}

/// The backends this build can use, fastest first.
pub const BACKENDS: &[&str] = &["interp"];
