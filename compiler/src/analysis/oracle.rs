//! The reference interpreter as the judge of every existential claim: a witness is reported only
//! after [`Oracle`] evaluated it and saw what the finding says.
//!
//! Evaluation happens at [`witness_time`], a moment inside the bundle's effective window, so the
//! window gate never hides what the policies decide.
//!
//! State and externs: every state series reads as empty (the state of a fresh store, a state
//! every deployment passes through), and no extern is bound. A witness whose evaluation faults
//! (an extern call, a state read whose key is missing) is no witness: a fault decides by the
//! host's failure, not by the rules, so the oracle answers `None` for it; so is one whose state
//! updates are refused (LANGUAGE.md §5.2), whose decision is the refusal.

use crate::interp::Interpreter;
use crate::ir::{Bundle, Combine, MatchMode, Policy};
use serde_json::Value;
use verdict_runtime::decision::{EvaluationResult, NOT_APPLICABLE};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::Empty;
use verdict_runtime::term::HostMemo;

/// Evaluates without faults: `None` when a state read or an extern call failed.
fn clean(interp: &Interpreter<'_>, r: &Request, now: jiff::Timestamp) -> Option<EvaluationResult> {
    let env = Env { now, decision_id: None, state: Some(&Empty), externs: None };
    let mut host = HostMemo::default();
    let result = interp.evaluate_memo(r, &env, Mode::PLAIN, &mut host);
    (!host.faulted && !host.refused).then_some(result)
}

/// A moment at which the bundle is in effect: its start, else just before its end, else the
/// Unix epoch (any moment will do).
pub fn witness_time(b: &Bundle) -> jiff::Timestamp {
    if let Some(f) = &b.effective_from {
        return f.at;
    }
    if let Some(u) = &b.effective_until {
        return u.at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(u.at);
    }
    jiff::Timestamp::UNIX_EPOCH
}

/// Evaluates requests on one bundle.
#[derive(Debug)]
pub struct Oracle<'b> {
    bundle: &'b Bundle,
    interp: Interpreter<'b>,
    now: jiff::Timestamp,
}

impl<'b> Oracle<'b> {
    pub fn new(bundle: &'b Bundle) -> Option<Oracle<'b>> {
        let interp = Interpreter::new(bundle).ok()?;
        Some(Oracle { bundle, interp, now: witness_time(bundle) })
    }

    /// The decision on a request context (`None` if it is not a valid context, or its
    /// evaluation faulted).
    pub fn evaluate(&self, req: &Value) -> Option<EvaluationResult> {
        let r = Request::from_value(req.clone()).ok()?;
        clean(&self.interp, &r, self.now)
    }

    /// Whether each listed rule (policy index, rule index) holds on the request: evaluates a
    /// probe bundle with one single-rule policy per listed rule and no gates.
    pub fn holds(&self, rules: &[(usize, usize)], req: &Value) -> Option<Vec<bool>> {
        let mut probe = self.bundle.clone();
        probe.effective_from = None;
        probe.effective_until = None;
        probe.card_scope = None;
        probe.combine = Combine::First;
        probe.policies = rules
            .iter()
            .enumerate()
            .filter_map(|(k, &(p, i))| {
                let rule = self.bundle.policies.get(p)?.rules.get(i)?.clone();
                Some(Policy {
                    id: format!("probe-{k}"),
                    span: rule.span,
                    description: None,
                    card_derived: false,
                    match_mode: MatchMode::First,
                    default: None,
                    rules: vec![rule],
                })
            })
            .collect();
        if probe.policies.len() != rules.len() {
            return None;
        }
        let interp = Interpreter::new(&probe).ok()?;
        let r = Request::from_value(req.clone()).ok()?;
        let result = clean(&interp, &r, self.now)?;
        Some(result.policy_decisions.iter().map(|d| d.kind != NOT_APPLICABLE).collect())
    }

    /// Whether policy `p` is decided by its rule `i` on the request.
    pub fn decided_by(result: &EvaluationResult, bundle: &Bundle, p: usize, i: usize) -> bool {
        let (Some(d), Some(rule)) =
            (result.policy_decisions.get(p), bundle.policies.get(p).and_then(|pol| pol.rules.get(i)))
        else {
            return false;
        };
        d.matched_rule_id.as_deref() == Some(rule.id.as_str())
    }

    pub fn bundle(&self) -> &'b Bundle {
        self.bundle
    }
}
