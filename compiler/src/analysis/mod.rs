//! Rule-graph analysis: a decision procedure over the atom language, and the findings of
//! TOOLCHAIN.md it proves — unreachable (V001), unsatisfiable (V002) and redundant (V003) rules,
//! conflicts between policies (V004), same-priority ambiguity (V005), dead defaults (V009) and
//! gaps (V010) — plus change impact between two bundles ([`diff`]).
//!
//! How it decides, in layers (each file's doc has the details):
//! - [`domain`]: every path becomes a finite-domain variable over **regions** (numbers cut into
//!   intervals at every constant, strings into literals and DFA-product cells, type tags,
//!   missing, null, container constants); every atom a set of regions; what cannot be modelled
//!   (path-vs-path atoms, list elements, patterns over budget) is an **opaque** variable.
//! - [`bdd`]: conditions are binary decision diagrams over those variables, in one shared table,
//!   with node and step budgets.
//! - [`findings`]: the reference loop (`unmatched = ⊤; for each rule in evaluation order …`) per
//!   policy, per-effect decision sets, combining, and the findings with related locations.
//! - [`graph`]: the rule graph (petgraph) and the buckets that keep independent rules apart.
//! - [`witness`] and [`oracle`]: a satisfying assignment becomes a request context, and the
//!   reference interpreter must agree with the claim before a witness is reported.
//!
//! Claims: a **universal** claim (V001, V002, V003, V009, "equivalent") is reported only when the
//! set it is about is empty in the model, which over-approximates real requests, so it is true.
//! An **existential** claim (V004, V005, V010, a diff transition) is reported only with a witness
//! the interpreter confirmed. When a budget runs out the analysis stops, keeps what it proved and
//! says so in one `V110` info diagnostic; it never guesses.
//!
//! API boundary: [`analyze`] (what `verdict check` calls after a successful compile) and [`diff`]
//! (what `verdict diff` calls). `compile` does not run the analysis: it stays cheap.

pub mod bdd;
pub mod diff;
pub mod domain;
pub mod findings;
pub mod graph;
pub mod numbers;
pub mod oracle;
pub mod reach;
pub mod strings;
pub mod witness;

pub use diff::{DiffReport, Transition, diff};
pub use findings::{Analysis, Stats};

use crate::diagnostic::Diagnostic;
use crate::ir::{Bundle, CondId};
use bdd::{Bdd, FALSE, NodeId, Res, TRUE};
use domain::{Domain, DomainLimits};

/// Budgets and limits. The defaults keep a 10,000-rule bundle well inside them and bound time
/// and memory (about 100 bytes per node) on hostile input.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// BDD nodes (all diagrams of one run share them).
    pub max_nodes: usize,
    /// BDD apply steps.
    pub max_steps: u64,
    /// Bytes of one pattern's DFA.
    pub dfa_bytes: usize,
    /// Product states of one path's string cells.
    pub string_states: usize,
    /// Regions of one path.
    pub max_regions: usize,
    /// Satisfying assignments tried per witness.
    pub witness_attempts: usize,
    /// Related locations per diagnostic.
    pub max_labels: usize,
    /// Conflicts (V004) reported; more are summarized in one `V110` note.
    pub max_conflicts: usize,
    /// Which findings to look for.
    pub scope: Scope,
}

/// The findings one run looks for. Findings about one policy (V001, V002 and V003 on its
/// rules, V005, V009) depend on that policy and the definitions it uses only, so a caller that
/// holds a bundle's policies separately (the language server) can analyse each on its own and
/// the rest of the bundle once: `Policies` on each, `Bundle` on the whole, together equal `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every finding.
    All,
    /// The per-policy findings only.
    Policies,
    /// The findings about the bundle as a whole: unsatisfiable definitions (V002), conflicts
    /// between policies (V004) and gaps (V010).
    Bundle,
    /// Only same-priority ambiguity (V005) in `match priority` policies: the check every bundle
    /// compiled for use must pass (see [`crate::compile_for_use`]).
    Ambiguity,
}

impl Scope {
    fn policies(self) -> bool {
        matches!(self, Scope::All | Scope::Policies)
    }

    fn bundle(self) -> bool {
        matches!(self, Scope::All | Scope::Bundle)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_nodes: 4_000_000,
            max_steps: 400_000_000,
            dfa_bytes: 1 << 20,
            string_states: 20_000,
            max_regions: 4096,
            witness_attempts: 8,
            max_labels: 6,
            max_conflicts: 1000,
            scope: Scope::All,
        }
    }
}

impl Options {
    /// The limits of the domain construction these options imply.
    pub fn domain_limits(&self) -> DomainLimits {
        DomainLimits {
            strings: strings::Limits {
                dfa_bytes: self.dfa_bytes,
                total_dfa_bytes: 64 << 20,
                patterns: 128,
                states: self.string_states,
            },
            max_substrings: 600,
            max_regions: self.max_regions,
        }
    }
}

/// Runs the analysis on a compiled bundle with the default budgets: its findings, sorted by
/// position.
pub fn analyze(bundle: &Bundle) -> Vec<Diagnostic> {
    findings::run(bundle, &Options::default()).diagnostics
}

/// Runs the analysis with explicit budgets, returning the rule graph and statistics too.
pub fn analyze_with(bundle: &Bundle, options: &Options) -> Analysis {
    findings::run(bundle, options)
}

