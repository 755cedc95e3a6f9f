//! A structure-aware generator of hostile programs: `runtime::program::Program` values built
//! directly (not through the compiler), driven by bytes through `arbitrary::Unstructured`, so the
//! same generator serves the `hostile_program` fuzz target and the proptest of
//! `tests/tests/hostile_programs.rs`.
//!
//! Shapes, chosen by the first byte:
//! - well-formed programs: definitions and rules compiled from random condition trees (atoms of
//!   every kind, `true`/`false`, `not`, short-circuit `and`/`or`, calls of earlier definitions);
//! - exponential call trees: `d{i} = d{i-1} and d{i-1}` (or `or`, or with a `not`) up to 34 deep,
//!   which take 2^34 steps to anyone who does not share a definition's value within a request;
//! - self-calls behind jumps: `d0: True; JumpIfTrue @4; Ret; @4: Call d0; Ret` and calls in a
//!   cycle through several definitions, hidden past a `Ret` the same way;
//! - raw code: random words (opcodes, operands in and out of range), entries anywhere, jumps into
//!   the middle of instructions;
//! - mutants: a well-formed program with a few words, entries, indices, orders or tables changed.
//!
//! Dispatch tables list every rule under every key (sound whatever the conditions), unless
//! [`LYING_DISPATCH`] is on.
//!
//! The property every consumer checks: `Program::verify` refuses the program, or the VM, the JIT
//! and the traced VM all decide it, within bounded work, with the same decision.

use arbitrary::{Result, Unstructured};
use serde_json::{Value, json};
use verdict_runtime::bytecode::Op;
use verdict_runtime::program::{Arg, AtomDef, DefCode, Dispatch, PolicyCode, Program, RuleCode, Site};
use verdict_runtime::request::Request;
use verdict_vocab::AtomOp;

/// The deepest exponential call tree generated (2^34 calls without sharing).
pub const MAX_TREE_DEPTH: u32 = 34;

/// Whether dispatch tables may leave out rules that hold. A dispatch table is part of a program's
/// meaning, and a crafted one can lie; the traced VM ignores dispatch tables while the VM and the
/// JIT honour them, so a lie would make them disagree (`a_lying_dispatch_table_…` in
/// `tests/tests/hostile_programs.rs`). `Program::verify_dispatch` refuses a table that leaves out
/// a rule that can hold, so the generator draws lying tables too: every one must be refused.
pub const LYING_DISPATCH: bool = true;

/// The paths every generated program reads (requests set them from [`VALUES`]).
pub const PATHS: [&[&str]; 5] =
    [&["subject", "role"], &["action"], &["resource", "tags"], &["resource", "owner"], &["subject", "id"]];

/// The constants of every generated program: strings, numbers, a list, a pattern.
fn consts() -> Vec<Value> {
    vec![
        json!("admin"),
        json!("read"),
        json!("u-1"),
        json!(3),
        json!(2.5),
        json!(["read", "write"]),
        json!("^adm"),
        json!("locked"),
        json!(true),
        json!(null),
        json!("("),
    ]
}

/// Index of the valid pattern and of the invalid one in [`consts`].
const PATTERN: u32 = 6;
const BAD_PATTERN: u32 = 10;

/// The values requests draw from (a missing path is `None`).
pub const VALUES: [Option<&str>; 9] = [
    None,
    Some("\"admin\""),
    Some("\"read\""),
    Some("\"u-1\""),
    Some("3"),
    Some("[\"locked\", \"read\"]"),
    Some("null"),
    Some("true"),
    Some("{\"a\": 1}"),
];

/// A condition tree, compiled to bytecode by [`emit`].
#[derive(Debug, Clone)]
enum Cond {
    Atom(u32),
    True,
    False,
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Call(u32),
}

