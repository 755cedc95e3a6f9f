//! Code generation: the IR to the runtime's [`Program`] (tables + condition bytecode).
//!
//! - Atoms are interned: equal atoms anywhere in the bundle share one slot, which the VM
//!   evaluates at most once per request. Each occurrence keeps its own site for traces.
//! - `and`/`or` compile to forward short-circuit jumps; `let` definitions are subroutines.
//! - A policy whose rules mostly require a path (say `action`) to be one of some strings gets a
//!   dispatch table: for each string, the rules that can match it, so the others are never visited.

use crate::interp::rule_order;
use crate::ir::{self, Bundle, Cond, CondId};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use verdict_grammar::printer::path_of;
use verdict_runtime::bytecode::Op;
use verdict_runtime::policy;
use verdict_runtime::program::{
    Arg, AtomDef, CardScope, DEFAULT_HOLD_TTL, DefCode, Dispatch, ExternCode, Instant, Piece, PolicyCode, Program,
    RuleCode, SeriesCode, Site, TermCode,
};

/// Paths a condition forces to be one of some strings (path → allowed strings).
type Constraints = HashMap<u32, BTreeSet<String>>;

/// Adds `more` to `acc`: a path constrained in both keeps the strings both allow.
fn intersect_into(acc: &mut Constraints, more: &Constraints) {
    for (path, set) in more {
        match acc.get_mut(path) {
            Some(existing) => *existing = existing.intersection(set).cloned().collect(),
            None => {
                acc.insert(*path, set.clone());
            }
        }
    }
}

/// Dispatch lists may hold at most this many entries per rule (else no dispatch is built).
const DISPATCH_BUDGET_PER_RULE: usize = 8;

struct Gen<'b> {
    b: &'b Bundle,
    atoms: Vec<AtomDef>,
    atom_ids: HashMap<AtomDef, u32>,
    sites: Vec<Site>,
    code: Vec<u32>,
    /// Which terms and conditions may fault.
    fallible: ir::Fallibility,
}

fn arg(o: ir::Operand) -> Arg {
    match o {
        ir::Operand::Path(p) => Arg::Path(p.0),
        ir::Operand::Const(c) => Arg::Const(c.0),
        ir::Operand::Term(t) => Arg::Term(t.0),
        ir::Operand::None => Arg::None,
    }
}

