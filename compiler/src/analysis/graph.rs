//! The rule graph: one node per rule, and edges for the relations the analysis proved —
//! `Overlaps` (some request satisfies both conditions), `Blocks` (an earlier rule of the same
//! policy takes requests an unreachable later one matches: the related locations of V001),
//! `Conflicts` (rules of different policies decide different effects for one request: V004),
//! `Ambiguous` (same-priority rules of different effects hold together: V005). The language
//! server will read it for hovers ("covered by rule `a`").
//!
//! Rules are also **bucketed** by the discriminating path (the one most rules fix to a constant,
//! usually `action`): a rule's bucket set is the regions of that path its condition allows.
//! Rules with disjoint bucket sets cannot overlap, so every pairwise search (blockers, conflict
//! and ambiguity partners) only visits rules that share a bucket: that is how the independent
//! parts of a large bundle are kept apart. Overlap edges are computed on demand, for the rules a
//! finding is about, rather than for all pairs.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;

use super::bdd::{Bdd, FALSE, NodeId, TRUE};
use super::domain::Domain;

/// A rule: its policy's index and its index in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub policy: usize,
    pub rule: usize,
}

/// A proved relation between two rules (from → to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    Overlaps,
    Blocks,
    Conflicts,
    Ambiguous,
}

/// The rules, their buckets and the relations found between them.
#[derive(Debug, Default)]
pub struct RuleGraph {
    pub graph: DiGraph<RuleRef, Edge>,
    index: HashMap<RuleRef, NodeIndex>,
    /// Bucket set of every rule (bitset over the discriminating path's regions); `None` for a
    /// rule that allows every region.
    buckets: HashMap<RuleRef, Option<Vec<u64>>>,
}

impl RuleGraph {
    pub fn node(&mut self, r: RuleRef) -> NodeIndex {
        if let Some(i) = self.index.get(&r) {
            return *i;
        }
        let i = self.graph.add_node(r);
        self.index.insert(r, i);
        i
    }

    /// Records a relation (once).
    pub fn relate(&mut self, from: RuleRef, to: RuleRef, e: Edge) {
        let (a, b) = (self.node(from), self.node(to));
        if !self.graph.edges_connecting(a, b).any(|x| *x.weight() == e) {
            self.graph.add_edge(a, b, e);
        }
    }

    /// The rules related to `r` by edges of kind `e`, in either direction.
    pub fn related(&self, r: RuleRef, e: Edge) -> Vec<RuleRef> {
        let Some(&i) = self.index.get(&r) else { return Vec::new() };
        let mut out: Vec<RuleRef> = self
            .graph
            .edges_directed(i, petgraph::Direction::Incoming)
            .chain(self.graph.edges_directed(i, petgraph::Direction::Outgoing))
            .filter(|x| *x.weight() == e)
            .filter_map(|x| {
                let other = if x.source() == i { x.target() } else { x.source() };
                self.graph.node_weight(other).copied()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Records the bucket set of a rule whose condition is `m`.
    pub fn set_bucket(&mut self, r: RuleRef, dom: &Domain, bdd: &Bdd, m: NodeId) {
        self.node(r);
        let set = bucket_set(dom, bdd, m);
        self.buckets.insert(r, set);
    }

    /// Whether two rules may overlap, judging by their buckets alone.
    pub fn may_meet(&self, a: RuleRef, b: RuleRef) -> bool {
        match (self.buckets.get(&a), self.buckets.get(&b)) {
            (Some(Some(x)), Some(Some(y))) => x.iter().zip(y).any(|(p, q)| p & q != 0),
            _ => true,
        }
    }

    /// Number of rules that allow only some buckets.
    pub fn bucketed_rules(&self) -> usize {
        self.buckets.values().filter(|b| b.is_some()).count()
    }
}

/// The regions of the discriminating path that `m` allows (a bitset), or `None` when there is
/// no such path or `m` allows all of them.
fn bucket_set(dom: &Domain, bdd: &Bdd, m: NodeId) -> Option<Vec<u64>> {
    let p = dom.discriminating?;
    let pd = dom.paths.get(p)?;
    let n = pd.regions.len();
    let (first, bits) = (pd.first_var, pd.bits);
    if bits == 0 || bits > 16 {
        return None;
    }
    let mut set = vec![0u64; n.div_ceil(64)];
    let mut all = true;
    // Walk the top `bits` variables; each path fixes a prefix of the code.
    let mut stack: Vec<(NodeId, u32, u64)> = vec![(m, 0, 0)];
    let mark = |code_lo: u64, code_hi: u64, set: &mut Vec<u64>| {
        for code in code_lo..code_hi {
            let r = usize::try_from(code).unwrap_or(usize::MAX).min(n - 1);
            if let Some(w) = set.get_mut(r / 64) {
                *w |= 1u64 << (r % 64);
            }
        }
    };
    while let Some((node, level, prefix)) = stack.pop() {
        if node == FALSE {
            all = false;
            continue;
        }
        let var = bdd.top_var(node);
        if var < first {
            return None;
        }
        let below = node == TRUE || var >= first + bits;
        if below {
            let span = 1u64 << (bits - level);
            mark(prefix * span, (prefix + 1) * span, &mut set);
            continue;
        }
        let v_level = var - first;
        // Levels skipped between `level` and `v_level` are free: both values.
        let skipped = v_level - level;
        let (lo, hi) = bdd.branches(node);
        for free in 0..(1u64 << skipped) {
            let base = (prefix << skipped) | free;
            stack.push((lo, v_level + 1, base << 1));
            stack.push((hi, v_level + 1, (base << 1) | 1));
        }
    }
    let full = set.iter().enumerate().all(|(w, bits_set)| {
        let want = if (w + 1) * 64 <= n { u64::MAX } else { (1u64 << (n % 64)) - 1 };
        *bits_set == want
    });
    if all && full { None } else { Some(set) }
}