/// Emits a condition; short-circuit jumps go to the instruction after their right operand.
fn emit(c: &Cond, code: &mut Vec<u32>) {
    match c {
        Cond::Atom(a) => Op::Atom { atom: *a, site: *a }.encode(code),
        Cond::True => Op::True {}.encode(code),
        Cond::False => Op::False {}.encode(code),
        Cond::Not(x) => {
            emit(x, code);
            Op::Not {}.encode(code);
        }
        Cond::And(x, y) | Cond::Or(x, y) => {
            emit(x, code);
            let at = code.len();
            if matches!(c, Cond::And(..)) {
                Op::JumpIfFalse { target: 0 }.encode(code);
            } else {
                Op::JumpIfTrue { target: 0 }.encode(code);
            }
            emit(y, code);
            let end = u32::try_from(code.len()).unwrap_or(u32::MAX);
            if let Some(slot) = code.get_mut(at + 1) {
                *slot = end;
            }
        }
        Cond::Call(d) => Op::Call { def: *d }.encode(code),
    }
}

/// Definition `i` (named `d{i}`) at `entry`.
fn def(i: usize, entry: u32) -> DefCode {
    DefCode { name: format!("d{i}"), entry }
}

/// Emits a segment (a condition and its `Ret`) and returns its entry.
fn segment(c: &Cond, code: &mut Vec<u32>) -> u32 {
    let entry = u32::try_from(code.len()).unwrap_or(u32::MAX);
    emit(c, code);
    Op::Ret {}.encode(code);
    entry
}

/// A random condition over `atoms` atoms and the definitions below `defs`, at most `depth` deep.
fn cond(u: &mut Unstructured<'_>, atoms: u32, defs: u32, depth: u32) -> Result<Cond> {
    let leaf = depth == 0 || u.ratio(1, 3)?;
    let choice: u8 = u.int_in_range(0..=if leaf { 3 } else { 6 })?;
    Ok(match choice {
        0 | 1 if atoms > 0 => Cond::Atom(u.int_in_range(0..=atoms - 1)?),
        2 if defs > 0 => Cond::Call(u.int_in_range(0..=defs - 1)?),
        0..=2 => Cond::True,
        3 => {
            if u.arbitrary()? {
                Cond::True
            } else {
                Cond::False
            }
        }
        4 => Cond::Not(Box::new(cond(u, atoms, defs, depth - 1)?)),
        5 => Cond::And(Box::new(cond(u, atoms, defs, depth - 1)?), Box::new(cond(u, atoms, defs, depth - 1)?)),
        _ => Cond::Or(Box::new(cond(u, atoms, defs, depth - 1)?), Box::new(cond(u, atoms, defs, depth - 1)?)),
    })
}

/// An atom with the operands its kind needs.
fn atom(u: &mut Unstructured<'_>) -> Result<AtomDef> {
    let op = *u.choose(AtomOp::ALL)?;
    let paths = u32::try_from(PATHS.len()).unwrap_or(1);
    let n_consts = u32::try_from(consts().len()).unwrap_or(1);
    let lhs = Arg::Path(u.int_in_range(0..=paths - 1)?);
    let rhs = match op {
        _ if op.is_unary() => Arg::None,
        AtomOp::Matches => Arg::Const(PATTERN),
        _ if u.ratio(1, 4)? => Arg::Path(u.int_in_range(0..=paths - 1)?),
        _ => {
            let c = u.int_in_range(0..=n_consts - 2)?;
            Arg::Const(c)
        }
    };
    Ok(AtomDef { op, lhs, rhs })
}

/// The tables every program shares, around given effects and atoms (one site per atom).
fn base(effects: &[&str], atoms: Vec<AtomDef>, combine_first: bool) -> Program {
    Program {
        bundle_id: "hostile".into(),
        version: "1".into(),
        fingerprint: "sha256:0".into(),
        effects: effects.iter().map(|e| (*e).to_owned()).collect(),
        combine_first,
        effective_from: None,
        effective_until: None,
        card_scope: None,
        paths: PATHS.iter().map(|p| p.iter().map(|s| (*s).to_owned()).collect()).collect(),
        path_texts: PATHS.iter().map(|p| p.join(".")).collect(),
        consts: consts(),
        sites: (0..atoms.len())
            .map(|i| Site { text: format!("a{i}"), span: [0, 1], line: 1, column: u32::try_from(i).unwrap_or(0) + 1 })
            .collect(),
        atoms,
        ..Program::default()
    }
}

