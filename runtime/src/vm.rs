//! The bytecode VM: an [`Engine`] built from a verified [`Program`] decides requests.
//!
//! Per request, each distinct path is resolved at most once and each distinct atom (and each
//! definition, untraced) is evaluated at most once, whichever rules and policies share it.
//! Policies with a discriminating path visit only the rules that can match. Untraced evaluation
//! ([`Engine::decide`]) allocates nothing once its [`Scratch`] is warm; traced evaluation walks
//! every rule in order and gives the interpreter's trace.
//!
//! Engines are `Send + Sync` and evaluate through `&self`. No recursion on input: definition
//! calls use a fixed-size return stack, bounded by the verifier.

use crate::atom;
use crate::bytecode::Op;
use crate::decision::{
    AtomTrace, Decision, EvaluationResult, GateTrace, Hold, LetTrace, Match, NOT_APPLICABLE, PolicyTrace, ReadTrace,
    RuleTrace, TraceEntry, TraceStep,
};
use crate::env::{Env, Mode};
use crate::policy::{self, Gate, Truth};
use crate::program::TermCode;
use crate::program::{Arg, MAX_CALL_DEPTH, Program, VerifyError};
use crate::request::Request;
use crate::term::{self, HostMemo, TermValue};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::{Map, Value};
use std::borrow::Cow;
use verdict_vocab::AtomOp;

/// A constant list as a hash set of its scalar elements (exact, as deep equality), plus the
/// elements that are lists or objects, compared one by one.
/// Hashed with FxHash: the tables are built from the bundle's constants and only looked up with
/// request values, so a caller cannot shape the table (no hash-flooding concern).
#[derive(Debug, Default)]
struct ConstSet {
    strings: HashSet<String>,
    scalars: HashSet<Key>,
    others: Vec<Value>,
}

impl ConstSet {
    fn new(items: &[Value]) -> ConstSet {
        let mut set = ConstSet::default();
        for item in items {
            match item {
                Value::String(s) => {
                    set.strings.insert(s.clone());
                }
                Value::Array(_) | Value::Object(_) => set.others.push(item.clone()),
                other => {
                    if let Some(k) = key_of(other) {
                        set.scalars.insert(k);
                    }
                }
            }
        }
        set
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Bool(bool),
    Int(i128),
    Float(u64),
}

/// The hash key of a non-string scalar such that two scalars deep-equal exactly when their keys
/// are equal.
fn key_of(v: &Value) -> Option<Key> {
    Some(match v {
        Value::Null => Key::Null,
        Value::Bool(b) => Key::Bool(*b),
        Value::Number(n) => number_key(n),
        Value::String(_) | Value::Array(_) | Value::Object(_) => return None,
    })
}

fn number_key(n: &serde_json::Number) -> Key {
    if let Some(i) = n.as_i64() {
        return Key::Int(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Key::Int(i128::from(u));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // Integral floats below 2^100 equal exactly the integer of the same value.
    if f.fract() == 0.0 && f.abs() < 1.267_650_600_228_229_4e30 { Key::Int(f as i128) } else { Key::Float(f.to_bits()) }
}

/// Looks a scalar up without allocating (strings are looked up by reference).
fn set_contains(set: &ConstSet, v: &Value) -> bool {
    match v {
        Value::String(s) => set.strings.contains(s.as_str()),
        Value::Array(_) | Value::Object(_) => set.others.iter().any(|o| crate::value::deep_eq(o, v)),
        other => key_of(other).is_some_and(|k| set.scalars.contains(&k)),
    }
}

/// The per-thread state of evaluations: atom and definition memos (stamped by generation, so
/// nothing is cleared between requests), the request's symbol table (for the JIT's native
/// atoms), and the policy results of the last decision.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) cache: Cache,
    syms: Vec<u32>,
    pub(crate) results: Vec<PolicyResult>,
    /// Reasons computed for this decision, per policy: what failed for a policy decided by a
    /// fault, the rendered template of a deciding rule that has one (allocated only then); the
    /// schema gate's reason under [`SCHEMA`].
    reasons: Vec<(u32, String)>,
    /// What failed in the condition being evaluated.
    fault: Option<String>,
    /// The extern calls and state reads of this decision.
    host: HostMemo,
    /// Extern calls carried into the next decision's memo: a store that runs a decision again
    /// (after a conflict) must not call the host again.
    carry: Vec<term::Call>,
    /// The updates the last stateful decision made (see [`StoreOutcome`]).
    recorded: Vec<Recorded>,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// The return stack of definition calls (empty between runs).
    stack: Vec<(u32, u32)>,
    pub(crate) atoms: Memo,
    defs: Memo,
}

/// Per-request values by index: slot `i` is `[stamp, truth code]`, valid when `stamp` equals the
/// generation. Native code reads and writes the definitions' memo in this layout.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    pub(crate) generation: u32,
    pub(crate) slots: Vec<[u32; 2]>,
}

impl Memo {
    fn begin(&mut self, n: usize) {
        if self.slots.len() != n {
            self.slots = vec![[0, 0]; n];
            self.generation = 0;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.iter_mut().for_each(|s| s[0] = 0);
            self.generation = 1;
        }
    }

    /// The value memoized at `i` for this request, if any.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<Truth> {
        match self.slots.get(i) {
            Some([stamp, v]) if *stamp == self.generation => Some(Truth::from_code(*v as u8)),
            _ => None,
        }
    }

    #[inline]
    fn set(&mut self, i: usize, t: Truth) {
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = [self.generation, t as u32];
        }
    }
}

impl Scratch {
    fn begin(&mut self, atoms: usize, defs: usize, policies: usize) {
        self.cache.atoms.begin(atoms);
        self.cache.defs.begin(defs);
        self.results.clear();
        self.results.reserve(policies);
        self.reasons.clear();
        self.fault = None;
        self.host.reads.clear();
        self.host.calls.clear();
        self.host.calls.append(&mut self.carry);
    }

    /// Starts a store's run of a decision: the first run starts with no extern calls; a later
    /// one (the store runs the decision again) with the calls of the run before.
    fn carry_calls(&mut self, first: bool) {
        if first {
            self.carry.clear();
        } else {
            std::mem::swap(&mut self.carry, &mut self.host.calls);
        }
    }

    /// Records that policy `pi` was decided by a fault, with what failed.
    fn policy_fault(&mut self, pi: usize) {
        let message = self.fault.take().unwrap_or_else(|| policy::PANIC_FAULT.to_owned());
        self.reasons.push((u32::try_from(pi).unwrap_or(u32::MAX), message));
    }
}

/// One decision's context for term evaluation: its environment, its memo of extern calls and
/// state reads, and where a fault's reason goes.
struct Cx<'c, 'e> {
    env: &'c Env<'e>,
    host: &'c mut HostMemo,
    fault: &'c mut Option<String>,
}

/// What one policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyResult {
    /// The rule at this index of the policy's `rules` held.
    Rule(u32),
    /// No rule held: the policy's default.
    Default,
    /// The condition of the rule at this index could not be evaluated: the policy decides the
    /// bundle's most severe effect (fail closed).
    Fault(u32),
}

/// A decision as borrowed texts: the kind, the deciding policy and rule, the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionRef<'a> {
    pub kind: &'a str,
    pub policy_id: Option<&'a str>,
    pub rule_id: Option<&'a str>,
    pub reason: &'a str,
}

/// What decided the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleResult {
    Gate(Gate),
    /// The request does not match the bundle's schema (the reason is in the outcome's reasons).
    Schema,
    /// The decision's state updates could not be made (LANGUAGE.md §5.2): the most severe
    /// effect, with the reason in the outcome's reasons under [`REFUSED`].
    Refused,
    /// The policy at this index decided.
    Policy(usize),
    NotApplicable,
}

/// The key of the schema gate's reason in [`Outcome::reasons`] ([`BundleResult::Schema`]).
pub const SCHEMA: u32 = u32::MAX;
/// The key of a refusal's reason in [`Outcome::reasons`] ([`BundleResult::Refused`]).
pub const REFUSED: u32 = u32::MAX - 1;

/// A decision without allocation: indices into the engine's tables.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'s> {
    pub bundle: BundleResult,
    pub policies: &'s [PolicyResult],
    /// Reasons computed for this decision, by policy index: what failed for a policy decided
    /// by a fault, the rendered template of a deciding rule that has one (and the schema gate's
    /// reason under [`SCHEMA`]).
    pub reasons: &'s [(u32, String)],
}

/// A stateful decision made by [`Engine::decide_with_store`]: its outcome, as
/// [`Engine::decide_prepared`] gives it, and the updates recorded under its id.
#[derive(Debug, Clone, Copy)]
pub struct StoreOutcome<'s> {
    pub outcome: Outcome<'s>,
    /// In the order of the program's series.
    pub updates: &'s [Recorded],
}

