//! The reference interpreter: a direct walk of the IR, written for clarity, not speed. It is the
//! oracle the VM and the JIT are tested against.
//!
//! Evaluation order is the contract for traces: policies in order; in a policy, rules in order
//! (`match priority`: by descending priority, then severity, then position); in a rule, the
//! condition left to right with `and`/`or` short-circuiting; definitions evaluated where referenced.

use crate::ir::*;
use serde_json::{Map, Value};
use verdict_grammar::printer::path_of;
use verdict_runtime::atom;
use verdict_runtime::decision::{
    AtomTrace, Decision, EvaluationResult, GateTrace, LetTrace, NOT_APPLICABLE, PolicyTrace, ReadTrace, RuleTrace,
    TraceEntry, TraceStep,
};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::policy::{self, Truth};
use verdict_runtime::request::Request;

/// A bundle ready to evaluate: the IR, its compiled regexes and its fingerprint.
#[derive(Debug)]
pub struct Interpreter<'b> {
    bundle: &'b Bundle,
    /// The compiled pattern of every constant used as a `matches` pattern, by constant id.
    regexes: Vec<Option<regex::Regex>>,
    fingerprint: String,
    /// Rule evaluation order of each policy.
    orders: Vec<Vec<usize>>,
}

/// Why a bundle cannot be prepared for evaluation (a broken IR invariant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A `matches` pattern does not compile (lowering checks patterns, so the IR was not lowered).
    #[error("the pattern `{pattern}` does not compile: {message}")]
    Regex { pattern: String, message: String },
}

impl<'b> Interpreter<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Interpreter<'b>, PrepareError> {
        let mut regexes: Vec<Option<regex::Regex>> = vec![None; bundle.consts.len()];
        for node in &bundle.conds {
            if let Cond::Atom(Atom { op: AtomOp::Matches, rhs: Operand::Const(c), .. }) = &node.cond
                && let Some(Value::String(p)) = bundle.constant(*c)
                && let Some(slot) = regexes.get_mut(c.index())
                && slot.is_none()
            {
                *slot = Some(
                    regex::Regex::new(p)
                        .map_err(|e| PrepareError::Regex { pattern: p.clone(), message: e.to_string() })?,
                );
            }
        }
        let orders = bundle.policies.iter().map(|p| rule_order(bundle, p)).collect();
        Ok(Interpreter { bundle, regexes, fingerprint: crate::emit::fingerprint(bundle), orders })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Evaluates one request in its environment; with a trace when the mode asks.
    pub fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> EvaluationResult {
        let b = self.bundle;
        let now = env.now;
        let mut entries: Option<Vec<TraceEntry>> = mode.trace.then(Vec::new);
        let gate = |reason: &str, entries: Option<Vec<TraceEntry>>| EvaluationResult {
            bundle_id: b.id.clone(),
            bundle_version: b.version.clone(),
            fingerprint: self.fingerprint.clone(),
            decision: Decision::bare(b.most_severe(), reason),
            policy_decisions: Vec::new(),
            trace: entries,
        };
        if b.effective_from.is_some() || b.effective_until.is_some() {
            let gated = policy::window_gate(
                b.effective_from.as_ref().map(|f| f.at),
                b.effective_until.as_ref().map(|u| u.at),
                now,
            );
            if let Some(e) = entries.as_mut() {
                e.push(TraceEntry::Gate(GateTrace { gate: "effective_window".into(), passed: gated.is_none() }));
            }
            if let Some(g) = gated {
                return gate(g.reason(), entries);
            }
        }
        if let Some(scope) = &b.card_scope {
            let vendor = req.resource.as_ref().and_then(|r| r.get("vendor_id"));
            let ok = policy::in_scope(&scope.vendor_id, &scope.allowed_actions, req.action.as_ref(), vendor);
            if let Some(e) = entries.as_mut() {
                e.push(TraceEntry::Gate(GateTrace { gate: "card_scope".into(), passed: ok }));
            }
            if !ok {
                return gate(policy::Gate::OutOfScope.reason(), entries);
            }
        }
        let mut eval = Eval { it: self, req, defs: vec![None; b.defs.len()], fault: None };
        let mut decisions = Vec::with_capacity(b.policies.len());
        for (p, order) in b.policies.iter().zip(&self.orders) {
            let mut rules_trace = entries.as_ref().map(|_| Vec::new());
            let d = eval.policy(p, order, rules_trace.as_mut());
            if let (Some(e), Some(rules)) = (entries.as_mut(), rules_trace) {
                e.push(TraceEntry::Policy(PolicyTrace { policy: p.id.clone(), rules, decision: d.kind.clone() }));
            }
            decisions.push(d);
        }
        let decision = combine(b, &decisions);
        EvaluationResult {
            bundle_id: b.id.clone(),
            bundle_version: b.version.clone(),
            fingerprint: self.fingerprint.clone(),
            decision,
            policy_decisions: decisions,
            trace: entries,
        }
    }
}

/// One evaluation: the request, and what it has decided so far.
struct Eval<'i, 'b, 'r> {
    it: &'i Interpreter<'b>,
    req: &'r Request,
    /// Definitions already evaluated for this request: each is evaluated once, where it is
    /// first referenced, so shared definitions cost linear time (and traces stay linear).
    defs: Vec<Option<Truth>>,
    /// What failed, when a condition evaluated to a fault.
    fault: Option<String>,
}

