//! A compiled bundle as the runtime sees it: tables plus condition bytecode. The compiler emits
//! it, the artifact format stores it, and [`Program::verify`] checks it before anything runs.

use crate::bytecode::{Op, Operand, decode_all};
use crate::value::Type;
use serde_json::{Map, Value};
use verdict_vocab::{Arith, AtomOp, Func, NowField, Window};

/// An operand: a request path, a constant, a term of the term table, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arg {
    Path(u32),
    Const(u32),
    /// A term ([`TermCode`]) by its index in [`Program::terms`].
    Term(u32),
    None,
}

/// A term (LANGUAGE.md §5.1–5.3). A term's operands refer only to earlier terms of the table, so
/// the table is acyclic and every evaluation ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TermCode {
    /// `lhs op rhs`; unary minus has `rhs == Arg::None`.
    Arith {
        op: Arith,
        lhs: Arg,
        rhs: Arg,
    },
    Func {
        func: Func,
        arg: Arg,
    },
    /// A field of the evaluation time in the bundle's timezone.
    Now {
        field: NowField,
    },
    /// A read of a state series in a window (`seconds` is the sliding window's length for
    /// `Window::Last`, else 0).
    State {
        series: u32,
        window: Window,
        seconds: u32,
    },
    /// A call of an extern by its index in [`Program::externs`].
    Extern {
        ext: u32,
        args: Vec<Arg>,
    },
}

/// An extern declaration: its name and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternCode {
    pub name: String,
    pub params: Vec<Type>,
    pub returns: Type,
}

/// A state series declaration (LANGUAGE.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCode {
    pub name: String,
    /// What one decision adds.
    pub add: Arg,
    /// The paths whose values select the series.
    pub key: Vec<u32>,
    /// The bundle decision kinds (effect indices) that update it.
    pub on: Vec<u32>,
    /// `apply: commit` (a hold until committed) rather than `apply: decision`.
    pub hold: bool,
}

/// A piece of a reason template (LANGUAGE.md §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// `{term}` or `{term:.Nf}`.
    Term {
        arg: Arg,
        decimals: Option<u8>,
    },
}

/// A distinct atom: evaluated at most once per request, whichever rules share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AtomDef {
    pub op: AtomOp,
    pub lhs: Arg,
    pub rhs: Arg,
}

/// Where an atom is written, for traces: one per occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub text: String,
    pub span: [u32; 2],
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardScope {
    pub vendor_id: String,
    pub allowed_actions: Vec<String>,
    /// The card's condition ids: a service fills `data.conditions_satisfied` with these from
    /// operator assertions, never from the caller.
    pub condition_ids: Vec<String>,
}

/// A point in time, as written and in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instant {
    pub text: String,
    pub nanos: i128,
}

impl Instant {
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_nanosecond(self.nanos).ok()
    }
}

/// A `let` definition: its name (for traces) and the code offset of its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefCode {
    pub name: String,
    pub entry: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleCode {
    pub id: String,
    pub effect: u32,
    /// Code offset of the condition segment.
    pub entry: u32,
    /// The reason text (precomputed by the compiler); for a template, its text as written.
    pub reason: String,
    /// A reason template, rendered per decision.
    pub template: Option<Vec<Piece>>,
    pub codes: Vec<String>,
    pub obligations: Map<String, Value>,
}

/// Rules that can only match when `path` is one of `keys` (see the compiler's `codegen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub path: u32,
    /// For each key, the positions (in `order`) of the rules that can match when the path's
    /// value is that string, in evaluation order.
    pub keys: Vec<(String, Vec<u32>)>,
    /// The rules that can match for any other value (or a missing path).
    pub other: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyCode {
    pub id: String,
    /// `None` is the `none` default.
    pub default: Option<u32>,
    pub default_reason: String,
    pub rules: Vec<RuleCode>,
    /// The order rules are tried in (indices into `rules`).
    pub order: Vec<u32>,
    pub dispatch: Option<Dispatch>,
}

