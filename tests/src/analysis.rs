//! Independent checks of the rule analysis, written against the interpreter only (no analysis
//! internals): every witness of every finding shows what the finding says
//! ([`verify_witnesses`]), universal claims survive random requests biased towards the bundle's
//! constants ([`check_universal`]), and every `diff` transition re-evaluates as reported
//! ([`verify_diff`]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed expectation is a test failure"
)]

use serde_json::{Map, Value, json};
use verdict_compiler::analysis::DiffReport;
use verdict_compiler::diagnostic::{Code, Diagnostic};
use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir::{Bundle, MatchMode, Policy};
use verdict_runtime::decision::{EvaluationResult, NOT_APPLICABLE};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::StateView;

/// A moment inside the bundle's effective window (its start, else just before its end).
pub fn inside_window(b: &Bundle) -> jiff::Timestamp {
    if let Some(f) = &b.effective_from {
        return f.at;
    }
    if let Some(u) = &b.effective_until {
        return u.at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(u.at);
    }
    jiff::Timestamp::UNIX_EPOCH
}

/// Evaluates a request context on a bundle inside its window, in the world witnesses are judged
/// in (every state series empty, no extern bound: [`verdict_runtime::state::Empty`]); an error when the
/// evaluation faults.
pub fn eval(b: &Bundle, req: &Value) -> Result<EvaluationResult, String> {
    let interp = Interpreter::new(b).map_err(|e| e.to_string())?;
    let r = Request::from_value(req.clone()).map_err(|e| format!("witness is not a valid request: {e}"))?;
    let env =
        Env { now: inside_window(b), decision_id: None, state: Some(&verdict_runtime::state::Empty), externs: None };
    let mut host = verdict_runtime::term::HostMemo::default();
    let result = interp.evaluate_memo(&r, &env, Mode::PLAIN, &mut host);
    // A fault decides by the host's failure, not by the rules: no finding may rest on one.
    if host.faulted {
        return Err(format!("the witness faults: {}", result.decision.reason));
    }
    Ok(result)
}

/// The worlds a universal claim must survive on each request: the empty one and a few drawn
/// ones (extern results of every type and errors, state sums and outages).
const WORLDS: u64 = 3;

/// Whether one rule's condition holds on a request: a bundle with that rule alone, no gates,
/// default `none`.
pub fn rule_holds(b: &Bundle, p: usize, i: usize, req: &Value) -> Result<bool, String> {
    let rule = b.policies.get(p).and_then(|x| x.rules.get(i)).ok_or("no such rule")?.clone();
    let mut probe = b.clone();
    probe.effective_from = None;
    probe.effective_until = None;
    probe.card_scope = None;
    probe.policies = vec![Policy {
        id: "probe".into(),
        span: rule.span,
        description: None,
        card_derived: false,
        match_mode: MatchMode::First,
        default: None,
        rules: vec![rule],
    }];
    Ok(eval(&probe, req)?.decision.kind != NOT_APPLICABLE)
}

fn find_rule(b: &Bundle, policy: Option<&str>, rule: Option<&str>) -> Option<(usize, usize)> {
    let p = b.policies.iter().position(|x| Some(x.id.as_str()) == policy)?;
    let i = b.policies.get(p)?.rules.iter().position(|r| Some(r.id.as_str()) == rule)?;
    Some((p, i))
}

fn rule_at(b: &Bundle, span: verdict_grammar::ast::Span) -> Option<(usize, usize)> {
    for (p, pol) in b.policies.iter().enumerate() {
        for (i, r) in pol.rules.iter().enumerate() {
            if r.span.start == span.start {
                return Some((p, i));
            }
        }
    }
    None
}

fn matched(res: &EvaluationResult, b: &Bundle, p: usize, i: usize) -> bool {
    let id = &b.policies[p].rules[i].id;
    res.policy_decisions.get(p).and_then(|d| d.matched_rule_id.as_ref()) == Some(id)
}

