//! The seam between the service and the evaluation backends.
//!
//! [`Engine`] owns a compiled bundle and whatever a backend prepared from it, and evaluates
//! requests with `&self` (engines are shared by every request through an `Arc`). [`Engine::new`]
//! picks the fastest backend available: the runtime's engine on the Cranelift JIT, or on the VM
//! where the JIT is unavailable (logged once per bundle); the reference interpreter remains as the
//! last resort if the runtime refuses a program (which would be a compiler bug, also logged).
//!
//! Every call into the runtime's engine API is in this file, so a change of that API (an
//! environment parameter, say) changes one place of the service.

use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::program::VerifyError;
use verdict_runtime::request::Request;
use verdict_runtime::signature::{Signer, TrustedKeys};
use verdict_runtime::{artifact, vm};

/// Why a bundle cannot be made ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// A `.vdc` artifact refused by its loader (header, checksum, format, verifier).
    Artifact(ArtifactRefused),
    /// A compiled bundle that neither the runtime nor the interpreter accepts (a compiler bug).
    Unpreparable(Unpreparable),
}

/// A `.vdc` artifact refused by [`artifact::read`] or by the runtime's verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRefused {
    pub source: ArtifactCause,
}

/// What refused an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactCause {
    /// The signature, header, checksum, format or verifier (through `artifact::read_trusted`).
    Read(verdict_runtime::signature::TrustError),
    Verify(VerifyError),
}

/// A compiled bundle that the runtime refused and the interpreter could not prepare either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpreparable {
    pub bundle_id: String,
    pub runtime: VerifyError,
    /// Why the interpreter could not prepare it.
    pub interpreter: String,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Artifact(e) => match &e.source {
                ArtifactCause::Read(r) => write!(f, "{r}"),
                ArtifactCause::Verify(v) => write!(f, "the runtime refuses the artifact's program: {v}"),
            },
            EngineError::Unpreparable(e) => write!(
                f,
                "bundle `{}` cannot be prepared: the runtime refuses it ({}) and so does the interpreter ({})",
                e.bundle_id, e.runtime, e.interpreter
            ),
        }
    }
}

impl std::error::Error for EngineError {}

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
    /// The runtime's engine (JIT, or VM fallback), and the IR it was compiled from when the
    /// bundle came as source (`None` for a `.vdc` artifact, which carries the program only).
    Native { bundle: Option<Box<ir::Bundle>>, engine: Box<vm::Engine> },
    /// The reference interpreter over the IR (`verdict_compiler::interp`).
    Interp(InterpCell),
}

impl Engine {
    /// Prepares a compiled bundle with the fastest backend available.
    pub fn new(bundle: ir::Bundle) -> Result<Engine, EngineError> {
        match vm::Engine::new(verdict_compiler::codegen::program(&bundle)) {
            Ok(engine) => {
                warn_fallback(&engine);
                Ok(Engine::Native { bundle: Some(Box::new(bundle)), engine: Box::new(engine) })
            }
            Err(runtime) => {
                tracing::error!(bundle = %bundle.id, "the runtime refused the compiled program ({runtime}); using the interpreter");
                let bundle_id = bundle.id.clone();
                InterpCell::try_new(bundle, |b| Interpreter::new(b)).map(Engine::Interp).map_err(|e| {
                    EngineError::Unpreparable(Unpreparable { bundle_id, runtime, interpreter: e.to_string() })
                })
            }
        }
    }

    /// Loads a `.vdc` artifact: its signature under the trusted keys, header, checksum and program
    /// verification first (a refusal says why), then the fastest backend. Also says who signed it.
    pub fn from_artifact(bytes: &[u8], keys: &TrustedKeys) -> Result<(Engine, Signer), EngineError> {
        let refused = |source| EngineError::Artifact(ArtifactRefused { source });
        let trusted = artifact::read_trusted(bytes, keys).map_err(|e| refused(ArtifactCause::Read(e)))?;
        let engine = vm::Engine::new(trusted.program).map_err(|e| refused(ArtifactCause::Verify(e)))?;
        warn_fallback(&engine);
        Ok((Engine::Native { bundle: None, engine: Box::new(engine) }, trusted.signer))
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

    /// The bundle's IR, when it came as source.
    pub fn source(&self) -> Option<&ir::Bundle> {
        match self {
            Engine::Native { bundle, .. } => bundle.as_deref(),
            Engine::Interp(c) => Some(c.borrow_owner()),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Engine::Native { engine, .. } => &engine.program().bundle_id,
            Engine::Interp(c) => &c.borrow_owner().id,
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Engine::Native { engine, .. } => &engine.program().version,
            Engine::Interp(c) => &c.borrow_owner().version,
        }
    }

    pub fn policy_count(&self) -> usize {
        match self {
            Engine::Native { engine, .. } => engine.program().policies.len(),
            Engine::Interp(c) => c.borrow_owner().policies.len(),
        }
    }

    /// For a Decision Card's bundle, the card's condition ids (which only operator assertions
    /// may satisfy); `None` for other bundles.
    pub fn card_conditions(&self) -> Option<&[String]> {
        match self {
            Engine::Native { engine, .. } => engine.program().card_scope.as_ref().map(|s| s.condition_ids.as_slice()),
            Engine::Interp(c) => c.borrow_owner().card_scope.as_ref().map(|s| s.condition_ids.as_slice()),
        }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            Engine::Native { engine, .. } => &engine.program().fingerprint,
            Engine::Interp(c) => c.borrow_dependent().fingerprint(),
        }
    }