/// The IR's terms as the program's term table (the same indices: operands come first in both).
fn term(t: &ir::Term) -> TermCode {
    match t {
        ir::Term::Arith(op, l, r) => TermCode::Arith { op: *op, lhs: arg(*l), rhs: arg(*r) },
        ir::Term::Func(func, a) => TermCode::Func { func: *func, arg: arg(*a) },
        ir::Term::Now(field) => TermCode::Now { field: *field },
        ir::Term::State { state, window, seconds } => {
            TermCode::State { series: state.0, window: *window, seconds: *seconds }
        }
        ir::Term::Extern(e, args) => TermCode::Extern { ext: e.0, args: args.iter().map(|a| arg(*a)).collect() },
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Gen<'_> {
    fn op(&mut self, op: Op) {
        op.encode(&mut self.code);
    }

    /// Emits a condition; recursion is bounded by the IR's depth invariant.
    fn cond(&mut self, id: CondId) {
        let Some(node) = self.b.cond(id) else {
            self.op(Op::False {});
            return;
        };
        match &node.cond {
            Cond::Const(true) => self.op(Op::True {}),
            Cond::Const(false) => self.op(Op::False {}),
            Cond::Atom(a) => {
                let def = AtomDef { op: a.op, lhs: arg(a.lhs), rhs: arg(a.rhs) };
                let next = len_u32(self.atoms.len());
                let atom = *self.atom_ids.entry(def).or_insert(next);
                if atom == next {
                    self.atoms.push(def);
                }
                let site = len_u32(self.sites.len());
                self.sites.push(Site {
                    text: a.text.clone(),
                    span: [node.span.start, node.span.end],
                    line: a.line,
                    column: a.column,
                });
                self.op(Op::Atom { atom, site });
            }
            Cond::Not(c) => {
                self.cond(*c);
                self.op(Op::Not {});
            }
            Cond::All(children) | Cond::Any(children) => {
                let all = matches!(node.cond, Cond::All(_));
                if children.is_empty() {
                    self.op(if all { Op::True {} } else { Op::False {} });
                    return;
                }
                let mut patches = Vec::new();
                for (i, c) in children.iter().enumerate() {
                    self.cond(*c);
                    if i + 1 < children.len() {
                        patches.push(self.code.len() + 1);
                        self.op(if all { Op::JumpIfFalse { target: 0 } } else { Op::JumpIfTrue { target: 0 } });
                    }
                }
                let end = len_u32(self.code.len());
                for p in patches {
                    if let Some(slot) = self.code.get_mut(p) {
                        *slot = end;
                    }
                }
            }
            Cond::Ref(d) => self.op(Op::Call { def: d.0 }),
        }
    }

    fn segment(&mut self, id: CondId) -> u32 {
        let entry = len_u32(self.code.len());
        self.cond(id);
        self.op(Op::Ret {});
        entry
    }

    /// The string sets a condition forces paths into (necessary conditions only), intersected
    /// per path. Definitions are walked once each (their constraints are kept in `defs`), so
    /// definitions that share sub-definitions cost linear time.
    fn constraints(&self, id: CondId, defs: &mut Vec<Option<Constraints>>, depth: usize) -> Constraints {
        let mut out = Constraints::new();
        if depth > verdict_grammar::ast::MAX_DEPTH + 1 {
            return out;
        }
        let Some(node) = self.b.cond(id) else { return out };
        match &node.cond {
            Cond::Atom(a) => {
                let (ir::Operand::Path(p), ir::Operand::Const(c)) = (a.lhs, a.rhs) else { return out };
                let strings: Option<BTreeSet<String>> = match (a.op, self.b.constant(c)) {
                    (ir::AtomOp::Eq, Some(Value::String(s))) => Some(std::iter::once(s.clone()).collect()),
                    (ir::AtomOp::In, Some(Value::Array(items))) => {
                        items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<BTreeSet<String>>>()
                    }
                    _ => None,
                };
                if let Some(s) = strings {
                    out.insert(p.0, s);
                }
            }
            Cond::All(children) => {
                for c in children {
                    let inner = self.constraints(*c, defs, depth + 1);
                    intersect_into(&mut out, &inner);
                }
            }
            Cond::Ref(d) => {
                if let Some(known) = defs.get(d.index()).cloned().flatten() {
                    return known;
                }
                if let Some(def) = self.b.defs.get(d.index()) {
                    out = self.constraints(def.cond, defs, depth + 1);
                    if let Some(slot) = defs.get_mut(d.index()) {
                        *slot = Some(out.clone());
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn dispatch(&mut self, p: &ir::Policy, order: &[usize]) -> Option<Dispatch> {
        if p.rules.len() < 4 {
            return None;
        }
        // Per rule in evaluation order: path → allowed strings (intersected).
        let mut per_rule: Vec<Constraints> = Vec::with_capacity(order.len());
        let mut counts: HashMap<u32, usize> = HashMap::new();
        let mut defs = vec![None; self.b.defs.len()];
        for &ri in order {
            // A rule that may call an extern or read state is always visited: skipping it when
            // a later conjunct rules it out would skip the calls (and faults) the interpreter
            // makes, in its order, before reaching that conjunct.
            let m = match p.rules.get(ri) {
                Some(r) if !self.fallible.cond(self.b, r.cond) => self.constraints(r.cond, &mut defs, 0),
                _ => Constraints::new(),
            };
            for path in m.keys() {
                *counts.entry(*path).or_insert(0) += 1;
            }
            per_rule.push(m);
        }
        let (&path, &count) = counts.iter().max_by_key(|(p, c)| (**c, std::cmp::Reverse(**p)))?;
        if count * 2 < p.rules.len() {
            return None;
        }
        let keys: BTreeSet<&String> = per_rule.iter().filter_map(|m| m.get(&path)).flatten().collect();
        let other: Vec<u32> =
            per_rule.iter().enumerate().filter(|(_, m)| !m.contains_key(&path)).map(|(i, _)| len_u32(i)).collect();
        let mut lists = Vec::with_capacity(keys.len());
        let mut total = 0usize;
        for k in keys {
            let list: Vec<u32> = per_rule
                .iter()
                .enumerate()
                .filter(|(_, m)| m.get(&path).is_none_or(|s| s.contains(k)))
                .map(|(i, _)| len_u32(i))
                .collect();
            total += list.len();
            if total > DISPATCH_BUDGET_PER_RULE * p.rules.len() + 1024 {
                return None;
            }
            lists.push((k.clone(), list));
        }
        Some(Dispatch { path, keys: lists, other })
    }
}

/// Compiles a bundle to a program for the VM.
pub fn program(b: &Bundle) -> Program {
    let mut g = Gen {
        b,
        atoms: Vec::new(),
        atom_ids: HashMap::new(),
        sites: Vec::new(),
        code: Vec::new(),
        fallible: ir::Fallibility::new(b),
    };
    let defs: Vec<DefCode> =
        b.defs.iter().map(|d| DefCode { name: d.name.clone(), entry: g.segment(d.cond) }).collect();
    let mut policies = Vec::with_capacity(b.policies.len());
    for p in &b.policies {
        let order = rule_order(b, p);
        let rules = p
            .rules
            .iter()
            .map(|r| RuleCode {
                id: r.id.clone(),
                effect: r.effect.0,
                entry: g.segment(r.cond),
                reason: match &r.template {
                    Some(t) => t.text.clone(),
                    None => policy::rule_reason(&r.id, r.description.as_deref()),
                },
                template: r.template.as_ref().map(|t| {
                    t.pieces
                        .iter()
                        .map(|p| match p {
                            ir::Piece::Text(s) => Piece::Text(s.clone()),
                            ir::Piece::Term { operand, decimals } => {
                                Piece::Term { arg: arg(*operand), decimals: *decimals }
                            }
                        })
                        .collect()
                }),
                codes: r.codes.clone(),
                obligations: r.obligations.clone(),
            })
            .collect();
        let dispatch = g.dispatch(p, &order);
        policies.push(PolicyCode {
            id: p.id.clone(),
            default: p.default.map(|e| e.0),
            default_reason: policy::default_reason(p.default.map(|e| b.effect(e))),
            rules,
            order: order.into_iter().map(len_u32).collect(),
            dispatch,
        });
    }
    let instant =
        |i: &Option<ir::Instant>| i.as_ref().map(|i| Instant { text: i.text.clone(), nanos: i.at.as_nanosecond() });
    Program {
        bundle_id: b.id.clone(),
        version: b.version.clone(),
        fingerprint: crate::emit::fingerprint(b),
        effects: b.effects.clone(),
        combine_first: b.combine == ir::Combine::First,
        effective_from: instant(&b.effective_from),
        effective_until: instant(&b.effective_until),
        card_scope: b.card_scope.as_ref().map(|s| CardScope {
            vendor_id: s.vendor_id.clone(),
            allowed_actions: s.allowed_actions.clone(),
            condition_ids: s.condition_ids.clone(),
        }),
        paths: b.paths.clone(),
        path_texts: b.paths.iter().map(|p| path_of(p.iter().map(String::as_str))).collect(),
        consts: b.consts.clone(),
        atoms: g.atoms,
        sites: g.sites,
        code: g.code,
        defs,
        policies,
        terms: b.terms.iter().map(|t| term(&t.term)).collect(),
        term_texts: b.terms.iter().map(|t| t.text.clone()).collect(),
        externs: b
            .externs
            .iter()
            .map(|e| ExternCode { name: e.name.clone(), params: e.params.clone(), returns: e.returns.clone() })
            .collect(),
        series: b
            .states
            .iter()
            .map(|s| SeriesCode {
                name: s.name.clone(),
                add: arg(s.add),
                key: s.key.iter().map(|p| p.0).collect(),
                on: s.on.iter().map(|e| e.0).collect(),
                hold: s.apply == ir::Apply::Commit,
            })
            .collect(),
        timezone: b.timezone.clone().unwrap_or_else(|| "UTC".to_owned()),
        hold_ttl: b.hold_ttl.unwrap_or(DEFAULT_HOLD_TTL),
        schema: b.schema.iter().flatten().map(|e| (e.path.0, e.ty.clone())).collect(),
        required: b.required.iter().map(|(p, _)| p.0).collect(),
    }
}
