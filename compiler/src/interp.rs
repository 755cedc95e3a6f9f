//! The reference interpreter: a direct walk of the IR, written for clarity, not speed. It is the
//! oracle the VM and the JIT are tested against.
//!
//! Evaluation order is the contract for traces: policies in order; in a policy, rules in order
//! (`match priority`: by descending priority, then severity, then position); in a rule, the
//! condition left to right with `and`/`or` short-circuiting; definitions evaluated where referenced.

use crate::ir::*;
use serde_json::{Map, Value};
use std::borrow::Cow;
use verdict_grammar::printer::path_of;
use verdict_runtime::atom;
use verdict_runtime::decision::{
    AtomTrace, Decision, EvaluationResult, GateTrace, Hold, LetTrace, Match, NOT_APPLICABLE, PolicyTrace, ReadTrace,
    RuleTrace, TraceEntry, TraceStep,
};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::policy::{self, Truth};
use verdict_runtime::request::Request;
use verdict_runtime::state::Update;
use verdict_runtime::term::{self, HostMemo, TermValue};

/// A bundle ready to evaluate: the IR, its compiled regexes, its timezone and its fingerprint.
#[derive(Debug)]
pub struct Interpreter<'b> {
    bundle: &'b Bundle,
    /// The compiled pattern of every constant used as a `matches` pattern, by constant id.
    regexes: Vec<Option<regex::Regex>>,
    fingerprint: String,
    /// Rule evaluation order of each policy.
    orders: Vec<Vec<usize>>,
    tz: jiff::tz::TimeZone,
}

