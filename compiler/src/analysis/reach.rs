//! Requests that reach rules, for `verdict test`'s coverage: for each rule asked about, a request
//! on which that rule decides its policy — and, where the combination allows it, the bundle — or
//! the proof that no request reaches it.
//!
//! Per policy the reference loop of [`super::findings`] gives `E_i`, the requests rule `i`
//! decides. A rule with `E_i = ∅` is unreachable (V001: earlier rules cover it, its condition is
//! unsatisfiable, or it holds only outside the card scope). Otherwise the search first looks in
//! the part of `E_i` where no other policy overrides the rule's policy in the combination
//! (`overrides`: no policy decides a more severe effect, no earlier one the same effect; `first`:
//! no earlier policy applies), then in `E_i` itself. Witnesses are constrained to the bundle's
//! run-time schema (declared types, required paths) and, like every existential claim of the
//! analysis, judged by the interpreter before they are returned. Where the model holds no
//! confirmed request (terms, state reads and externs are opaque to it; budgets), the answer is
//! [`Reach::Unknown`]: never a wrong request.

use super::bdd::{FALSE, NodeId, Res};
use super::domain::Kind;
use super::oracle::{Oracle, witness_time};
use super::{Model, Options, witness};
use crate::ir::{Bundle, Combine, Type};
use serde_json::{Map, Value};

/// The answer for one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// A request context on which the rule decides its policy (the interpreter confirmed it),
    /// evaluated at `now`; `bundle`: the rule decides the bundle's decision too.
    Request { context: Value, now: Option<jiff::Timestamp>, bundle: bool },
    /// No request reaches the rule (a V001 claim), and why.
    Unreachable(Unreachable),
    /// The analysis found no confirmed request and proved nothing.
    Unknown,
}

/// Why no request reaches a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Its condition can never hold (V002).
    Unsatisfiable,
    /// It holds only for requests outside the card scope.
    OutOfScope,
    /// Rules tried before it cover every request it matches.
    Shadowed,
}

impl Unreachable {
    pub fn describe(self) -> &'static str {
        match self {
            Unreachable::Unsatisfiable => "its condition can never hold (V002)",
            Unreachable::OutOfScope => "it holds only for requests outside the card scope (V001)",
            Unreachable::Shadowed => "rules tried before it cover every request it matches (V001)",
        }
    }
}

/// For each `(policy index, rule index)` of `targets`, in order, a request that reaches it or
/// why there is none.
pub fn reach(b: &Bundle, targets: &[(usize, usize)], opts: &Options) -> Vec<Reach> {
    let mut out = vec![Reach::Unknown; targets.len()];
    let (model, ok) = Model::new(&[b], opts);
    if ok.is_err() {
        return out;
    }
    let Some(oracle) = Oracle::new(b) else { return out };
    let mut cx = Cx { model, b, oracle, decided: Vec::new(), e: Vec::new(), status: Vec::new(), u: FALSE };
    // A budget that runs out leaves the answers found so far, the rest unknown.
    let _ = cx.run(targets, &mut out, opts.witness_attempts);
    out
}

struct Cx<'b> {
    model: Model<'b>,
    b: &'b Bundle,
    oracle: Oracle<'b>,
    /// Per policy, per effect: the requests on which the policy decides that effect (its rules'
    /// `E_i` and its default's share).
    decided: Vec<Vec<NodeId>>,
    /// Per policy, per rule: `E_i`.
    e: Vec<Vec<NodeId>>,
    status: Vec<Vec<Option<Unreachable>>>,
    /// The structure constraint and the card scope.
    u: NodeId,
}