/// The shared tables with `atoms` random atoms and one to three effects.
fn skeleton(u: &mut Unstructured<'_>, atoms: usize) -> Result<Program> {
    let mut list = Vec::with_capacity(atoms);
    for _ in 0..atoms {
        list.push(atom(u)?);
    }
    let n_effects = u.int_in_range(1..=3)?;
    let effects = ["deny", "allow", "audit"];
    Ok(base(effects.get(..n_effects).unwrap_or(&effects), list, u.arbitrary()?))
}

/// Policies over the rule entries, in up to three policies, with random defaults, orders and
/// (sometimes) dispatch tables on `action`.
fn policies(u: &mut Unstructured<'_>, p: &Program, entries: &[u32]) -> Result<Vec<PolicyCode>> {
    let n_effects = u32::try_from(p.effects.len()).unwrap_or(1);
    let mut out = Vec::new();
    let mut rest = entries;
    let mut i = 0;
    while !rest.is_empty() {
        let take = if out.len() == 2 { rest.len() } else { u.int_in_range(1..=rest.len())? };
        let (mine, after) = rest.split_at(take);
        rest = after;
        let mut rules = Vec::new();
        for (j, e) in mine.iter().enumerate() {
            rules.push(RuleCode {
                id: format!("p{i}-r{j}"),
                effect: u.int_in_range(0..=n_effects - 1)?,
                entry: *e,
                reason: format!("rule {j}"),
                template: None,
                codes: Vec::new(),
                obligations: serde_json::Map::new(),
            });
        }
        let mut order: Vec<u32> = (0..u32::try_from(rules.len()).unwrap_or(0)).collect();
        for k in (1..order.len()).rev() {
            let j = u.int_in_range(0..=k)?;
            order.swap(k, j);
        }
        let dispatch = if u.ratio(1, 4)? {
            let mut keys = Vec::new();
            for key in ["read", "admin"] {
                let mut list = Vec::new();
                for pos in 0..u32::try_from(order.len()).unwrap_or(0) {
                    // A list that leaves out a rule is a claim that the rule cannot match: true
                    // only by chance here, so such lists are drawn only with `LYING_DISPATCH`.
                    if !LYING_DISPATCH || u.arbitrary()? {
                        list.push(pos);
                    }
                }
                keys.push((key.to_owned(), list));
            }
            let other = (0..u32::try_from(order.len()).unwrap_or(0)).collect();
            Some(Dispatch { path: 1, keys, other })
        } else {
            None
        };
        let default = if u.ratio(1, 4)? { None } else { Some(u.int_in_range(0..=n_effects - 1)?) };
        out.push(PolicyCode { id: format!("p{i}"), default, default_reason: "default".into(), rules, order, dispatch });
        i += 1;
    }
    Ok(out)
}

/// A well-formed program: acyclic definitions and rules from random condition trees.
fn well_formed(u: &mut Unstructured<'_>) -> Result<Program> {
    let atoms = u.int_in_range(1..=8)?;
    let mut p = skeleton(u, atoms)?;
    let n_atoms = u32::try_from(atoms).unwrap_or(1);
    let n_defs: u32 = u.int_in_range(0..=5)?;
    let mut code = Vec::new();
    for d in 0..n_defs {
        let c = cond(u, n_atoms, d, 4)?;
        p.defs.push(def(p.defs.len(), segment(&c, &mut code)));
    }
    let n_rules = u.int_in_range(1..=6)?;
    let mut entries = Vec::new();
    for _ in 0..n_rules {
        let c = cond(u, n_atoms, n_defs, 5)?;
        entries.push(segment(&c, &mut code));
    }
    p.code = code;
    p.policies = policies(u, &p, &entries)?;
    Ok(p)
}

