//! A compiled bundle as the runtime sees it: tables plus condition bytecode. The compiler emits
//! it, the artifact format stores it, and [`Program::verify`] checks it before anything runs.

use crate::atom::AtomOp;
use crate::bytecode::{Op, Operand, decode_all};
use serde_json::{Map, Value};

/// An atom's operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arg {
    Path(u32),
    Const(u32),
    None,
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

#[derive(Debug, Clone, PartialEq)]
pub struct RuleCode {
    pub id: String,
    pub effect: u32,
    /// Code offset of the condition segment.
    pub entry: u32,
    /// The reason text (precomputed by the compiler).
    pub reason: String,
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Code offset of each definition's segment.
    pub defs: Vec<u32>,
    pub policies: Vec<PolicyCode>,
}

/// The deepest chain of definition calls a verified program may have.
pub const MAX_CALL_DEPTH: usize = 256;

/// Why a program is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError(pub String);

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid program: {}", self.0)
    }
}

fn bad(msg: impl Into<String>) -> VerifyError {
    VerifyError(msg.into())
}

impl Program {
    /// Checks every structural invariant the VM relies on:
    /// - every table index (effect, path, constant, atom, site, definition, rule) is in range;
    /// - the code decodes completely, ends with `Ret`, and every entry point is an instruction start;
    /// - jumps go forward to an instruction start (so every run ends), calls form no cycle and
    ///   nest at most [`MAX_CALL_DEPTH`] deep;
    /// - atoms have the operands their kind needs (a constant string pattern that compiles for
    ///   `matches`, no right operand for `exists`/`missing`);
    /// - rule orders are permutations and dispatch lists point at rules.
    pub fn verify(&self) -> Result<(), VerifyError> {
        if self.effects.is_empty() {
            return Err(bad("no effects"));
        }
        if self.path_texts.len() != self.paths.len() {
            return Err(bad("path texts do not match the path table"));
        }
        let n_effects = self.effects.len();
        for (i, a) in self.atoms.iter().enumerate() {
            for arg in [a.lhs, a.rhs] {
                match arg {
                    Arg::Path(p) if p as usize >= self.paths.len() => {
                        return Err(bad(format!("atom {i}: path {p} out of range")));
                    }
                    Arg::Const(c) if c as usize >= self.consts.len() => {
                        return Err(bad(format!("atom {i}: constant {c} out of range")));
                    }
                    _ => {}
                }
            }
            if a.lhs == Arg::None {
                return Err(bad(format!("atom {i}: no left operand")));
            }
            match a.op {
                AtomOp::Exists | AtomOp::Missing if a.rhs != Arg::None => {
                    return Err(bad(format!("atom {i}: `{}` takes one operand", a.op.yaml_kind())));
                }
                AtomOp::Exists | AtomOp::Missing => {}
                AtomOp::Matches => match a.rhs {
                    Arg::Const(c) => match self.consts.get(c as usize) {
                        Some(Value::String(p)) if regex::Regex::new(p).is_ok() => {}
                        _ => return Err(bad(format!("atom {i}: `matches` needs a valid pattern"))),
                    },
                    _ => return Err(bad(format!("atom {i}: `matches` needs a constant pattern"))),
                },
                _ if a.rhs == Arg::None => {
                    return Err(bad(format!("atom {i}: `{}` takes two operands", a.op.yaml_kind())));
                }
                _ => {}
            }
        }
        let decoded = decode_all(&self.code).map_err(|pc| bad(format!("undecodable instruction at {pc}")))?;
        if !matches!(decoded.last(), Some((_, Op::Ret {}))) {
            return Err(bad("code does not end with `Ret`"));
        }
        let starts: std::collections::HashSet<usize> = decoded.iter().map(|(pc, _)| *pc).collect();
        let is_start = |pc: u32| starts.contains(&(pc as usize));
        for e in &self.defs {
            if !is_start(*e) {
                return Err(bad(format!("definition entry {e} is not an instruction start")));
            }
        }
        for (pc, op) in &decoded {
            for (_, operand) in op.operands() {
                match operand {
                    Operand::atom(a) if a as usize >= self.atoms.len() => {
                        return Err(bad(format!("at {pc}: atom {a} out of range")));
                    }
                    Operand::site(s) if s as usize >= self.sites.len() => {
                        return Err(bad(format!("at {pc}: site {s} out of range")));
                    }
                    Operand::def(d) if d as usize >= self.defs.len() => {
                        return Err(bad(format!("at {pc}: definition {d} out of range")));
                    }
                    Operand::target(t) if t as usize <= *pc || !is_start(t) => {
                        return Err(bad(format!("at {pc}: jump target {t} is not a later instruction")));
                    }
                    _ => {}
                }
            }
        }
        self.verify_calls(&decoded)?;
        for p in &self.policies {
            if let Some(d) = p.default
                && d as usize >= n_effects
            {
                return Err(bad(format!("policy `{}`: default effect {d} out of range", p.id)));
            }
            let mut seen = vec![false; p.rules.len()];
            if p.order.len() != p.rules.len() {
                return Err(bad(format!("policy `{}`: rule order has the wrong length", p.id)));
            }
            for &i in &p.order {
                match seen.get_mut(i as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return Err(bad(format!("policy `{}`: rule order is not a permutation", p.id))),
                }
            }
            for r in &p.rules {
                if r.effect as usize >= n_effects {
                    return Err(bad(format!("rule `{}`: effect out of range", r.id)));
                }
                if !is_start(r.entry) {
                    return Err(bad(format!("rule `{}`: entry {} is not an instruction start", r.id, r.entry)));
                }
            }
            if let Some(d) = &p.dispatch {
                if d.path as usize >= self.paths.len() {
                    return Err(bad(format!("policy `{}`: dispatch path out of range", p.id)));
                }
                for list in d.keys.iter().map(|(_, l)| l).chain(std::iter::once(&d.other)) {
                    if list.iter().any(|&i| i as usize >= p.order.len())
                        || list.windows(2).any(|w| w.first() >= w.get(1))
                    {
                        return Err(bad(format!("policy `{}`: dispatch list out of range or out of order", p.id)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Definitions call each other without cycles and nest at most [`MAX_CALL_DEPTH`] deep.
    fn verify_calls(&self, decoded: &[(usize, Op)]) -> Result<(), VerifyError> {
        // The calls inside each definition's segment (from its entry to the next `Ret`).
        let index: std::collections::HashMap<usize, usize> =
            decoded.iter().enumerate().map(|(i, (pc, _))| (*pc, i)).collect();
        let mut calls: Vec<Vec<usize>> = Vec::with_capacity(self.defs.len());
        for e in &self.defs {
            let mut out = Vec::new();
            let mut i = index.get(&(*e as usize)).copied().unwrap_or(usize::MAX);
            while let Some((_, op)) = decoded.get(i) {
                match op {
                    Op::Ret {} => break,
                    Op::Call { def } => out.push(*def as usize),
                    _ => {}
                }
                i += 1;
            }
            calls.push(out);
        }
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
                            Some(1) => return Err(bad("definitions call each other in a cycle")),
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
                            return Err(bad("definitions nest too deeply"));
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