impl Cx<'_> {
    fn run(&mut self, targets: &[(usize, usize)], out: &mut [Reach], attempts: usize) -> Res<()> {
        let s = self.model.structure;
        let g = self.model.dom.scope(&mut self.model.bdd, 0)?;
        self.u = self.model.bdd.and(s, g)?;
        self.policies(s)?;
        let schema = self.schema()?;
        let now = (self.b.effective_from.is_some() || self.b.effective_until.is_some()).then(|| witness_time(self.b));
        for (slot, &(p, i)) in out.iter_mut().zip(targets) {
            if let Some(why) = self.status.get(p).and_then(|v| v.get(i)).copied().flatten() {
                *slot = Reach::Unreachable(why);
                continue;
            }
            let ei = self.e.get(p).and_then(|v| v.get(i)).copied().unwrap_or(FALSE);
            let ei = self.model.bdd.and(ei, schema)?;
            let wins = self.wins(p, i)?;
            let both = self.model.bdd.and(ei, wins)?;
            if let Some(context) = self.search(both, p, i, true, attempts) {
                *slot = Reach::Request { context, now, bundle: true };
            } else if let Some(context) = self.search(ei, p, i, false, attempts) {
                *slot = Reach::Request { context, now, bundle: false };
            }
        }
        Ok(())
    }

    /// The reference loop of every policy: `E_i`, the unreachable rules, the decided sets.
    fn policies(&mut self, s: NodeId) -> Res<()> {
        let b = self.b;
        let ne = b.effects.len();
        for pol in &b.policies {
            let n = pol.rules.len();
            let mut e = vec![FALSE; n];
            let mut status = vec![None; n];
            let mut decided = vec![FALSE; ne];
            let mut unmatched = self.u;
            for i in crate::interp::rule_order(b, pol) {
                let Some(rule) = pol.rules.get(i) else { continue };
                let mi = self.model.cond(0, rule.cond)?;
                let bdd = &mut self.model.bdd;
                let ei = bdd.and(mi, unmatched)?;
                let why = if bdd.disjoint(mi, s)? {
                    Some(Unreachable::Unsatisfiable)
                } else if bdd.disjoint(mi, self.u)? {
                    Some(Unreachable::OutOfScope)
                } else if ei == FALSE {
                    Some(Unreachable::Shadowed)
                } else {
                    None
                };
                unmatched = bdd.diff(unmatched, mi)?;
                if let Some(d) = decided.get_mut(rule.effect.index()) {
                    *d = bdd.or(*d, ei)?;
                }
                if let (Some(es), Some(ss)) = (e.get_mut(i), status.get_mut(i)) {
                    *es = ei;
                    *ss = why;
                }
            }
            if let Some(d) = pol.default.and_then(|d| decided.get_mut(d.index())) {
                *d = self.model.bdd.or(*d, unmatched)?;
            }
            self.e.push(e);
            self.status.push(status);
            self.decided.push(decided);
        }
        Ok(())
    }

    /// The requests on which no other policy takes the bundle decision from policy `p` when it
    /// decides rule `i`'s effect.
    fn wins(&mut self, p: usize, i: usize) -> Res<NodeId> {
        let b = self.b;
        let Some(effect) = b.policies.get(p).and_then(|pol| pol.rules.get(i)).map(|r| r.effect.index()) else {
            return Ok(FALSE);
        };
        let mut lose = FALSE;
        for (q, sets) in self.decided.iter().enumerate() {
            for (e, set) in sets.iter().enumerate() {
                let beats = match b.combine {
                    // Most severe first: a smaller index is more severe; ties to the earlier policy.
                    Combine::Overrides => q != p && (e < effect || (e == effect && q < p)),
                    Combine::First => q < p,
                };
                if beats {
                    lose = self.model.bdd.or(lose, *set)?;
                }
            }
        }
        self.model.bdd.not(lose)
    }

    /// The requests that pass the run-time schema gate, as far as the model tells types apart
    /// (an over-approximation: the interpreter judges every witness anyway).
    fn schema(&mut self) -> Res<NodeId> {
        let b = self.b;
        let mut acc = self.u;
        let required: Vec<usize> = b.required.iter().map(|(p, _)| p.index()).collect();
        for entry in b.schema.iter().flatten() {
            let segs = b.path(entry.path);
            let Some(p) = self.model.dom.path_of(segs) else { continue };
            let must = required.contains(&entry.path.index());
            let kinds: Vec<(Kind, Option<Value>)> = self
                .model
                .dom
                .paths
                .get(p)
                .map(|pd| pd.regions.iter().map(|r| (r.kind, r.value.clone())).collect())
                .unwrap_or_default();
            let set = self.model.dom.region_set(&mut self.model.bdd, p, |r| {
                kinds.get(r).is_some_and(|(k, v)| admits(&entry.ty, *k, v.as_ref(), must))
            })?;
            acc = self.model.bdd.and(acc, set)?;
        }
        for (path, _) in &b.required {
            if b.schema.iter().flatten().any(|e| e.path == *path) {
                continue;
            }
            let Some(p) = self.model.dom.path_of(b.path(*path)) else { continue };
            let present = self.model.dom.present(&mut self.model.bdd, p)?;
            acc = self.model.bdd.and(acc, present)?;
        }
        Ok(acc)
    }

    /// A request from `set` on which rule `i` decides policy `p` (and, with `bundle`, the
    /// bundle), with the required paths the model does not read filled in.
    fn search(&mut self, set: NodeId, p: usize, i: usize, bundle: bool, attempts: usize) -> Option<Value> {
        if set == FALSE {
            return None;
        }
        let b = self.b;
        let oracle = &self.oracle;
        let mut found = None;
        witness::search(&self.model.bdd, &self.model.dom, set, attempts, |req| {
            let req = fill_required(b, req);
            let ok = oracle
                .evaluate(&req)
                .is_some_and(|r| Oracle::decided_by(&r, b, p, i) && (!bundle || decides_bundle(&r, b, p, i)));
            if ok {
                found = Some(req);
            }
            ok
        })?;
        found
    }
}

