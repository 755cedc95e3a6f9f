//! Change impact (Margrave): for two bundles, the requests whose decision goes from effect `a`
//! under the old bundle to `b` under the new one — one witness per transition, with the rule
//! (or default, or gate) that decides it on each side — or proof that they are equivalent.
//!
//! Both bundles are modelled in one domain (paths and constants are matched by their text and
//! value), so their decision sets are diagrams over the same variables: per effect, the final
//! decision after gates, policies and combining. Equivalence is equality of those diagrams (a
//! universal claim, sound as every other); each transition is an intersection, and its witness
//! is re-evaluated on both bundles by the interpreter before it is reported. Decisions are
//! compared by effect (`kind`); which rule decides may change without a transition. The effective
//! window is time, not request: each bundle is evaluated at a moment inside its own window.

use super::bdd::{FALSE, NodeId, Res};
use super::oracle::Oracle;
use super::{Model, Options, witness};
use crate::ir::{Bundle, Combine, EffectId};
use serde_json::Value;
use std::collections::BTreeMap;
use verdict_grammar::ast::Span;
use verdict_runtime::decision::NOT_APPLICABLE;

/// Who decided a request on one side: the policy and rule (both absent for a gate or
/// `not_applicable`; the rule absent for a policy default), and the rule's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub policy: Option<String>,
    pub rule: Option<String>,
    pub span: Option<Span>,
}

/// One change of decision, with a request that shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub witness: Value,
    pub old: Decider,
    pub new: Decider,
}

/// The outcome of [`diff`].
#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    /// Verified transitions, ordered by (from, to).
    pub transitions: Vec<Transition>,
    /// Transitions the model allows but no verified witness was found for (opaque atoms).
    pub unverified: Vec<(String, String)>,
    /// A budget ran out before the comparison finished.
    pub undecided: bool,
    /// A rule of either bundle may fault (it reads state or calls an extern where it is
    /// reached): a fault decides the most severe effect whatever the rules say, so the
    /// comparison covers only decisions without faults, and equivalence is not claimed.
    pub faults: bool,
}

impl DiffReport {
    /// Proved equivalent: no transition, nothing unverified, nothing undecided, no faults.
    pub fn equivalent(&self) -> bool {
        self.transitions.is_empty() && self.unverified.is_empty() && !self.undecided && !self.faults
    }
}

/// Compares two bundles.
pub fn diff(old: &Bundle, new: &Bundle, opts: &Options) -> DiffReport {
    let (mut model, ok) = Model::new(&[old, new], opts);
    let mut report = DiffReport::default();
    if ok.is_err() {
        report.undecided = true;
        return report;
    }
    let finals = (|| -> Res<(Finals, Finals)> { Ok((decisions(&mut model, 0)?, decisions(&mut model, 1)?)) })();
    let Ok(((fo, faults_old), (fn_, faults_new))) = finals else {
        report.undecided = true;
        return report;
    };
    report.faults = faults_old || faults_new;
    let (Some(oo), Some(on)) = (Oracle::new(old), Oracle::new(new)) else {
        report.undecided = true;
        return report;
    };
    for (a, sa) in &fo {
        for (b, sb) in &fn_ {
            if a == b {
                continue;
            }
            let both = match model.bdd.and(*sa, *sb) {
                Ok(x) => x,
                Err(_) => {
                    report.undecided = true;
                    return report;
                }
            };
            if both == FALSE {
                continue;
            }
            let mut seen: Option<(Decider, Decider)> = None;
            let found = witness::search(&model.bdd, &model.dom, both, opts.witness_attempts, |req| {
                let (Some(ro), Some(rn)) = (oo.evaluate(req), on.evaluate(req)) else { return false };
                if ro.decision.kind == *a && rn.decision.kind == *b {
                    seen = Some((decider(old, &ro.decision), decider(new, &rn.decision)));
                    true
                } else {
                    false
                }
            });
            match (found, seen) {
                (Some(w), Some((d_old, d_new))) => report.transitions.push(Transition {
                    from: a.clone(),
                    to: b.clone(),
                    witness: w,
                    old: d_old,
                    new: d_new,
                }),
                _ => report.unverified.push((a.clone(), b.clone())),
            }
        }
    }
    report
}