/// Why a bundle cannot be prepared for evaluation (a broken IR invariant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// A `matches` pattern does not compile (lowering checks patterns, so the IR was not lowered).
    #[error("the pattern `{pattern}` does not compile: {message}")]
    Regex { pattern: String, message: String },
    /// The timezone is not in the timezone database (lowering checks it).
    #[error("unknown timezone `{0}`")]
    TimeZone(String),
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
        let tz = match &bundle.timezone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| PrepareError::TimeZone(name.clone()))?,
        };
        let orders = bundle.policies.iter().map(|p| rule_order(bundle, p)).collect();
        Ok(Interpreter { bundle, regexes, fingerprint: crate::emit::fingerprint(bundle), orders, tz })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Evaluates one request in its environment; with a trace and every matching rule when the
    /// mode asks. Stateful results carry the updates the decision would record.
    pub fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> EvaluationResult {
        self.evaluate_memo(req, env, mode, &mut HostMemo::default())
    }

    /// [`Interpreter::evaluate`] with a memo of extern calls that outlives the evaluation (so a
    /// store that runs a decision again does not call the host again).
    pub fn evaluate_memo(&self, req: &Request, env: &Env<'_>, mode: Mode, host: &mut HostMemo) -> EvaluationResult {
        host.reads.clear();
        host.faulted = false;
        host.refused = false;
        let b = self.bundle;
        let mut entries: Option<Vec<TraceEntry>> = mode.trace.then(Vec::new);
        let mut eval = Eval { it: self, req, env, defs: vec![None; b.defs.len()], fault: None, host };
        let gated = eval.gates(entries.as_mut());
        let mut result = match gated {
            Some(reason) => {
                let mut r = self.result(Decision::bare(b.most_severe(), &reason), Vec::new(), entries);
                if mode.exhaustive {
                    r.matches = Some(Vec::new());
                    r.rules_evaluated = Some(0);
                }
                r
            }
            None => {
                let mut decisions = Vec::with_capacity(b.policies.len());
                let mut matches = mode.exhaustive.then(Vec::new);
                let mut evaluated = 0u64;
                for (p, order) in b.policies.iter().zip(&self.orders) {
                    let mut rules_trace = entries.as_ref().map(|_| Vec::new());
                    let d = eval.policy(p, order, rules_trace.as_mut(), matches.as_mut(), &mut evaluated);
                    if let (Some(e), Some(rules)) = (entries.as_mut(), rules_trace) {
                        e.push(TraceEntry::Policy(PolicyTrace {
                            policy: p.id.clone(),
                            rules,
                            decision: d.kind.clone(),
                        }));
                    }
                    decisions.push(d);
                }
                let decision = combine(b, &decisions);
                let mut r = self.result(decision, decisions, entries);
                if mode.exhaustive {
                    r.matches = matches;
                    r.rules_evaluated = Some(evaluated);
                }
                r
            }
        };
        eval.finish(&mut result);
        result
    }

    /// Evaluates a stateful decision against a store, as [`verdict_runtime::vm::Engine::evaluate_with_store`] does.
    pub fn evaluate_with_store(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: &dyn verdict_runtime::state::StateStore,
    ) -> EvaluationResult {
        let b = self.bundle;
        let mut host = HostMemo::default();
        let hold_ttl = b.hold_ttl.unwrap_or(verdict_runtime::program::DEFAULT_HOLD_TTL);
        verdict_runtime::state::decide_in_store(
            store,
            env,
            hold_ttl,
            &mut |env| self.evaluate_memo(req, env, mode, &mut host),
            &|reason| self.result(Decision::bare(b.most_severe(), reason), Vec::new(), None),
        )
    }

    fn result(
        &self,
        decision: Decision,
        policy_decisions: Vec<Decision>,
        trace: Option<Vec<TraceEntry>>,
    ) -> EvaluationResult {
        let b = self.bundle;
        EvaluationResult {
            bundle_id: b.id.clone(),
            bundle_version: b.version.clone(),
            fingerprint: self.fingerprint.clone(),
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

/// One evaluation: the request, its environment, and what it has decided so far.
struct Eval<'i, 'b, 'r, 'e, 'h> {
    it: &'i Interpreter<'b>,
    req: &'r Request,
    env: &'r Env<'e>,
    /// Definitions already evaluated for this request: each is evaluated once, where it is
    /// first referenced, so shared definitions cost linear time (and traces stay linear).
    defs: Vec<Option<Truth>>,
    /// What failed, when a condition evaluated to a fault.
    fault: Option<String>,
    /// Extern calls and state reads made so far.
    host: &'h mut HostMemo,
}

impl<'b: 'r, 'r> Eval<'_, 'b, 'r, '_, '_> {
    /// The gates before any policy: the effective window, the card scope, the run-time schema.
    /// The reason of the gate that refuses the request, if one does.
    fn gates(&mut self, mut entries: Option<&mut Vec<TraceEntry>>) -> Option<String> {
        let b = self.it.bundle;
        let req = self.req;
        if b.effective_from.is_some() || b.effective_until.is_some() {
            let gated = policy::window_gate(
                b.effective_from.as_ref().map(|f| f.at),
                b.effective_until.as_ref().map(|u| u.at),
                self.env.now,
            );
            if let Some(e) = entries.as_deref_mut() {
                e.push(TraceEntry::Gate(GateTrace { gate: "effective_window".into(), passed: gated.is_none() }));
            }
            if let Some(g) = gated {
                return Some(g.reason().to_owned());
            }
        }
        if let Some(scope) = &b.card_scope {
            let vendor = req.resource.as_ref().and_then(|r| r.get("vendor_id"));
            let ok = policy::in_scope(&scope.vendor_id, &scope.allowed_actions, req.action.as_ref(), vendor);
            if let Some(e) = entries.as_deref_mut() {
                e.push(TraceEntry::Gate(GateTrace { gate: "card_scope".into(), passed: ok }));
            }
            if !ok {
                return Some(policy::Gate::OutOfScope.reason().to_owned());
            }
        }
        let schema = b.schema.as_deref().unwrap_or(&[]);
        if schema.is_empty() && b.required.is_empty() {
            return None;
        }
        let text = |p: PathId| path_of(b.path(p).iter().map(String::as_str));
        let mut refusal = None;
        for (p, _) in &b.required {
            if req.lookup(b.path(*p)).is_none() {
                refusal = Some(format!("{}{}: required but missing", policy::SCHEMA_REASON, text(*p)));
                break;
            }
        }
        if refusal.is_none() {
            for e in schema {
                if let Some(v) = req.lookup(b.path(e.path))
                    && !e.ty.admits(v)
                {
                    refusal = Some(format!(
                        "{}{}: expected {}, got {}",
                        policy::SCHEMA_REASON,
                        text(e.path),
                        e.ty.name(),
                        verdict_runtime::value::type_name(v)
                    ));
                    break;
                }
            }
        }
        if let Some(e) = entries {
            e.push(TraceEntry::Gate(GateTrace { gate: "schema".into(), passed: refusal.is_none() }));
        }
        refusal
    }

    fn policy(
        &mut self,
        p: &Policy,
        order: &[usize],
        mut trace: Option<&mut Vec<RuleTrace>>,
        mut matches: Option<&mut Vec<Match>>,
        evaluated: &mut u64,
    ) -> Decision {
        let b = self.it.bundle;
        let mut decided: Option<Decision> = None;
        for &i in order {
            let Some(r) = p.rules.get(i) else { continue };
            let mut steps = trace.as_ref().map(|_| Vec::new());
            let held = self.cond(r.cond, steps.as_mut());
            *evaluated += 1;
            let error = (held == Truth::Fault).then(|| self.fault.clone().unwrap_or_default());
            if let (Some(t), Some(steps)) = (trace.as_deref_mut(), steps) {
                t.push(RuleTrace { rule: r.id.clone(), held: held == Truth::True, error: error.clone(), atoms: steps });
            }
            if let Some(m) = matches.as_deref_mut() {
                m.extend(Match::of(held, &p.id, &r.id, Some(b.effect(r.effect)), error.as_ref()));
            }
            if decided.is_none() {
                decided = match held {
                    Truth::False => None,
                    Truth::True => Some(self.rule_decision(p, r)),
                    Truth::Fault => {
                        self.host.faulted = true;
                        Some(fault_decision(b, p, r, error.unwrap_or_else(|| policy::PANIC_FAULT.to_owned())))
                    }
                };
            }
            self.fault = None;
            if decided.is_some() && matches.is_none() {
                break;
            }
        }
        if let Some(d) = decided {
            return d;
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

    /// The decision of a rule that held: its reason template is rendered now; a template that
    /// cannot be rendered (a failing extern or state read) makes it a fault.
    fn rule_decision(&mut self, p: &Policy, r: &Rule) -> Decision {
        let b = self.it.bundle;
        let reason = match &r.template {
            None => policy::rule_reason(&r.id, r.description.as_deref()),
            Some(t) => {
                let mut out = String::new();
                for piece in &t.pieces {
                    match piece {
                        Piece::Text(s) => out.push_str(s),
                        Piece::Term { operand, decimals } => match self.value(*operand, None) {
                            Ok(v) => out.push_str(&term::render(v.as_deref(), *decimals)),
                            Err(()) => {
                                let error = self.fault.take().unwrap_or_else(|| policy::PANIC_FAULT.to_owned());
                                self.host.faulted = true;
                                return fault_decision(b, p, r, error);
                            }
                        },
                    }
                }
                out
            }
        };
        Decision {
            kind: b.effect(r.effect).to_owned(),
            matched_policy_id: Some(p.id.clone()),
            matched_rule_id: Some(r.id.clone()),
            reason,
            codes: r.codes.clone(),
            obligations: r.obligations.clone(),
        }
    }

    /// Adds what a stateful decision carries: its id, its updates and holds (LANGUAGE.md §5.2).
    fn finish(&mut self, r: &mut EvaluationResult) {
        let b = self.it.bundle;
        if b.states.is_empty() {
            return;
        }
        r.decision_id = Some(self.env.decision_id.map_or_else(verdict_runtime::state::new_decision_id, str::to_owned));
        let Some(kind) = b.effects.iter().position(|e| *e == r.decision.kind) else { return };
        for s in &b.states {
            if !s.on.iter().any(|e| e.index() == kind) {
                continue;
            }
            // An undefined `add` makes no update; a fault, or a key that cannot choose the
            // series, fails closed (as the VM does).
            let amount = match self.value(s.add, None) {
                Ok(Some(amount)) => amount.into_owned(),
                Ok(None) => continue,
                Err(()) => {
                    let reason = self.fault.take().unwrap_or_else(|| policy::PANIC_FAULT.to_owned());
                    self.host.refused = r.refuse_updates(b.most_severe(), &reason);
                    return;
                }
            };
            let Value::Number(amount) = amount else { continue };
            let texts: Vec<String> = s.key.iter().map(|k| path_of(b.path(*k).iter().map(String::as_str))).collect();
            let key: Vec<(&str, Option<&Value>)> =
                s.key.iter().zip(&texts).map(|(k, t)| (t.as_str(), self.req.lookup(b.path(*k)))).collect();
            let key = match term::key_values(&s.name, &key) {
                Ok(key) => key,
                Err(reason) => {
                    self.host.refused = r.refuse_updates(b.most_severe(), &reason);
                    return;
                }
            };
            let hold = s.apply == Apply::Commit;
            if hold {
                r.holds.push(Hold { state: s.name.clone(), key: key.clone(), amount: amount.clone() });
            }
            r.updates.push(Update { state: s.name.clone(), key, amount, hold });
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
                let mut reads = trace.as_ref().map(|_| Vec::new());
                let operands =
                    self.value(a.lhs, reads.as_mut()).and_then(|l| Ok((l, self.value(a.rhs, reads.as_mut())?)));
                let result = match &operands {
                    Err(()) => Truth::Fault,
                    Ok((l, r)) => {
                        let re = match (a.op, a.rhs) {
                            (AtomOp::Matches, Operand::Const(c)) => {
                                self.it.regexes.get(c.index()).and_then(Option::as_ref)
                            }
                            _ => None,
                        };
                        Truth::of(atom::eval(a.op, l.as_deref(), r.as_deref(), re))
                    }
                };
                if let (Some(t), Some(read)) = (trace, reads) {
                    t.push(TraceStep::Atom(AtomTrace {
                        atom: a.text.clone(),
                        span: [node.span.start, node.span.end],
                        line: a.line,
                        column: a.column,
                        read,
                        result: result == Truth::True,
                    }));
                }
                result
            }
        }
    }

    /// An operand's value (`None` inside: undefined), or `Err` on a fault (its reason is in
    /// `self.fault`). Recursion follows the term's nesting, which lowering bounds.
    fn value(&mut self, o: Operand, mut reads: Option<&mut Vec<ReadTrace>>) -> Result<TermValue<'r>, ()> {
        let b: &'r Bundle = self.it.bundle;
        let req: &'r Request = self.req;
        let t = match o {
            Operand::Path(p) => {
                let v = req.lookup(b.path(p));
                if let Some(r) = reads {
                    r.push(ReadTrace::path(path_of(b.path(p).iter().map(String::as_str)), v));
                }
                return Ok(v.map(Cow::Borrowed));
            }
            Operand::Const(c) => return Ok(b.constant(c).map(Cow::Borrowed)),
            Operand::None => return Ok(None),
            Operand::Term(t) => t,
        };
        let Some(node) = b.term(t) else { return Ok(None) };
        Ok(match &node.term {
            Term::Arith(op, l, r) => {
                let l = self.value(*l, reads.as_deref_mut())?;
                let r = self.value(*r, reads)?;
                term::arith(*op, l.as_deref(), r.as_deref()).map(Cow::Owned)
            }
            Term::Func(f, a) => {
                let a = self.value(*a, reads)?;
                term::func(*f, a.as_deref()).map(Cow::Owned)
            }
            Term::Now(field) => Some(Cow::Owned(term::now_field(*field, self.env.now, &self.it.tz))),
            Term::State { state, window, seconds } => {
                let Some(s) = b.states.get(state.index()) else { return Ok(None) };
                let texts: Vec<String> = s.key.iter().map(|k| path_of(b.path(*k).iter().map(String::as_str))).collect();
                let key: Vec<(&str, Option<&Value>)> =
                    s.key.iter().zip(&texts).map(|(k, t)| (t.as_str(), req.lookup(b.path(*k)))).collect();
                let result = match term::window_range(*window, *seconds, self.env.now, &self.it.tz) {
                    Some(range) => term::read_state(self.env, self.host, state.0, &s.name, &key, range),
                    None => Err(format!("state error: the {} window of {} is out of range", window.name(), s.name)),
                };
                if let Some(r) = reads {
                    r.push(ReadTrace::host(node.text.clone(), result.clone().map(Value::Number)));
                }
                match result {
                    Ok(n) => Some(Cow::Owned(Value::Number(n))),
                    Err(e) => {
                        self.fault = Some(e);
                        return Err(());
                    }
                }
            }
            Term::Extern(e, args) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.value(*a, reads.as_deref_mut())?);
                }
                let Some(decl) = b.externs.get(e.index()) else { return Ok(None) };
                let refs: Vec<Option<&Value>> = values.iter().map(|v| v.as_deref()).collect();
                let result =
                    term::call_extern(self.env, self.host, e.0, &decl.name, &decl.params, &decl.returns, &refs);
                if let Some(r) = reads {
                    r.push(ReadTrace::host(node.text.clone(), result.clone()));
                }
                match result {
                    Ok(v) => Some(Cow::Owned(v)),
                    Err(err) => {
                        self.fault = Some(err);
                        return Err(());
                    }
                }
            }
        })
    }
}

/// The decision of a policy whose rule `r` could not be evaluated: the most severe effect,
/// naming the rule, with what failed as the reason.
fn fault_decision(b: &Bundle, p: &Policy, r: &Rule, error: String) -> Decision {
    Decision {
        kind: b.most_severe().to_owned(),
        matched_policy_id: Some(p.id.clone()),
        matched_rule_id: Some(r.id.clone()),
        reason: error,
        codes: Vec::new(),
        obligations: Map::new(),
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