/// The shared model of one or more bundles: the domain, the diagram table, the condition of
/// every node, and the structure constraint.
#[derive(Debug)]
pub(crate) struct Model<'b> {
    pub bdd: Bdd,
    pub dom: Domain,
    pub bundles: Vec<&'b Bundle>,
    memo: Vec<Vec<Option<NodeId>>>,
    /// Per bundle: which conditions may fault, and the memo of [`Model::fault`].
    fallible: Vec<crate::ir::Fallibility>,
    fault_memo: Vec<Vec<Option<NodeId>>>,
    /// What holds of every request (how prefix paths fit together).
    pub structure: NodeId,
}

impl<'b> Model<'b> {
    pub fn new(bundles: &[&'b Bundle], options: &Options) -> (Model<'b>, Res<()>) {
        let dom = Domain::build(bundles, &options.domain_limits());
        let mut m = Model {
            bdd: Bdd::new(options.max_nodes, options.max_steps),
            dom,
            bundles: bundles.to_vec(),
            memo: bundles.iter().map(|b| vec![None; b.conds.len()]).collect(),
            fallible: bundles.iter().map(|b| crate::ir::Fallibility::new(b)).collect(),
            fault_memo: bundles.iter().map(|b| vec![None; b.conds.len()]).collect(),
            structure: TRUE,
        };
        let s = m.dom.structure(&mut m.bdd);
        let ok = s.map(|s| m.structure = s);
        (m, ok)
    }

    /// The set of assignments where condition `c` of bundle `b` holds.
    pub fn cond(&mut self, b: usize, c: CondId) -> Res<NodeId> {
        // INVARIANT: recursion follows the condition's nesting, at most 128 levels counted
        // through definitions (an IR invariant); the memo makes shared nodes cost once.
        if let Some(n) = self.memo.get(b).and_then(|v| v.get(c.index())).copied().flatten() {
            return Ok(n);
        }
        let Some(bundle) = self.bundles.get(b).copied() else { return Ok(FALSE) };
        let Some(node) = bundle.cond(c) else { return Ok(FALSE) };
        use crate::ir::Cond;
        let out = match &node.cond {
            Cond::Const(true) => TRUE,
            Cond::Const(false) => FALSE,
            Cond::Atom(_) => match self.dom.cond_atoms.get(b).and_then(|v| v.get(c.index())).copied().flatten() {
                Some(a) => self.dom.atom_bdd(&mut self.bdd, a)?,
                None => FALSE,
            },
            Cond::Not(x) => {
                let x = self.cond(b, *x)?;
                self.bdd.not(x)?
            }
            Cond::All(kids) => {
                let mut acc = TRUE;
                for k in kids {
                    let x = self.cond(b, *k)?;
                    acc = self.bdd.and(acc, x)?;
                    if acc == FALSE {
                        break;
                    }
                }
                acc
            }
            Cond::Any(kids) => {
                let mut acc = FALSE;
                for k in kids {
                    let x = self.cond(b, *k)?;
                    acc = self.bdd.or(acc, x)?;
                    if acc == TRUE {
                        break;
                    }
                }
                acc
            }
            Cond::Ref(d) => match bundle.defs.get(d.index()) {
                Some(def) => self.cond(b, def.cond)?,
                None => FALSE,
            },
        };
        if let Some(slot) = self.memo.get_mut(b).and_then(|v| v.get_mut(c.index())) {
            *slot = Some(out);
        }
        Ok(out)
    }

    /// The assignments where evaluating condition `c` of bundle `b` reaches an atom that may
    /// fault (a state read or an extern call, LANGUAGE.md §5.2–5.3), in the interpreter's
    /// short-circuit order: an over-approximation of where the condition can fault. `FALSE` for
    /// a condition that cannot fault, without diagram work.
    pub fn fault(&mut self, b: usize, c: CondId) -> Res<NodeId> {
        let Some(bundle) = self.bundles.get(b).copied() else { return Ok(FALSE) };
        let may = match self.fallible.get_mut(b) {
            Some(f) => f.cond(bundle, c),
            None => false,
        };
        if !may {
            return Ok(FALSE);
        }
        // INVARIANT: recursion follows the condition's nesting like `cond`; memoized per node.
        if let Some(n) = self.fault_memo.get(b).and_then(|v| v.get(c.index())).copied().flatten() {
            return Ok(n);
        }
        let Some(node) = bundle.cond(c) else { return Ok(FALSE) };
        use crate::ir::Cond;
        let out = match &node.cond {
            Cond::Const(_) => FALSE,
            // A fallible atom is reached wherever its condition is evaluated.
            Cond::Atom(_) => TRUE,
            Cond::Not(x) => self.fault(b, *x)?,
            // `and` evaluates a conjunct where every earlier one held; `or` where every earlier
            // one failed; both stop at a fault.
            Cond::All(kids) | Cond::Any(kids) => {
                let all = matches!(node.cond, Cond::All(_));
                let (mut acc, mut reach) = (FALSE, TRUE);
                for k in kids {
                    if reach == FALSE {
                        break;
                    }
                    let f = self.fault(b, *k)?;
                    let here = self.bdd.and(reach, f)?;
                    acc = self.bdd.or(acc, here)?;
                    let x = self.cond(b, *k)?;
                    let go_on = if all { x } else { self.bdd.not(x)? };
                    reach = self.bdd.and(reach, go_on)?;
                }
                acc
            }
            Cond::Ref(d) => match bundle.defs.get(d.index()) {
                Some(def) => self.fault(b, def.cond)?,
                None => FALSE,
            },
        };
        if let Some(slot) = self.fault_memo.get_mut(b).and_then(|v| v.get_mut(c.index())) {
            *slot = Some(out);
        }
        Ok(out)
    }
}
