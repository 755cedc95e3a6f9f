//! A small shared-node binary decision diagram (BDD) manager: one node table for every diagram of
//! an analysis (equal functions are equal ids), a lossy apply cache, and budgets.
//!
//! Why our own rather than `oxidd` or `biodivine-lib-bdd`: the analysis needs two budgets that
//! turn blow-up into "undecided" — a node cap and a step cap (a lossy cache can make one `apply`
//! re-walk shared sub-diagrams many times without creating nodes, so a node cap alone does not
//! bound time) — and it needs the walks to be iterative: the number of variables grows with the
//! bundle, so recursion on it would be recursion on unbounded input. Both crates recurse and
//! neither has a step budget; this file is about 400 lines.
//!
//! Variables are `u32`s; a smaller variable is nearer the root. [`FALSE`] and [`TRUE`] are the
//! terminals. Every operation that may create nodes returns `Err(OutOfBudget)` once a budget is
//! spent; after that the manager stays usable for queries on existing nodes.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A node of the shared table: a function.
pub type NodeId = u32;
/// The constant false function.
pub const FALSE: NodeId = 0;
/// The constant true function.
pub const TRUE: NodeId = 1;
const TERMINAL_VAR: u32 = u32::MAX;

/// A budget (nodes or steps) ran out: the question is undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBudget;

/// The result of an operation that may run out of budget.
pub type Res<T> = Result<T, OutOfBudget>;

#[derive(Debug, Clone, Copy)]
struct Node {
    var: u32,
    lo: NodeId,
    hi: NodeId,
}

const TERMINAL: Node = Node { var: TERMINAL_VAR, lo: FALSE, hi: FALSE };

/// FxHash (rustc's hasher): fast on small integer keys, which is all the tables here hold.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.hash = (self.hash.rotate_left(5) ^ i).wrapping_mul(SEED);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `BuildHasher` for [`FxHasher`].
pub type FxBuild = BuildHasherDefault<FxHasher>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    /// `a ∧ ¬b`.
    Diff,
}

impl Op {
    fn code(self) -> u32 {
        match self {
            Op::And => 0,
            Op::Or => 1,
            Op::Diff => 2,
        }
    }

