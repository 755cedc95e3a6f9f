//! The findings of one bundle: the reference loop per policy, the sets each rule decides, and
//! from them every analysis code with its related locations and, for existential claims, a
//! witness the interpreter confirmed.
//!
//! Per policy, in evaluation order (`match first`: as written; `match priority`: by descending
//! priority, then severity, then position — [`crate::interp::rule_order`]):
//!
//! ```text
//! unmatched = U                      (U: the structure constraint ∧ the card scope)
//! for each rule i:
//!     M_i = condition;  if M_i ∧ S = ∅: V002      if M_i ∧ U = ∅: V001 (outside the scope)
//!     E_i = M_i ∧ unmatched          (the requests rule i decides)
//!     if E_i = ∅: V001, blockers = a greedy cover of M_i by earlier rules, largest overlap first
//!     unmatched = unmatched ∖ M_i
//! unmatched = ∅: V009 (the default never applies)
//! ```
//!
//! V003 walks the rules backwards keeping, per effect, the requests the rest of the policy (later
//! rules, then the default) gives that effect: rule i is redundant when `E_i` lies inside the set
//! of its own effect — removing it changes no decision of its policy, hence none of the bundle.
//! V005 compares, level by level, same-priority rules of different effects where no higher rule
//! holds. V004 intersects each rule's `E_i` with the rule-decided sets of the other policies that
//! would win the combination (`overrides`: more severe effects; `first`: earlier policies).
//! V010 is the set where every policy falls through to a `none` default.

use super::bdd::{FALSE, NodeId, Res, TRUE};
use super::graph::{Edge, RuleGraph, RuleRef};
use super::oracle::Oracle;
use super::{Model, Options, Scope, witness};
use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::ir::{Bundle, Combine, Cond, CondId, EffectId, MatchMode, Policy, Rule};
use std::collections::BTreeMap;
use verdict_grammar::ast::Span;
use verdict_runtime::decision::NOT_APPLICABLE;

/// The result of [`super::analyze_with`].
#[derive(Debug)]
pub struct Analysis {
    pub diagnostics: Vec<Diagnostic>,
    pub graph: RuleGraph,
    pub stats: Stats,
}

/// Sizes, budgets used, and what could not be decided.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub paths: usize,
    pub regions: usize,
    pub variables: u32,
    pub nodes: usize,
    pub steps: u64,
    /// A budget ran out: some findings may be missing (none is wrong).
    pub undecided: bool,
    /// Constructions that fell back to opaque atoms.
    pub notes: Vec<String>,
    /// Candidate witnesses the interpreter refused (each was retried or dropped).
    pub witnesses_rejected: usize,
    /// Rules whose condition fixes the discriminating path to some of its values.
    pub bucketed_rules: usize,
    /// The discriminating path, if any.
    pub discriminating: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unsat,
    OutOfScope,
    Shadowed,
    Live,
}

/// A policy after the reference loop. Vectors are by rule index.
#[derive(Debug)]
struct Run {
    order: Vec<usize>,
    m: Vec<NodeId>,
    /// Where the rule decides: its condition holds, or may fault (a fault decides too: the most
    /// severe effect, with this rule named), and no earlier rule held.
    e: Vec<NodeId>,
    /// Where the rule's condition, evaluated, may fault (`FALSE` for rules without state reads
    /// or extern calls), wherever the rule is reached or not.
    f: Vec<NodeId>,
    status: Vec<Status>,
    /// Where no rule holds. Faults are left in (a fault stops the policy, so the real set is
    /// smaller): an over-approximation, as every universal claim needs.
    unmatched: NodeId,
}

impl Run {
    fn m(&self, i: usize) -> NodeId {
        self.m.get(i).copied().unwrap_or(FALSE)
    }
    fn e(&self, i: usize) -> NodeId {
        self.e.get(i).copied().unwrap_or(FALSE)
    }
    fn f(&self, i: usize) -> NodeId {
        self.f.get(i).copied().unwrap_or(FALSE)
    }
    fn status(&self, i: usize) -> Status {
        self.status.get(i).copied().unwrap_or(Status::Unsat)
    }
    fn live(&self, i: usize) -> bool {
        self.status(i) == Status::Live
    }
}

struct Ctx<'b> {
    model: Model<'b>,
    b: &'b Bundle,
    opts: Options,
    s: NodeId,
    u: NodeId,
    runs: Vec<Run>,
    graph: RuleGraph,
    diags: Vec<Diagnostic>,
    oracle: Option<Option<Oracle<'b>>>,
    rejected: usize,
    conflicts_reported: usize,
}

/// Candidates examined when naming the rules behind a proved claim (blockers, later deciders,
/// conflict partners per policy): a bound on the work per finding in huge bundles.
const MAX_SCAN: usize = 4096;