/// Feeds every witness of every finding to the interpreter and checks what the finding says.
/// Existential codes must carry a witness; universal ones must not.
pub fn verify_witnesses(b: &Bundle, diags: &[Diagnostic]) -> Result<usize, String> {
    let mut checked = 0;
    for d in diags {
        let what = format!("{} {:?}/{:?}: {}", d.code.as_str(), d.policy, d.rule, d.message);
        match d.code {
            Code::Conflict | Code::Ambiguity | Code::Gap => {
                let w = d.witness.as_ref().ok_or_else(|| format!("{what}: no witness"))?;
                let res = eval(b, w)?;
                match d.code {
                    Code::Gap => {
                        if res.decision.kind != NOT_APPLICABLE {
                            return Err(format!("{what}: witness {w} decides {}", res.decision.kind));
                        }
                    }
                    Code::Conflict => {
                        let (p, i) = find_rule(b, d.policy.as_deref(), d.rule.as_deref())
                            .ok_or_else(|| format!("{what}: unknown rule"))?;
                        let label = d.labels.first().ok_or_else(|| format!("{what}: no partner label"))?;
                        let (q, j) = rule_at(b, label.span).ok_or_else(|| format!("{what}: label is not a rule"))?;
                        if p == q {
                            return Err(format!("{what}: partner in the same policy"));
                        }
                        if b.policies[p].rules[i].effect == b.policies[q].rules[j].effect {
                            return Err(format!("{what}: same effects"));
                        }
                        if !matched(&res, b, p, i) || !matched(&res, b, q, j) {
                            return Err(format!(
                                "{what}: witness {w} is not decided by both rules: {:?}",
                                res.policy_decisions
                            ));
                        }
                    }
                    _ => {
                        let (p, j) = find_rule(b, d.policy.as_deref(), d.rule.as_deref())
                            .ok_or_else(|| format!("{what}: unknown rule"))?;
                        let label = d.labels.first().ok_or_else(|| format!("{what}: no partner label"))?;
                        let (q, i) = rule_at(b, label.span).ok_or_else(|| format!("{what}: label is not a rule"))?;
                        let pol = &b.policies[p];
                        if p != q || pol.match_mode != MatchMode::Priority {
                            return Err(format!("{what}: partner not in the same priority policy"));
                        }
                        let (ri, rj) = (&pol.rules[i], &pol.rules[j]);
                        if ri.priority != rj.priority || ri.effect == rj.effect {
                            return Err(format!("{what}: not same priority and different effects"));
                        }
                        if !rule_holds(b, p, i, w)? || !rule_holds(b, p, j, w)? {
                            return Err(format!("{what}: witness {w} does not make both rules hold"));
                        }
                        let decider = res.policy_decisions[p]
                            .matched_rule_id
                            .as_ref()
                            .and_then(|id| pol.rules.iter().find(|r| &r.id == id))
                            .map(|r| r.priority);
                        if decider != Some(ri.priority) {
                            return Err(format!("{what}: a rule of another priority decides {w}"));
                        }
                    }
                }
                checked += 1;
            }
            Code::Unreachable | Code::Unsatisfiable | Code::Redundant | Code::DeadDefault if d.witness.is_some() => {
                return Err(format!("{what}: a universal claim carries a witness"));
            }
            _ => {}
        }
    }
    Ok(checked)
}

pub use crate::generate::Rng;