/// Everything the VM needs to decide.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    pub bundle_id: String,
    pub version: String,
    pub fingerprint: String,
    pub effects: Vec<String>,
    pub combine_first: bool,
    pub effective_from: Option<Instant>,
    pub effective_until: Option<Instant>,
    pub card_scope: Option<CardScope>,
    pub paths: Vec<Vec<String>>,
    /// Each path in DSL spelling, for traces.
    pub path_texts: Vec<String>,
    pub consts: Vec<Value>,
    pub atoms: Vec<AtomDef>,
    pub sites: Vec<Site>,
    pub code: Vec<u32>,
    /// The `let` definitions: each a subroutine segment.
    pub defs: Vec<DefCode>,
    pub policies: Vec<PolicyCode>,
    /// Terms, each operand referring to earlier entries only.
    pub terms: Vec<TermCode>,
    /// Each term's canonical DSL text (traces show state reads and extern calls by it).
    pub term_texts: Vec<String>,
    pub externs: Vec<ExternCode>,
    pub series: Vec<SeriesCode>,
    /// The IANA timezone of calendar windows and `now.*` fields.
    pub timezone: String,
    /// Seconds an uncommitted hold counts.
    pub hold_ttl: u64,
    /// Declared path types, checked on every request (the run-time schema gate).
    pub schema: Vec<(u32, Type)>,
    /// Paths every request must have.
    pub required: Vec<u32>,
}

/// How deeply [`Program::necessary`] follows nested blocks.
fn max_block_depth() -> usize {
    MAX_TERM_DEPTH + 2
}

/// The default of `hold_ttl`: ten minutes.
pub const DEFAULT_HOLD_TTL: u64 = 600;
/// The longest sliding window: 400 days.
pub const MAX_WINDOW_SECONDS: u32 = 400 * 86_400;
/// The deepest nesting of terms a verified program may have.
pub const MAX_TERM_DEPTH: usize = 128;

/// The deepest chain of definition calls a verified program may have.
pub const MAX_CALL_DEPTH: usize = 256;

