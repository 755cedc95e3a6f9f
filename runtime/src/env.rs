//! What one evaluation runs against besides the request: the evaluation time, the decision's
//! id, the state it reads and the host functions it calls ([`Env`]), and what the caller wants
//! back ([`Mode`]: a trace, every matching rule). Every backend — the interpreter, the VM, the
//! JIT — takes the same two values, so a new input to evaluation is one field here, not a new
//! parameter threaded through every entry point.

/// The environment of one evaluation. `Copy`: it holds only references and the time.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The evaluation time: effective windows, `now.*` terms and state windows read it.
    pub now: jiff::Timestamp,
    /// The decision's id, for stateful decisions (holds are recorded under it); generated when
    /// absent.
    pub decision_id: Option<&'a str>,
    /// The state series the decision reads (bundles with `state` declarations fail closed
    /// without one).
    pub state: Option<&'a dyn crate::state::StateView>,
    /// The host functions bound to the bundle's `extern` declarations (unbound ones fail
    /// closed).
    pub externs: Option<&'a dyn crate::externs::Externs>,
}

impl Env<'static> {
    /// An environment with only the evaluation time: all a stateless, extern-free bundle needs.
    pub fn at(now: jiff::Timestamp) -> Env<'static> {
        Env { now, decision_id: None, state: None, externs: None }
    }
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("now", &self.now)
            .field("decision_id", &self.decision_id)
            .field("state", &self.state.is_some())
            .field("externs", &self.externs.is_some())
            .finish()
    }
}

/// What an evaluation reports besides the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// Every policy, rule and atom evaluated, in order (LANGUAGE.md §4).
    pub trace: bool,
    /// Every rule whose condition holds, past the deciding ones (LANGUAGE.md §5.4).
    pub exhaustive: bool,
}

impl Mode {
    /// The decision only.
    pub const PLAIN: Mode = Mode { trace: false, exhaustive: false };
    /// The decision with its trace.
    pub const TRACE: Mode = Mode { trace: true, exhaustive: false };

    /// The decision, with its trace when `trace`.
    pub fn traced(trace: bool) -> Mode {
        Mode { trace, exhaustive: false }
    }
}