/// Values worth trying at any path of a bundle: its constants, their elements and keys, values
/// next to them (numbers ±1, ±0.5; strings extended, cut, joined; regexes with their
/// metacharacters dropped), and one value of every type.
pub fn interesting_values(b: &Bundle) -> Vec<Value> {
    let mut base: Vec<Value> = Vec::new();
    let push = |v: Value, base: &mut Vec<Value>| {
        if !base.contains(&v) {
            base.push(v);
        }
    };
    for c in &b.consts {
        push(c.clone(), &mut base);
        match c {
            Value::Array(items) => {
                for it in items {
                    push(it.clone(), &mut base);
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    push(Value::String(k.clone()), &mut base);
                    push(v.clone(), &mut base);
                }
            }
            _ => {}
        }
    }
    if let Some(s) = &b.card_scope {
        push(Value::String(s.vendor_id.clone()), &mut base);
        for a in &s.allowed_actions {
            push(Value::String(a.clone()), &mut base);
        }
    }
    let mut out = base.clone();
    let strings: Vec<String> = base.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    for v in &base {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    for d in [-1i64, 1] {
                        if let Some(x) = i.checked_add(d) {
                            push(json!(x), &mut out);
                        }
                    }
                }
                if let Some(f) = n.as_f64() {
                    for d in [-0.5, 0.5] {
                        push(json!(f + d), &mut out);
                    }
                    push(json!(-f), &mut out);
                }
            }
            Value::String(s) => {
                let chars: Vec<char> = s.chars().collect();
                push(json!(format!("{s}x")), &mut out);
                push(json!(format!("x{s}")), &mut out);
                push(json!(format!("{s}{s}")), &mut out);
                if chars.len() > 1 {
                    push(json!(chars[1..].iter().collect::<String>()), &mut out);
                    push(json!(chars[..chars.len() - 1].iter().collect::<String>()), &mut out);
                }
                let plain: String = s.chars().filter(|c| !"^$\\.*+?()[]{}|".contains(*c)).collect();
                push(json!(plain), &mut out);
                push(json!(plain.to_uppercase()), &mut out);
            }
            _ => {}
        }
    }
    for (i, a) in strings.iter().enumerate().take(24) {
        for c in strings.iter().skip(i + 1).take(4) {
            push(json!(format!("{a}{c}")), &mut out);
        }
    }
    for v in [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("a"),
        json!([]),
        json!({}),
    ] {
        push(v, &mut out);
    }
    out
}

fn insert(root: &mut Map<String, Value>, segs: &[String], v: Value) {
    let Some((first, rest)) = segs.split_first() else { return };
    if rest.is_empty() {
        root.insert(first.clone(), v);
        return;
    }
    let entry = root.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = entry {
        insert(m, rest, v);
    }
}

/// Objects whose keys are all small indices become lists (randomly), gaps filled with `null`.
fn listify(v: &mut Value, rng: &mut Rng) {
    if let Value::Object(m) = v {
        for (_, c) in m.iter_mut() {
            listify(c, rng);
        }
        let idx: Option<Vec<usize>> = m
            .keys()
            .map(|k| k.parse::<usize>().ok().filter(|i| *i < 8 && k.bytes().all(|b| b.is_ascii_digit())))
            .collect();
        if let Some(idx) = idx
            && !idx.is_empty()
            && rng.chance(60)
        {
            let len = idx.iter().max().map_or(0, |m| m + 1);
            let mut items = vec![Value::Null; len];
            for (k, c) in m.iter() {
                if let Ok(i) = k.parse::<usize>() {
                    items[i] = c.clone();
                }
            }
            *v = Value::Array(items);
        }
    }
}

/// Per path, the members of the analysis' regions: one value of every class of values the
/// bundle's atoms can tell apart at that path (used only to aim the generator; the interpreter
/// still judges every request).
fn region_values(b: &Bundle) -> Vec<(Vec<String>, Vec<Value>)> {
    let dom = verdict_compiler::analysis::domain::Domain::build(
        &[b],
        &verdict_compiler::analysis::Options::default().domain_limits(),
    );
    dom.paths.iter().map(|p| (p.segments.clone(), p.regions.iter().filter_map(|r| r.value.clone()).collect())).collect()
}