fn decider(b: &Bundle, d: &verdict_runtime::decision::Decision) -> Decider {
    let span = match (&d.matched_policy_id, &d.matched_rule_id) {
        (Some(p), Some(r)) => {
            b.policies.iter().find(|x| x.id == *p).and_then(|x| x.rules.iter().find(|y| y.id == *r)).map(|y| y.span)
        }
        (Some(p), None) => b.policies.iter().find(|x| x.id == *p).map(|x| x.span),
        _ => None,
    };
    Decider { policy: d.matched_policy_id.clone(), rule: d.matched_rule_id.clone(), span }
}

/// Per effect name, its decision set; and whether some rule may fault where it is reached.
type Finals = (BTreeMap<String, NodeId>, bool);

/// The final decision of bundle `bi`, per effect name (and `not_applicable`), over all
/// requests that satisfy the structure constraint (faults aside), and whether a rule may fault.
fn decisions(model: &mut Model<'_>, bi: usize) -> Res<Finals> {
    let Some(b) = model.bundles.get(bi).copied() else { return Ok((BTreeMap::new(), false)) };
    let mut faults = model.fallible.get(bi).is_none_or(|f| f.updates(b));
    let s = model.structure;
    let g = model.dom.scope(&mut model.bdd, bi)?;
    let u = model.bdd.and(s, g)?;
    // Per policy: the decision set of each outcome (None: not applicable), inside the scope.
    let mut per_policy: Vec<BTreeMap<Option<EffectId>, NodeId>> = Vec::new();
    for pol in &b.policies {
        let mut d: BTreeMap<Option<EffectId>, NodeId> = BTreeMap::new();
        let mut unmatched = u;
        for i in crate::interp::rule_order(b, pol) {
            let Some(rule) = pol.rules.get(i) else { continue };
            let m = model.cond(bi, rule.cond)?;
            let f = model.fault(bi, rule.cond)?;
            faults = faults || !model.bdd.disjoint(f, unmatched)?;
            let e = model.bdd.and(m, unmatched)?;
            unmatched = model.bdd.diff(unmatched, m)?;
            let slot = d.entry(Some(rule.effect)).or_insert(FALSE);
            *slot = model.bdd.or(*slot, e)?;
        }
        let slot = d.entry(pol.default).or_insert(FALSE);
        *slot = model.bdd.or(*slot, unmatched)?;
        per_policy.push(d);
    }
    let get = |d: &BTreeMap<Option<EffectId>, NodeId>, k: Option<EffectId>| d.get(&k).copied().unwrap_or(FALSE);
    let mut out: BTreeMap<String, NodeId> = BTreeMap::new();
    let ne = b.effects.len();
    match b.combine {
        Combine::Overrides => {
            let mut taken = FALSE;
            for e in 0..ne {
                let eid = EffectId(u32::try_from(e).unwrap_or(u32::MAX));
                let mut has = FALSE;
                for d in &per_policy {
                    has = model.bdd.or(has, get(d, Some(eid)))?;
                }
                let fin = model.bdd.diff(has, taken)?;
                taken = model.bdd.or(taken, has)?;
                out.insert(b.effect(eid).to_owned(), fin);
            }
            let na = model.bdd.diff(u, taken)?;
            out.insert(NOT_APPLICABLE.to_owned(), na);
        }
        Combine::First => {
            let mut all_na = u;
            for e in 0..ne {
                out.insert(b.effect(EffectId(u32::try_from(e).unwrap_or(u32::MAX))).to_owned(), FALSE);
            }
            for d in &per_policy {
                for e in 0..ne {
                    let eid = EffectId(u32::try_from(e).unwrap_or(u32::MAX));
                    let part = model.bdd.and(all_na, get(d, Some(eid)))?;
                    if let Some(slot) = out.get_mut(b.effect(eid)) {
                        *slot = model.bdd.or(*slot, part)?;
                    }
                }
                all_na = model.bdd.and(all_na, get(d, None))?;
            }
            out.insert(NOT_APPLICABLE.to_owned(), all_na);
        }
    }
    // Outside the card scope the gate decides the most severe effect.
    let outside = model.bdd.diff(s, g)?;
    if outside != FALSE {
        let name = b.most_severe().to_owned();
        let slot = out.entry(name).or_insert(FALSE);
        *slot = model.bdd.or(*slot, outside)?;
    }
    out.retain(|_, v| *v != FALSE);
    Ok((out, faults))
}