impl Eval<'_, '_, '_> {
    fn policy(&mut self, p: &Policy, order: &[usize], mut trace: Option<&mut Vec<RuleTrace>>) -> Decision {
        let b = self.it.bundle;
        for &i in order {
            let Some(r) = p.rules.get(i) else { continue };
            let mut steps = trace.as_ref().map(|_| Vec::new());
            let held = self.cond(r.cond, steps.as_mut());
            let error = (held == Truth::Fault).then(|| self.fault.clone().unwrap_or_default());
            if let (Some(t), Some(steps)) = (trace.as_deref_mut(), steps) {
                t.push(RuleTrace { rule: r.id.clone(), held: held == Truth::True, error: error.clone(), atoms: steps });
            }
            match held {
                Truth::False => {}
                Truth::True => {
                    return Decision {
                        kind: b.effect(r.effect).to_owned(),
                        matched_policy_id: Some(p.id.clone()),
                        matched_rule_id: Some(r.id.clone()),
                        reason: policy::rule_reason(&r.id, r.description.as_deref()),
                        codes: r.codes.clone(),
                        obligations: r.obligations.clone(),
                    };
                }
                Truth::Fault => {
                    return Decision {
                        kind: b.most_severe().to_owned(),
                        matched_policy_id: Some(p.id.clone()),
                        matched_rule_id: Some(r.id.clone()),
                        reason: error.unwrap_or_default(),
                        codes: Vec::new(),
                        obligations: Map::new(),
                    };
                }
            }
        }
        let effect = p.default.map(|e| b.effect(e));
        Decision {
            kind: effect.unwrap_or(NOT_APPLICABLE).to_owned(),
            matched_policy_id: Some(p.id.clone()),
            matched_rule_id: None,
            reason: policy::default_reason(effect),
            codes: Vec::new(),
            obligations: Map::new(),
        }
    }

    /// Evaluates a condition. Recursion is bounded by the IR's depth invariant.
    fn cond(&mut self, id: CondId, mut trace: Option<&mut Vec<TraceStep>>) -> Truth {
        let b = self.it.bundle;
        let Some(node) = b.cond(id) else {
            return Truth::False;
        };
        match &node.cond {
            Cond::Const(v) => Truth::of(*v),
            Cond::Not(c) => !self.cond(*c, trace),
            Cond::All(v) => {
                for c in v {
                    match self.cond(*c, trace.as_deref_mut()) {
                        Truth::True => {}
                        other => return other,
                    }
                }
                Truth::True
            }
            Cond::Any(v) => {
                for c in v {
                    match self.cond(*c, trace.as_deref_mut()) {
                        Truth::False => {}
                        other => return other,
                    }
                }
                Truth::False
            }
            Cond::Ref(d) => {
                let Some(def) = b.defs.get(d.index()) else { return Truth::False };
                if let Some(known) = self.defs.get(d.index()).copied().flatten() {
                    if let Some(t) = trace {
                        t.push(TraceStep::Let(LetTrace { name: def.name.clone(), result: known == Truth::True }));
                    }
                    return known;
                }
                let v = self.cond(def.cond, trace);
                if v != Truth::Fault
                    && let Some(slot) = self.defs.get_mut(d.index())
                {
                    *slot = Some(v);
                }
                v
            }
            Cond::Atom(a) => {
                let l = self.it.operand(a.lhs, self.req);
                let r = self.it.operand(a.rhs, self.req);
                let re = match (a.op, a.rhs) {
                    (AtomOp::Matches, Operand::Const(c)) => self.it.regexes.get(c.index()).and_then(Option::as_ref),
                    _ => None,
                };
                let result = atom::eval(a.op, l, r, re);
                if let Some(t) = trace {
                    let mut read = Vec::new();
                    for (o, v) in [(a.lhs, l), (a.rhs, r)] {
                        if let Operand::Path(p) = o {
                            read.push(ReadTrace {
                                path: path_of(b.path(p).iter().map(String::as_str)),
                                value: v.cloned(),
                                missing: v.is_none(),
                            });
                        }
                    }
                    t.push(TraceStep::Atom(AtomTrace {
                        atom: a.text.clone(),
                        span: [node.span.start, node.span.end],
                        line: a.line,
                        column: a.column,
                        read,
                        result,
                    }));
                }
                Truth::of(result)
            }
        }
    }
}

impl<'b> Interpreter<'b> {
    fn operand<'r>(&'r self, o: Operand, req: &'r Request) -> Option<&'r Value> {
        match o {
            Operand::Path(p) => req.lookup(self.bundle.path(p)),
            Operand::Const(c) => self.bundle.constant(c),
            Operand::None => None,
        }
    }
}

/// The order rules are tried in: as written (`first`), or by descending priority, then severity
/// (most severe first), then position (`priority`).
pub fn rule_order(b: &Bundle, p: &Policy) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.rules.len()).collect();
    if p.match_mode == MatchMode::Priority {
        order.sort_by_key(|&i| p.rules.get(i).map(|r| (std::cmp::Reverse(r.priority), r.effect, i)));
    }
    let _ = b;
    order
}

/// Combines policy decisions into the bundle's decision, merging the obligations of every
/// policy decision with the final effect (first value of a key wins).
fn combine(b: &Bundle, decisions: &[Decision]) -> Decision {
    let severity = |d: &Decision| b.effects.iter().position(|e| *e == d.kind).and_then(|i| u32::try_from(i).ok());
    let first = b.combine == Combine::First;
    let Some(w) = policy::winner(first, decisions.iter().map(severity)).and_then(|i| decisions.get(i)) else {
        return Decision::bare(NOT_APPLICABLE, policy::NO_POLICY_APPLIED);
    };
    let mut out = w.clone();
    let mut merged = Map::new();
    for d in decisions.iter().filter(|d| d.kind == w.kind) {
        for (k, v) in &d.obligations {
            if !merged.contains_key(k) {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    out.obligations = merged;
    out
}