/// One update a decision recorded: to the series at this index of the program's `series`, keyed
/// by the request's values at its key paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub series: u32,
    pub amount: serde_json::Number,
    /// A hold (`apply: commit`), counted until committed, released or expired.
    pub hold: bool,
}

/// A request whose paths are already resolved (and symbolized for the JIT's native atoms),
/// for services that hold the values.
#[derive(Debug, Clone, Default)]
pub struct PreparedRequest {
    values: Vec<Option<Value>>,
    syms: Vec<u32>,
    action: Option<Value>,
    resource_vendor: Option<Value>,
}

impl PreparedRequest {
    /// A request from the value of each of the bundle's paths, by path id (as
    /// [`Engine::path_id`] numbers them; `None` is missing, as is a path past the end), and the
    /// request's own `action` and `resource.vendor_id`, which the card scope reads; for readers
    /// of other request trees that resolve the merged view themselves (the Python package reads
    /// a `dict` along the bundle's paths). Symbols are resolved on first use.
    pub fn from_values(
        values: Vec<Option<Value>>,
        action: Option<Value>,
        resource_vendor: Option<Value>,
    ) -> PreparedRequest {
        PreparedRequest { values, syms: Vec::new(), action, resource_vendor }
    }

    /// Sets a path (by the id from [`Engine::path_id`]); `None` makes it missing.
    pub fn set(&mut self, path: u32, value: Option<Value>) {
        if let Some(slot) = self.values.get_mut(path as usize) {
            *slot = value;
        }
        // Resolved again on first use.
        if let Some(slot) = self.syms.get_mut(path as usize) {
            *slot = crate::symbols::UNRESOLVED;
        }
    }

    /// The request's parts to overwrite in place with another request of the same engine, for
    /// a reader that keeps one `PreparedRequest` per thread and so keeps the allocations of the
    /// values it overwrites: each path's value by path id (as [`PreparedRequest::from_values`]
    /// takes them), and the request's own `action` and `resource.vendor_id`. Symbols are
    /// resolved again on first use.
    pub fn parts_mut(&mut self) -> PreparedParts<'_> {
        self.syms.clear();
        PreparedParts { values: &mut self.values, action: &mut self.action, resource_vendor: &mut self.resource_vendor }
    }

    /// Sets the request's own `action` and `resource.vendor_id`, which the card scope reads.
    pub fn set_scope(&mut self, action: Option<Value>, resource_vendor: Option<Value>) {
        self.action = action;
        self.resource_vendor = resource_vendor;
    }
}

/// A [`PreparedRequest`]'s parts, borrowed to be overwritten in place
/// ([`PreparedRequest::parts_mut`]).
pub struct PreparedParts<'a> {
    pub values: &'a mut Vec<Option<Value>>,
    pub action: &'a mut Option<Value>,
    pub resource_vendor: &'a mut Option<Value>,
}

/// Where the VM reads path values from.
trait Input<'r> {
    fn lookup(&mut self, path: u32) -> Option<&'r Value>;
    fn action(&self) -> Option<&'r Value>;
    fn resource_vendor(&self) -> Option<&'r Value>;
    /// Starts the symbol table of a new request: what is already known, the rest unresolved.
    fn init_syms(&self, syms: &mut Vec<u32>, paths: usize) {
        syms.clear();
        syms.resize(paths, crate::symbols::UNRESOLVED);
    }
}

/// The first this many paths of a bundle keep their looked-up values on the stack for the
/// request; later paths are looked up each time an atom reads them (each distinct atom is
/// evaluated once anyway). Either way a decision allocates nothing, whatever the bundle's size.
const INLINE_PATHS: usize = 32;

/// State reads keep the key of a series with up to this many paths on the stack.
const INLINE_KEY: usize = 4;

struct RequestInput<'r, 'p> {
    req: &'r Request,
    paths: &'p [Vec<String>],
    inline: [Option<Option<&'r Value>>; INLINE_PATHS],
}

impl<'r, 'p> RequestInput<'r, 'p> {
    fn new(req: &'r Request, paths: &'p [Vec<String>]) -> Self {
        RequestInput { req, paths, inline: [None; INLINE_PATHS] }
    }
}

impl<'r> Input<'r> for RequestInput<'r, '_> {
    #[inline]
    fn lookup(&mut self, path: u32) -> Option<&'r Value> {
        let i = path as usize;
        let segments = self.paths.get(i).map_or(&[][..], Vec::as_slice);
        let Some(slot) = self.inline.get_mut(i) else { return self.req.lookup(segments) };
        if let Some(v) = slot {
            return *v;
        }
        let v = self.req.lookup(segments);
        *slot = Some(v);
        v
    }

    fn action(&self) -> Option<&'r Value> {
        self.req.action.as_ref()
    }

    fn resource_vendor(&self) -> Option<&'r Value> {
        self.req.resource.as_ref().and_then(|r| r.get("vendor_id"))
    }
}

struct PreparedInput<'r>(&'r PreparedRequest);

impl<'r> Input<'r> for PreparedInput<'r> {
    #[inline]
    fn lookup(&mut self, path: u32) -> Option<&'r Value> {
        self.0.values.get(path as usize).and_then(Option::as_ref)
    }

    fn action(&self) -> Option<&'r Value> {
        self.0.action.as_ref()
    }

    fn resource_vendor(&self) -> Option<&'r Value> {
        self.0.resource_vendor.as_ref()
    }

    fn init_syms(&self, syms: &mut Vec<u32>, paths: usize) {
        syms.clear();
        if self.0.syms.len() == paths {
            syms.extend_from_slice(&self.0.syms);
        } else {
            syms.resize(paths, crate::symbols::UNRESOLVED);
        }
    }
}

/// A verified program ready to decide: regexes compiled, constant sets and dispatch tables built.
#[derive(Debug)]
pub struct Engine {
    program: Program,
    regexes: Vec<Option<regex::Regex>>,
    sets: Vec<Option<ConstSet>>,
    /// The atoms that compare a number of arithmetic or a state read (`spend.day + amount >
    /// 100000`): decided on the numbers, not on values ([`Engine::decide_atom`]).
    number_atoms: Vec<bool>,
    dispatch: Vec<Option<HashMap<String, usize>>>,
    /// The same tables by symbol (where every key is an interned constant), for the JIT.
    dispatch_syms: Vec<Option<HashMap<u32, usize>>>,
    /// The program's string constants, interned: request values become symbols with them.
    symbols: crate::symbols::Symbols,
    from: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    trie: crate::project::PathTrie,
    /// Native condition code, when the engine runs on the JIT.
    /// Set once, when compiled (at construction, or later by [`Engine::tiered`]'s background
    /// thread); a decision reads it once at its start, so one decision runs on one backend.
    jit: std::sync::OnceLock<crate::jit::JitCode>,
    /// Why the JIT was not used, when it was asked for and could not be.
    jit_fallback: Option<crate::jit::JitError>,
    /// The bundle's timezone (calendar windows, `now.*`).
    tz: jiff::tz::TimeZone,
    /// This engine among the process's engines: a scratch's kept calendar periods
    /// ([`term::Periods`]) are those of the engine that last used it.
    id: u64,
}

/// The engine seen from native code during one rule: atoms it does not compile go to the shared
/// evaluation (and its per-request cache).
struct JitHost<'e, 'i, 'm, 'c, 'x, I> {
    engine: &'e Engine,
    input: &'i mut I,
    atoms: &'m mut Memo,
    cx: Cx<'c, 'x>,
}

impl<'r, I: Input<'r>> crate::jit::Host for JitHost<'_, '_, '_, '_, '_, I> {
    fn atom(&mut self, atom: u32, site: u32) -> Truth {
        self.engine.atom(atom, site, self.input, self.atoms, &mut self.cx, None)
    }
}

/// An atom's operand: a number as arithmetic and state reads give it (not yet a value), or a
/// value (`None`: undefined).
enum Side<'a> {
    Number(serde_json::Number),
    Value(TermValue<'a>),
}

impl<'a> Side<'a> {
    #[inline]
    fn number(&self) -> Option<&serde_json::Number> {
        match self {
            Side::Number(n) => Some(n),
            Side::Value(Some(v)) => v.as_number(),
            Side::Value(None) => None,
        }
    }

    fn value(self) -> TermValue<'a> {
        match self {
            Side::Number(n) => Some(Cow::Owned(Value::Number(n))),
            Side::Value(v) => v,
        }
    }
}