/// Random request contexts biased towards the bundle's paths and constants (and the members of
/// the analysis' regions at each path).
pub fn random_requests(b: &Bundle, n: usize, seed: u64) -> Vec<Value> {
    let values = interesting_values(b);
    let mut paths: Vec<(Vec<String>, Vec<Value>)> = region_values(b);
    for p in &b.paths {
        if !paths.iter().any(|(q, _)| q == p) {
            paths.push((p.clone(), Vec::new()));
        }
    }
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut top = Map::new();
        let density = 20 + rng.below(70) as u64;
        for (p, own) in &paths {
            if rng.chance(density) {
                let v = if !own.is_empty() && rng.chance(50) {
                    own[rng.below(own.len())].clone()
                } else {
                    values[rng.below(values.len())].clone()
                };
                insert(&mut top, p, v);
            }
        }
        let mut top = Value::Object(top);
        listify(&mut top, &mut rng);
        let Value::Object(top) = top else { continue };
        let mut req = Map::new();
        let mut data = Map::new();
        for (k, v) in top {
            let own =
                matches!((k.as_str(), &v), ("subject" | "resource", Value::Object(_)) | ("action", Value::String(_)));
            if own && rng.chance(85) {
                req.insert(k, v);
            } else {
                data.insert(k, v);
            }
        }
        req.insert("data".into(), Value::Object(data));
        out.push(Value::Object(req));
    }
    out
}

/// One universal claim, as the interpreter can check it on a request.
enum Claim {
    /// The rule never decides its policy (V001, V002 on a rule).
    NeverDecides(usize, usize),
    /// The policy's default never decides (V009).
    NeverDefault(usize),
    /// Removing the rule changes no decision of its policy (V003): the bundle without it.
    Redundant(usize, usize, Box<Bundle>),
    /// The definition never holds (V002 on a `let`): a probe bundle with it as a rule.
    NeverHolds(Box<Bundle>),
}

/// Checks every V001/V002/V003/V009 claim of `diags` against `n` random requests; returns the
/// number of claims checked.
pub fn check_universal(b: &Bundle, diags: &[Diagnostic], n: usize, seed: u64) -> Result<usize, String> {
    let mut claims: Vec<(String, Claim)> = Vec::new();
    for d in diags {
        let what = format!("{} {:?}/{:?}: {}", d.code.as_str(), d.policy, d.rule, d.message);
        let claim = match d.code {
            Code::Unreachable | Code::Unsatisfiable if d.rule.is_some() => {
                let (p, i) = find_rule(b, d.policy.as_deref(), d.rule.as_deref()).ok_or(what.clone())?;
                Claim::NeverDecides(p, i)
            }
            Code::Unsatisfiable => {
                let def = b.defs.iter().find(|x| x.span == d.span).ok_or(what.clone())?;
                let mut probe = b.clone();
                probe.effective_from = None;
                probe.effective_until = None;
                probe.card_scope = None;
                let mut pol = b.policies[0].clone();
                pol.default = None;
                pol.match_mode = MatchMode::First;
                let mut rule = pol.rules[0].clone();
                rule.cond = def.cond;
                pol.rules = vec![rule];
                probe.policies = vec![pol];
                Claim::NeverHolds(Box::new(probe))
            }
            Code::Redundant => {
                let (p, i) = find_rule(b, d.policy.as_deref(), d.rule.as_deref()).ok_or(what.clone())?;
                let mut without = b.clone();
                without.policies[p].rules.remove(i);
                Claim::Redundant(p, i, Box::new(without))
            }
            Code::DeadDefault => {
                let p =
                    b.policies.iter().position(|x| Some(x.id.as_str()) == d.policy.as_deref()).ok_or(what.clone())?;
                Claim::NeverDefault(p)
            }
            _ => continue,
        };
        claims.push((what, claim));
    }
    if claims.is_empty() {
        return Ok(0);
    }
    let now = inside_window(b);
    let interp = Interpreter::new(b).map_err(|e| e.to_string())?;
    let mut others: Vec<Option<Interpreter<'_>>> = Vec::new();
    for (_, c) in &claims {
        others.push(match c {
            Claim::Redundant(_, _, w) | Claim::NeverHolds(w) => Some(Interpreter::new(w).map_err(|e| e.to_string())?),
            _ => None,
        });
    }
    for (k, req) in random_requests(b, n, seed).into_iter().enumerate() {
        let r = Request::from_value(req.clone()).map_err(|e| format!("generated a bad request {req}: {e}"))?;
        for w in 0..=WORLDS {
            let drawn = crate::host::Drawn { salt: seed.wrapping_mul(1_000_003).wrapping_add(k as u64 * 7 + w) };
            let env = if w == 0 {
                Env { now, decision_id: None, state: Some(&verdict_runtime::state::Empty), externs: None }
            } else {
                Env { now, decision_id: None, state: Some(&drawn), externs: Some(&drawn) }
            };
            let res = interp.evaluate(&r, &env, Mode::PLAIN);
            for ((what, c), other) in claims.iter().zip(&others) {
                let broken = match c {
                    Claim::NeverDecides(p, i) => matched(&res, b, *p, *i),
                    Claim::NeverDefault(p) => res.policy_decisions.get(*p).is_some_and(|d| d.matched_rule_id.is_none()),
                    Claim::Redundant(p, i, _) => {
                        matched(&res, b, *p, *i)
                            && other.as_ref().is_some_and(|o| {
                                let alt = o.evaluate(&r, &env, Mode::PLAIN);
                                alt.policy_decisions.get(*p).map(|d| &d.kind)
                                    != res.policy_decisions.get(*p).map(|d| &d.kind)
                            })
                    }
                    // The probe's one rule decides by holding, or by a fault (which is not holding).
                    Claim::NeverHolds(_) => other.as_ref().is_some_and(|o| {
                        let mut host = verdict_runtime::term::HostMemo::default();
                        let kind = o.evaluate_memo(&r, &env, Mode::PLAIN, &mut host).decision.kind;
                        kind != NOT_APPLICABLE && !host.faulted
                    }),
                };
                if broken {
                    return Err(format!("{what}: contradicted by {req} in world {w}"));
                }
            }
        }
    }
    Ok(claims.len())
}