/// Whether rule `i` of policy `p` made the bundle's decision.
fn decides_bundle(r: &verdict_runtime::decision::EvaluationResult, b: &Bundle, p: usize, i: usize) -> bool {
    let (Some(pol), Some(rule)) = (b.policies.get(p), b.policies.get(p).and_then(|x| x.rules.get(i))) else {
        return false;
    };
    r.decision.matched_policy_id.as_deref() == Some(pol.id.as_str())
        && r.decision.matched_rule_id.as_deref() == Some(rule.id.as_str())
}

/// Whether a region of kind `k` (with member `v`) can hold a value of type `ty`.
fn admits(ty: &Type, k: Kind, v: Option<&Value>, required: bool) -> bool {
    match (ty, k) {
        (_, Kind::Missing) => !required,
        (Type::Any, _) => true,
        (Type::String, k) => k.is_string(),
        (Type::Number, k) => k == Kind::Number,
        (Type::Bool, k) => k == Kind::Bool,
        (Type::Object, k) => k.is_object(),
        (Type::List(_), Kind::ListConst) => v.is_some_and(|v| ty.admits(v)),
        (Type::List(_), k) => k == Kind::ListOther,
    }
}

/// The request with a value of its declared type at every required path it lacks (paths no atom
/// reads are not in the model, so its witnesses leave them out).
fn fill_required(b: &Bundle, req: &Value) -> Value {
    let mut req = req.clone();
    for (path, _) in &b.required {
        let segs = b.path(*path);
        let present =
            verdict_runtime::request::Request::from_value(req.clone()).is_ok_and(|r| r.lookup(segs).is_some());
        if present {
            continue;
        }
        let ty = b.schema.iter().flatten().find(|e| e.path == *path).map(|e| &e.ty);
        let value = match ty {
            Some(Type::String) | None => Value::String("x".into()),
            Some(Type::Number) => Value::from(0),
            Some(Type::Bool) => Value::Bool(false),
            Some(Type::List(_)) => Value::Array(Vec::new()),
            Some(Type::Object) => Value::Object(Map::new()),
            Some(Type::Any) => Value::Null,
        };
        place(&mut req, segs, value);
    }
    req
}

/// Puts `value` at a path of the merged view: under the request's own `subject`, `resource` or
/// `action` when the path starts there, else under `data`; objects are made on the way, and a
/// step through anything else is not taken.
fn place(req: &mut Value, segs: &[String], value: Value) {
    let Some(top) = req.as_object_mut() else { return };
    let Some((first, rest)) = segs.split_first() else { return };
    if first == "action" {
        if rest.is_empty() && value.is_string() {
            top.insert("action".into(), value);
        }
        return;
    }
    let mut cur = if matches!(first.as_str(), "subject" | "resource") {
        top.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()))
    } else {
        let data = top.entry("data").or_insert_with(|| Value::Object(Map::new()));
        let Some(d) = data.as_object_mut() else { return };
        d.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()))
    };
    for seg in rest {
        let Some(m) = cur.as_object_mut() else { return };
        cur = m.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    *cur = value;
}