/// Whether an operand is a term that evaluates to a number or nothing (arithmetic, a state read).
fn number_term(program: &Program, arg: Arg) -> bool {
    matches!(arg, Arg::Term(t) if matches!(program.terms.get(t as usize), Some(TermCode::Arith { .. } | TermCode::State { .. })))
}

/// Which backend runs an engine's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Cranelift-compiled native code (the default; falls back to the VM where unavailable).
    Jit,
    /// The bytecode interpreter.
    Vm,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Engine {
    /// Verifies the program and prepares it for evaluation on the JIT (falling back to the VM
    /// where the JIT is unavailable: see [`Engine::jit_fallback`]).
    pub fn new(program: Program) -> Result<Engine, VerifyError> {
        Engine::with_backend(program, Backend::Jit)
    }

    /// The backend conditions run on.
    pub fn backend(&self) -> Backend {
        if self.jit.get().is_some() { Backend::Jit } else { Backend::Vm }
    }

    /// How many of the program's atoms the JIT decides natively (0 on the VM).
    pub fn native_atoms(&self) -> usize {
        self.jit.get().map_or(0, crate::jit::JitCode::native_atoms)
    }

    /// Why the JIT was asked for and not used (the engine runs on the VM then).
    pub fn jit_fallback(&self) -> Option<&crate::jit::JitError> {
        self.jit_fallback.as_ref()
    }

    /// Verifies the program and prepares it for evaluation on the given backend.
    pub fn with_backend(program: Program, backend: Backend) -> Result<Engine, VerifyError> {
        program.verify()?;
        let mut regexes = Vec::with_capacity(program.atoms.len());
        let mut sets = Vec::with_capacity(program.atoms.len());
        for a in &program.atoms {
            let constant = |arg: Arg| match arg {
                Arg::Const(c) => program.consts.get(c as usize),
                _ => None,
            };
            regexes.push(match (a.op, constant(a.rhs)) {
                (AtomOp::Matches, Some(Value::String(p))) => Some(
                    regex::Regex::new(p)
                        .map_err(|e| VerifyError::Regex { atom: regexes.len(), message: e.to_string() })?,
                ),
                _ => None,
            });
            sets.push(match (a.op, constant(a.rhs)) {
                (AtomOp::In | AtomOp::NotIn, Some(Value::Array(items))) => Some(ConstSet::new(items)),
                _ => None,
            });
        }
        let dispatch = program
            .policies
            .iter()
            .map(|p| p.dispatch.as_ref().map(|d| d.keys.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect()))
            .collect();
        let time = |i: &Option<crate::program::Instant>| -> Result<Option<jiff::Timestamp>, VerifyError> {
            match i {
                None => Ok(None),
                Some(i) => i.timestamp().map(Some).ok_or(VerifyError::TimeOutOfRange),
            }
        };
        let from = time(&program.effective_from)?;
        let until = time(&program.effective_until)?;
        let trie = crate::project::PathTrie::new(program.paths.iter().map(Vec::as_slice));
        let symbols = crate::symbols::Symbols::new(&program);
        let dispatch_syms = program
            .policies
            .iter()
            .map(|p| {
                // `None` when a key is not an interned constant: that policy dispatches by string.
                let d = p.dispatch.as_ref()?;
                d.keys.iter().enumerate().map(|(i, (k, _))| Some((symbols.string(k)?, i))).collect()
            })
            .collect();
        let number_atoms = program
            .atoms
            .iter()
            .map(|d| atom::compares(d.op) && (number_term(&program, d.lhs) || number_term(&program, d.rhs)))
            .collect();
        let jit = std::sync::OnceLock::new();
        let mut jit_fallback = None;
        if backend == Backend::Jit {
            match crate::jit::JitCode::compile(&program, &symbols) {
                Ok(code) => {
                    let _ = jit.set(code);
                }
                Err(e) => jit_fallback = Some(e),
            }
        }
        let tz = if program.timezone.is_empty() {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::get(&program.timezone).map_err(|_| VerifyError::TimeZone(program.timezone.clone()))?
        };
        Ok(Engine {
            program,
            regexes,
            sets,
            number_atoms,
            dispatch,
            dispatch_syms,
            symbols,
            from,
            until,
            trie,
            jit,
            jit_fallback,
            tz,
            id: {
                static ENGINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        })
    }

    /// Verifies the program and returns an engine that decides on the VM at once, while a
    /// background thread compiles the JIT and installs it when it is ready (tiered, as JIT
    /// runtimes do): no bundle takes longer to load than on the VM, however long native code
    /// takes to compile. Decisions started before the switch finish on the VM. A JIT that cannot
    /// be used leaves the engine on the VM (the thread logs nothing: [`Engine::backend`] says
    /// which backend runs).
    pub fn tiered(program: Program) -> Result<std::sync::Arc<Engine>, VerifyError> {
        let engine = std::sync::Arc::new(Engine::with_backend(program, Backend::Vm)?);
        let background = std::sync::Arc::clone(&engine);
        let spawned = std::thread::Builder::new().name("verdict-jit".into()).spawn(move || {
            if let Ok(code) = crate::jit::JitCode::compile(&background.program, &background.symbols) {
                let _ = background.jit.set(code);
            }
        });
        // Without a thread the engine simply stays on the VM.
        drop(spawned);
        Ok(engine)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The id of a path (in the reference `field` spelling's segments), for prepared requests.
    pub fn path_id(&self, segments: &[&str]) -> Option<u32> {
        self.program
            .paths
            .iter()
            .position(|p| p.len() == segments.len() && p.iter().zip(segments).all(|(a, b)| a == b))
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Resolves every path of the bundle from a request, once (and its symbol, once).
    pub fn prepare(&self, req: &Request) -> PreparedRequest {
        let values: Vec<Option<Value>> = self.program.paths.iter().map(|p| req.lookup(p).cloned()).collect();
        PreparedRequest {
            syms: values.iter().map(|v| self.symbols.of(v.as_ref())).collect(),
            values,
            action: req.action.clone(),
            resource_vendor: req.resource.as_ref().and_then(|r| r.get("vendor_id")).cloned(),
        }
    }

    /// Decides a request without allocating (once `scratch` is warm, for bundles without terms
    /// that build strings, externs or state) and without a trace.
    pub fn decide<'s>(&self, req: &Request, env: &Env<'_>, scratch: &'s mut Scratch) -> Outcome<'s> {
        let mut input = RequestInput::new(req, &self.program.paths);
        self.decide_input(&mut input, env, scratch)
    }

    /// Parses a request context from JSON bytes — keeping only what the bundle's paths reach
    /// (see [`crate::project`]) — and decides it.
    pub fn decide_json<'s>(
        &self,
        json: &[u8],
        env: &Env<'_>,
        scratch: &'s mut Scratch,
    ) -> Result<Outcome<'s>, crate::request::RequestError> {
        let req = self.trie.parse(json)?;
        Ok(self.decide(&req, env, scratch))
    }

    /// Parses a request context from JSON bytes (projected as in [`Engine::decide_json`]) and
    /// builds the full result. Traces show the values read, which projection keeps whole.
    pub fn evaluate_json(
        &self,
        json: &[u8],
        env: &Env<'_>,
        mode: Mode,
    ) -> Result<EvaluationResult, crate::request::RequestError> {
        let req = self.trie.parse(json)?;
        Ok(self.evaluate(&req, env, mode))
    }

    /// Decides a prepared request without allocating (once `scratch` is warm).
    pub fn decide_prepared<'s>(&self, req: &PreparedRequest, env: &Env<'_>, scratch: &'s mut Scratch) -> Outcome<'s> {
        self.decide_input(&mut PreparedInput(req), env, scratch)
    }

    /// Decides a prepared request against a store as [`Engine::evaluate_with_store`] does (the
    /// read-decide-record step atomic in the store, the updates recorded under `env.decision_id`
    /// or a generated id, extern calls made once per decision), without building the result:
    /// the outcome and the updates, in `scratch`. A store that fails is `Err`: the caller decides
    /// the bundle's most severe effect with the error as reason (fail closed), as
    /// [`Engine::evaluate_with_store`] does.
    pub fn decide_with_store<'s>(
        &self,
        req: &PreparedRequest,
        env: &Env<'_>,
        store: &dyn crate::state::StateStore,
        scratch: &'s mut Scratch,
    ) -> Result<StoreOutcome<'s>, crate::state::StoreError> {
        let generated;
        let id = match env.decision_id {
            Some(id) => id,
            None => {
                generated = crate::state::new_decision_id();
                generated.as_str()
            }
        };
        let hold_ttl = self.hold_ttl();
        let mut bundle = None;
        let mut first = true;
        store.transact_into(&mut |view, rec| {
            let env = Env { state: Some(view), decision_id: Some(id), ..*env };
            scratch.carry_calls(std::mem::take(&mut first));
            // Through `decide_prepared` (not `decide_input`), so the stateless entry point keeps
            // its code: `decide_input` stays inlined into it alone.
            let outcome = self.decide_prepared(req, &env, scratch);
            let mut input = PreparedInput(req);
            let kind = self.kind_of(&outcome);
            let stands = EvaluationResult::refusal_stands_aside(kind, self.program.most_severe());
            let kind = self.program.effects.iter().position(|e| e == kind);
            bundle = Some(outcome.bundle);
            if let Err(reason) = self.record(kind, &mut input, &env, scratch)
                && !stands
            {
                bundle = Some(BundleResult::Refused);
                scratch.reasons.push((REFUSED, reason));
            }
            rec.reset(id, crate::state::micros(env.now), hold_ttl);
            let mut n = 0;
            for r in &scratch.recorded {
                let Some(s) = self.program.series.get(r.series as usize) else { continue };
                let key = s.key.iter().filter_map(|k| input.lookup(*k));
                rec.put_update(n, &s.name, key, r.amount.clone(), r.hold);
                n += 1;
            }
            rec.updates.truncate(n);
        })?;
        let Some(bundle) = bundle else {
            return Err(crate::state::StoreError::Unavailable("the store did not run the decision".into()));
        };
        Ok(StoreOutcome {
            outcome: Outcome { bundle, policies: &scratch.results, reasons: &scratch.reasons },
            updates: &scratch.recorded,
        })
    }

    /// How long holds count without a commit, in microseconds.
    fn hold_ttl(&self) -> crate::state::Micros {
        crate::state::hold_ttl_micros(self.program.hold_ttl)
    }

    /// Whether the bundle declares state series (its decisions carry ids and may make holds).
    pub fn is_stateful(&self) -> bool {
        !self.program.series.is_empty()
    }

    /// Decides and builds the full result (with the trace and every matching rule when the mode
    /// asks), like the interpreter. The state the decision reads is `env.state`; what it would
    /// record is in the result's `updates` (see [`Engine::evaluate_with_store`], which records it).
    pub fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> EvaluationResult {
        let mut input = RequestInput::new(req, &self.program.paths);
        if mode.trace || mode.exhaustive {
            let mut scratch = Scratch::default();
            return self.evaluate_full(&mut input, env, mode, &mut scratch, true);
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.evaluate_plain(&mut input, env, &mut scratch),
            Err(_) => self.evaluate_plain(&mut input, env, &mut Scratch::default()),
        })
    }

    /// Evaluates a stateful decision against a store: the read-decide-record step runs atomically
    /// in the store (which may run it again), and the holds and updates are recorded under the
    /// decision's id (`env.decision_id`, or a generated one). A store that fails decides the
    /// bundle's most severe effect with the reason (fail closed). Extern calls made by one attempt
    /// are reused by the next: a call with the same arguments runs once per decision.
    pub fn evaluate_with_store(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: &dyn crate::state::StateStore,
    ) -> EvaluationResult {
        self.with_store(req, env, mode, store, &mut Scratch::default(), false)
    }

    /// [`Engine::evaluate_with_store`] in `scratch`; `covered`: on the bytecode, every decision
    /// built in full (the policy results and the atom memo stay in `scratch` for coverage).
    fn with_store(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: &dyn crate::state::StateStore,
        scratch: &mut Scratch,
        covered: bool,
    ) -> EvaluationResult {
        let mut calls = Vec::new();
        let mut decide = |env: &Env<'_>| {
            let mut input = RequestInput::new(req, &self.program.paths);
            scratch.carry = std::mem::take(&mut calls);
            let r = if mode.trace || mode.exhaustive || covered {
                self.evaluate_full(&mut input, env, mode, scratch, !covered)
            } else {
                self.evaluate_plain(&mut input, env, scratch)
            };
            calls = std::mem::take(&mut scratch.host.calls);
            r
        };
        crate::state::decide_in_store(store, env, self.program.hold_ttl, &mut decide, &|reason| self.refused(reason))
    }

    /// Evaluates like [`Engine::evaluate`] (with a store: [`Engine::evaluate_with_store`]), always
    /// on the bytecode and visiting rules in order as the interpreter does, and records in
    /// `coverage` which rules decided their policies, which defaults applied and which atoms were
    /// seen true and false. For test suites: no trace is built, and the decision paths services
    /// use are untouched.
    pub fn evaluate_covered(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: Option<&dyn crate::state::StateStore>,
        coverage: &mut crate::coverage::Coverage,
    ) -> EvaluationResult {
        let mut scratch = std::mem::take(&mut coverage.scratch);
        let r = match store {
            Some(store) => self.with_store(req, env, mode, store, &mut scratch, true),
            None => {
                let mut input = RequestInput::new(req, &self.program.paths);
                self.evaluate_full(&mut input, env, mode, &mut scratch, false)
            }
        };
        // A decision the store refused made no policy decisions: nothing to record.
        if !r.policy_decisions.is_empty() {
            coverage.record(&scratch.results, &scratch.cache.atoms);
        }
        coverage.scratch = scratch;
        r
    }

    /// The fail-closed result of a decision that could not be recorded.
    fn refused(&self, reason: &str) -> EvaluationResult {
        let p = &self.program;
        EvaluationResult {
            bundle_id: p.bundle_id.clone(),
            bundle_version: p.version.clone(),
            fingerprint: p.fingerprint.clone(),
            decision: Decision::bare(p.most_severe(), reason),
            policy_decisions: Vec::new(),
            decision_id: None,
            holds: Vec::new(),
            matches: None,
            rules_evaluated: None,
            trace: None,
            updates: Vec::new(),
        }
    }

    /// The full result of an untraced, non-exhaustive decision.
    fn evaluate_plain<'r, I: Input<'r>>(
        &self,
        input: &mut I,
        env: &Env<'_>,
        scratch: &mut Scratch,
    ) -> EvaluationResult {
        // The result is built while the outcome borrows the scratch; `finish` then reuses it.
        let mut r = {
            let outcome = self.decide_input(input, env, scratch);
            self.result(&outcome, None)
        };
        self.finish(&mut r, input, env, scratch);
        r
    }

    fn gate<'r, I: Input<'r>>(&self, input: &I, now: jiff::Timestamp) -> (Option<Gate>, Option<bool>, Option<bool>) {
        let p = &self.program;
        let window = (p.effective_from.is_some() || p.effective_until.is_some())
            .then(|| policy::window_gate(self.from, self.until, now));
        if let Some(Some(g)) = window {
            return (Some(g), Some(false), None);
        }
        let scope = p
            .card_scope
            .as_ref()
            .map(|s| policy::in_scope(&s.vendor_id, &s.allowed_actions, input.action(), input.resource_vendor()));
        let gate = (scope == Some(false)).then_some(Gate::OutOfScope);
        (gate, window.map(|w| w.is_none()), scope)
    }

    /// The run-time schema gate (LANGUAGE.md §3): the first required path that is missing, or
    /// declared path whose value has another type, as the reason of the refusal.
    fn schema_gate<'r, I: Input<'r>>(&self, input: &mut I) -> Option<String> {
        let p = &self.program;
        for &path in &p.required {
            if input.lookup(path).is_none() {
                let text = p.path_texts.get(path as usize).map_or("", String::as_str);
                return Some(format!("{}{text}: required but missing", policy::SCHEMA_REASON));
            }
        }
        for (path, ty) in &p.schema {
            if let Some(v) = input.lookup(*path)
                && !ty.admits(v)
            {
                let text = p.path_texts.get(*path as usize).map_or("", String::as_str);
                return Some(format!(
                    "{}{text}: expected {}, got {}",
                    policy::SCHEMA_REASON,
                    ty.name(),
                    crate::value::type_name(v)
                ));
            }
        }
        None
    }

    fn decide_input<'r, 's, I: Input<'r>>(
        &self,
        input: &mut I,
        env: &Env<'_>,
        scratch: &'s mut Scratch,
    ) -> Outcome<'s> {
        let p = &self.program;
        scratch.begin(p.atoms.len(), p.defs.len(), p.policies.len());
        let jit = self.jit.get();
        if let Some(jit) = jit {
            input.init_syms(&mut scratch.syms, p.paths.len());
            for &path in jit.native_paths() {
                self.sym(&mut scratch.syms, input, path);
            }
        }
        if let (Some(g), _, _) = self.gate(input, env.now) {
            return Outcome { bundle: BundleResult::Gate(g), policies: &scratch.results, reasons: &scratch.reasons };
        }
        if (!p.schema.is_empty() || !p.required.is_empty())
            && let Some(reason) = self.schema_gate(input)
        {
            scratch.reasons.push((SCHEMA, reason));
            return Outcome { bundle: BundleResult::Schema, policies: &scratch.results, reasons: &scratch.reasons };
        }
        for (pi, pol) in p.policies.iter().enumerate() {
            let by_symbol = if jit.is_some() { self.dispatch_syms.get(pi).and_then(Option::as_ref) } else { None };
            let candidates: &[u32] = match (&pol.dispatch, self.dispatch.get(pi).and_then(Option::as_ref)) {
                // On the JIT the request's symbols are at hand: dispatch on the path's symbol.
                (Some(d), Some(_)) if let Some(map) = by_symbol => {
                    let sym = self.sym(&mut scratch.syms, input, d.path);
                    match map.get(&sym).and_then(|i| d.keys.get(*i)) {
                        Some((_, list)) => list,
                        None => &d.other,
                    }
                }
                (Some(d), Some(map)) => match input.lookup(d.path) {
                    Some(Value::String(s)) => match map.get(s.as_str()).and_then(|i| d.keys.get(*i)) {
                        Some((_, list)) => list,
                        None => &d.other,
                    },
                    _ => &d.other,
                },
                _ => &[],
            };
            let mut result = PolicyResult::Default;
            let rules: &mut dyn Iterator<Item = u32> = if pol.dispatch.is_some() {
                &mut candidates.iter().filter_map(|&pos| pol.order.get(pos as usize).copied())
            } else {
                &mut pol.order.iter().copied()
            };
            for ri in rules {
                match self.rule_holds(jit, pol, pi, ri, input, env, scratch, None) {
                    Truth::False => {}
                    Truth::True => {
                        result = self.decided_by(pi, ri, input, env, scratch);
                        break;
                    }
                    Truth::Fault => {
                        scratch.policy_fault(pi);
                        result = PolicyResult::Fault(ri);
                        break;
                    }
                }
            }
            scratch.results.push(result);
        }
        let bundle = self.combine(&scratch.results);
        Outcome { bundle, policies: &scratch.results, reasons: &scratch.reasons }
    }

    /// The result of a policy whose rule `ri` held: its reason template (if any) is rendered
    /// now; a template that cannot be rendered (an extern or state read that fails) is a fault.
    fn decided_by<'r, I: Input<'r>>(
        &self,
        pi: usize,
        ri: u32,
        input: &mut I,
        env: &Env<'_>,
        scratch: &mut Scratch,
    ) -> PolicyResult {
        let template =
            self.program.policies.get(pi).and_then(|p| p.rules.get(ri as usize)).and_then(|r| r.template.as_ref());
        let Some(pieces) = template else { return PolicyResult::Rule(ri) };
        let mut cx = Cx { env, host: &mut scratch.host, fault: &mut scratch.fault };
        match self.render(pieces, input, &mut cx) {
            Some(text) => {
                scratch.reasons.push((u32::try_from(pi).unwrap_or(u32::MAX), text));
                PolicyResult::Rule(ri)
            }
            None => {
                scratch.policy_fault(pi);
                PolicyResult::Fault(ri)
            }
        }
    }

    /// Renders a reason template; `None` on a fault (its reason is in `cx.fault`).
    fn render<'r, I: Input<'r>>(
        &self,
        pieces: &[crate::program::Piece],
        input: &mut I,
        cx: &mut Cx<'_, '_>,
    ) -> Option<String> {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                crate::program::Piece::Text(t) => out.push_str(t),
                crate::program::Piece::Term { arg, decimals } => {
                    let v = self.value(*arg, input, cx, None, 0).ok()?;
                    out.push_str(&term::render(v.as_deref(), *decimals));
                }
            }
        }
        Some(out)
    }

    /// A path's symbol in this request's table, resolved (and kept) on first use.
    fn sym<'r, I: Input<'r>>(&self, syms: &mut [u32], input: &mut I, path: u32) -> u32 {
        match syms.get_mut(path as usize) {
            Some(slot) if *slot == crate::symbols::UNRESOLVED => {
                *slot = self.symbols.of(input.lookup(path));
                *slot
            }
            Some(slot) => *slot,
            None => self.symbols.of(input.lookup(path)),
        }
    }

    /// Whether a rule's condition holds: on native code when `jit` (the backend the decision
    /// started on) compiled the rule and no trace is asked, else on the bytecode.
    #[allow(clippy::too_many_arguments, reason = "the decision's state, passed down without a struct on the hot path")]
    fn rule_holds<'r, I: Input<'r>>(
        &self,
        jit: Option<&crate::jit::JitCode>,
        pol: &crate::program::PolicyCode,
        pi: usize,
        ri: u32,
        input: &mut I,
        env: &Env<'_>,
        scratch: &mut Scratch,
        trace: Option<&mut Vec<TraceStep>>,
    ) -> Truth {
        let Scratch { cache, syms, host, fault, .. } = scratch;
        let cx = Cx { env, host, fault };
        // Native code for untraced decisions; a trace runs the same program's bytecode, which
        // records every atom (the two are held equal by the differential tests).
        if let (Some(jit), None) = (jit, &trace) {
            let Cache { atoms, defs, .. } = cache;
            let mut host = JitHost { engine: self, input, atoms, cx };
            // `None`: the rule has no native code (too large to compile): its bytecode runs.
            match jit.holds(pi, ri as usize, &mut host, syms, &mut defs.slots, defs.generation) {
                Some(t) => return t,
                None => {
                    let cx = host.cx;
                    return match pol.rules.get(ri as usize) {
                        Some(r) => self.run(r.entry, input, cache, cx, None),
                        None => Truth::False,
                    };
                }
            }
        }
        match pol.rules.get(ri as usize) {
            Some(r) => self.run(r.entry, input, cache, cx, trace),
            None => Truth::False,
        }
    }

    /// The effect index a policy result stands for (`None`: not applicable).
    fn effect_of(&self, pi: usize, r: PolicyResult) -> Option<u32> {
        let pol = self.program.policies.get(pi)?;
        match r {
            PolicyResult::Rule(ri) => pol.rules.get(ri as usize).map(|r| r.effect),
            PolicyResult::Default => pol.default,
            PolicyResult::Fault(_) => Some(0),
        }
    }

    fn combine(&self, results: &[PolicyResult]) -> BundleResult {
        let severities = results.iter().enumerate().map(|(i, r)| self.effect_of(i, *r));
        match policy::winner(self.program.combine_first, severities) {
            Some(i) => BundleResult::Policy(i),
            None => BundleResult::NotApplicable,
        }
    }

    /// Runs a condition segment (a [`crate::program::segment`]: the verifier guarantees that a
    /// run from an entry stays inside it). Definition calls use the scratch's return stack
    /// (depth bounded by the verifier, so it never grows past `MAX_CALL_DEPTH` entries and, once
    /// warm, never allocates); jumps only go forward, so every run ends. A definition is run
    /// once per request: later calls read its memo (and a trace shows them as reused).
    fn run<'r, I: Input<'r>>(
        &self,
        entry: u32,
        input: &mut I,
        s: &mut Cache,
        mut cx: Cx<'_, '_>,
        mut trace: Option<&mut Vec<TraceStep>>,
    ) -> Truth {
        let code = &self.program.code;
        let base = s.stack.len();
        let mut pc = entry as usize;
        let mut f = Truth::False;
        while let Some((op, next)) = Op::decode(code, pc) {
            pc = next;
            match op {
                Op::Atom { atom, site } => {
                    f = self.atom(atom, site, input, &mut s.atoms, &mut cx, trace.as_deref_mut());
                    if f == Truth::Fault {
                        break;
                    }
                }
                Op::True {} => f = Truth::True,
                Op::False {} => f = Truth::False,
                Op::Not {} => f = !f,
                Op::JumpIfFalse { target } => {
                    if f == Truth::False {
                        pc = target as usize;
                    }
                }
                Op::JumpIfTrue { target } => {
                    if f == Truth::True {
                        pc = target as usize;
                    }
                }
                Op::Call { def } => {
                    let d = def as usize;
                    if let Some(known) = s.defs.get(d) {
                        if let (Some(t), Some(code)) = (trace.as_deref_mut(), self.program.defs.get(d)) {
                            t.push(TraceStep::Let(LetTrace { name: code.name.clone(), result: known == Truth::True }));
                        }
                        f = known;
                    } else if let (true, Some(code)) =
                        (s.stack.len() - base <= MAX_CALL_DEPTH, self.program.defs.get(d))
                    {
                        s.stack.push((u32::try_from(pc).unwrap_or(u32::MAX), def));
                        pc = code.entry as usize;
                    } else {
                        break;
                    }
                }
                Op::Ret {} => {
                    if s.stack.len() <= base {
                        return f;
                    }
                    let Some((ret, def)) = s.stack.pop() else { break };
                    s.defs.set(def as usize, f);
                    pc = ret as usize;
                }
            }
        }
        // A fault (or, impossibly for a verified program, code that ends without `Ret`).
        s.stack.truncate(base);
        Truth::Fault
    }

    /// An operand's value (`None` inside: undefined), or `Err` on a fault (its reason is in
    /// `cx.fault`). Term recursion is bounded by the verified term depth.
    fn value<'a, 'r: 'a, I: Input<'r>>(
        &'a self,
        arg: Arg,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        mut reads: Option<&mut Vec<ReadTrace>>,
        depth: usize,
    ) -> Result<TermValue<'a>, ()> {
        let p = &self.program;
        let t = match arg {
            Arg::Path(_) | Arg::Const(_) | Arg::None => return Ok(self.leaf(arg, input, reads).map(Cow::Borrowed)),
            Arg::Term(t) => t,
        };
        if depth > crate::program::MAX_TERM_DEPTH {
            *cx.fault = Some("internal error: terms nest too deeply".into());
            return Err(());
        }
        let Some(code) = p.terms.get(t as usize) else { return Ok(None) };
        let text = || p.term_texts.get(t as usize).cloned().unwrap_or_default();
        Ok(match code {
            // Numbers all the way down ([`Engine::term_operand`]): no value is built for the steps.
            TermCode::Arith { .. } | TermCode::State { .. } => match self.term_operand(t, input, cx, reads, depth)? {
                term::Operand::Number(n) => Some(Cow::Owned(Value::Number(n))),
                term::Operand::Undefined | term::Operand::Other => None,
            },
            TermCode::Func { func, arg } => {
                let a = self.value(*arg, input, cx, reads, depth + 1)?;
                term::func(*func, a.as_deref()).map(Cow::Owned)
            }
            TermCode::Now { field } => Some(Cow::Owned(term::now_field(*field, cx.env.now, &self.tz))),
            TermCode::Extern { ext, args } => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.value(*a, input, cx, reads.as_deref_mut(), depth + 1)?);
                }
                let Some(e) = p.externs.get(*ext as usize) else { return Ok(None) };
                let refs: Vec<Option<&Value>> = values.iter().map(|v| v.as_deref()).collect();
                let result = term::call_extern(cx.env, cx.host, *ext, &e.name, &e.params, &e.returns, &refs);
                if let Some(r) = reads {
                    r.push(ReadTrace::host(text(), result.clone()));
                }
                match result {
                    Ok(v) => Some(Cow::Owned(v)),
                    Err(e) => {
                        *cx.fault = Some(e);
                        return Err(());
                    }
                }
            }
        })
    }

    /// The value of a path or a constant (undefined for anything else), borrowed: [`Engine::value`]
    /// of an operand that is not a term.
    #[inline]
    fn leaf<'a, 'r: 'a, I: Input<'r>>(
        &'a self,
        arg: Arg,
        input: &mut I,
        reads: Option<&mut Vec<ReadTrace>>,
    ) -> Option<&'a Value> {
        let p = &self.program;
        match arg {
            Arg::Path(path) => {
                let v = input.lookup(path);
                if let Some(r) = reads {
                    r.push(ReadTrace::path(p.path_texts.get(path as usize).cloned().unwrap_or_default(), v));
                }
                v
            }
            Arg::Const(c) => p.consts.get(c as usize),
            Arg::None | Arg::Term(_) => None,
        }
    }

    /// An atom's operand, as [`Engine::value`] gives it (a path or a constant borrowed without its
    /// frame).
    #[inline]
    fn side<'a, 'r: 'a, I: Input<'r>>(
        &'a self,
        arg: Arg,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        reads: Option<&mut Vec<ReadTrace>>,
    ) -> Result<TermValue<'a>, ()> {
        match arg {
            Arg::Path(_) | Arg::Const(_) | Arg::None => Ok(self.leaf(arg, input, reads).map(Cow::Borrowed)),
            Arg::Term(_) => self.value(arg, input, cx, reads, 0),
        }
    }

    /// [`Engine::side`], with the number of arithmetic or a state read as it is ([`Side`]), for
    /// the atoms that compare numbers ([`Engine::number_atoms`]).
    #[inline]
    fn number_side<'a, 'r: 'a, I: Input<'r>>(
        &'a self,
        arg: Arg,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        reads: Option<&mut Vec<ReadTrace>>,
    ) -> Result<Side<'a>, ()> {
        match arg {
            Arg::Path(_) | Arg::Const(_) | Arg::None => {
                Ok(Side::Value(self.leaf(arg, input, reads).map(Cow::Borrowed)))
            }
            Arg::Term(t) if number_term(&self.program, arg) => {
                Ok(match self.term_operand(t, input, cx, reads, 0)? {
                    term::Operand::Number(n) => Side::Number(n),
                    // Arithmetic and state reads give numbers or nothing.
                    term::Operand::Undefined | term::Operand::Other => Side::Value(None),
                })
            }
            Arg::Term(_) => self.value(arg, input, cx, reads, 0).map(Side::Value),
        }
    }

    /// An operand's value as arithmetic sees it ([`term::Operand`]), as [`Engine::value`] gives
    /// it (the same reads, calls and faults in the same order), without building a value for
    /// arithmetic and state reads.
    #[inline]
    fn operand<'r, I: Input<'r>>(
        &self,
        arg: Arg,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        reads: Option<&mut Vec<ReadTrace>>,
        depth: usize,
    ) -> Result<term::Operand, ()> {
        match arg {
            Arg::Term(t) => self.term_operand(t, input, cx, reads, depth),
            Arg::Path(_) | Arg::Const(_) | Arg::None => Ok(term::Operand::of(self.leaf(arg, input, reads))),
        }
    }

    /// [`Engine::operand`] of term `t`.
    fn term_operand<'r, I: Input<'r>>(
        &self,
        t: u32,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        mut reads: Option<&mut Vec<ReadTrace>>,
        depth: usize,
    ) -> Result<term::Operand, ()> {
        match self.program.terms.get(t as usize) {
            Some(TermCode::Arith { op, lhs, rhs }) if depth <= crate::program::MAX_TERM_DEPTH => {
                let l = self.operand(*lhs, input, cx, reads.as_deref_mut(), depth + 1)?;
                let r = self.operand(*rhs, input, cx, reads, depth + 1)?;
                Ok(term::Operand::number(term::arith_operands(*op, &l, &r)))
            }
            Some(TermCode::State { series, window, seconds }) if depth <= crate::program::MAX_TERM_DEPTH => {
                Ok(term::Operand::number(self.state(t, *series, *window, *seconds, input, cx, reads)?))
            }
            // Anything else (and the fault of a term nested too deeply) as a value.
            _ => Ok(term::Operand::of(self.value(Arg::Term(t), input, cx, reads, depth)?.as_deref())),
        }
    }

    /// State read `t` (of `series` over `window`): the sum (undefined only for a series the
    /// program does not have), or `Err` on a fault (its reason is in `cx.fault`).
    #[allow(clippy::too_many_arguments, reason = "a term's fields, passed down on the hot path")]
    #[inline(always)]
    fn state<'r, I: Input<'r>>(
        &self,
        t: u32,
        series: u32,
        window: verdict_vocab::Window,
        seconds: u32,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        reads: Option<&mut Vec<ReadTrace>>,
    ) -> Result<Option<serde_json::Number>, ()> {
        let p = &self.program;
        let Some(s) = p.series.get(series as usize) else { return Ok(None) };
        // The key on the stack for up to `INLINE_KEY` paths (one path, the usual key, on its own).
        let one: [(&str, Option<&Value>); 1];
        let mut inline: [(&str, Option<&Value>); INLINE_KEY];
        let spilled: Vec<(&str, Option<&Value>)>;
        let mut key_at = |k: u32| (p.path_texts.get(k as usize).map_or("", String::as_str), input.lookup(k));
        let key: &[(&str, Option<&Value>)] = match s.key.as_slice() {
            [] => &[],
            [k] => {
                one = [key_at(*k)];
                &one
            }
            keys if keys.len() <= INLINE_KEY => {
                inline = [("", None); INLINE_KEY];
                for (slot, k) in inline.iter_mut().zip(keys) {
                    *slot = key_at(*k);
                }
                inline.get(..keys.len()).unwrap_or(&[])
            }
            keys => {
                spilled = keys.iter().map(|k| key_at(*k)).collect();
                &spilled
            }
        };
        let result = match cx.host.periods.range(self.id, window, seconds, cx.env.now, &self.tz) {
            Some(range) => term::read_state(cx.env, cx.host, series, &s.name, key, range),
            None => Err(format!("state error: the {} window of {} is out of range", window.name(), s.name)),
        };
        if let Some(r) = reads {
            let text = p.term_texts.get(t as usize).cloned().unwrap_or_default();
            r.push(ReadTrace::host(text, result.clone().map(Value::Number)));
        }
        result.map(Some).map_err(|e| *cx.fault = Some(e))
    }

    #[inline]
    fn atom<'r, I: Input<'r>>(
        &self,
        atom: u32,
        site: u32,
        input: &mut I,
        memo: &mut Memo,
        cx: &mut Cx<'_, '_>,
        trace: Option<&mut Vec<TraceStep>>,
    ) -> Truth {
        let a = atom as usize;
        let cached = memo.get(a);
        if let (Some(v), None) = (cached, &trace) {
            return v;
        }
        let Some(def) = self.program.atoms.get(a) else { return Truth::Fault };
        let mut reads = trace.as_ref().map(|_| Vec::new());
        let v = match (cached, self.decide_atom(a, def, input, cx, reads.as_mut())) {
            (Some(v), _) => v,
            (None, Err(())) => Truth::Fault,
            (None, Ok(held)) => Truth::of(held),
        };
        // A fault is not kept: evaluating the atom again meets the same failure through the
        // memo of calls and reads, and sets its reason again.
        if v != Truth::Fault {
            memo.set(a, v);
        }
        if let (Some(t), Some(site), Some(read)) = (trace, self.program.sites.get(site as usize), reads) {
            t.push(TraceStep::Atom(AtomTrace {
                atom: site.text.clone(),
                span: site.span,
                line: site.line,
                column: site.column,
                read,
                result: v == Truth::True,
            }));
        }
        v
    }

    /// Whether atom `a` (`def`) holds, or `Err` on a fault of an operand (its reason is in
    /// `cx.fault`).
    fn decide_atom<'r, I: Input<'r>>(
        &self,
        a: usize,
        def: &crate::program::AtomDef,
        input: &mut I,
        cx: &mut Cx<'_, '_>,
        mut reads: Option<&mut Vec<ReadTrace>>,
    ) -> Result<bool, ()> {
        if self.number_atoms.get(a).copied().unwrap_or(false) {
            // A number of arithmetic or a state read compared with a number (a budget: a state
            // read plus an amount against a limit) without being made a value.
            let l = self.number_side(def.lhs, input, cx, reads.as_deref_mut())?;
            let r = self.number_side(def.rhs, input, cx, reads)?;
            if let (Some(x), Some(y)) = (l.number(), r.number())
                && let Some(held) = atom::compare_numbers(def.op, x, y)
            {
                return Ok(held);
            }
            let (l, r) = (l.value(), r.value());
            return Ok(atom::eval(def.op, l.as_deref(), r.as_deref(), None));
        }
        let l = self.side(def.lhs, input, cx, reads.as_deref_mut())?;
        let r = self.side(def.rhs, input, cx, reads)?;
        Ok(match (def.op, self.sets.get(a).and_then(Option::as_ref), &l) {
            (AtomOp::In, Some(set), Some(x)) => set_contains(set, x),
            (AtomOp::NotIn, Some(set), Some(x)) => !set_contains(set, x),
            _ => atom::eval(def.op, l.as_deref(), r.as_deref(), self.regexes.get(a).and_then(Option::as_ref)),
        })
    }

    /// Evaluates with a trace or exhaustively: every rule of every policy in order, no
    /// dispatch shortcuts; exhaustively, past the deciding rule and past failures too.
    fn evaluate_full<'r, I: Input<'r>>(
        &self,
        input: &mut I,
        env: &Env<'_>,
        mode: Mode,
        scratch: &mut Scratch,
        native: bool,
    ) -> EvaluationResult {
        let p = &self.program;
        scratch.begin(p.atoms.len(), p.defs.len(), p.policies.len());
        // Native code when no trace is asked (the same decisions and calls as the bytecode),
        // unless the caller wants the bytecode's atom memo (coverage).
        let jit = if mode.trace || !native { None } else { self.jit.get() };
        if let Some(jit) = jit {
            input.init_syms(&mut scratch.syms, p.paths.len());
            for &path in jit.native_paths() {
                self.sym(&mut scratch.syms, input, path);
            }
        }
        let mut entries = mode.trace.then(Vec::new);
        let (gate, window, scope) = self.gate(input, env.now);
        if let (Some(e), Some(passed)) = (entries.as_mut(), window) {
            e.push(TraceEntry::Gate(GateTrace { gate: "effective_window".into(), passed }));
        }
        if let (Some(e), Some(passed)) = (entries.as_mut(), scope) {
            e.push(TraceEntry::Gate(GateTrace { gate: "card_scope".into(), passed }));
        }
        let mut matches = mode.exhaustive.then(Vec::new);
        let mut evaluated = 0u64;
        let gated = match gate {
            Some(g) => Some((BundleResult::Gate(g), None)),
            None if !p.schema.is_empty() || !p.required.is_empty() => {
                let reason = self.schema_gate(input);
                if let Some(e) = entries.as_mut() {
                    e.push(TraceEntry::Gate(GateTrace { gate: "schema".into(), passed: reason.is_none() }));
                }
                reason.map(|r| (BundleResult::Schema, Some(r)))
            }
            None => None,
        };
        if let Some((bundle, reason)) = gated {
            let reasons: Vec<(u32, String)> = reason.map(|r| (SCHEMA, r)).into_iter().collect();
            let mut r = self.result(&Outcome { bundle, policies: &[], reasons: &reasons }, entries);
            if mode.exhaustive {
                r.matches = Some(Vec::new());
                r.rules_evaluated = Some(0);
            }
            self.finish(&mut r, input, env, scratch);
            return r;
        }
        for (pi, pol) in p.policies.iter().enumerate() {
            let mut rules = Vec::new();
            let mut result = None;
            for &ri in &pol.order {
                let rule = pol.rules.get(ri as usize);
                let mut steps = Vec::new();
                let held = self.rule_holds(jit, pol, pi, ri, input, env, scratch, entries.as_ref().map(|_| &mut steps));
                evaluated += 1;
                let error = (held == Truth::Fault)
                    .then(|| scratch.fault.clone().unwrap_or_else(|| policy::PANIC_FAULT.to_owned()));
                if entries.is_some() {
                    rules.push(RuleTrace {
                        rule: rule.map(|r| r.id.clone()).unwrap_or_default(),
                        held: held == Truth::True,
                        error: error.clone(),
                        atoms: steps,
                    });
                }
                if let (Some(m), Some(rule)) = (matches.as_mut(), rule) {
                    let effect = p.effects.get(rule.effect as usize).map(String::as_str);
                    m.extend(Match::of(held, &pol.id, &rule.id, effect, error.as_ref()));
                }
                if result.is_none() {
                    match held {
                        Truth::False => {}
                        Truth::True => result = Some(self.decided_by(pi, ri, input, env, scratch)),
                        Truth::Fault => {
                            scratch.policy_fault(pi);
                            result = Some(PolicyResult::Fault(ri));
                        }
                    }
                }
                scratch.fault = None;
                if result.is_some() && !mode.exhaustive {
                    break;
                }
            }
            let result = result.unwrap_or(PolicyResult::Default);
            scratch.results.push(result);
            if let Some(e) = entries.as_mut() {
                let kind = self.kind(pi, result).to_owned();
                e.push(TraceEntry::Policy(PolicyTrace { policy: pol.id.clone(), rules, decision: kind }));
            }
        }
        let bundle = self.combine(&scratch.results);
        let mut r = self.result(&Outcome { bundle, policies: &scratch.results, reasons: &scratch.reasons }, entries);
        if mode.exhaustive {
            r.matches = matches;
            r.rules_evaluated = Some(evaluated);
        }
        self.finish(&mut r, input, env, scratch);
        r
    }

    /// Adds what a stateful decision carries: its id, the updates its kind makes (LANGUAGE.md
    /// §5.2: every series whose `on` holds the bundle decision's kind and whose `add` is a number
    /// on this request, with its key values) and the holds among them.
    fn finish<'r, I: Input<'r>>(&self, r: &mut EvaluationResult, input: &mut I, env: &Env<'_>, scratch: &mut Scratch) {
        let p = &self.program;
        if p.series.is_empty() {
            return;
        }
        r.decision_id = Some(env.decision_id.map_or_else(crate::state::new_decision_id, str::to_owned));
        let kind = p.effects.iter().position(|e| *e == r.decision.kind);
        if let Err(reason) = self.record(kind, input, env, scratch) {
            r.refuse_updates(p.most_severe(), &reason);
            return;
        }
        for u in &scratch.recorded {
            let Some(s) = p.series.get(u.series as usize) else { continue };
            let key: Vec<Value> = s.key.iter().filter_map(|k| input.lookup(*k).cloned()).collect();
            if s.hold {
                r.holds.push(Hold { state: s.name.clone(), key: key.clone(), amount: u.amount.clone() });
            }
            r.updates.push(crate::state::Update { state: s.name.clone(), key, amount: u.amount.clone(), hold: s.hold });
        }
    }

    /// The updates a decision of effect `kind` makes (LANGUAGE.md §5.2), into `scratch.recorded`:
    /// every series whose `on` holds the kind and whose `add` is a number on this request. An
    /// update that cannot be made (its `add` faults, a key value is missing or not a string,
    /// number or bool) is the error that refuses the decision; nothing is recorded then.
    fn record<'r, I: Input<'r>>(
        &self,
        kind: Option<usize>,
        input: &mut I,
        env: &Env<'_>,
        scratch: &mut Scratch,
    ) -> Result<(), String> {
        scratch.recorded.clear();
        let Some(kind) = kind else { return Ok(()) };
        let p = &self.program;
        let mut cx = Cx { env, host: &mut scratch.host, fault: &mut scratch.fault };
        for (i, s) in p.series.iter().enumerate() {
            if !s.on.iter().any(|e| *e as usize == kind) {
                continue;
            }
            // An undefined `add` makes no update; a fault, or a key that cannot choose the
            // series, refuses the decision.
            let amount = match self.operand(s.add, input, &mut cx, None, 0) {
                Ok(term::Operand::Number(amount)) => amount,
                Ok(term::Operand::Undefined | term::Operand::Other) => continue,
                Err(()) => {
                    scratch.recorded.clear();
                    return Err(cx.fault.take().unwrap_or_else(|| policy::PANIC_FAULT.to_owned()));
                }
            };
            for k in &s.key {
                let text = p.path_texts.get(*k as usize).map_or("", String::as_str);
                if let Some(e) = term::key_error(&s.name, text, input.lookup(*k)) {
                    scratch.recorded.clear();
                    return Err(e);
                }
            }
            let series = u32::try_from(i).unwrap_or(u32::MAX);
            scratch.recorded.push(Recorded { series, amount, hold: s.hold });
        }
        Ok(())
    }

    /// The effect name (or `not_applicable`) of a policy result.
    pub fn kind(&self, pi: usize, r: PolicyResult) -> &str {
        self.effect_of(pi, r).and_then(|e| self.program.effects.get(e as usize)).map_or(NOT_APPLICABLE, String::as_str)
    }

    /// A policy's decision, borrowed from the engine's tables (and the outcome's reasons).
    pub fn policy_ref<'a>(&'a self, pi: usize, r: PolicyResult, reasons: &'a [(u32, String)]) -> DecisionRef<'a> {
        let pol = self.program.policies.get(pi);
        let rule = |ri: u32| pol.and_then(|p| p.rules.get(ri as usize));
        let computed = reasons.iter().find(|(p, _)| *p as usize == pi).map(|(_, m)| m.as_str());
        let (rule_id, reason) = match r {
            PolicyResult::Rule(ri) => (
                rule(ri).map(|r| r.id.as_str()),
                computed.unwrap_or_else(|| rule(ri).map_or("", |r| r.reason.as_str())),
            ),
            PolicyResult::Default => (None, pol.map_or("", |p| p.default_reason.as_str())),
            PolicyResult::Fault(ri) => (rule(ri).map(|r| r.id.as_str()), computed.unwrap_or(policy::PANIC_FAULT)),
        };
        DecisionRef { kind: self.kind(pi, r), policy_id: pol.map(|p| p.id.as_str()), rule_id, reason }
    }

    /// The kind of the bundle's decision of an outcome: [`Engine::decision_ref`]'s `kind`.
    fn kind_of(&self, outcome: &Outcome<'_>) -> &str {
        match outcome.bundle {
            BundleResult::Policy(i) => self.kind(i, outcome.policies.get(i).copied().unwrap_or(PolicyResult::Default)),
            BundleResult::Gate(_) | BundleResult::Schema | BundleResult::Refused => self.program.most_severe(),
            BundleResult::NotApplicable => NOT_APPLICABLE,
        }
    }

    /// The bundle's decision of an outcome, borrowed (no allocation): what a service that needs
    /// only the kind, the deciding rule and the reason reads.
    pub fn decision_ref<'a>(&'a self, outcome: &Outcome<'a>) -> DecisionRef<'a> {
        let most_severe = self.program.most_severe();
        match outcome.bundle {
            BundleResult::Policy(i) => {
                let r = outcome.policies.get(i).copied().unwrap_or(PolicyResult::Default);
                self.policy_ref(i, r, outcome.reasons)
            }
            BundleResult::Gate(g) => {
                DecisionRef { kind: most_severe, policy_id: None, rule_id: None, reason: g.reason() }
            }
            BundleResult::Schema => DecisionRef {
                kind: most_severe,
                policy_id: None,
                rule_id: None,
                reason: outcome.reasons.iter().find(|(p, _)| *p == SCHEMA).map_or(policy::SCHEMA_REASON, |(_, m)| m),
            },
            BundleResult::NotApplicable => {
                DecisionRef { kind: NOT_APPLICABLE, policy_id: None, rule_id: None, reason: policy::NO_POLICY_APPLIED }
            }
            BundleResult::Refused => DecisionRef {
                kind: most_severe,
                policy_id: None,
                rule_id: None,
                reason: outcome.reasons.iter().find(|(p, _)| *p == REFUSED).map_or("", |(_, m)| m),
            },
        }
    }

    fn policy_decision(&self, pi: usize, r: PolicyResult, reasons: &[(u32, String)]) -> Decision {
        let d = self.policy_ref(pi, r, reasons);
        let rule = match r {
            PolicyResult::Rule(ri) => self.program.policies.get(pi).and_then(|p| p.rules.get(ri as usize)),
            PolicyResult::Default | PolicyResult::Fault(_) => None,
        };
        Decision {
            kind: d.kind.to_owned(),
            matched_policy_id: d.policy_id.map(str::to_owned),
            matched_rule_id: d.rule_id.map(str::to_owned),
            reason: d.reason.to_owned(),
            codes: rule.map(|r| r.codes.clone()).unwrap_or_default(),
            obligations: rule.map(|r| r.obligations.clone()).unwrap_or_default(),
        }
    }

    /// The full, JSON-ready result of an outcome (without the stateful fields, which
    /// [`Engine::evaluate`] adds).
    pub fn result(&self, outcome: &Outcome<'_>, trace: Option<Vec<TraceEntry>>) -> EvaluationResult {
        let p = &self.program;
        let policy_decisions: Vec<Decision> =
            outcome.policies.iter().enumerate().map(|(i, r)| self.policy_decision(i, *r, outcome.reasons)).collect();
        let decision = match outcome.bundle {
            BundleResult::Gate(_) | BundleResult::Schema | BundleResult::NotApplicable | BundleResult::Refused => {
                let d = self.decision_ref(outcome);
                Decision::bare(d.kind, d.reason)
            }
            BundleResult::Policy(i) => {
                let mut d = policy_decisions.get(i).cloned().unwrap_or_else(|| Decision::bare(NOT_APPLICABLE, ""));
                let mut merged = Map::new();
                for other in policy_decisions.iter().filter(|o| o.kind == d.kind) {
                    for (k, v) in &other.obligations {
                        if !merged.contains_key(k) {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                }
                d.obligations = merged;
                d
            }
        };
        EvaluationResult {
            bundle_id: p.bundle_id.clone(),
            bundle_version: p.version.clone(),
            fingerprint: p.fingerprint.clone(),
            decision,
            policy_decisions,
            decision_id: None,
            holds: Vec::new(),
            matches: None,
            rules_evaluated: None,
            trace,
            updates: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }

    #[test]
    fn set_keys_are_exact() {
        let items = serde_json::json!(["a", 1, 2.5, null, true, [1]]);
        let Value::Array(items) = items else { return };
        let set = ConstSet::new(&items);
        for (v, want) in [
            (serde_json::json!("a"), true),
            (serde_json::json!(1.0), true),
            (serde_json::json!(2.5), true),
            (serde_json::json!(2), false),
            (serde_json::json!(1), true),
            (serde_json::json!(false), false),
            (serde_json::json!(true), true),
            (serde_json::json!([1.0]), true),
            (serde_json::json!("b"), false),
        ] {
            let by_eq = items.iter().any(|x| crate::value::deep_eq(x, &v));
            assert_eq!(by_eq, want, "{v}");
            assert_eq!(set_contains(&set, &v), want, "{v}");
        }
    }
}