/// `d0` an atom (or two), then `d{i} = d{i-1} OP d{i-1}` up to `depth`, and rules calling the top.
fn exponential(u: &mut Unstructured<'_>) -> Result<Program> {
    let mut p = skeleton(u, 2)?;
    // `subject.role == "admin"` and `action == "read"`: requests make them true and false.
    p.atoms = vec![
        AtomDef { op: AtomOp::Eq, lhs: Arg::Path(0), rhs: Arg::Const(0) },
        AtomDef { op: AtomOp::Eq, lhs: Arg::Path(1), rhs: Arg::Const(1) },
    ];
    let depth = u.int_in_range(1..=MAX_TREE_DEPTH)?;
    let shape: u8 = u.int_in_range(0..=3)?;
    let mut code = Vec::new();
    let base = if u.arbitrary()? { Cond::Atom(0) } else { Cond::Or(Box::new(Cond::Atom(0)), Box::new(Cond::Atom(1))) };
    p.defs.push(def(0, segment(&base, &mut code)));
    for d in 1..=depth {
        let call = || Box::new(Cond::Call(d - 1));
        let c = match shape {
            0 => Cond::And(call(), call()),
            1 => Cond::Or(call(), call()),
            // Both calls always run: the first is negated into the short-circuit.
            2 => Cond::Or(Box::new(Cond::Not(call())), call()),
            _ => Cond::And(Box::new(Cond::Or(call(), Box::new(Cond::True))), call()),
        };
        p.defs.push(def(p.defs.len(), segment(&c, &mut code)));
    }
    let top = Cond::Call(depth);
    let mut entries = vec![segment(&top, &mut code)];
    if u.arbitrary()? {
        entries.push(segment(&Cond::Not(Box::new(Cond::Call(depth))), &mut code));
    }
    p.code = code;
    p.policies = policies(u, &p, &entries)?;
    Ok(p)
}

/// Calls hidden past a `Ret`: a definition whose self-call (or a call into a cycle) follows a
/// jump over its first `Ret`.
fn self_call(u: &mut Unstructured<'_>) -> Result<Program> {
    let mut p = skeleton(u, 1)?;
    let n_defs: u32 = u.int_in_range(1..=3)?;
    let mut code = Vec::new();
    for d in 0..n_defs {
        let entry = u32::try_from(code.len()).unwrap_or(u32::MAX);
        // `True; JumpIfTrue @+4; Ret; @+4: Call (next in the cycle); Ret`.
        let callee = if u.ratio(1, 8)? { u.int_in_range(0..=n_defs)? } else { (d + 1) % n_defs };
        Op::True {}.encode(&mut code);
        Op::JumpIfTrue { target: entry + 4 }.encode(&mut code);
        Op::Ret {}.encode(&mut code);
        Op::Call { def: callee }.encode(&mut code);
        Op::Ret {}.encode(&mut code);
        p.defs.push(def(p.defs.len(), entry));
    }
    let rule = segment(&Cond::Call(0), &mut code);
    p.code = code;
    p.policies = policies(u, &p, &[rule])?;
    Ok(p)
}

/// A word of hostile code: mostly opcodes, else small, boundary or random operands.
fn word(u: &mut Unstructured<'_>, len: u32) -> Result<u32> {
    Ok(match u.int_in_range(0..=9)? {
        0..=5 => u.int_in_range(0..=8)?,
        6 => u.int_in_range(0..=len.saturating_add(2))?,
        7 => u32::MAX,
        8 => u.int_in_range(0..=40)?,
        _ => u.arbitrary()?,
    })
}

/// Random code: entries anywhere (often inside instructions), anything out of range.
fn raw(u: &mut Unstructured<'_>) -> Result<Program> {
    let atoms = u.int_in_range(1..=4)?;
    let mut p = skeleton(u, atoms)?;
    let len: u32 = u.int_in_range(1..=48)?;
    let mut code = Vec::new();
    for _ in 0..len {
        code.push(word(u, len)?);
    }
    if u.ratio(3, 4)? {
        Op::Ret {}.encode(&mut code);
    }
    let n_defs: u32 = u.int_in_range(0..=4)?;
    for _ in 0..n_defs {
        let entry = u.int_in_range(0..=len + 1)?;
        p.defs.push(def(p.defs.len(), entry));
    }
    let n_rules = u.int_in_range(1..=4)?;
    let mut entries = Vec::new();
    for _ in 0..n_rules {
        entries.push(u.int_in_range(0..=len + 1)?);
    }
    p.code = code;
    p.policies = policies(u, &p, &entries)?;
    Ok(p)
}