    /// What `GET /bundles/{id}` shows: the bundle in the reference JSON format when it came as
    /// source; for an artifact, which has no source, its metadata (id, version, fingerprint,
    /// effects, and each policy's default and rules with their effects, reasons and codes).
    pub fn describe(&self) -> serde_json::Value {
        if let Some(b) = self.source() {
            return verdict_compiler::emit::to_json(b);
        }
        let Engine::Native { engine, .. } = self else { return serde_json::Value::Null };
        let p = engine.program();
        let effect = |e: u32| p.effects.get(e as usize).cloned().unwrap_or_default();
        let policies: Vec<serde_json::Value> = p
            .policies
            .iter()
            .map(|pol| {
                let rules: Vec<serde_json::Value> = pol
                    .order
                    .iter()
                    .filter_map(|&i| pol.rules.get(i as usize))
                    .map(|r| serde_json::json!({"id": r.id, "effect": effect(r.effect), "reason": r.reason, "codes": r.codes}))
                    .collect();
                serde_json::json!({
                    "id": pol.id,
                    "default": pol.default.map_or_else(|| "none".to_owned(), effect),
                    "rules": rules,
                })
            })
            .collect();
        serde_json::json!({
            "bundle_id": p.bundle_id,
            "version": p.version,
            "fingerprint": p.fingerprint,
            "source": "artifact",
            "effects": p.effects,
            "policies": policies,
        })
    }

    /// The request paths the bundle reads: its path table, and for a Decision Card's bundle what
    /// the card scope reads (`action`, `resource.vendor_id`).
    pub fn inputs(&self) -> crate::inputs::Inputs {
        let (paths, card) = match self {
            Engine::Native { engine, .. } => (&engine.program().paths, engine.program().card_scope.is_some()),
            Engine::Interp(c) => (&c.borrow_owner().paths, c.borrow_owner().card_scope.is_some()),
        };
        let scope = [vec!["action".to_owned()], vec!["resource".to_owned(), "vendor_id".to_owned()]];
        let extra = if card { &scope[..] } else { &[] };
        crate::inputs::Inputs::new(paths.iter().chain(extra).map(Vec::as_slice))
    }

    /// Evaluates one request in its environment.
    pub fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> EvaluationResult {
        match self {
            Engine::Native { engine, .. } => engine.evaluate(req, env, mode),
            Engine::Interp(c) => c.borrow_dependent().evaluate(req, env, mode),
        }
    }

    /// Whether the bundle declares state series: its decisions read and record state in a
    /// store ([`Engine::evaluate_with_store`]).
    pub fn is_stateful(&self) -> bool {
        match self {
            Engine::Native { engine, .. } => engine.is_stateful(),
            Engine::Interp(c) => !c.borrow_owner().states.is_empty(),
        }
    }

    /// Evaluates one request of a stateful bundle against a store: the read-decide-record step
    /// runs atomically in the store; a store that fails decides the most severe effect.
    pub fn evaluate_with_store(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: &dyn verdict_runtime::state::StateStore,
    ) -> EvaluationResult {
        match self {
            Engine::Native { engine, .. } => engine.evaluate_with_store(req, env, mode, store),
            Engine::Interp(c) => c.borrow_dependent().evaluate_with_store(req, env, mode, store),
        }
    }
}

/// Why a source bundle is refused where trusted keys are configured.
pub const SOURCE_UNTRUSTED: &str = "not a signed artifact: trusted keys are configured, so only artifacts signed by one of them load (compile with `verdict compile --sign KEY`)";

/// What `GET /bundles/{id}` shows for an artifact: [`Engine::describe`] with the digest of the
/// bytes loaded and the trusted key that signed them (or `null`).
pub fn describe_artifact(engine: &Engine, digest: &str, signer: Signer) -> serde_json::Value {
    let mut json = engine.describe();
    if let serde_json::Value::Object(m) = &mut json {
        m.insert("digest".into(), digest.into());
        m.insert("signed_by".into(), signer.verified().map(|k| k.to_string()).into());
    }
    json
}

/// Says so in the log when an engine runs on the VM because the JIT is unavailable.
fn warn_fallback(engine: &vm::Engine) {
    if let Some(reason) = engine.jit_fallback() {
        tracing::warn!(bundle = %engine.program().bundle_id, "{reason}; evaluating on the VM");
    }
}

/// The backends this build can use, fastest first.
pub const BACKENDS: &[&str] = &["jit", "vm", "interp"];