/// Analyses one bundle.
pub fn run(b: &Bundle, opts: &Options) -> Analysis {
    let (model, ok) = Model::new(&[b], opts);
    let s = model.structure;
    let mut cx = Ctx {
        model,
        b,
        opts: *opts,
        s,
        u: s,
        runs: Vec::new(),
        graph: RuleGraph::default(),
        diags: Vec::new(),
        oracle: None,
        rejected: 0,
        conflicts_reported: 0,
    };
    let result = ok.and_then(|()| cx.all());
    let undecided = result.is_err();
    if undecided {
        cx.diags.push(Diagnostic {
            severity: Severity::Info,
            ..Diagnostic::error(
                Code::Undecided,
                Span::default(),
                "the rule analysis stopped: its budget ran out on this bundle",
            )
            .with_help("findings it had not proved yet are not reported; none of those reported is affected")
        });
    }
    cx.diags.sort_by(|x, y| (x.span.start, x.code, &x.rule).cmp(&(y.span.start, y.code, &y.rule)));
    let dom = &cx.model.dom;
    let stats = Stats {
        paths: dom.paths.len(),
        regions: dom.paths.iter().map(|p| p.regions.len()).sum(),
        variables: dom.var_count(),
        nodes: cx.model.bdd.node_count(),
        steps: cx.model.bdd.steps(),
        undecided,
        notes: dom.notes.clone(),
        witnesses_rejected: cx.rejected,
        bucketed_rules: cx.graph.bucketed_rules(),
        discriminating: dom.discriminating.map(|p| dom.show_path(p)),
    };
    Analysis { diagnostics: cx.diags, graph: cx.graph, stats }
}

/// Where a finding about a rule points: from the rule's start to the end of its condition. (A
/// YAML rule's own span runs on to the next list item; the condition is what the finding is
/// about.)
fn rule_span(b: &Bundle, r: &Rule) -> Span {
    let end = b.cond(r.cond).map_or(r.span.end, |c| c.span.end);
    if end > r.span.start && end <= r.span.end { Span { start: r.span.start, end } } else { r.span }
}

/// Where a finding about a policy points: its head, up to its first rule.
fn policy_span(p: &Policy) -> Span {
    match p.rules.first() {
        Some(r) if r.span.start > p.span.start && r.span.start <= p.span.end => {
            Span { start: p.span.start, end: r.span.start }
        }
        _ => p.span,
    }
}

fn default_name(b: &Bundle, e: Option<EffectId>) -> String {
    match e {
        Some(e) => b.effect(e).to_owned(),
        None => "none".to_owned(),
    }
}

impl<'b> Ctx<'b> {
    fn all(&mut self) -> Res<()> {
        let g = self.model.dom.scope(&mut self.model.bdd, 0)?;
        self.u = self.model.bdd.and(self.s, g)?;
        let only_ambiguity = self.opts.scope == Scope::Ambiguity;
        for (p, pol) in self.b.policies.iter().enumerate() {
            let run = if only_ambiguity && pol.match_mode != MatchMode::Priority {
                Run {
                    order: Vec::new(),
                    m: Vec::new(),
                    e: Vec::new(),
                    f: Vec::new(),
                    status: Vec::new(),
                    unmatched: FALSE,
                }
            } else {
                self.run_policy(p)?
            };
            self.runs.push(run);
        }
        if only_ambiguity {
            for (p, pol) in self.b.policies.iter().enumerate() {
                if pol.match_mode == MatchMode::Priority {
                    self.ambiguity(p)?;
                }
            }
        }
        if self.opts.scope.bundle() {
            self.definitions()?;
        }
        if self.opts.scope.policies() {
            for p in 0..self.b.policies.len() {
                self.policy_findings(p)?;
            }
        }
        if self.opts.scope.bundle() {
            self.conflicts()?;
            self.gap()?;
        }
        Ok(())
    }