/// Re-evaluates every transition of a diff on both bundles.
pub fn verify_diff(old: &Bundle, new: &Bundle, report: &DiffReport) -> Result<(), String> {
    for t in &report.transitions {
        let a = eval(old, &t.witness)?;
        let b = eval(new, &t.witness)?;
        if a.decision.kind != t.from || b.decision.kind != t.to {
            return Err(format!(
                "transition {} → {}: witness {} gives {} → {}",
                t.from, t.to, t.witness, a.decision.kind, b.decision.kind
            ));
        }
        if a.decision.matched_rule_id != t.old.rule || b.decision.matched_rule_id != t.new.rule {
            return Err(format!("transition {} → {}: the reported rules are not the deciders", t.from, t.to));
        }
    }
    Ok(())
}

/// Checks an "equivalent" verdict by random search: no request (aimed at either bundle's
/// constants) gets different decision kinds.
pub fn check_equivalent(old: &Bundle, new: &Bundle, n: usize, seed: u64) -> Result<(), String> {
    let (io, in_) =
        (Interpreter::new(old).map_err(|e| e.to_string())?, Interpreter::new(new).map_err(|e| e.to_string())?);
    let (to, tn) = (inside_window(old), inside_window(new));
    let mut reqs = random_requests(old, n / 2, seed);
    reqs.extend(random_requests(new, n - n / 2, seed ^ 0x5555));
    for (k, req) in reqs.into_iter().enumerate() {
        let r = Request::from_value(req.clone()).map_err(|e| e.to_string())?;
        for w in 0..=WORLDS {
            let drawn = crate::host::Drawn { salt: seed.wrapping_mul(1_000_003).wrapping_add(k as u64 * 7 + w) };
            let env = |now| {
                if w == 0 {
                    Env {
                        now,
                        decision_id: None,
                        state: Some(&verdict_runtime::state::Empty as &dyn StateView),
                        externs: None,
                    }
                } else {
                    Env { now, decision_id: None, state: Some(&drawn as &dyn StateView), externs: Some(&drawn) }
                }
            };
            let (a, b) = (io.evaluate(&r, &env(to), Mode::PLAIN), in_.evaluate(&r, &env(tn), Mode::PLAIN));
            if a.decision.kind != b.decision.kind {
                return Err(format!(
                    "claimed equivalent, but {req} gives {} then {} in world {w}",
                    a.decision.kind, b.decision.kind
                ));
            }
        }
    }
    Ok(())
}