/// A well-formed program with a few things changed: code words, jump targets (into the middle of
/// instructions), entries, definition offsets, atom operands, orders, dispatch lists, effects.
fn mutant(u: &mut Unstructured<'_>) -> Result<Program> {
    let mut p = if u.arbitrary()? { well_formed(u)? } else { exponential(u)? };
    let n: u8 = u.int_in_range(1..=3)?;
    for _ in 0..n {
        let len = u32::try_from(p.code.len()).unwrap_or(0);
        match u.int_in_range(0..=9)? {
            0 | 1 => {
                if let Some(i) = (!p.code.is_empty()).then(|| u.choose_index(p.code.len())).transpose()?
                    && let Some(w) = p.code.get_mut(i)
                {
                    *w = word(u, len)?;
                }
            }
            2 => {
                // A jump target moved anywhere (often into an instruction's operands).
                let jumps: Vec<usize> =
                    p.code.iter().enumerate().filter(|(_, w)| matches!(**w, 4 | 5)).map(|(i, _)| i).collect();
                if let Ok(&i) = u.choose(&jumps)
                    && let Some(w) = p.code.get_mut(i + 1)
                {
                    *w = u.int_in_range(0..=len + 1)?;
                }
            }
            3 => {
                if let Some(r) = p.policies.first_mut().and_then(|pol| pol.rules.first_mut()) {
                    r.entry = u.int_in_range(0..=len + 1)?;
                }
            }
            4 => {
                if let Some(d) = (!p.defs.is_empty()).then(|| u.choose_index(p.defs.len())).transpose()?
                    && let Some(e) = p.defs.get_mut(d)
                {
                    e.entry = u.int_in_range(0..=len + 1)?;
                }
            }
            5 => {
                if let Some(a) = p.atoms.first_mut() {
                    a.rhs = match u.int_in_range(0..=4)? {
                        0 => Arg::Const(BAD_PATTERN),
                        1 => Arg::Const(u.arbitrary()?),
                        2 => Arg::Path(u.arbitrary()?),
                        // Generated programs have no terms: any term is out of range.
                        3 => Arg::Term(u.arbitrary()?),
                        _ => Arg::None,
                    };
                    if u.arbitrary()? {
                        a.op = AtomOp::Matches;
                    }
                }
            }
            6 => {
                if let Some(pol) = p.policies.first_mut() {
                    pol.order.push(0);
                    if u.arbitrary()? {
                        pol.order.truncate(1);
                    }
                }
            }
            7 => {
                // Out of range or out of order (refused), or, with `LYING_DISPATCH`, leaving rules out.
                if let Some(pol) = p.policies.first_mut() {
                    let n = u32::try_from(pol.order.len()).unwrap_or(0);
                    let lie = LYING_DISPATCH && u.arbitrary()?;
                    let list = if lie { Vec::new() } else { vec![u.int_in_range(n..=n + 2)?, 0] };
                    pol.dispatch = Some(Dispatch {
                        path: u.int_in_range(0..=6)?,
                        keys: vec![("read".into(), list)],
                        other: if lie { (0..n).collect() } else { vec![u.int_in_range(0..=4)?] },
                    });
                }
            }
            8 => {
                if let Some(pol) = p.policies.first_mut() {
                    pol.default = Some(u.int_in_range(0..=4)?);
                }
                if u.ratio(1, 4)? {
                    p.effects.clear();
                }
            }
            _ => {
                // A definition calls a later one or itself (a cycle, or a call out of range).
                let calls: Vec<usize> = p.code.iter().enumerate().filter(|(_, w)| **w == 6).map(|(i, _)| i).collect();
                if let Ok(&i) = u.choose(&calls)
                    && let Some(w) = p.code.get_mut(i + 1)
                {
                    *w = u.int_in_range(0..=u32::try_from(p.defs.len()).unwrap_or(0))?;
                }
            }
        }
    }
    Ok(p)
}