/// Why a program is refused: what broke which invariant, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no effects")]
    NoEffects,
    #[error("path texts do not match the path table")]
    PathTexts,
    #[error("atom {atom}: {what} {index} out of range")]
    AtomOperand { atom: usize, what: &'static str, index: u32 },
    #[error("atom {atom}: {problem}")]
    AtomShape { atom: usize, problem: &'static str },
    #[error("undecodable instruction at {pc}")]
    Undecodable { pc: usize },
    #[error("code does not end with `Ret`")]
    NoFinalRet,
    #[error("{what} entry {entry} is not an instruction start")]
    BadEntry { what: &'static str, entry: u32 },
    #[error("at {pc}: {what} {index} out of range")]
    OperandOutOfRange { pc: usize, what: &'static str, index: u32 },
    #[error("at {pc}: jump target {target} is not a later instruction of its segment")]
    BadJump { pc: usize, target: u32 },
    #[error("the segment at {entry} runs past the end of the code")]
    UnendedSegment { entry: u32 },
    #[error("the segment at {entry} overlaps another entry's segment")]
    OverlappingSegments { entry: u32 },
    #[error("definitions call each other in a cycle")]
    CallCycle,
    #[error("definitions nest too deeply")]
    CallsTooDeep,
    #[error("policy `{policy}`: {problem}")]
    Policy { policy: String, problem: &'static str },
    #[error("rule `{rule}`: {problem}")]
    Rule { rule: String, problem: &'static str },
    #[error("regex of atom {atom}: {message}")]
    Regex { atom: usize, message: String },
    #[error("effective time out of range")]
    TimeOutOfRange,
    #[error("term {term}: {problem}")]
    Term { term: usize, problem: &'static str },
    #[error("terms nest more than {MAX_TERM_DEPTH} deep")]
    TermsTooDeep,
    #[error("state series `{series}`: {problem}")]
    Series { series: String, problem: &'static str },
    #[error("{what}: path {path} out of range")]
    PathOutOfRange { what: &'static str, path: u32 },
    #[error("unknown timezone `{0}`")]
    TimeZone(String),
}

/// The instructions of the condition segment that starts at `entry`: from `entry` on, up to and
/// including the first `Ret` at or after every jump target seen so far. Every instruction a run
/// from `entry` can reach lies inside it (jumps only go forward, and the verifier checks they
/// stay inside). The verifier, the VM and the JIT all take a segment's extent from here.
pub fn segment(code: &[u32], entry: u32) -> Result<Vec<(usize, Op)>, VerifyError> {
    let mut out = Vec::new();
    let mut pc = entry as usize;
    let mut furthest = pc;
    loop {
        let Some((op, next)) = Op::decode(code, pc) else {
            return Err(if pc >= code.len() {
                VerifyError::UnendedSegment { entry }
            } else {
                VerifyError::Undecodable { pc }
            });
        };
        out.push((pc, op));
        match op {
            Op::JumpIfFalse { target } | Op::JumpIfTrue { target } => {
                if target as usize <= pc {
                    return Err(VerifyError::BadJump { pc, target });
                }
                furthest = furthest.max(target as usize);
            }
            Op::Ret {} if pc >= furthest => return Ok(out),
            _ => {}
        }
        pc = next;
    }
}

impl Program {
    /// The most severe effect (the first declared), which every fault and gate decides.
    pub fn most_severe(&self) -> &str {
        self.effects.first().map_or("deny", String::as_str)
    }

    /// Whether a decision may depend on the evaluation time: an effective window, a `now.*`
    /// term, or state (windows are read and updates recorded at `now`). Every other decision is
    /// the same at any time, so an embedder need not read the clock for it.
    pub fn reads_clock(&self) -> bool {
        self.effective_from.is_some()
            || self.effective_until.is_some()
            || !self.series.is_empty()
            || self.terms.iter().any(|t| matches!(t, TermCode::Now { .. }))
    }

    /// Checks every structural invariant the VM and the JIT rely on:
    /// - every table index (effect, path, constant, atom, site, definition, rule) is in range;
    /// - the code decodes completely and ends with `Ret`; every entry point (rule or definition)
    ///   starts a [`segment`] whose jumps go forward to instruction starts inside it (so every
    ///   run ends, and the JIT compiles exactly what the VM can run);
    /// - definition calls, taken over whole segments, form no cycle and nest at most
    ///   [`MAX_CALL_DEPTH`] deep;
    /// - atoms have the operands their kind needs (a constant string pattern that compiles for
    ///   `matches`, no right operand for `exists`/`missing`);
    /// - rule orders are permutations and dispatch lists point at rules.
    pub fn verify(&self) -> Result<(), VerifyError> {
        if self.effects.is_empty() {
            return Err(VerifyError::NoEffects);
        }
        if self.path_texts.len() != self.paths.len() {
            return Err(VerifyError::PathTexts);
        }
        let n_effects = self.effects.len();
        self.verify_terms()?;
        for (i, a) in self.atoms.iter().enumerate() {
            for arg in [a.lhs, a.rhs] {
                match arg {
                    Arg::Path(p) if p as usize >= self.paths.len() => {
                        return Err(VerifyError::AtomOperand { atom: i, what: "path", index: p });
                    }
                    Arg::Const(c) if c as usize >= self.consts.len() => {
                        return Err(VerifyError::AtomOperand { atom: i, what: "constant", index: c });
                    }
                    Arg::Term(t) if t as usize >= self.terms.len() => {
                        return Err(VerifyError::AtomOperand { atom: i, what: "term", index: t });
                    }
                    _ => {}
                }
            }
            let shape = |problem| Err(VerifyError::AtomShape { atom: i, problem });
            if a.lhs == Arg::None {
                return shape("no left operand");
            }
            match a.op {
                op if op.is_unary() && a.rhs != Arg::None => return shape("takes one operand"),
                AtomOp::Holds if !matches!(a.lhs, Arg::Term(_)) => return shape("`holds` needs a term"),
                AtomOp::Exists | AtomOp::Missing | AtomOp::Holds => {}
                AtomOp::Matches => match a.rhs {
                    Arg::Const(c) => match self.consts.get(c as usize) {
                        Some(Value::String(p)) if regex::Regex::new(p).is_ok() => {}
                        _ => return shape("`matches` needs a valid pattern"),
                    },
                    _ => return shape("`matches` needs a constant pattern"),
                },
                _ if a.rhs == Arg::None => return shape("takes two operands"),
                _ => {}
            }
        }
        let decoded = decode_all(&self.code).map_err(|pc| VerifyError::Undecodable { pc })?;
        if !matches!(decoded.last(), Some((_, Op::Ret {}))) {
            return Err(VerifyError::NoFinalRet);
        }
        let starts: std::collections::HashSet<usize> = decoded.iter().map(|(pc, _)| *pc).collect();
        let is_start = |pc: u32| starts.contains(&(pc as usize));
        for (pc, op) in &decoded {
            for (_, operand) in op.operands() {
                let out_of_range = |what, index| Err(VerifyError::OperandOutOfRange { pc: *pc, what, index });
                match operand {
                    Operand::atom(a) if a as usize >= self.atoms.len() => return out_of_range("atom", a),
                    Operand::site(s) if s as usize >= self.sites.len() => return out_of_range("site", s),
                    Operand::def(d) if d as usize >= self.defs.len() => return out_of_range("definition", d),
                    Operand::target(t) if t as usize <= *pc || !is_start(t) => {
                        return Err(VerifyError::BadJump { pc: *pc, target: t });
                    }
                    _ => {}
                }
            }
        }
        // Every entry starts a segment; segments are disjoint (so verifying, compiling and running
        // them is linear in the code); the calls of a definition are those of its segment.
        let mut entries: Vec<(u32, Option<usize>)> =
            self.defs.iter().enumerate().map(|(i, d)| (d.entry, Some(i))).collect();
        entries.extend(self.policies.iter().flat_map(|p| p.rules.iter().map(|r| (r.entry, None))));
        entries.sort_unstable();
        let mut calls: Vec<Vec<usize>> = vec![Vec::new(); self.defs.len()];
        let mut free_from = 0usize;
        for &(entry, def) in &entries {
            let what = if def.is_some() { "definition" } else { "rule" };
            if !is_start(entry) {
                return Err(VerifyError::BadEntry { what, entry });
            }
            if (entry as usize) < free_from {
                return Err(VerifyError::OverlappingSegments { entry });
            }
            let ops = segment(&self.code, entry)?;
            free_from = ops.last().map_or(free_from, |(pc, _)| pc + 1);
            if let Some(slot) = def.and_then(|d| calls.get_mut(d)) {
                slot.extend(ops.iter().filter_map(|(_, op)| match op {
                    Op::Call { def } => Some(*def as usize),
                    _ => None,
                }));
            }
        }
        self.verify_calls(&calls)?;
        for p in &self.policies {
            let policy = |problem| Err(VerifyError::Policy { policy: p.id.clone(), problem });
            if let Some(d) = p.default
                && d as usize >= n_effects
            {
                return policy("default effect out of range");
            }
            let mut seen = vec![false; p.rules.len()];
            if p.order.len() != p.rules.len() {
                return policy("rule order has the wrong length");
            }
            for &i in &p.order {
                match seen.get_mut(i as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return policy("rule order is not a permutation"),
                }
            }
            for r in &p.rules {
                if r.effect as usize >= n_effects {
                    return Err(VerifyError::Rule { rule: r.id.clone(), problem: "effect out of range" });
                }
                for piece in r.template.iter().flatten() {
                    if let Piece::Term { arg, decimals } = piece {
                        let bad = self.arg_problem(*arg, self.terms.len()).or(match (arg, decimals) {
                            (Arg::None, _) => Some("a template piece without a term"),
                            (_, Some(d)) if *d > 17 => Some("more than 17 decimals"),
                            _ => None,
                        });
                        if let Some(problem) = bad {
                            return Err(VerifyError::Rule { rule: r.id.clone(), problem });
                        }
                    }
                }
            }
            if let Some(d) = &p.dispatch {
                if d.path as usize >= self.paths.len() {
                    return policy("dispatch path out of range");
                }
                for list in d.keys.iter().map(|(_, l)| l).chain(std::iter::once(&d.other)) {
                    if list.iter().any(|&i| i as usize >= p.order.len())
                        || list.windows(2).any(|w| w.first() >= w.get(1))
                    {
                        return policy("dispatch list out of range or out of order");
                    }
                }
                self.verify_dispatch(p, d)?;
            }
        }
        if !self.timezone.is_empty() && jiff::tz::TimeZone::get(&self.timezone).is_err() {
            return Err(VerifyError::TimeZone(self.timezone.clone()));
        }
        Ok(())
    }

    /// A dispatch table leaves a rule out of a key's list only where the code proves the rule
    /// cannot hold for that value: the rule's condition starts with conjuncts one of which is an
    /// atom `path == "s"` or `path in [..strings..]` that the value fails. (Leading conjuncts run
    /// first, so a rule left out makes no call and meets no fault either.) A table that skips a
    /// rule the code does not rule out is refused: every backend, traced or not, then decides
    /// alike whatever an artifact claims.
    fn verify_dispatch(&self, p: &PolicyCode, d: &Dispatch) -> Result<(), VerifyError> {
        let mut memo: std::collections::HashMap<u32, Option<Vec<String>>> = std::collections::HashMap::new();
        let fallible = self.fallible_terms();
        let mut reach = std::collections::HashMap::new();
        let lying = || {
            Err(VerifyError::Policy {
                policy: p.id.clone(),
                problem: "dispatch table skips a rule the code does not rule out",
            })
        };
        for (pos, &ri) in p.order.iter().enumerate() {
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            let Some(rule) = p.rules.get(ri as usize) else { continue };
            // A rule that may call an extern or read state is never skipped (as codegen builds
            // tables): a later conjunct that rules it out comes after calls and faults the
            // interpreter makes.
            let allowed = if self.reaches_fallible(rule.entry, &fallible, &mut reach, 0) {
                None
            } else {
                self.allowed_values(rule.entry, d.path, &mut memo, 0)
            };
            for (key, list) in &d.keys {
                let needed = allowed.as_ref().is_none_or(|a| a.contains(key));
                if needed && list.binary_search(&pos).is_err() {
                    return lying();
                }
            }
            // Any other value, or a missing path: needed unless every allowed value is a key.
            let needed = allowed.as_ref().is_none_or(|a| a.iter().any(|s| !d.keys.iter().any(|(k, _)| k == s)));
            if needed && d.other.binary_search(&pos).is_err() {
                return lying();
            }
        }
        Ok(())
    }

    /// Per term: whether evaluating it may call an extern or read state (and so fault), itself or
    /// through its operands. Terms refer only to earlier terms, so one pass decides it.
    fn fallible_terms(&self) -> Vec<bool> {
        let mut out: Vec<bool> = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let arg =
                |a: &Arg, out: &[bool]| matches!(a, Arg::Term(i) if out.get(*i as usize).copied().unwrap_or(true));
            let f = match t {
                TermCode::State { .. } | TermCode::Extern { .. } => true,
                TermCode::Arith { lhs, rhs, .. } => arg(lhs, &out) || arg(rhs, &out),
                TermCode::Func { arg: a, .. } => arg(a, &out),
                TermCode::Now { .. } => false,
            };
            out.push(f);
        }
        out
    }

    /// Whether the segment at `entry`, or a definition it calls, evaluates an atom on a term that
    /// may fault ([`Program::fallible_terms`]). Undecodable code or calls nested beyond
    /// [`MAX_CALL_DEPTH`] count as fallible.
    fn reaches_fallible(
        &self,
        entry: u32,
        fallible: &[bool],
        memo: &mut std::collections::HashMap<u32, bool>,
        depth: usize,
    ) -> bool {
        if let Some(known) = memo.get(&entry) {
            return *known;
        }
        if depth > MAX_CALL_DEPTH {
            return true;
        }
        let Ok(ops) = segment(&self.code, entry) else { return true };
        let term = |a: Arg| matches!(a, Arg::Term(i) if fallible.get(i as usize).copied().unwrap_or(true));
        let mut found = false;
        for (_, op) in &ops {
            found = match *op {
                Op::Atom { atom, .. } => self.atoms.get(atom as usize).is_none_or(|a| term(a.lhs) || term(a.rhs)),
                Op::Call { def } => match self.defs.get(def as usize) {
                    Some(d) => self.reaches_fallible(d.entry, fallible, memo, depth + 1),
                    None => true,
                },
                _ => false,
            };
            if found {
                break;
            }
        }
        memo.insert(entry, found);
        found
    }

    /// The strings the value at `path` must be one of for the segment at `entry` to hold, as
    /// its code proves it (see [`Program::necessary`]), or `None` when the code does not say.
    fn allowed_values(
        &self,
        entry: u32,
        path: u32,
        memo: &mut std::collections::HashMap<u32, Option<Vec<String>>>,
        depth: usize,
    ) -> Option<Vec<String>> {
        if let Some(known) = memo.get(&entry) {
            return known.clone();
        }
        if depth > MAX_CALL_DEPTH {
            return None;
        }
        let ops = segment(&self.code, entry).ok()?;
        let end = ops.last().map(|(pc, _)| *pc)?;
        let mut necessary = Vec::new();
        self.necessary(&ops, 0, ops.len().saturating_sub(1), &mut vec![end], &mut necessary);
        let mut allowed: Option<Vec<String>> = None;
        for op in necessary {
            let set = match op {
                Op::Atom { atom, .. } => self.atom_strings(atom, path),
                Op::Call { def } => {
                    let inner = self.defs.get(def as usize).map(|d| d.entry);
                    inner.and_then(|e| self.allowed_values(e, path, memo, depth + 1))
                }
                _ => None,
            };
            if let Some(set) = set {
                allowed = Some(match allowed.take() {
                    None => set,
                    Some(prev) => prev.into_iter().filter(|s| set.contains(s)).collect(),
                });
            }
        }
        memo.insert(entry, allowed.clone());
        allowed
    }

    /// Collects the atoms and calls of `ops[lo..hi]` that must be true for the code to reach the
    /// end of that range with `F` true: the conjuncts of `and` chains as codegen lays them out. A
    /// conjunct is closed by arriving at a *fail point* — a position where `F` false means the
    /// whole segment is false (the final `Ret`, or a `JumpIfFalse` to a fail point) — by falling
    /// through or by a `JumpIfFalse`. A nested block is entered only when every jump in it stays
    /// inside it (so it is left only through its closing fail point); anything else ends the scan
    /// (the result is then smaller, never wrong).
    fn necessary(&self, ops: &[(usize, Op)], lo: usize, hi: usize, fails: &mut Vec<usize>, out: &mut Vec<Op>) {
        let pc_at = |i: usize| ops.get(i).map_or(usize::MAX, |(pc, _)| *pc);
        let is_fail_jump = |i: usize, fails: &[usize]| matches!(ops.get(i), Some((_, Op::JumpIfFalse { target })) if fails.contains(&(*target as usize)));
        // Codegen nests blocks as deep as conditions (at most 128); deeper nesting in a crafted
        // program just ends the scan.
        if fails.len() > max_block_depth() {
            return;
        }
        let mut i = lo;
        while i < hi {
            let Some((_, op)) = ops.get(i) else { return };
            // A single atom or call closed at once.
            if matches!(op, Op::Atom { .. } | Op::Call { .. }) {
                if fails.contains(&pc_at(i + 1)) {
                    out.push(*op);
                    i += 1;
                    continue;
                }
                if is_fail_jump(i + 1, fails) {
                    out.push(*op);
                    i += 2;
                    continue;
                }
            }
            // A block closed by the next `JumpIfFalse` to a fail point at `m`.
            let Some(m) = (i + 1..hi).find(|&m| is_fail_jump(m, fails)) else { return };
            let contained = ops.get(i..m).is_some_and(|block| {
                block.iter().all(|(_, op)| match op {
                    Op::JumpIfFalse { target } | Op::JumpIfTrue { target } => {
                        (*target as usize) > pc_at(i) && (*target as usize) <= pc_at(m)
                    }
                    _ => true,
                })
            });
            if !contained {
                return;
            }
            fails.push(pc_at(m));
            self.necessary(ops, i, m, fails, out);
            fails.pop();
            i = m + 1;
        }
    }

    /// The strings an atom `path == "s"` or `path in [strings]` allows, if it is one.
    fn atom_strings(&self, atom: u32, path: u32) -> Option<Vec<String>> {
        let a = self.atoms.get(atom as usize)?;
        let (Arg::Path(p), Arg::Const(c)) = (a.lhs, a.rhs) else { return None };
        if p != path {
            return None;
        }
        match (a.op, self.consts.get(c as usize)?) {
            (AtomOp::Eq, Value::String(s)) => Some(vec![s.clone()]),
            (AtomOp::In, Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => None,
        }
    }

    /// What is wrong with an operand that may refer to the first `terms` terms, if anything.
    fn arg_problem(&self, arg: Arg, terms: usize) -> Option<&'static str> {
        match arg {
            Arg::Path(p) if p as usize >= self.paths.len() => Some("path out of range"),
            Arg::Const(c) if c as usize >= self.consts.len() => Some("constant out of range"),
            Arg::Term(t) if t as usize >= terms => Some("term out of range or not earlier"),
            _ => None,
        }
    }

    /// Terms refer only to earlier terms (acyclic), nest at most [`MAX_TERM_DEPTH`] deep, and
    /// have the operands their kind needs; state series and run-time schema paths are in range.
    fn verify_terms(&self) -> Result<(), VerifyError> {
        let mut depth: Vec<usize> = Vec::with_capacity(self.terms.len());
        for (i, t) in self.terms.iter().enumerate() {
            let bad = |problem| Err(VerifyError::Term { term: i, problem });
            let args: Vec<Arg> = match t {
                TermCode::Arith { op, lhs, rhs } => {
                    if *lhs == Arg::None || (*rhs == Arg::None) != (*op == Arith::Neg) {
                        return bad("wrong operands for the operator");
                    }
                    vec![*lhs, *rhs]
                }
                TermCode::Func { arg, .. } => {
                    if *arg == Arg::None {
                        return bad("a function without its argument");
                    }
                    vec![*arg]
                }
                TermCode::Now { .. } => Vec::new(),
                TermCode::State { series, window, seconds } => {
                    if *series as usize >= self.series.len() {
                        return bad("state series out of range");
                    }
                    let sliding = window.info().takes_duration;
                    if sliding != (*seconds > 0) || *seconds > MAX_WINDOW_SECONDS {
                        return bad("window length out of range");
                    }
                    Vec::new()
                }
                TermCode::Extern { ext, args } => {
                    match self.externs.get(*ext as usize) {
                        None => return bad("extern out of range"),
                        Some(e) if e.params.len() != args.len() => return bad("wrong number of arguments"),
                        Some(_) => {}
                    }
                    if args.contains(&Arg::None) {
                        return bad("a missing argument");
                    }
                    args.clone()
                }
            };
            let mut d = 1;
            for a in args {
                if let Some(problem) = self.arg_problem(a, i) {
                    return bad(problem);
                }
                if let Arg::Term(c) = a {
                    d = d.max(1 + depth.get(c as usize).copied().unwrap_or(0));
                }
            }
            if d > MAX_TERM_DEPTH {
                return Err(VerifyError::TermsTooDeep);
            }
            depth.push(d);
        }
        if self.term_texts.len() != self.terms.len() {
            return Err(VerifyError::Term {
                term: self.terms.len(),
                problem: "term texts do not match the term table",
            });
        }
        for s in &self.series {
            let bad = |problem| Err(VerifyError::Series { series: s.name.clone(), problem });
            if s.add == Arg::None {
                return bad("nothing to add");
            }
            if let Some(problem) = self.arg_problem(s.add, self.terms.len()) {
                return bad(problem);
            }
            if s.key.iter().any(|p| *p as usize >= self.paths.len()) {
                return bad("key path out of range");
            }
            if s.on.iter().any(|e| *e as usize >= self.effects.len()) {
                return bad("effect out of range");
            }
        }
        for &p in self.schema.iter().map(|(p, _)| p).chain(&self.required) {
            if p as usize >= self.paths.len() {
                return Err(VerifyError::PathOutOfRange { what: "schema", path: p });
            }
        }
        Ok(())
    }

    /// Definitions call each other without cycles and nest at most [`MAX_CALL_DEPTH`] deep.
    /// `calls[d]` lists the definitions the segment of definition `d` calls.
    fn verify_calls(&self, calls: &[Vec<usize>]) -> Result<(), VerifyError> {
        // Longest call chain by iterative DFS with colours; a grey node reached again is a cycle.
        let n = self.defs.len();
        let mut depth: Vec<Option<usize>> = vec![None; n];
        let mut state = vec![0u8; n];
        for root in 0..n {
            if state.get(root) == Some(&2) {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some((node, child)) = stack.pop() {
                if let Some(s) = state.get_mut(node) {
                    *s = 1;
                }
                let next = calls.get(node).and_then(|c| c.get(child)).copied();
                match next {
                    Some(c) => {
                        stack.push((node, child + 1));
                        match state.get(c) {
                            Some(1) => return Err(VerifyError::CallCycle),
                            Some(0) => stack.push((c, 0)),
                            _ => {}
                        }
                    }
                    None => {
                        let d = 1 + calls
                            .get(node)
                            .map(|cs| cs.iter().filter_map(|c| depth.get(*c).copied().flatten()).max().unwrap_or(0))
                            .unwrap_or(0);
                        if d > MAX_CALL_DEPTH {
                            return Err(VerifyError::CallsTooDeep);
                        }
                        if let Some(slot) = depth.get_mut(node) {
                            *slot = Some(d);
                        }
                        if let Some(s) = state.get_mut(node) {
                            *s = 2;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
