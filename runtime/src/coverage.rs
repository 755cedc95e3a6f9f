//! Coverage of a program by the decisions of a test suite (`verdict test`): which rules decided
//! their policy, which policy defaults applied, and which atoms were seen true and seen false.
//!
//! Recorded on the bytecode by [`crate::vm::Engine::evaluate_covered`], after each decision, from
//! what the evaluation left in its scratch (the policy results and the per-request atom memo):
//! no trace is built, and the decision paths services use (`decide`, `evaluate`) are untouched.
//! The bits live in fixed bitsets sized once from the program; a [`Coverage`] also keeps the
//! evaluation scratch, so a suite of any size reuses one set of buffers.

use crate::policy::Truth;
use crate::program::Program;
use crate::vm::{Memo, PolicyResult, Scratch};

/// A fixed-size set of bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= *b;
        }
    }
}

/// What a suite's decisions covered of one program.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Where each policy's rules start in `rules`.
    offsets: Vec<usize>,
    rules: Bits,
    defaults: Bits,
    atoms_true: Bits,
    atoms_false: Bits,
    atom_count: usize,
    /// The evaluation buffers, reused from case to case.
    pub(crate) scratch: Scratch,
}

impl Coverage {
    /// Empty coverage of `program` (every bit clear).
    pub fn new(program: &Program) -> Coverage {
        let mut offsets = Vec::with_capacity(program.policies.len());
        let mut n = 0;
        for p in &program.policies {
            offsets.push(n);
            n += p.rules.len();
        }
        Coverage {
            offsets,
            rules: Bits::new(n),
            defaults: Bits::new(program.policies.len()),
            atoms_true: Bits::new(program.atoms.len()),
            atoms_false: Bits::new(program.atoms.len()),
            atom_count: program.atoms.len(),
            scratch: Scratch::default(),
        }
    }

    /// Whether rule `rule` (index in the policy's `rules`) of policy `policy` decided its policy.
    pub fn rule(&self, policy: usize, rule: usize) -> bool {
        self.offsets.get(policy).is_some_and(|o| self.rules.get(o + rule))
    }

    /// Whether policy `policy` fell through to its default in some decision.
    pub fn default(&self, policy: usize) -> bool {
        self.defaults.get(policy)
    }

    /// Whether atom `atom` (index in the program's `atoms`) was seen true, and seen false.
    pub fn atom(&self, atom: usize) -> (bool, bool) {
        (self.atoms_true.get(atom), self.atoms_false.get(atom))
    }

    /// Adds what `other` covered (of the same program).
    pub fn merge(&mut self, other: &Coverage) {
        self.rules.union(&other.rules);
        self.defaults.union(&other.defaults);
        self.atoms_true.union(&other.atoms_true);
        self.atoms_false.union(&other.atoms_false);
    }

    /// Records one decision: its policy results and the atoms its evaluation memoized (every
    /// atom evaluated by the bytecode is memoized with its truth; faults are not).
    pub(crate) fn record(&mut self, results: &[PolicyResult], atoms: &Memo) {
        for (pi, r) in results.iter().enumerate() {
            match r {
                PolicyResult::Rule(ri) => {
                    if let Some(o) = self.offsets.get(pi) {
                        self.rules.set(o + *ri as usize);
                    }
                }
                PolicyResult::Default => self.defaults.set(pi),
                PolicyResult::Fault(_) => {}
            }
        }
        for i in 0..self.atom_count {
            match atoms.get(i) {
                Some(Truth::True) => self.atoms_true.set(i),
                Some(Truth::False) => self.atoms_false.set(i),
                Some(Truth::Fault) | None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits_set_get_and_union() {
        let mut a = Bits::new(130);
        a.set(0);
        a.set(129);
        a.set(500);
        assert!(a.get(0) && a.get(129) && !a.get(1) && !a.get(500));
        let mut b = Bits::new(130);
        b.set(64);
        b.union(&a);
        assert!(b.get(0) && b.get(64) && b.get(129));
    }
}