/// A hostile program from bytes.
pub fn program(u: &mut Unstructured<'_>) -> Result<Program> {
    match u.int_in_range(0..=9u8)? {
        0..=2 => well_formed(u),
        3 | 4 => exponential(u),
        5 => self_call(u),
        6 => raw(u),
        _ => mutant(u),
    }
}

/// Requests over [`PATHS`] from bytes (always at least one: the empty request).
pub fn requests(u: &mut Unstructured<'_>) -> Result<Vec<Request>> {
    let mut out = vec![Request::default()];
    let n = u.int_in_range(1..=4)?;
    for _ in 0..n {
        let mut pick = || -> Result<Option<&str>> { Ok(*u.choose(&VALUES)?) };
        let (role, action, tags, owner, id) = (pick()?, pick()?, pick()?, pick()?, pick()?);
        let value = |v: Option<&str>| v.and_then(|t| serde_json::from_str::<Value>(t).ok());
        let mut subject = serde_json::Map::new();
        let mut resource = serde_json::Map::new();
        let mut ctx = serde_json::Map::new();
        for (key, v) in [("role", role), ("id", id)] {
            if let Some(v) = value(v) {
                subject.insert(key.into(), v);
            }
        }
        for (key, v) in [("tags", tags), ("owner", owner)] {
            if let Some(v) = value(v) {
                resource.insert(key.into(), v);
            }
        }
        if let Some(Value::String(a)) = value(action) {
            ctx.insert("action".into(), Value::String(a));
        }
        ctx.insert("subject".into(), Value::Object(subject));
        ctx.insert("resource".into(), Value::Object(resource));
        if let Ok(r) = Request::from_value(Value::Object(ctx)) {
            out.push(r);
        }
    }
    Ok(out)
}

/// One policy (default `deny`) with one `allow` rule at `entry`.
fn one_rule(entry: u32) -> Vec<PolicyCode> {
    vec![PolicyCode {
        id: "p".into(),
        default: Some(0),
        default_reason: "default".into(),
        rules: vec![RuleCode {
            id: "r".into(),
            effect: 1,
            entry,
            reason: "r".into(),
            template: None,
            codes: Vec::new(),
            obligations: serde_json::Map::new(),
        }],
        order: vec![0],
        dispatch: None,
    }]
}

/// `subject.role == "admin"`.
fn is_admin() -> AtomDef {
    AtomDef { op: AtomOp::Eq, lhs: Arg::Path(0), rhs: Arg::Const(0) }
}

/// The known hostile program of issue 10: `d0: True; JumpIfTrue @4; Ret; @4: Call d0; Ret` and a
/// rule `Call d0; Ret`. It must never pass the verifier.
pub fn self_call_behind_a_jump() -> Program {
    let mut p = base(&["deny", "allow"], vec![is_admin()], false);
    for op in [Op::True {}, Op::JumpIfTrue { target: 4 }, Op::Ret {}, Op::Call { def: 0 }, Op::Ret {}] {
        op.encode(&mut p.code);
    }
    p.defs = vec![def(0, 0)];
    let rule = segment(&Cond::Call(0), &mut p.code);
    p.policies = one_rule(rule);
    p
}

/// `d0 = subject.role == "admin"`, `d{i} = d{i-1} and d{i-1}` up to `depth`, one `allow` rule
/// `d{depth}` (default `deny`): issue 10's shared-definition bundle as a program.
pub fn and_tree(depth: u32) -> Program {
    let mut p = base(&["deny", "allow"], vec![is_admin()], false);
    p.defs = vec![def(0, segment(&Cond::Atom(0), &mut p.code))];
    for d in 1..=depth {
        let entry = segment(&Cond::And(Box::new(Cond::Call(d - 1)), Box::new(Cond::Call(d - 1))), &mut p.code);
        p.defs.push(def(p.defs.len(), entry));
    }
    let rule = segment(&Cond::Call(depth), &mut p.code);
    p.policies = one_rule(rule);
    p
}