    fn oracle(&mut self) -> Option<&Oracle<'b>> {
        if self.oracle.is_none() {
            self.oracle = Some(Oracle::new(self.b));
        }
        self.oracle.as_ref().and_then(Option::as_ref)
    }

    /// A witness from `set` that `check` accepts (the interpreter's view of the request).
    fn witness(
        &mut self,
        set: NodeId,
        check: impl Fn(&Oracle<'b>, &serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let attempts = self.opts.witness_attempts;
        self.oracle()?;
        let oracle = self.oracle.as_ref().and_then(Option::as_ref)?;
        let mut rejected = 0usize;
        let found = witness::search(&self.model.bdd, &self.model.dom, set, attempts, |req| {
            let ok = check(oracle, req);
            if !ok {
                rejected += 1;
            }
            ok
        });
        self.rejected += rejected;
        found
    }

    fn run_policy(&mut self, p: usize) -> Res<Run> {
        let b = self.b;
        let Some(pol) = b.policies.get(p) else {
            return Ok(Run {
                order: Vec::new(),
                m: Vec::new(),
                e: Vec::new(),
                f: Vec::new(),
                status: Vec::new(),
                unmatched: FALSE,
            });
        };
        let order = crate::interp::rule_order(b, pol);
        let n = pol.rules.len();
        let mut run = Run {
            order: order.clone(),
            m: vec![FALSE; n],
            e: vec![FALSE; n],
            f: vec![FALSE; n],
            status: vec![Status::Live; n],
            unmatched: self.u,
        };
        for &i in &order {
            let Some(rule) = pol.rules.get(i) else { continue };
            let mi = self.model.cond(0, rule.cond)?;
            let fault = self.model.fault(0, rule.cond)?;
            self.graph.set_bucket(RuleRef { policy: p, rule: i }, &self.model.dom, &self.model.bdd, mi);
            let bdd = &mut self.model.bdd;
            // A rule that may fault decides where it faults as well as where it holds.
            let di = bdd.or(mi, fault)?;
            let status = if bdd.disjoint(di, self.s)? {
                Status::Unsat
            } else if bdd.disjoint(di, self.u)? {
                Status::OutOfScope
            } else {
                Status::Live
            };
            let ei = bdd.and(di, run.unmatched)?;
            let status = if status == Status::Live && ei == FALSE { Status::Shadowed } else { status };
            run.unmatched = bdd.diff(run.unmatched, mi)?;
            if let (Some(ms), Some(es), Some(fs), Some(ss)) =
                (run.m.get_mut(i), run.e.get_mut(i), run.f.get_mut(i), run.status.get_mut(i))
            {
                *ms = mi;
                *es = ei;
                *fs = fault;
                *ss = status;
            }
        }
        Ok(run)
    }

    /// The conjuncts of a condition (through `and` and definitions), for unsatisfiable cores.
    /// Each definition is expanded once (`seen`), so shared definitions cost linear time.
    fn conjuncts(&self, c: CondId, out: &mut Vec<CondId>, seen: &mut Vec<bool>, depth: usize) {
        // INVARIANT: depth is bounded by the IR's nesting limit (128, through definitions).
        if out.len() >= 64 || depth > verdict_grammar::ast::MAX_DEPTH {
            return;
        }
        match self.b.cond(c).map(|n| &n.cond) {
            Some(Cond::All(kids)) => {
                for k in kids {
                    self.conjuncts(*k, out, seen, depth + 1);
                }
            }
            Some(Cond::Ref(d)) => {
                let first = seen.get_mut(d.index()).is_some_and(|s| !std::mem::replace(s, true));
                if let (true, Some(def)) = (first, self.b.defs.get(d.index())) {
                    self.conjuncts(def.cond, out, seen, depth + 1);
                }
            }
            Some(_) if !out.contains(&c) => out.push(c),
            _ => {}
        }
    }

    /// Labels on a minimal set of conjuncts whose conjunction (with the structure) is empty.
    fn unsat_core(&mut self, c: CondId) -> Res<Vec<(Span, String)>> {
        let mut parts = Vec::new();
        self.conjuncts(c, &mut parts, &mut vec![false; self.b.defs.len()], 0);
        let mut sets = Vec::with_capacity(parts.len());
        for &k in &parts {
            sets.push(self.model.cond(0, k)?);
        }
        let mut keep: Vec<bool> = vec![true; parts.len()];
        for k in 0..parts.len() {
            if let Some(slot) = keep.get_mut(k) {
                *slot = false;
            }
            let mut acc = self.s;
            for (j, set) in sets.iter().enumerate() {
                if keep.get(j).copied().unwrap_or(false) {
                    acc = self.model.bdd.and(acc, *set)?;
                }
            }
            if acc != FALSE
                && let Some(slot) = keep.get_mut(k)
            {
                *slot = true;
            }
        }
        let core: Vec<CondId> = parts.iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| *c).collect();
        let msg = if core.len() == 1 { "this can never hold" } else { "these cannot hold together" };
        Ok(core.iter().filter_map(|c| self.b.cond(*c)).map(|n| (n.span, msg.to_owned())).collect())
    }

    /// V002 on `let` definitions.
    fn definitions(&mut self) -> Res<()> {
        for d in 0..self.b.defs.len() {
            let Some(def) = self.b.defs.get(d) else { continue };
            let set = self.model.cond(0, def.cond)?;
            if self.model.bdd.disjoint(set, self.s)? {
                let mut diag = Diagnostic::warning(
                    Code::Unsatisfiable,
                    def.span,
                    format!("definition `{}` can never hold", def.name),
                )
                .with_help("every rule that needs it is dead; fix the contradiction or remove it");
                for (span, msg) in self.unsat_core(def.cond)?.into_iter().take(self.opts.max_labels) {
                    diag = diag.with_label(span, msg);
                }
                self.diags.push(diag);
            }
        }
        Ok(())
    }

    fn policy_findings(&mut self, p: usize) -> Res<()> {
        let b = self.b;
        let Some(pol) = b.policies.get(p) else { return Ok(()) };
        let Some(run) = self.runs.get(p) else { return Ok(()) };
        let order = run.order.clone();
        let statuses: Vec<Status> = run.status.clone();
        let priority = pol.match_mode == MatchMode::Priority;
        for (pos, &i) in order.iter().enumerate() {
            let Some(rule) = pol.rules.get(i) else { continue };
            match statuses.get(i).copied().unwrap_or(Status::Live) {
                Status::Unsat => {
                    let mut diag = Diagnostic::warning(
                        Code::Unsatisfiable,
                        rule_span(b, rule),
                        format!("the condition of rule `{}` can never hold", rule.id),
                    )
                    .with_help("the rule never matches; fix the contradiction or remove the rule")
                    .in_rule(Some(&pol.id), Some(&rule.id));
                    for (span, msg) in self.unsat_core(rule.cond)?.into_iter().take(self.opts.max_labels) {
                        diag = diag.with_label(span, msg);
                    }
                    self.diags.push(diag);
                }
                Status::OutOfScope => {
                    let scope = b.card_scope.as_ref();
                    let help = scope.map_or(String::new(), |s| {
                        format!(
                            "the card scope lets through only vendor `{}` and actions {}",
                            s.vendor_id,
                            s.allowed_actions.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                        )
                    });
                    self.diags.push(
                        Diagnostic::warning(
                            Code::Unreachable,
                            rule_span(b, rule),
                            format!(
                                "rule `{}` is unreachable: it holds only for requests outside the card scope",
                                rule.id
                            ),
                        )
                        .with_help(help)
                        .in_rule(Some(&pol.id), Some(&rule.id)),
                    );
                }
                Status::Shadowed => self.unreachable(p, i, pos, priority)?,
                Status::Live => {}
            }
        }
        self.redundant(p)?;
        self.dead_default(p)?;
        if priority {
            self.ambiguity(p)?;
        }
        Ok(())
    }

    /// V001 for a rule whose every request an earlier rule takes: finds the covering rules.
    fn unreachable(&mut self, p: usize, i: usize, pos: usize, priority: bool) -> Res<()> {
        let b = self.b;
        let (Some(pol), Some(run)) = (b.policies.get(p), self.runs.get(p)) else { return Ok(()) };
        let Some(rule) = pol.rules.get(i) else { return Ok(()) };
        let me = RuleRef { policy: p, rule: i };
        let (mi, fault) = (run.m(i), run.f(i));
        // Nearest first, and at most `MAX_SCAN` of them: the claim is proved already, the scan
        // only names the covering rules.
        let earlier: Vec<(usize, NodeId)> = run
            .order
            .iter()
            .take(pos)
            .rev()
            .filter(|&&k| matches!(run.status(k), Status::Live | Status::Shadowed))
            .take(MAX_SCAN)
            .map(|&k| (k, run.m(k)))
            .collect();
        let bdd = &mut self.model.bdd;
        let decides = bdd.or(mi, fault)?;
        let target = bdd.and(decides, self.u)?;
        let nvars = self.model.dom.var_count();
        let mut cands: Vec<(usize, NodeId, f64)> = Vec::new();
        for (k, mk) in earlier {
            if !self.graph.may_meet(RuleRef { policy: p, rule: k }, me) || bdd.disjoint(mk, target)? {
                continue;
            }
            let inter = bdd.and(mk, target)?;
            cands.push((k, mk, bdd.sat_count(inter, nvars)));
            self.graph.relate(RuleRef { policy: p, rule: k }, me, Edge::Overlaps);
        }
        cands.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)));
        let mut remaining = target;
        let mut chosen: Vec<usize> = Vec::new();
        for (k, mk, _) in cands {
            if remaining == FALSE {
                break;
            }
            if bdd.disjoint(mk, remaining)? {
                continue;
            }
            remaining = bdd.diff(remaining, mk)?;
            chosen.push(k);
            self.graph.relate(RuleRef { policy: p, rule: k }, me, Edge::Blocks);
        }
        let mut diag = Diagnostic::warning(
            Code::Unreachable,
            rule_span(b, rule),
            if priority {
                format!("rule `{}` is unreachable: rules tried before it cover every request it matches", rule.id)
            } else {
                format!("rule `{}` is unreachable: earlier rules cover every request it matches", rule.id)
            },
        )
        .in_rule(Some(&pol.id), Some(&rule.id));
        let mut other_effect: Option<(String, String)> = None;
        for &k in chosen.iter().take(self.opts.max_labels) {
            let Some(r) = pol.rules.get(k) else { continue };
            let mut msg = format!("covered by rule `{}` here", r.id);
            if r.effect != rule.effect {
                msg.push_str(&format!(", which decides `{}`", b.effect(r.effect)));
                other_effect.get_or_insert((r.id.clone(), b.effect(r.effect).to_owned()));
            }
            diag = diag.with_label(rule_span(b, r), msg);
        }
        if chosen.len() > self.opts.max_labels || remaining != FALSE {
            diag.message.push_str(" (not every covering rule is shown)");
        }
        diag = match other_effect {
            Some((id, eff)) => diag.with_help(format!(
                "some of its requests get `{eff}` from rule `{id}`, never `{}` from this one; reorder the rules or narrow the earlier ones",
                b.effect(rule.effect)
            )),
            None => diag.with_help("remove the rule, or move it before the rules that cover it"),
        };
        self.diags.push(diag);
        Ok(())
    }

    /// V003: rules whose requests the rest of the policy decides the same way.
    fn redundant(&mut self, p: usize) -> Res<()> {
        let b = self.b;
        let (Some(pol), Some(run)) = (b.policies.get(p), self.runs.get(p)) else { return Ok(()) };
        let bdd = &mut self.model.bdd;
        // The rest of the policy's decision, per outcome, from the end backwards.
        let mut rest: Vec<(Option<EffectId>, NodeId)> = vec![(pol.default, TRUE)];
        let mut redundant: Vec<usize> = Vec::new();
        for &i in run.order.iter().rev() {
            let Some(rule) = pol.rules.get(i) else { continue };
            let mi = run.m(i);
            // A rule that may fault where it is reached is never redundant: removing it removes
            // its faults.
            if run.live(i) && bdd.disjoint(run.f(i), run.e(i))? {
                let same = rest.iter().find(|(o, _)| *o == Some(rule.effect)).map_or(FALSE, |x| x.1);
                if bdd.implies(run.e(i), same)? {
                    redundant.push(i);
                }
            }
            for (_, set) in rest.iter_mut() {
                *set = bdd.diff(*set, mi)?;
            }
            match rest.iter_mut().find(|(o, _)| *o == Some(rule.effect)) {
                Some((_, set)) => *set = bdd.or(*set, mi)?,
                None => rest.push((Some(rule.effect), mi)),
            }
            // Where this rule may fault, the rest of the policy decides by that fault, not by
            // an effect: out of every set (an under-approximation, so "the same" stays sound).
            let fi = run.f(i);
            if fi != FALSE {
                for (_, set) in rest.iter_mut() {
                    *set = bdd.diff(*set, fi)?;
                }
            }
        }
        redundant.reverse();
        for i in redundant {
            let Some(rule) = pol.rules.get(i) else { continue };
            let pos = run.order.iter().position(|&x| x == i).unwrap_or(0);
            let mut left = run.e(i);
            let mut diag = Diagnostic::warning(
                Code::Redundant,
                rule_span(b, rule),
                format!("rule `{}` is redundant: removing it changes no decision", rule.id),
            )
            .with_help(format!(
                "every request it decides gets `{}` from the rules after it or the default anyway",
                b.effect(rule.effect)
            ))
            .in_rule(Some(&pol.id), Some(&rule.id));
            let mut labels = 0usize;
            let later: Vec<usize> = run.order.iter().skip(pos + 1).copied().collect();
            let mut scanned = 0usize;
            for &j in later.iter().take(MAX_SCAN) {
                if left == FALSE || labels >= self.opts.max_labels {
                    break;
                }
                scanned += 1;
                let mj = run.m(j);
                if !self.graph.may_meet(RuleRef { policy: p, rule: i }, RuleRef { policy: p, rule: j })
                    || bdd.disjoint(left, mj)?
                {
                    continue;
                }
                left = bdd.diff(left, mj)?;
                self.graph.relate(RuleRef { policy: p, rule: i }, RuleRef { policy: p, rule: j }, Edge::Overlaps);
                if let Some(r) = pol.rules.get(j) {
                    diag = diag.with_label(
                        rule_span(b, r),
                        format!("rule `{}` decides `{}` for some of them", r.id, b.effect(r.effect)),
                    );
                    labels += 1;
                }
            }
            // What no later rule takes, the default decides (only known when the scan went to the end).
            if left != FALSE && scanned == later.len() && labels < self.opts.max_labels {
                diag = diag.with_label(
                    policy_span(pol),
                    format!("the default `{}` of policy `{}` decides the rest", default_name(b, pol.default), pol.id),
                );
            }
            self.diags.push(diag);
        }
        Ok(())
    }

    /// V009: the rules of a policy cover every request (in scope).
    fn dead_default(&mut self, p: usize) -> Res<()> {
        let b = self.b;
        let (Some(pol), Some(run)) = (b.policies.get(p), self.runs.get(p)) else { return Ok(()) };
        if run.unmatched != FALSE || pol.rules.is_empty() {
            return Ok(());
        }
        let scoped = if b.card_scope.is_some() { " inside the card scope" } else { "" };
        let mut diag = Diagnostic::warning(
            Code::DeadDefault,
            policy_span(pol),
            format!(
                "the default `{}` of policy `{}` can never apply: its rules cover every request{scoped}",
                default_name(b, pol.default),
                pol.id
            ),
        )
        .with_help("narrow the rules, or drop the catch-all rule and let the default decide (a policy may have no rules: `policy p { default deny }`)")
        .in_rule(Some(&pol.id), None);
        let mut labels = 0;
        for &i in &run.order {
            if labels >= self.opts.max_labels {
                break;
            }
            if run.live(i)
                && self.model.bdd.implies(self.u, run.m(i))?
                && let Some(r) = pol.rules.get(i)
            {
                diag = diag.with_label(rule_span(b, r), format!("rule `{}` holds for every request", r.id));
                labels += 1;
            }
        }
        self.diags.push(diag);
        Ok(())
    }

    /// V005: same-priority rules of different effects that hold together where no higher rule does.
    fn ambiguity(&mut self, p: usize) -> Res<()> {
        let b = self.b;
        let (Some(pol), Some(run)) = (b.policies.get(p), self.runs.get(p)) else { return Ok(()) };
        let mut levels: BTreeMap<std::cmp::Reverse<i64>, Vec<usize>> = BTreeMap::new();
        for &i in &run.order {
            if let Some(r) = pol.rules.get(i) {
                levels.entry(std::cmp::Reverse(r.priority)).or_default().push(i);
            }
        }
        let m: Vec<NodeId> = (0..pol.rules.len()).map(|i| run.m(i)).collect();
        let usable: Vec<bool> =
            (0..pol.rules.len()).map(|i| matches!(run.status(i), Status::Live | Status::Shadowed)).collect();
        let mut higher = FALSE;
        for (std::cmp::Reverse(prio), rules) in levels {
            let effects: Vec<EffectId> = {
                let mut e: Vec<EffectId> = rules
                    .iter()
                    .filter(|&&i| usable.get(i).copied().unwrap_or(false))
                    .filter_map(|&i| pol.rules.get(i).map(|r| r.effect))
                    .collect();
                e.sort();
                e.dedup();
                e
            };
            if effects.len() >= 2 {
                let avail = self.model.bdd.diff(self.u, higher)?;
                for &j in &rules {
                    let Some(rj) = pol.rules.get(j) else { continue };
                    if !usable.get(j).copied().unwrap_or(false) {
                        continue;
                    }
                    let mj = m.get(j).copied().unwrap_or(FALSE);
                    let here = self.model.bdd.and(mj, avail)?;
                    if here == FALSE {
                        continue;
                    }
                    let winners: Vec<usize> = rules
                        .iter()
                        .copied()
                        .filter(|&w| usable.get(w).copied().unwrap_or(false))
                        .filter(|&w| pol.rules.get(w).is_some_and(|r| r.effect < rj.effect))
                        .collect();
                    for w in winners {
                        if !self.graph.may_meet(RuleRef { policy: p, rule: w }, RuleRef { policy: p, rule: j }) {
                            continue;
                        }
                        let mw = m.get(w).copied().unwrap_or(FALSE);
                        let both = self.model.bdd.and(here, mw)?;
                        if both == FALSE {
                            continue;
                        }
                        self.graph.relate(
                            RuleRef { policy: p, rule: w },
                            RuleRef { policy: p, rule: j },
                            Edge::Overlaps,
                        );
                        let found = self.witness(both, |o, req| {
                            let Some(result) = o.evaluate(req) else { return false };
                            let decided_at = result
                                .policy_decisions
                                .get(p)
                                .and_then(|d| d.matched_rule_id.as_deref())
                                .and_then(|id| pol.rules.iter().find(|r| r.id == id))
                                .map(|r| r.priority);
                            decided_at == Some(prio) && o.holds(&[(p, w), (p, j)], req) == Some(vec![true, true])
                        });
                        let Some(witness) = found else { continue };
                        let Some(rw) = pol.rules.get(w) else { continue };
                        self.graph.relate(
                            RuleRef { policy: p, rule: w },
                            RuleRef { policy: p, rule: j },
                            Edge::Ambiguous,
                        );
                        let mut diag = Diagnostic::error(
                            Code::Ambiguity,
                            rule_span(b, rj),
                            format!(
                                "rules `{}` (`{}`) and `{}` (`{}`) have the same priority {prio} and both hold for some requests",
                                rj.id,
                                b.effect(rj.effect),
                                rw.id,
                                b.effect(rw.effect)
                            ),
                        )
                        .with_label(rule_span(b, rw), format!("rule `{}` holds too, with priority {prio}", rw.id))
                        .with_help(format!(
                            "the tie goes to the more severe effect `{}`; give the rules different priorities or make their conditions exclusive",
                            b.effect(rw.effect)
                        ))
                        .in_rule(Some(&pol.id), Some(&rj.id));
                        diag.witness = Some(witness);
                        self.diags.push(diag);
                        break;
                    }
                }
            }
            for &i in &rules {
                let mi = m.get(i).copied().unwrap_or(FALSE);
                higher = self.model.bdd.or(higher, mi)?;
            }
        }
        Ok(())
    }

    /// V004: rules of different policies that decide different effects for one request.
    fn conflicts(&mut self) -> Res<()> {
        let b = self.b;
        let np = b.policies.len();
        if np < 2 {
            return Ok(());
        }
        let ne = b.effects.len();
        // Rule-decided sets per policy and effect.
        let mut decided: Vec<Vec<NodeId>> = vec![vec![FALSE; ne]; np];
        for (p, pol) in b.policies.iter().enumerate() {
            let Some(run) = self.runs.get(p) else { continue };
            for (i, r) in pol.rules.iter().enumerate() {
                if !run.live(i) {
                    continue;
                }
                if let Some(slot) = decided.get_mut(p).and_then(|v| v.get_mut(r.effect.index())) {
                    *slot = self.model.bdd.or(*slot, run.e(i))?;
                }
            }
        }
        let bdd = &mut self.model.bdd;
        let get = |v: &Vec<Vec<NodeId>>, p: usize, e: usize| v.get(p).and_then(|x| x.get(e)).copied().unwrap_or(FALSE);
        // winners[p][e]: the requests on which another policy's rule beats effect e of policy p.
        let mut winners: Vec<Vec<NodeId>> = vec![vec![FALSE; ne]; np];
        match b.combine {
            Combine::Overrides => {
                // beat[q][e] = requests where policy q's rule decides an effect more severe than e.
                let mut beat: Vec<Vec<NodeId>> = vec![vec![FALSE; ne]; np];
                for q in 0..np {
                    let mut acc = FALSE;
                    for e in 0..ne {
                        if let Some(slot) = beat.get_mut(q).and_then(|v| v.get_mut(e)) {
                            *slot = acc;
                        }
                        acc = bdd.or(acc, get(&decided, q, e))?;
                    }
                }
                for e in 0..ne {
                    // Prefix and suffix unions over policies, to leave each policy out.
                    let mut pre = vec![FALSE; np + 1];
                    for q in 0..np {
                        let x = bdd.or(pre.get(q).copied().unwrap_or(FALSE), get(&beat, q, e))?;
                        if let Some(slot) = pre.get_mut(q + 1) {
                            *slot = x;
                        }
                    }
                    let mut suf = vec![FALSE; np + 1];
                    for q in (0..np).rev() {
                        let x = bdd.or(suf.get(q + 1).copied().unwrap_or(FALSE), get(&beat, q, e))?;
                        if let Some(slot) = suf.get_mut(q) {
                            *slot = x;
                        }
                    }
                    for p in 0..np {
                        let w =
                            bdd.or(pre.get(p).copied().unwrap_or(FALSE), suf.get(p + 1).copied().unwrap_or(FALSE))?;
                        if let Some(slot) = winners.get_mut(p).and_then(|v| v.get_mut(e)) {
                            *slot = w;
                        }
                    }
                }
            }
            Combine::First => {
                let mut all: Vec<NodeId> = Vec::with_capacity(np);
                for q in 0..np {
                    let mut acc = FALSE;
                    for e in 0..ne {
                        acc = bdd.or(acc, get(&decided, q, e))?;
                    }
                    all.push(acc);
                }
                for e in 0..ne {
                    let mut acc = FALSE;
                    for p in 0..np {
                        if let Some(slot) = winners.get_mut(p).and_then(|v| v.get_mut(e)) {
                            *slot = acc;
                        }
                        let other = bdd.diff(all.get(p).copied().unwrap_or(FALSE), get(&decided, p, e))?;
                        acc = bdd.or(acc, other)?;
                    }
                }
            }
        }
        for (p, pol) in b.policies.iter().enumerate() {
            for (i, rule) in pol.rules.iter().enumerate() {
                let Some(run) = self.runs.get(p) else { continue };
                if !run.live(i) {
                    continue;
                }
                let ei = run.e(i);
                let w = get(&winners, p, rule.effect.index());
                if self.model.bdd.disjoint(ei, w)? {
                    continue;
                }
                if self.conflicts_reported >= self.opts.max_conflicts {
                    self.diags.push(Diagnostic {
                        severity: Severity::Info,
                        ..Diagnostic::error(
                            Code::Undecided,
                            Span::default(),
                            format!("only the first {} conflicts (V004) are reported", self.opts.max_conflicts),
                        )
                    });
                    return Ok(());
                }
                self.conflict_partner(p, i, ei)?;
            }
        }
        Ok(())
    }

    fn conflict_partner(&mut self, p: usize, i: usize, ei: NodeId) -> Res<()> {
        let b = self.b;
        let (Some(pol), Some(rule)) = (b.policies.get(p), b.policies.get(p).and_then(|x| x.rules.get(i))) else {
            return Ok(());
        };
        let me = RuleRef { policy: p, rule: i };
        for (q, qpol) in b.policies.iter().enumerate() {
            let beats = match b.combine {
                Combine::Overrides => q != p,
                Combine::First => q < p,
            };
            if !beats {
                continue;
            }
            let Some(qrun) = self.runs.get(q) else { continue };
            let cands: Vec<(usize, NodeId)> = qpol
                .rules
                .iter()
                .enumerate()
                .filter(|(j, r)| {
                    qrun.live(*j)
                        && match b.combine {
                            Combine::Overrides => r.effect < rule.effect,
                            Combine::First => r.effect != rule.effect,
                        }
                })
                .map(|(j, _)| (j, qrun.e(j)))
                .collect();
            for (j, ej) in cands.into_iter().take(MAX_SCAN) {
                let other = RuleRef { policy: q, rule: j };
                if !self.graph.may_meet(me, other) || self.model.bdd.disjoint(ei, ej)? {
                    continue;
                }
                let both = self.model.bdd.and(ei, ej)?;
                self.graph.relate(me, other, Edge::Overlaps);
                let found = self.witness(both, |o, req| {
                    o.evaluate(req).is_some_and(|r| Oracle::decided_by(&r, b, p, i) && Oracle::decided_by(&r, b, q, j))
                });
                let Some(witness) = found else { continue };
                let Some(rj) = qpol.rules.get(j) else { continue };
                self.graph.relate(other, me, Edge::Conflicts);
                let why = match b.combine {
                    Combine::Overrides => {
                        format!("`{}` is more severe and wins (`combine overrides`)", b.effect(rj.effect))
                    }
                    Combine::First => format!("policy `{}` comes first and wins (`combine first`)", qpol.id),
                };
                let mut diag = Diagnostic {
                    severity: Severity::Info,
                    ..Diagnostic::error(
                        Code::Conflict,
                        rule_span(b, rule),
                        format!(
                            "rule `{}` (`{}`) of policy `{}` conflicts with rule `{}` (`{}`) of policy `{}`: both decide some requests, and {why}",
                            rule.id,
                            b.effect(rule.effect),
                            pol.id,
                            rj.id,
                            b.effect(rj.effect),
                            qpol.id
                        ),
                    )
                }
                .with_label(rule_span(b, rj), format!("rule `{}` decides `{}` for the same requests", rj.id, b.effect(rj.effect)))
                .with_help("if the overlap is intended, nothing to do; otherwise make the conditions exclusive")
                .in_rule(Some(&pol.id), Some(&rule.id));
                diag.witness = Some(witness);
                self.diags.push(diag);
                self.conflicts_reported += 1;
                return Ok(());
            }
        }
        Ok(())
    }

    /// V010: requests on which every policy falls through to a `none` default.
    fn gap(&mut self) -> Res<()> {
        let b = self.b;
        if b.policies.iter().any(|p| p.default.is_some()) || b.policies.is_empty() {
            return Ok(());
        }
        let mut na = self.u;
        for run in &self.runs {
            na = self.model.bdd.and(na, run.unmatched)?;
        }
        if na == FALSE {
            return Ok(());
        }
        let Some(witness) =
            self.witness(na, |o, req| o.evaluate(req).is_some_and(|r| r.decision.kind == NOT_APPLICABLE))
        else {
            return Ok(());
        };
        let span = b.policies.first().map_or(Span::default(), policy_span);
        let mut diag =
            Diagnostic::warning(Code::Gap, span, "some requests get `not_applicable`: no policy applies to them");
        for pol in b.policies.iter().take(self.opts.max_labels) {
            diag =
                diag.with_label(policy_span(pol), format!("policy `{}` falls through to its default `none`", pol.id));
        }
        let help = match self.missing_rule(na, &witness)? {
            Some(text) if text.is_empty() => {
                "no policy applies to any request; give a policy a default effect".to_owned()
            }
            Some(text) => format!(
                "no policy applies when `{text}`: add a rule for those requests, or give a policy a default effect"
            ),
            None => "add rules for those requests, or give a policy a default effect".to_owned(),
        };
        diag = diag.with_help(help);
        diag.witness = Some(witness);
        self.diags.push(diag);
        Ok(())
    }

    /// The most general conjunction of the bundle's atoms (or their negations) that holds on
    /// the witness and lies inside `set`: a rule that would close the gap. Proved by implication.
    fn missing_rule(&mut self, set: NodeId, witness: &serde_json::Value) -> Res<Option<String>> {
        let b = self.b;
        let Ok(req) = verdict_runtime::request::Request::from_value(witness.clone()) else { return Ok(None) };
        // One literal per distinct atom text, in source order.
        let mut lits: Vec<(String, NodeId)> = Vec::new();
        let mut seen: Vec<usize> = Vec::new();
        for (c, node) in b.conds.iter().enumerate() {
            let Cond::Atom(a) = &node.cond else { continue };
            // An atom over terms has no value on a request alone: it cannot be a literal here.
            if matches!(a.lhs, crate::ir::Operand::Term(_)) || matches!(a.rhs, crate::ir::Operand::Term(_)) {
                continue;
            }
            let Some(id) = self.model.dom.cond_atoms.first().and_then(|v| v.get(c)).copied().flatten() else {
                continue;
            };
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            if seen.len() > 64 {
                return Ok(None);
            }
            let operand = |o: crate::ir::Operand| match o {
                crate::ir::Operand::Path(p) => req.lookup(b.path(p)),
                crate::ir::Operand::Const(k) => b.constant(k),
                crate::ir::Operand::Term(_) | crate::ir::Operand::None => None,
            };
            let re = match (a.op, a.rhs) {
                (crate::ir::AtomOp::Matches, crate::ir::Operand::Const(k)) => match b.constant(k) {
                    Some(serde_json::Value::String(p)) => regex::Regex::new(p).ok(),
                    _ => None,
                },
                _ => None,
            };
            let holds = verdict_runtime::atom::eval(a.op, operand(a.lhs), operand(a.rhs), re.as_ref());
            let set_a = self.model.dom.atom_bdd(&mut self.model.bdd, id)?;
            if holds {
                lits.push((a.text.clone(), set_a));
            } else {
                let neg = self.model.bdd.not(set_a)?;
                lits.push((format!("not ({})", a.text), neg));
            }
        }
        let mut keep = vec![true; lits.len()];
        let conj = |keep: &[bool], bdd: &mut super::bdd::Bdd, u: NodeId| -> Res<NodeId> {
            let mut acc = u;
            for (k, (_, s)) in lits.iter().enumerate() {
                if keep.get(k).copied().unwrap_or(false) {
                    acc = bdd.and(acc, *s)?;
                }
            }
            Ok(acc)
        };
        let full = conj(&keep, &mut self.model.bdd, self.u)?;
        if !self.model.bdd.implies(full, set)? {
            return Ok(None);
        }
        for k in 0..lits.len() {
            if let Some(slot) = keep.get_mut(k) {
                *slot = false;
            }
            let c = conj(&keep, &mut self.model.bdd, self.u)?;
            if !self.model.bdd.implies(c, set)?
                && let Some(slot) = keep.get_mut(k)
            {
                *slot = true;
            }
        }
        let parts: Vec<&str> = lits.iter().zip(&keep).filter(|(_, k)| **k).map(|((t, _), _)| t.as_str()).collect();
        Ok(Some(parts.join(" and ")))
    }
}
