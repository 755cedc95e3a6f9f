//! The seam between the service and the evaluation backends.
//!
//! [`Engine`] owns a compiled bundle and whatever a backend prepared from it, and evaluates
//! requests with `&self` (engines are shared by every request through an `Arc`). [`Engine::new`]
//! picks the fastest backend available: the runtime's engine on the Cranelift JIT, or on the VM
//! where the JIT is unavailable (logged once per bundle); the reference interpreter remains as the
//! last resort if the runtime refuses a program (which would be a compiler bug, also logged).

use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::request::Request;
use verdict_runtime::vm;

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
    /// The runtime's engine (JIT, or VM fallback) and the IR it was compiled from (kept for
    /// `GET /bundles/{id}` and card conditions).
    Native { bundle: Box<ir::Bundle>, engine: Box<vm::Engine> },
    /// The reference interpreter over the IR (`verdict_compiler::interp`).
    Interp(InterpCell),
}

impl Engine {
    /// Prepares a compiled bundle with the fastest backend available.
    pub fn new(bundle: ir::Bundle) -> Result<Engine, String> {
        match vm::Engine::new(verdict_compiler::codegen::program(&bundle)) {
            Ok(engine) => {
                if let Some(reason) = engine.jit_fallback() {
                    tracing::warn!(bundle = %bundle.id, "{reason}; evaluating on the VM");
                }
                Ok(Engine::Native { bundle: Box::new(bundle), engine: Box::new(engine) })
            }
            Err(e) => {
                tracing::error!(bundle = %bundle.id, "the runtime refused the compiled program ({e}); using the interpreter");
                InterpCell::try_new(bundle, |b| Interpreter::new(b)).map(Engine::Interp).map_err(|e| e.0)
            }
        }
    }

    /// The backend's name, as `GET /version` reports it.
    pub fn backend(&self) -> &'static str {
        match self {
            Engine::Native { engine, .. } => match engine.backend() {
                vm::Backend::Jit => "jit",
                vm::Backend::Vm => "vm",
            },
            Engine::Interp(_) => "interp",
        }
    }

    pub fn bundle(&self) -> &ir::Bundle {
        match self {
            Engine::Native { bundle, .. } => bundle,
            Engine::Interp(c) => c.borrow_owner(),
        }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            Engine::Native { engine, .. } => &engine.program().fingerprint,
            Engine::Interp(c) => c.borrow_dependent().fingerprint(),
        }
    }

    /// Evaluates one request at `now`; with `trace`, records every step.
    pub fn evaluate(&self, req: &Request, now: jiff::Timestamp, trace: bool) -> EvaluationResult {
        match self {
            Engine::Native { engine, .. } => engine.evaluate(req, now, trace),
            Engine::Interp(c) => c.borrow_dependent().evaluate(req, now, trace),
        }
    }
}

/// The backends this build can use, fastest first.
pub const BACKENDS: &[&str] = &["jit", "vm", "interp"];