/// What [`check`] found a program to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// `Program::verify` refused it (and so did the artifact reader and both engines).
    Refused,
    /// Verified; the VM, the JIT (untraced, from requests and from prepared requests) and the
    /// traced VM decided every request alike.
    Decided,
}

/// The property: the verifier refuses the program (and every loader with it), or the VM, the JIT
/// and the traced VM all decide every request, with the same result. The caller bounds the time
/// (a hang is exponential work); a stack overflow aborts the process. An `Err` says what differs,
/// with the program's disassembly.
pub fn check(p: &Program, requests: &[Request]) -> std::result::Result<Checked, String> {
    use verdict_runtime::artifact;
    use verdict_runtime::env::{Env, Mode};
    use verdict_runtime::vm::{Backend, Engine, Scratch};
    let asm = || artifact::disassemble(p);
    let bytes = artifact::write(p);
    if let Err(e) = p.verify() {
        let read = artifact::read(&bytes);
        if read != Err(artifact::ArtifactError::Invalid(e.clone())) {
            return Err(format!("verify says `{e}`, the artifact reader {read:?}\n{}", asm()));
        }
        for backend in [Backend::Vm, Backend::Jit] {
            if Engine::with_backend(p.clone(), backend).is_ok() {
                return Err(format!("verify says `{e}`, yet the {backend:?} engine accepts it\n{}", asm()));
            }
        }
        return Ok(Checked::Refused);
    }
    if artifact::read(&bytes).as_ref() != Ok(p) {
        return Err(format!("a verified program does not round-trip through its artifact\n{}", asm()));
    }
    let vm = Engine::with_backend(p.clone(), Backend::Vm).map_err(|e| format!("the VM refuses it: {e}\n{}", asm()))?;
    let jit =
        Engine::with_backend(p.clone(), Backend::Jit).map_err(|e| format!("the JIT refuses it: {e}\n{}", asm()))?;
    if let Some(why) = jit.jit_fallback() {
        return Err(format!("the JIT does not compile a verified program: {why}\n{}", asm()));
    }
    let env = Env::at(jiff::Timestamp::UNIX_EPOCH);
    let mut scratch = Scratch::default();
    for (i, req) in requests.iter().enumerate() {
        let on_vm = vm.evaluate(req, &env, Mode::PLAIN);
        let on_jit = jit.evaluate(req, &env, Mode::PLAIN);
        let mut traced = vm.evaluate(req, &env, Mode::TRACE);
        traced.trace = None;
        let prepared = jit.prepare(req);
        let outcome = jit.decide_prepared(&prepared, &env, &mut scratch);
        let on_jit_prepared = jit.result(&outcome, None);
        for (what, got) in [("JIT", &on_jit), ("traced VM", &traced), ("JIT on a prepared request", &on_jit_prepared)] {
            if *got != on_vm {
                return Err(format!(
                    "request {i}: the {what} decides {} where the VM decides {}\n{}",
                    got.to_json(),
                    on_vm.to_json(),
                    asm()
                ));
            }
        }
    }
    Ok(Checked::Decided)
}

/// A rule that always holds (`True`) behind a dispatch table on `action` that says no rule can
/// match `"read"`: the table lies, as only a crafted artifact's can.
pub fn lying_dispatch() -> Program {
    let mut p = base(&["deny", "allow"], vec![is_admin()], false);
    let rule = segment(&Cond::True, &mut p.code);
    p.policies = one_rule(rule);
    if let Some(pol) = p.policies.first_mut() {
        pol.dispatch = Some(Dispatch { path: 1, keys: vec![("read".into(), Vec::new())], other: vec![0] });
    }
    p
}