    fn terminal(self, a: NodeId, b: NodeId) -> Option<NodeId> {
        match self {
            Op::And => {
                if a == FALSE || b == FALSE {
                    Some(FALSE)
                } else if a == TRUE {
                    Some(b)
                } else if b == TRUE || a == b {
                    Some(a)
                } else {
                    None
                }
            }
            Op::Or => {
                if a == TRUE || b == TRUE {
                    Some(TRUE)
                } else if a == FALSE {
                    Some(b)
                } else if b == FALSE || a == b {
                    Some(a)
                } else {
                    None
                }
            }
            Op::Diff => {
                if a == FALSE || b == TRUE || a == b {
                    Some(FALSE)
                } else if b == FALSE {
                    Some(a)
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    a: NodeId,
    b: NodeId,
    op: u32,
    r: NodeId,
}

const EMPTY_ENTRY: CacheEntry = CacheEntry { a: 0, b: 0, op: u32::MAX, r: 0 };
const MIN_CACHE: usize = 1 << 12;
const MAX_CACHE: usize = 1 << 22;

#[derive(Debug)]
enum Frame {
    Call(NodeId, NodeId),
    Build(u32, NodeId, NodeId),
}

/// The node table, the unique table, the apply cache and the budgets.
#[derive(Debug)]
pub struct Bdd {
    nodes: Vec<Node>,
    unique: HashMap<(u32, NodeId, NodeId), NodeId, FxBuild>,
    cache: Vec<CacheEntry>,
    max_nodes: usize,
    steps: u64,
    max_steps: u64,
}

impl Bdd {
    /// A manager that creates at most `max_nodes` nodes and takes at most `max_steps` apply steps.
    pub fn new(max_nodes: usize, max_steps: u64) -> Bdd {
        Bdd {
            nodes: vec![TERMINAL, TERMINAL],
            unique: HashMap::default(),
            cache: vec![EMPTY_ENTRY; MIN_CACHE],
            max_nodes,
            steps: 0,
            max_steps,
        }
    }

    /// Number of nodes created so far (terminals included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Apply steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn node(&self, id: NodeId) -> Node {
        self.nodes.get(id as usize).copied().unwrap_or(TERMINAL)
    }

    /// The variable at the root of `f` (`u32::MAX` for a terminal).
    pub fn top_var(&self, f: NodeId) -> u32 {
        self.node(f).var
    }

    /// The two cofactors of `f` on its root variable.
    pub fn branches(&self, f: NodeId) -> (NodeId, NodeId) {
        let n = self.node(f);
        (n.lo, n.hi)
    }

    fn mk(&mut self, var: u32, lo: NodeId, hi: NodeId) -> Res<NodeId> {
        if lo == hi {
            return Ok(lo);
        }
        if let Some(id) = self.unique.get(&(var, lo, hi)) {
            return Ok(*id);
        }
        if self.nodes.len() >= self.max_nodes {
            return Err(OutOfBudget);
        }
        let id = NodeId::try_from(self.nodes.len()).map_err(|_| OutOfBudget)?;
        self.nodes.push(Node { var, lo, hi });
        self.unique.insert((var, lo, hi), id);
        if self.nodes.len() > self.cache.len() && self.cache.len() < MAX_CACHE {
            let size = self.nodes.len().next_power_of_two().clamp(MIN_CACHE, MAX_CACHE);
            self.cache = vec![EMPTY_ENTRY; size];
        }
        Ok(id)
    }

    /// The function that is true exactly when variable `v` is.
    pub fn var(&mut self, v: u32) -> Res<NodeId> {
        self.mk(v, FALSE, TRUE)
    }

    /// The function that is true exactly when variable `v` is false.
    pub fn nvar(&mut self, v: u32) -> Res<NodeId> {
        self.mk(v, TRUE, FALSE)
    }

    /// `if v then hi else lo`, where `lo` and `hi` only use variables after `v`.
    pub fn branch(&mut self, v: u32, lo: NodeId, hi: NodeId) -> Res<NodeId> {
        self.mk(v, lo, hi)
    }

    fn slot(&self, op: Op, a: NodeId, b: NodeId) -> usize {
        let mut h = FxHasher::default();
        h.write_u32(a);
        h.write_u32(b);
        h.write_u32(op.code());
        (h.finish() as usize) & (self.cache.len().saturating_sub(1))
    }

    fn cached(&self, op: Op, a: NodeId, b: NodeId) -> Option<NodeId> {
        let e = self.cache.get(self.slot(op, a, b))?;
        (e.op == op.code() && e.a == a && e.b == b).then_some(e.r)
    }

    fn remember(&mut self, op: Op, a: NodeId, b: NodeId, r: NodeId) {
        let slot = self.slot(op, a, b);
        if let Some(e) = self.cache.get_mut(slot) {
            *e = CacheEntry { a, b, op: op.code(), r };
        }
    }

    fn step(&mut self) -> Res<()> {
        self.steps += 1;
        if self.steps > self.max_steps { Err(OutOfBudget) } else { Ok(()) }
    }

    fn apply(&mut self, op: Op, a: NodeId, b: NodeId) -> Res<NodeId> {
        if let Some(r) = op.terminal(a, b) {
            return Ok(r);
        }
        let mut stack = vec![Frame::Call(a, b)];
        let mut results: Vec<NodeId> = Vec::new();
        while let Some(frame) = stack.pop() {
            match frame {
                Frame::Call(a, b) => {
                    if let Some(r) = op.terminal(a, b) {
                        results.push(r);
                        continue;
                    }
                    let (a, b) = if op != Op::Diff && a > b { (b, a) } else { (a, b) };
                    if let Some(r) = self.cached(op, a, b) {
                        results.push(r);
                        continue;
                    }
                    self.step()?;
                    let (na, nb) = (self.node(a), self.node(b));
                    let v = na.var.min(nb.var);
                    let (a0, a1) = if na.var == v { (na.lo, na.hi) } else { (a, a) };
                    let (b0, b1) = if nb.var == v { (nb.lo, nb.hi) } else { (b, b) };
                    stack.push(Frame::Build(v, a, b));
                    stack.push(Frame::Call(a1, b1));
                    stack.push(Frame::Call(a0, b0));
                }
                Frame::Build(v, a, b) => {
                    let hi = results.pop().ok_or(OutOfBudget)?;
                    let lo = results.pop().ok_or(OutOfBudget)?;
                    let r = self.mk(v, lo, hi)?;
                    self.remember(op, a, b, r);
                    results.push(r);
                }
            }
        }
        results.pop().ok_or(OutOfBudget)
    }

    pub fn and(&mut self, a: NodeId, b: NodeId) -> Res<NodeId> {
        self.apply(Op::And, a, b)
    }

    pub fn or(&mut self, a: NodeId, b: NodeId) -> Res<NodeId> {
        self.apply(Op::Or, a, b)
    }

    /// `a ∧ ¬b`.
    pub fn diff(&mut self, a: NodeId, b: NodeId) -> Res<NodeId> {
        self.apply(Op::Diff, a, b)
    }

    pub fn not(&mut self, a: NodeId) -> Res<NodeId> {
        self.apply(Op::Diff, TRUE, a)
    }

    /// `if c then t else e`.
    pub fn ite(&mut self, c: NodeId, t: NodeId, e: NodeId) -> Res<NodeId> {
        let x = self.and(c, t)?;
        let y = self.diff(e, c)?;
        self.or(x, y)
    }

    /// Whether `a ∧ b` is false (`op_diff`: whether `a ∧ ¬b` is, i.e. `a` implies `b`), without
    /// building the result: an early-exit search over pairs of nodes.
    fn empty(&mut self, op_diff: bool, a: NodeId, b: NodeId) -> Res<bool> {
        let mut stack = vec![(a, b)];
        let mut seen: HashSet<(NodeId, NodeId), FxBuild> = HashSet::default();
        while let Some((a, b)) = stack.pop() {
            if op_diff {
                if a == FALSE || b == TRUE || a == b {
                    continue;
                }
                if b == FALSE || a == TRUE {
                    return Ok(false);
                }
            } else {
                if a == FALSE || b == FALSE {
                    continue;
                }
                if a == TRUE || b == TRUE || a == b {
                    return Ok(false);
                }
            }
            let (a, b) = if !op_diff && a > b { (b, a) } else { (a, b) };
            let op = if op_diff { Op::Diff } else { Op::And };
            if let Some(r) = self.cached(op, a, b) {
                if r != FALSE {
                    return Ok(false);
                }
                continue;
            }
            if !seen.insert((a, b)) {
                continue;
            }
            self.step()?;
            let (na, nb) = (self.node(a), self.node(b));
            let v = na.var.min(nb.var);
            let (a0, a1) = if na.var == v { (na.lo, na.hi) } else { (a, a) };
            let (b0, b1) = if nb.var == v { (nb.lo, nb.hi) } else { (b, b) };
            stack.push((a1, b1));
            stack.push((a0, b0));
        }
        Ok(true)
    }

    /// Whether `a ∧ b` is unsatisfiable.
    pub fn disjoint(&mut self, a: NodeId, b: NodeId) -> Res<bool> {
        self.empty(false, a, b)
    }

    /// Whether `a` implies `b` (`a ∧ ¬b` is unsatisfiable).
    pub fn implies(&mut self, a: NodeId, b: NodeId) -> Res<bool> {
        self.empty(true, a, b)
    }

    /// One satisfying path of `f`: the variables it fixes, root first. `prefer_hi(var)` says
    /// which branch to try first. `None` when `f` is false.
    pub fn sat_one(&self, f: NodeId, mut prefer_hi: impl FnMut(u32) -> bool) -> Option<Vec<(u32, bool)>> {
        if f == FALSE {
            return None;
        }
        let mut path = Vec::new();
        let mut cur = f;
        while cur != TRUE {
            let n = self.node(cur);
            if n.var == TERMINAL_VAR {
                return None;
            }
            let hi_first = prefer_hi(n.var);
            let take_hi = if hi_first { n.hi != FALSE } else { n.lo == FALSE };
            path.push((n.var, take_hi));
            cur = if take_hi { n.hi } else { n.lo };
        }
        Some(path)
    }

    /// The number of assignments of variables `0..nvars` that satisfy `f` (as a float: a size
    /// measure for heuristics).
    pub fn sat_count(&self, f: NodeId, nvars: u32) -> f64 {
        let var_of = |n: Node| if n.var == TERMINAL_VAR { nvars } else { n.var };
        let mut memo: HashMap<NodeId, f64, FxBuild> = HashMap::default();
        memo.insert(FALSE, 0.0);
        memo.insert(TRUE, 1.0);
        let mut stack = vec![(f, false)];
        while let Some((id, expanded)) = stack.pop() {
            if memo.contains_key(&id) {
                continue;
            }
            let n = self.node(id);
            if expanded {
                let v = var_of(n);
                let lo = memo.get(&n.lo).copied().unwrap_or(0.0);
                let hi = memo.get(&n.hi).copied().unwrap_or(0.0);
                let gap = |c: NodeId| {
                    let cv = var_of(self.node(c));
                    2f64.powi(i32::try_from(cv.saturating_sub(v).saturating_sub(1)).unwrap_or(i32::MAX))
                };
                memo.insert(id, lo * gap(n.lo) + hi * gap(n.hi));
            } else {
                stack.push((id, true));
                stack.push((n.lo, false));
                stack.push((n.hi, false));
            }
        }
        let top = var_of(self.node(f));
        memo.get(&f).copied().unwrap_or(0.0) * 2f64.powi(i32::try_from(top).unwrap_or(i32::MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn algebra() {
        let mut m = Bdd::new(1 << 16, 1 << 20);
        let x = m.var(0).unwrap();
        let y = m.var(1).unwrap();
        let nx = m.not(x).unwrap();
        assert_eq!(m.and(x, nx).unwrap(), FALSE);
        assert_eq!(m.or(x, nx).unwrap(), TRUE);
        let xy = m.and(x, y).unwrap();
        let yx = m.and(y, x).unwrap();
        assert_eq!(xy, yx);
        assert!(m.implies(xy, x).unwrap());
        assert!(!m.implies(x, xy).unwrap());
        assert!(m.disjoint(xy, nx).unwrap());
        assert!(!m.disjoint(x, y).unwrap());
        let d = m.diff(x, y).unwrap();
        let ny = m.not(y).unwrap();
        assert_eq!(d, m.and(x, ny).unwrap());
        assert_eq!(m.sat_count(xy, 3), 2.0);
        assert_eq!(m.sat_count(TRUE, 3), 8.0);
        let path = m.sat_one(d, |_| true).unwrap();
        assert_eq!(path, vec![(0, true), (1, false)]);
    }

    #[test]
    fn budgets_stop_work() {
        let mut m = Bdd::new(8, 1 << 20);
        let mut f = TRUE;
        let mut failed = false;
        for v in 0..20 {
            match m.var(v).and_then(|x| m.and(f, x)) {
                Ok(g) => f = g,
                Err(OutOfBudget) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
    }
}
