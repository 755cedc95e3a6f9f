//! Per-path finite domains ("atomic predicates"): every path a bundle reads becomes a
//! finite-domain variable whose values are **regions** — sets of JSON values (or "missing") that
//! no atom of the analysed bundles can tell apart — and every atom becomes a set of regions.
//!
//! Regions of one path, before merging: missing, null, false, true; numbers cut at every numeric
//! constant ([`numbers`]); strings as literals plus the cells of order constants and patterns
//! ([`strings`]); each list or object constant the path is compared with, plus "another list" and
//! "another object". Each region has a witness value, and an atom's truth on a region is
//! [`atom::eval`] on that witness — the runtime's own semantics — wherever the construction
//! makes the atom constant on the region ("exact"). Where it does not (a list's elements, an
//! object's keys without a child path, a regex over the DFA budget), the atom is **opaque** on
//! that region: a free boolean variable of its own. Regions with the same truths under every
//! atom are merged, so a path costs as many values as its atoms can distinguish.
//!
//! Paths are not independent: `a.b` present means `a` is an object (or a list, for a digit
//! step), and when `a` equals a constant, `a.b` is that constant's member. Those facts are the
//! **structure** constraint ([`Domain::structure`]), true of every request. Path-vs-path atoms
//! are opaque variables tied to the presence and types of both paths.
//!
//! Soundness: every request maps to one assignment (each path's region, each opaque atom's truth)
//! satisfying the structure, and an atom's set contains that assignment exactly when the atom
//! holds. So a set found empty here is empty for real requests — universal claims are sound —
//! while a non-empty set only *suggests* a witness: every witness is rebuilt as a request and
//! checked by the interpreter before anything is claimed.

use super::bdd::{Bdd, FALSE, FxBuild, NodeId, Res, TRUE};
use super::numbers::{self, NumRegion};
use super::strings::{self, CellKey, Pattern};
use crate::ir::{AtomOp, Bundle, Cond, Operand};
use serde_json::{Number, Value};
use std::collections::{BTreeMap, HashMap};
use verdict_runtime::atom;
use verdict_runtime::value::deep_eq;

/// Budgets of the domain construction.
#[derive(Debug, Clone, Copy)]
pub struct DomainLimits {
    pub strings: strings::Limits,
    /// Literals added for a literal-left `contains` (all substrings of the haystack).
    pub max_substrings: usize,
    /// Regions of one path after merging (more: the path's string cells are given up).
    pub max_regions: usize,
}

/// One side of a normalized atom: a path or a constant of the domain's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Path(usize),
    Const(usize),
    /// A term (arithmetic, a function, a state read, an extern call), by its canonical text
    /// interned in [`Domain::terms`]: an atom with a term operand is an opaque variable (its
    /// values are not modelled, so every universal claim stays true).
    Term(usize),
    None,
}

/// An atom with its operands resolved to the domain's paths and constants, so equal atoms of
/// different bundles (for `diff`) are one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AtomDef {
    pub op: AtomOp,
    pub lhs: Side,
    pub rhs: Side,
}

/// What an opaque variable stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpaqueKey {
    /// The list at the path has an element deep-equal to the constant.
    Member(usize, usize),
    /// The object at the path has the key.
    Key(usize, String),
    /// The atom holds (used where its own semantics are not modelled).
    Atom(usize),
    /// A path-vs-path comparison (`==`/`!=` share one, as do `in`/`not in`).
    PathPath(AtomOp, usize, usize),
}

/// An atom's truth on one region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Truth {
    F,
    T,
    /// The opaque variable's value (negated when the flag is set).
    Opaque(OpaqueKey, bool),
    /// Whether the child path is present (`obj contains "k"` with `obj.k` a path of the domain).
    Child(usize),
}

/// The kind of values a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Missing,
    Null,
    Bool,
    Number,
    StrLiteral,
    StrOther,
    ListConst,
    ListOther,
    ObjConst,
    ObjOther,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Missing => 0,
            Kind::Null => 1,
            Kind::Bool => 2,
            Kind::Number => 3,
            Kind::StrLiteral | Kind::StrOther => 4,
            Kind::ListConst | Kind::ListOther => 5,
            Kind::ObjConst | Kind::ObjOther => 6,
        }
    }

    pub fn is_string(self) -> bool {
        matches!(self, Kind::StrLiteral | Kind::StrOther)
    }
    pub fn is_list(self) -> bool {
        matches!(self, Kind::ListConst | Kind::ListOther)
    }
    pub fn is_object(self) -> bool {
        matches!(self, Kind::ObjConst | Kind::ObjOther)
    }
}

/// A region: its kind and a member (`None`: missing).
#[derive(Debug, Clone)]
pub struct Region {
    pub value: Option<Value>,
    pub kind: Kind,
}

/// How the strings of a path are split.
#[derive(Debug, Default)]
struct StringInfo {
    literals: Vec<String>,
    orders: Vec<String>,
    patterns: Vec<Pattern>,
    pattern_index: HashMap<Pattern, usize>,
    regexes: Vec<Option<regex::Regex>>,
    /// Patterns that took part in the cells (the others are opaque on non-literal strings).
    used: Vec<bool>,
    orders_exact: bool,
    /// Cells mode: cell key → raw region. Literal mode: `None`, see `other`.
    cells: Option<HashMap<CellKey, usize>>,
    /// Literal mode: the raw region of every non-literal string.
    other: usize,
    /// First raw region of the strings, in literal mode (literals in order, then `other`).
    base: usize,
}

/// The domain of one path.
#[derive(Debug)]
pub struct PathDom {
    pub segments: Vec<String>,
    /// Atoms that compare this path with constants (or test it), in id order.
    pub atoms: Vec<usize>,
    raw: Vec<Region>,
    raw_to_merged: Vec<usize>,
    /// Merged regions, in the order of their first raw member.
    pub regions: Vec<Region>,
    /// The merged region of "missing".
    pub missing: usize,
    points: Vec<Number>,
    nums: Vec<NumRegion>,
    num_base: usize,
    strings: StringInfo,
    lists: Vec<Value>,
    list_base: usize,
    objs: Vec<Value>,
    obj_base: usize,
    /// In a path-vs-path atom: regions keep their type.
    typed: bool,
    /// A proper prefix of another path of the domain.
    pub has_children: bool,
    pub first_var: u32,
    pub bits: u32,
    /// Number of atoms (in all bundles) that read the path: for the variable order.
    uses: usize,
}

/// Paths, constants, atoms, regions, and the BDD variables they use.
#[derive(Debug)]
pub struct Domain {
    pub paths: Vec<PathDom>,
    path_ids: HashMap<Vec<String>, usize>,
    pub consts: Vec<Value>,
    const_ids: HashMap<String, usize>,
    pub atoms: Vec<AtomDef>,
    atom_ids: HashMap<AtomDef, usize>,
    /// Per bundle: the atom of each condition node (by `CondId`).
    pub cond_atoms: Vec<Vec<Option<usize>>>,
    /// Per bundle: the card-scope atoms (vendor, action), when it has a scope.
    pub scope_atoms: Vec<Option<(usize, usize)>>,
    /// Per atom, for literal-left `contains` on strings: whether the substrings were added.
    substrings_added: HashMap<usize, bool>,
    /// Per atom: its truth on the merged regions of its path, as runs (path-vs-constant atoms).
    truths: HashMap<usize, Runs>,
    opaque: BTreeMap<OpaqueKey, u32>,
    /// The canonical texts of the terms atoms read, interned (so equal terms of two bundles
    /// are one operand for `diff`).
    pub terms: Vec<String>,
    term_ids: HashMap<String, usize>,
    next_var: u32,
    atom_memo: HashMap<usize, NodeId, FxBuild>,
    regex_cache: HashMap<String, Option<regex::Regex>>,
    /// The path bucketed on (at the top of the variable order), if any.
    pub discriminating: Option<usize>,
    /// Budgets that ran out while building (the affected atoms are opaque).
    pub notes: Vec<String>,
}

/// Prefixes this deep and deeper are not related to the paths under them: leaving a fact out of
/// the structure constraint only widens the model (sound), and the work per path stays bounded
/// on hostile paths of thousands of segments.
pub const MAX_STRUCTURE_DEPTH: usize = 64;

/// An atom's truth on consecutive regions: `(start, end, truth)`, sorted, covering every region.
pub type Runs = Vec<(usize, usize, Truth)>;

/// Merging by full signature costs segments × atoms; above this, only adjacent regions merge.
const DENSE_MERGE_LIMIT: usize = 500_000;

fn push_run(runs: &mut Runs, start: usize, end: usize, t: Truth) {
    if start >= end {
        return;
    }
    if let Some(last) = runs.last_mut()
        && last.1 == start
        && last.2 == t
    {
        last.1 = end;
        return;
    }
    runs.push((start, end, t));
}

/// Where each group of raw regions starts: specials (missing, null, bools), numbers, strings,
/// containers.
struct Layout {
    num_base: usize,
    str_base: usize,
    list_base: usize,
    len: usize,
}

fn canonical(v: &Value) -> String {
    v.to_string()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The value at `rest` under `v` (the runtime's path steps).
fn lookup<'v>(v: &'v Value, rest: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for seg in rest {
        cur = verdict_runtime::request::step(cur, seg)?;
    }
    Some(cur)
}

impl Domain {
    /// Builds the domain of every path and atom of `bundles` (one bundle for `check`, two for
    /// `diff`), including their card-scope tests.
    pub fn build(bundles: &[&Bundle], limits: &DomainLimits) -> Domain {
        let mut d = Domain {
            paths: Vec::new(),
            path_ids: HashMap::new(),
            consts: Vec::new(),
            const_ids: HashMap::new(),
            atoms: Vec::new(),
            atom_ids: HashMap::new(),
            cond_atoms: Vec::new(),
            scope_atoms: Vec::new(),
            substrings_added: HashMap::new(),
            truths: HashMap::new(),
            opaque: BTreeMap::new(),
            terms: Vec::new(),
            term_ids: HashMap::new(),
            next_var: 0,
            atom_memo: HashMap::default(),
            regex_cache: HashMap::new(),
            discriminating: None,
            notes: Vec::new(),
        };
        for b in bundles {
            let mut per_cond = Vec::with_capacity(b.conds.len());
            for node in &b.conds {
                per_cond.push(match &node.cond {
                    Cond::Atom(a) => {
                        let lhs = d.side(b, a.lhs);
                        let rhs = d.side(b, a.rhs);
                        Some(d.intern_atom(AtomDef { op: a.op, lhs, rhs }))
                    }
                    _ => None,
                });
            }
            d.cond_atoms.push(per_cond);
            let scope = b.card_scope.as_ref().map(|s| {
                let vendor_path = d.intern_path(&["resource".to_owned(), "vendor_id".to_owned()]);
                let vendor = d.intern_const(Value::String(s.vendor_id.clone()));
                let action_path = d.intern_path(&["action".to_owned()]);
                let allowed =
                    d.intern_const(Value::Array(s.allowed_actions.iter().cloned().map(Value::String).collect()));
                let v =
                    d.intern_atom(AtomDef { op: AtomOp::Eq, lhs: Side::Path(vendor_path), rhs: Side::Const(vendor) });
                let a =
                    d.intern_atom(AtomDef { op: AtomOp::In, lhs: Side::Path(action_path), rhs: Side::Const(allowed) });
                (v, a)
            });
            d.scope_atoms.push(scope);
        }
        d.mark_structure();
        for p in 0..d.paths.len() {
            d.build_path(p, limits);
        }
        d.choose_discriminating(bundles);
        d.assign_vars();
        d
    }

    fn side(&mut self, b: &Bundle, o: Operand) -> Side {
        match o {
            Operand::Path(p) => Side::Path(self.intern_path(b.path(p))),
            Operand::Const(c) => match b.constant(c) {
                Some(v) => Side::Const(self.intern_const(v.clone())),
                None => Side::None,
            },
            Operand::Term(t) => {
                let text = b.term(t).map_or(String::new(), |t| t.text.clone());
                let next = self.terms.len();
                Side::Term(*self.term_ids.entry(text.clone()).or_insert_with(|| {
                    self.terms.push(text);
                    next
                }))
            }
            Operand::None => Side::None,
        }
    }

    fn intern_path(&mut self, segs: &[String]) -> usize {
        if let Some(i) = self.path_ids.get(segs) {
            return *i;
        }
        let id = self.paths.len();
        self.paths.push(PathDom {
            segments: segs.to_vec(),
            atoms: Vec::new(),
            raw: Vec::new(),
            raw_to_merged: Vec::new(),
            regions: Vec::new(),
            missing: 0,
            points: Vec::new(),
            nums: Vec::new(),
            num_base: 0,
            strings: StringInfo::default(),
            lists: Vec::new(),
            list_base: 0,
            objs: Vec::new(),
            obj_base: 0,
            typed: false,
            has_children: false,
            first_var: 0,
            bits: 0,
            uses: 0,
        });
        self.path_ids.insert(segs.to_vec(), id);
        id
    }

    fn intern_const(&mut self, v: Value) -> usize {
        let key = canonical(&v);
        if let Some(i) = self.const_ids.get(&key) {
            return *i;
        }
        let id = self.consts.len();
        self.consts.push(v);
        self.const_ids.insert(key, id);
        id
    }

    fn intern_atom(&mut self, a: AtomDef) -> usize {
        let id = match self.atom_ids.get(&a) {
            Some(i) => *i,
            None => {
                let id = self.atoms.len();
                self.atoms.push(a);
                self.atom_ids.insert(a, id);
                match (a.lhs, a.rhs) {
                    // Opaque: not attached to a path's regions.
                    (Side::Term(_), _) | (_, Side::Term(_)) => {}
                    (Side::Path(p), Side::Path(q)) => {
                        for x in [p, q] {
                            if let Some(pd) = self.paths.get_mut(x) {
                                pd.typed = true;
                            }
                        }
                    }
                    (Side::Path(p), _) | (_, Side::Path(p)) => {
                        if let Some(pd) = self.paths.get_mut(p) {
                            pd.atoms.push(id);
                        }
                    }
                    _ => {}
                }
                id
            }
        };
        for s in [a.lhs, a.rhs] {
            if let Side::Path(p) = s
                && let Some(pd) = self.paths.get_mut(p)
            {
                pd.uses += 1;
            }
        }
        id
    }

    pub fn path_of(&self, segs: &[String]) -> Option<usize> {
        self.path_ids.get(segs).copied()
    }

    fn mark_structure(&mut self) {
        let n = self.paths.len();
        for i in 0..n {
            let segs = self.paths.get(i).map(|p| p.segments.clone()).unwrap_or_default();
            for k in 1..segs.len().min(MAX_STRUCTURE_DEPTH) {
                if let Some(&a) = segs.get(..k).and_then(|pre| self.path_ids.get(pre))
                    && let Some(pd) = self.paths.get_mut(a)
                {
                    pd.has_children = true;
                }
            }
        }
    }

    fn regex(&mut self, pattern: &str) -> Option<regex::Regex> {
        self.regex_cache.entry(pattern.to_owned()).or_insert_with(|| regex::Regex::new(pattern).ok()).clone()
    }

    /// The constant a side names, if it is one.
    pub fn constant_of(&self, s: Side) -> Option<&Value> {
        self.constant(s)
    }

    fn constant(&self, s: Side) -> Option<&Value> {
        match s {
            Side::Const(c) => self.consts.get(c),
            _ => None,
        }
    }

    /// Gathers a path's cut points, literals, patterns and container constants, builds its raw
    /// regions, their truths under the path's atoms, and merges them.
    fn build_path(&mut self, p: usize, limits: &DomainLimits) {
        let atoms = self.paths.get(p).map(|pd| pd.atoms.clone()).unwrap_or_default();
        let mut points: Vec<Number> = Vec::new();
        let mut literals: Vec<String> = Vec::new();
        let mut orders: Vec<String> = Vec::new();
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut lists: Vec<Value> = Vec::new();
        let mut objs: Vec<Value> = Vec::new();
        let add_value = |v: &Value,
                         points: &mut Vec<Number>,
                         literals: &mut Vec<String>,
                         lists: &mut Vec<Value>,
                         objs: &mut Vec<Value>| match v {
            Value::Number(n) => points.push(n.clone()),
            Value::String(s) => literals.push(s.clone()),
            Value::Array(_) => {
                if !lists.iter().any(|l| deep_eq(l, v)) {
                    lists.push(v.clone());
                }
            }
            Value::Object(_) => {
                if !objs.iter().any(|l| deep_eq(l, v)) {
                    objs.push(v.clone());
                }
            }
            Value::Null | Value::Bool(_) => {}
        };
        for &a in &atoms {
            let Some(def) = self.atoms.get(a).copied() else { continue };
            let path_left = def.lhs == Side::Path(p);
            let other = if path_left { self.constant(def.rhs) } else { self.constant(def.lhs) };
            let Some(c) = other.cloned() else { continue };
            use AtomOp as O;
            match (def.op, path_left) {
                (O::Eq | O::Ne, _) => add_value(&c, &mut points, &mut literals, &mut lists, &mut objs),
                (O::Lt | O::Le | O::Gt | O::Ge, _) => match &c {
                    Value::Number(n) => points.push(n.clone()),
                    Value::String(s) => {
                        orders.push(s.clone());
                        literals.push(s.clone());
                    }
                    _ => {}
                },
                (O::In | O::NotIn, true) => {
                    if let Value::Array(items) = &c {
                        for it in items {
                            add_value(it, &mut points, &mut literals, &mut lists, &mut objs);
                        }
                    }
                }
                (O::In | O::NotIn, false) => {}
                (O::Contains, true) => {
                    if let Value::String(s) = &c {
                        patterns.push(Pattern::Substring(s.clone()));
                    }
                }
                (O::Contains, false) => match &c {
                    Value::String(hay) => {
                        let chars: Vec<usize> =
                            hay.char_indices().map(|(i, _)| i).chain(std::iter::once(hay.len())).collect();
                        let n = chars.len();
                        let count = n * n.saturating_sub(1) / 2 + 1;
                        let added = count <= limits.max_substrings;
                        if added {
                            literals.push(String::new());
                            for (i, &s) in chars.iter().enumerate() {
                                for &e in chars.iter().skip(i + 1) {
                                    if let Some(sub) = hay.get(s..e) {
                                        literals.push(sub.to_owned());
                                    }
                                }
                            }
                        }
                        self.substrings_added.insert(a, added);
                    }
                    Value::Array(items) => {
                        for it in items {
                            add_value(it, &mut points, &mut literals, &mut lists, &mut objs);
                        }
                    }
                    Value::Object(m) => literals.extend(m.keys().cloned()),
                    _ => {}
                },
                (O::StartsWith | O::EndsWith, true) => {
                    if let Value::String(s) = &c {
                        patterns.push(if def.op == O::StartsWith {
                            Pattern::Prefix(s.clone())
                        } else {
                            Pattern::Suffix(s.clone())
                        });
                    }
                }
                (O::StartsWith | O::EndsWith, false) => {
                    if let Value::String(s) = &c {
                        for (i, _) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
                            let part = if def.op == O::StartsWith { s.get(..i) } else { s.get(i..) };
                            if let Some(part) = part {
                                literals.push(part.to_owned());
                            }
                        }
                    }
                }
                (O::Matches, true) => {
                    if let Value::String(s) = &c {
                        patterns.push(Pattern::Regex(s.clone()));
                    }
                }
                (O::Matches, false) | (O::Exists | O::Missing | O::Holds, _) => {}
            }
        }
        let points = numbers::sorted_points(points);
        literals.sort();
        literals.dedup();
        orders.sort();
        orders.dedup();
        patterns.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        patterns.dedup();
        let regexes: Vec<Option<regex::Regex>> = patterns
            .iter()
            .map(|pat| match pat {
                Pattern::Regex(r) => self.regex(r),
                _ => None,
            })
            .collect();

        // Raw regions: missing, null, false, true, numbers, strings, lists, objects.
        let mut raw: Vec<Region> = vec![
            Region { value: None, kind: Kind::Missing },
            Region { value: Some(Value::Null), kind: Kind::Null },
            Region { value: Some(Value::Bool(false)), kind: Kind::Bool },
            Region { value: Some(Value::Bool(true)), kind: Kind::Bool },
        ];
        let nums = numbers::regions(&points);
        let num_base = raw.len();
        for r in &nums {
            raw.push(Region { value: Some(Value::Number(r.witness.clone())), kind: Kind::Number });
        }
        let pattern_index = patterns.iter().enumerate().map(|(i, p)| (p.clone(), i)).collect();
        let mut info = StringInfo {
            literals,
            orders,
            patterns,
            pattern_index,
            regexes,
            used: Vec::new(),
            orders_exact: true,
            cells: None,
            other: 0,
            base: raw.len(),
        };
        self.string_regions(p, &mut info, &mut raw, limits);
        let list_base = raw.len();
        for l in &lists {
            raw.push(Region { value: Some(l.clone()), kind: Kind::ListConst });
        }
        raw.push(Region { value: Some(fresh_list(&lists)), kind: Kind::ListOther });
        let obj_base = raw.len();
        for o in &objs {
            raw.push(Region { value: Some(o.clone()), kind: Kind::ObjConst });
        }
        raw.push(Region { value: Some(fresh_object(&objs)), kind: Kind::ObjOther });

        // Truths per raw region, as runs (an atom's truth changes only at its own constants,
        // so a path with thousands of cut points costs per atom what its constants cost).
        let (typed, has_children) = self.paths.get(p).map_or((false, false), |pd| (pd.typed, pd.has_children));
        let layout = Layout { num_base, str_base: info.base, list_base, len: raw.len() };
        let runs: Vec<Runs> =
            atoms.iter().map(|&a| self.raw_runs(a, p, &raw, &info, &points, &nums, &layout)).collect();
        // Adjacent raw regions stay apart where some atom's truth changes, where the kind
        // matters (typed paths, prefixes of other paths) and around "missing".
        let n = raw.len();
        let mut cut = vec![false; n + 1];
        for (i, c) in cut.iter_mut().enumerate() {
            *c = i == 0 || i == 1 || i == n;
        }
        for i in 1..n {
            let (Some(a), Some(b)) = (raw.get(i - 1), raw.get(i)) else { continue };
            let container = |r: &Region| matches!(r.kind, Kind::ListConst | Kind::ObjConst);
            if (((typed || has_children) && a.kind.tag() != b.kind.tag())
                || (has_children && (container(a) || container(b))))
                && let Some(c) = cut.get_mut(i)
            {
                *c = true;
            }
        }
        for r in &runs {
            for w in r.windows(2) {
                if let (Some(x), Some(y)) = (w.first(), w.get(1))
                    && x.2 != y.2
                    && let Some(c) = cut.get_mut(y.0)
                {
                    *c = true;
                }
            }
        }
        let segments: Vec<(usize, usize)> = {
            let starts: Vec<usize> = (0..n).filter(|&i| cut.get(i).copied().unwrap_or(false)).collect();
            starts.iter().enumerate().map(|(k, &s0)| (s0, starts.get(k + 1).copied().unwrap_or(n))).collect()
        };
        // Segments with equal truths everywhere merge too (e.g. null, lists and objects alike
        // under string atoms), when that is cheap to find out.
        let mut raw_to_merged = vec![0usize; n];
        let mut regions: Vec<Region> = Vec::new();
        let mut merged_runs: Vec<Runs> = vec![Vec::new(); atoms.len()];
        if segments.len().saturating_mul(atoms.len().max(1)) <= DENSE_MERGE_LIMIT {
            let mut cursors = vec![0usize; runs.len()];
            let mut sig_index: HashMap<(bool, u8, usize, Vec<Truth>), usize> = HashMap::new();
            let mut dense: Vec<Vec<Truth>> = vec![Vec::new(); atoms.len()];
            let mut seg_merged = Vec::with_capacity(segments.len());
            for &(s0, _) in &segments {
                let mut truths = Vec::with_capacity(runs.len());
                for (r, cur) in runs.iter().zip(cursors.iter_mut()) {
                    while r.get(*cur).is_some_and(|x| x.1 <= s0) {
                        *cur += 1;
                    }
                    truths.push(r.get(*cur).map_or(Truth::F, |x| x.2.clone()));
                }
                let Some(first) = raw.get(s0) else { continue };
                let tag = if typed || has_children { first.kind.tag() } else { 0 };
                let unique =
                    if has_children && matches!(first.kind, Kind::ListConst | Kind::ObjConst) { s0 + 1 } else { 0 };
                let key = (first.kind == Kind::Missing, tag, unique, truths);
                let m = match sig_index.get(&key) {
                    Some(m) => *m,
                    None => {
                        let m = regions.len();
                        regions.push(first.clone());
                        for (d, t) in dense.iter_mut().zip(&key.3) {
                            d.push(t.clone());
                        }
                        sig_index.insert(key, m);
                        m
                    }
                };
                seg_merged.push(m);
            }
            for (&(s0, e0), &m) in segments.iter().zip(&seg_merged) {
                for slot in raw_to_merged.iter_mut().take(e0).skip(s0) {
                    *slot = m;
                }
            }
            for (out, d) in merged_runs.iter_mut().zip(dense) {
                for (m, t) in d.into_iter().enumerate() {
                    push_run(out, m, m + 1, t);
                }
            }
        } else {
            for (m, &(s0, e0)) in segments.iter().enumerate() {
                if let Some(first) = raw.get(s0) {
                    regions.push(first.clone());
                }
                for slot in raw_to_merged.iter_mut().take(e0).skip(s0) {
                    *slot = m;
                }
            }
            for (out, r) in merged_runs.iter_mut().zip(&runs) {
                for (s0, e0, t) in r {
                    let (Some(&ms), Some(&me)) = (raw_to_merged.get(*s0), raw_to_merged.get(e0.saturating_sub(1)))
                    else {
                        continue;
                    };
                    push_run(out, ms, me + 1, t.clone());
                }
            }
        }
        for (&a, r) in atoms.iter().zip(merged_runs) {
            self.truths.insert(a, r);
        }
        if let Some(pd) = self.paths.get_mut(p) {
            pd.missing = raw_to_merged.first().copied().unwrap_or(0);
            pd.raw = raw;
            pd.raw_to_merged = raw_to_merged;
            pd.regions = regions;
            pd.points = points;
            pd.nums = nums;
            pd.num_base = num_base;
            pd.strings = info;
            pd.lists = lists;
            pd.list_base = list_base;
            pd.objs = objs;
            pd.obj_base = obj_base;
        }
    }

    /// Adds the string regions of a path: the cells when there are order constants or patterns
    /// (within budget), else one region per literal plus one for every other string.
    fn string_regions(&mut self, p: usize, info: &mut StringInfo, raw: &mut Vec<Region>, limits: &DomainLimits) {
        let want_all = vec![true; info.patterns.len()];
        let none = vec![false; info.patterns.len()];
        // Over budget, keep what is cheap: prefixes (in the trie) and `matches` patterns, then
        // prefixes alone; the patterns left out are opaque on non-literal strings.
        let regex_and_prefix: Vec<bool> =
            info.patterns.iter().map(|p| matches!(p, Pattern::Prefix(_) | Pattern::Regex(_))).collect();
        let prefix_only: Vec<bool> = info.patterns.iter().map(|p| matches!(p, Pattern::Prefix(_))).collect();
        if !info.orders.is_empty() || !info.patterns.is_empty() {
            let mut attempts: Vec<&[bool]> = vec![&want_all];
            for fallback in [&regex_and_prefix, &prefix_only, &none] {
                if attempts.last().is_some_and(|last| *last != fallback.as_slice()) {
                    attempts.push(fallback);
                }
            }
            for want in attempts {
                let orders_list: &[String] = &info.orders;
                if let Ok(c) = strings::cells(&info.literals, orders_list, &info.patterns, want, &limits.strings)
                    && c.cells.len() <= limits.max_regions
                {
                    let mut cells = c.cells;
                    cells.sort_by(|a, b| {
                        a.key
                            .signs
                            .cmp(&b.key.signs)
                            .then(a.key.literal.is_none().cmp(&b.key.literal.is_none()))
                            .then(a.witness.cmp(&b.witness))
                    });
                    let mut index = HashMap::new();
                    for cell in cells {
                        index.insert(cell.key.clone(), raw.len());
                        let kind = if cell.key.literal.is_some() { Kind::StrLiteral } else { Kind::StrOther };
                        raw.push(Region { value: Some(Value::String(cell.witness)), kind });
                    }
                    if c.used.iter().zip(&want_all).any(|(u, w)| u != w) {
                        self.note(p, "some string patterns are not modelled (a DFA over its size limit or a Unicode word boundary)");
                    }
                    info.used = c.used;
                    info.cells = Some(index);
                    return;
                }
                self.note(p, "the string patterns of this path exceed the analysis budget");
            }
            info.orders_exact = false;
        }
        info.used = none;
        info.base = raw.len();
        for l in &info.literals {
            raw.push(Region { value: Some(Value::String(l.clone())), kind: Kind::StrLiteral });
        }
        info.other = raw.len();
        raw.push(Region { value: Some(Value::String(fresh_string(&info.literals))), kind: Kind::StrOther });
    }

    fn note(&mut self, p: usize, what: &str) {
        let shown = self.show_path(p);
        let text = format!("`{shown}`: {what}");
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// The DSL text of a path.
    pub fn show_path(&self, p: usize) -> String {
        let segs = self.paths.get(p).map(|pd| pd.segments.clone()).unwrap_or_default();
        verdict_grammar::printer::path_of(segs.iter().map(String::as_str))
    }

    /// Whether atom `a` is constant on every non-literal string cell of path `p`.
    fn exact_on_other_strings(&self, a: usize, p: usize, info: &StringInfo) -> bool {
        let Some(def) = self.atoms.get(a) else { return false };
        let path_left = def.lhs == Side::Path(p);
        let c = if path_left { self.constant(def.rhs) } else { self.constant(def.lhs) };
        use AtomOp as O;
        match (def.op, path_left, c) {
            (O::Lt | O::Le | O::Gt | O::Ge, _, Some(Value::String(_))) => info.orders_exact,
            (O::StartsWith, true, Some(Value::String(s))) => self.pattern_used(info, &Pattern::Prefix(s.clone())),
            (O::EndsWith, true, Some(Value::String(s))) => self.pattern_used(info, &Pattern::Suffix(s.clone())),
            (O::Contains, true, Some(Value::String(s))) => self.pattern_used(info, &Pattern::Substring(s.clone())),
            (O::Matches, true, Some(Value::String(s))) => self.pattern_used(info, &Pattern::Regex(s.clone())),
            (O::Matches, false, _) => false,
            (O::Contains, false, Some(Value::String(_))) => self.substrings_added.get(&a).copied().unwrap_or(false),
            _ => true,
        }
    }

    fn pattern_used(&self, info: &StringInfo, pat: &Pattern) -> bool {
        info.pattern_index.get(pat).and_then(|i| info.used.get(*i).copied()).unwrap_or(false)
    }

    /// The numbers at which atom `a`'s truth on the numbers of its path may change: every other
    /// number region has the truth of its neighbours.
    fn number_breaks(&self, a: usize, p: usize) -> Vec<Number> {
        let Some(def) = self.atoms.get(a) else { return Vec::new() };
        let path_left = def.lhs == Side::Path(p);
        let c = if path_left { self.constant(def.rhs) } else { self.constant(def.lhs) };
        use AtomOp as O;
        let numbers = |items: &[Value]| -> Vec<Number> {
            items.iter().filter_map(|v| if let Value::Number(n) = v { Some(n.clone()) } else { None }).collect()
        };
        match (def.op, path_left, c) {
            (O::Eq | O::Ne | O::Lt | O::Le | O::Gt | O::Ge, _, Some(Value::Number(n))) => vec![n.clone()],
            (O::In | O::NotIn, true, Some(Value::Array(items))) | (O::Contains, false, Some(Value::Array(items))) => {
                numbers(items)
            }
            _ => Vec::new(),
        }
    }

    /// For atoms whose truth on strings is decided by equality with a finite set (`==`, `in`,
    /// their negations, a literal list or object holding the path): that set. Every literal
    /// outside it has the truth of "any other string".
    fn string_members(&self, a: usize, p: usize) -> Option<Vec<String>> {
        let def = self.atoms.get(a)?;
        let path_left = def.lhs == Side::Path(p);
        let c = if path_left { self.constant(def.rhs) } else { self.constant(def.lhs) };
        use AtomOp as O;
        let strings =
            |items: &[Value]| -> Vec<String> { items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect() };
        match (def.op, path_left, c) {
            (O::Exists | O::Missing, _, _) => Some(Vec::new()),
            (O::Eq | O::Ne, _, Some(v)) => Some(v.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default()),
            (O::In | O::NotIn, true, Some(Value::Array(items))) | (O::Contains, false, Some(Value::Array(items))) => {
                Some(strings(items))
            }
            (O::Contains, false, Some(Value::Object(m))) => Some(m.keys().cloned().collect()),
            (O::In | O::NotIn, false, _) => Some(Vec::new()),
            _ => None,
        }
    }

    /// Atom `a`'s truth on every raw region of path `p`, as runs, evaluating one region per run.
    #[allow(clippy::too_many_arguments)]
    fn raw_runs(
        &mut self,
        a: usize,
        p: usize,
        raw: &[Region],
        info: &StringInfo,
        points: &[Number],
        nums: &[NumRegion],
        layout: &Layout,
    ) -> Runs {
        let mut runs = Runs::new();
        let eval = |this: &mut Self, i: usize| raw.get(i).map_or(Truth::F, |r| this.raw_truth(a, p, r, info));
        for i in 0..layout.num_base {
            let t = eval(self, i);
            push_run(&mut runs, i, i + 1, t);
        }
        // Numbers: constant between the atom's own numbers.
        let mut breaks: Vec<usize> = self
            .number_breaks(a, p)
            .iter()
            .filter_map(|n| numbers::classify(points, nums, n))
            .map(|k| layout.num_base + k)
            .collect();
        breaks.sort_unstable();
        breaks.dedup();
        let mut cursor = layout.num_base;
        for b in breaks {
            if cursor < b {
                let t = eval(self, cursor);
                push_run(&mut runs, cursor, b, t);
            }
            let t = eval(self, b);
            push_run(&mut runs, b, b + 1, t);
            cursor = b + 1;
        }
        if cursor < layout.str_base {
            let t = eval(self, cursor);
            push_run(&mut runs, cursor, layout.str_base, t);
        }
        // Strings: with literals only, constant outside the atom's own literals.
        match (info.cells.is_none(), self.string_members(a, p)) {
            (true, Some(members)) if layout.str_base < layout.list_base => {
                let mut idx: Vec<usize> =
                    members.iter().filter_map(|m| info.literals.binary_search(m).ok()).map(|i| info.base + i).collect();
                idx.sort_unstable();
                idx.dedup();
                let default = eval(self, info.other);
                let mut cursor = layout.str_base;
                for i in idx {
                    push_run(&mut runs, cursor, i, default.clone());
                    let t = eval(self, i);
                    push_run(&mut runs, i, i + 1, t);
                    cursor = i + 1;
                }
                push_run(&mut runs, cursor, layout.list_base, default);
            }
            _ => {
                for i in layout.str_base..layout.list_base {
                    let t = eval(self, i);
                    push_run(&mut runs, i, i + 1, t);
                }
            }
        }
        for i in layout.list_base..layout.len {
            let t = eval(self, i);
            push_run(&mut runs, i, i + 1, t);
        }
        runs
    }

    /// The truth of atom `a` on a raw region of path `p`.
    fn raw_truth(&mut self, a: usize, p: usize, r: &Region, info: &StringInfo) -> Truth {
        let Some(def) = self.atoms.get(a).copied() else { return Truth::F };
        let path_left = def.lhs == Side::Path(p);
        use AtomOp as O;
        match r.kind {
            Kind::StrOther if !self.exact_on_other_strings(a, p, info) => {
                return Truth::Opaque(OpaqueKey::Atom(a), false);
            }
            Kind::ListOther => match (def.op, path_left, def.rhs, def.lhs) {
                (O::Contains, true, Side::Const(c), _) => return Truth::Opaque(OpaqueKey::Member(p, c), false),
                (O::In, false, _, Side::Const(c)) => return Truth::Opaque(OpaqueKey::Member(p, c), false),
                (O::NotIn, false, _, Side::Const(c)) => return Truth::Opaque(OpaqueKey::Member(p, c), true),
                _ => {}
            },
            Kind::ObjOther => {
                if let (O::Contains, true, Some(Value::String(k))) = (def.op, path_left, self.constant(def.rhs)) {
                    let mut child = self.paths.get(p).map(|pd| pd.segments.clone()).unwrap_or_default();
                    child.push(k.clone());
                    return match self.path_ids.get(&child) {
                        Some(c) => Truth::Child(*c),
                        None => Truth::Opaque(OpaqueKey::Key(p, k.clone()), false),
                    };
                }
            }
            _ => {}
        }
        let re = match (def.op, self.constant(def.rhs).cloned()) {
            (O::Matches, Some(Value::String(pat))) => self.regex(&pat),
            _ => None,
        };
        let v = r.value.as_ref();
        let operand = |s: Side| -> Option<&Value> {
            match s {
                Side::Path(_) => v,
                Side::Const(c) => self.consts.get(c),
                Side::Term(_) | Side::None => None,
            }
        };
        if atom::eval(def.op, operand(def.lhs), operand(def.rhs), re.as_ref()) { Truth::T } else { Truth::F }
    }

    /// Picks the path most rules fix to a constant in a top-level conjunct (`action == "read"`,
    /// `action in [...]`): it goes to the top of the variable order, so every diagram is split
    /// by its value first and rules of different buckets never meet.
    fn choose_discriminating(&mut self, bundles: &[&Bundle]) {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for (bi, b) in bundles.iter().enumerate() {
            for pol in &b.policies {
                for rule in &pol.rules {
                    let mut seen = Vec::new();
                    // Top-level conjuncts only, and a bounded number of them (definitions may
                    // share sub-conditions, so the walk is capped rather than memoized).
                    let mut stack = vec![rule.cond];
                    let mut visited = 0usize;
                    while let Some(c) = stack.pop() {
                        visited += 1;
                        if visited > 256 {
                            break;
                        }
                        match b.cond(c).map(|n| &n.cond) {
                            Some(Cond::All(kids)) => stack.extend(kids.iter().copied()),
                            Some(Cond::Ref(d)) => {
                                if let Some(def) = b.defs.get(d.index()) {
                                    stack.push(def.cond);
                                }
                            }
                            Some(Cond::Atom(_)) => {
                                let atom = self.cond_atoms.get(bi).and_then(|v| v.get(c.index())).copied().flatten();
                                if let Some(def) = atom.and_then(|a| self.atoms.get(a))
                                    && matches!(def.op, AtomOp::Eq | AtomOp::In)
                                    && let (Side::Path(p), Side::Const(_)) = (def.lhs, def.rhs)
                                    && !seen.contains(&p)
                                {
                                    seen.push(p);
                                    *counts.entry(p).or_insert(0) += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        self.discriminating = counts
            .into_iter()
            .filter(|(_, n)| *n >= 2)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(p, _)| p);
    }

    fn assign_vars(&mut self) {
        let mut order: Vec<usize> = (0..self.paths.len()).collect();
        let disc = self.discriminating;
        order.sort_by_key(|&p| {
            let uses = self.paths.get(p).map_or(0, |pd| pd.uses);
            (Some(p) != disc, std::cmp::Reverse(uses), p)
        });
        let mut next = 0u32;
        for p in order {
            if let Some(pd) = self.paths.get_mut(p) {
                let n = pd.regions.len().max(1);
                let bits = usize::BITS - (n - 1).leading_zeros();
                pd.first_var = next;
                pd.bits = bits;
                next += bits;
            }
        }
        self.next_var = next;
    }

    /// Number of BDD variables allocated so far.
    pub fn var_count(&self) -> u32 {
        self.next_var
    }

    fn opaque_var(&mut self, key: OpaqueKey) -> u32 {
        if let Some(v) = self.opaque.get(&key) {
            return *v;
        }
        let v = self.next_var;
        self.next_var += 1;
        self.opaque.insert(key, v);
        v
    }

    /// The opaque variables and what they stand for.
    pub fn opaque_vars(&self) -> impl Iterator<Item = (&OpaqueKey, u32)> {
        self.opaque.iter().map(|(k, v)| (k, *v))
    }

    /// The set of assignments where path `p` is in one of the regions `member` accepts.
    pub fn region_set(&self, bdd: &mut Bdd, p: usize, member: impl Fn(usize) -> bool) -> Res<NodeId> {
        let Some(pd) = self.paths.get(p) else { return Ok(FALSE) };
        let n = pd.regions.len();
        let total: u64 = 1u64 << pd.bits;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for r in 0..n {
            if !member(r) {
                continue;
            }
            let (lo, hi) = if r + 1 == n { (r as u64, total) } else { (r as u64, r as u64 + 1) };
            match ranges.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => ranges.push((lo, hi)),
            }
        }
        range_bdd(bdd, pd.first_var, 0, pd.bits, 0, total, &ranges)
    }

    /// The set where path `p` is present.
    pub fn present(&self, bdd: &mut Bdd, p: usize) -> Res<NodeId> {
        let missing = self.paths.get(p).map_or(0, |pd| pd.missing);
        self.region_set(bdd, p, |r| r != missing)
    }

    fn kind_set(&self, bdd: &mut Bdd, p: usize, f: impl Fn(Kind) -> bool) -> Res<NodeId> {
        let kinds: Vec<Kind> =
            self.paths.get(p).map(|pd| pd.regions.iter().map(|r| r.kind).collect()).unwrap_or_default();
        self.region_set(bdd, p, |r| kinds.get(r).is_some_and(|k| f(*k)))
    }

    /// The set where atom `a` holds.
    pub fn atom_bdd(&mut self, bdd: &mut Bdd, a: usize) -> Res<NodeId> {
        if let Some(n) = self.atom_memo.get(&a) {
            return Ok(*n);
        }
        let Some(def) = self.atoms.get(a).copied() else { return Ok(FALSE) };
        let node = match (def.lhs, def.rhs) {
            (Side::Term(_), _) | (_, Side::Term(_)) => {
                let v = self.opaque_var(OpaqueKey::Atom(a));
                bdd.var(v)?
            }
            (Side::Path(p), Side::Path(q)) => self.path_path(bdd, def.op, p, q)?,
            (Side::Path(p), _) | (_, Side::Path(p)) => self.path_const(bdd, a, p)?,
            (l, r) => {
                let re = match (def.op, self.constant(r)) {
                    (AtomOp::Matches, Some(Value::String(pat))) => {
                        let pat = pat.clone();
                        self.regex(&pat)
                    }
                    _ => None,
                };
                if atom::eval(def.op, self.constant(l), self.constant(r), re.as_ref()) { TRUE } else { FALSE }
            }
        };
        self.atom_memo.insert(a, node);
        Ok(node)
    }

    fn path_const(&mut self, bdd: &mut Bdd, a: usize, p: usize) -> Res<NodeId> {
        let runs = self.truths.get(&a).cloned().unwrap_or_default();
        let trues: Vec<(usize, usize)> = runs.iter().filter(|r| r.2 == Truth::T).map(|r| (r.0, r.1)).collect();
        let mut out = self.ranges_set(bdd, p, &trues)?;
        let mut opaque: BTreeMap<(OpaqueKey, bool), Vec<(usize, usize)>> = BTreeMap::new();
        let mut child: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for (s0, e0, t) in &runs {
            match t {
                Truth::Opaque(k, neg) => opaque.entry((k.clone(), *neg)).or_default().push((*s0, *e0)),
                Truth::Child(c) => child.entry(*c).or_default().push((*s0, *e0)),
                Truth::T | Truth::F => {}
            }
        }
        for ((key, neg), ranges) in opaque {
            let set = self.ranges_set(bdd, p, &ranges)?;
            let v = self.opaque_var(key);
            let lit = if neg { bdd.nvar(v)? } else { bdd.var(v)? };
            let part = bdd.and(set, lit)?;
            out = bdd.or(out, part)?;
        }
        for (c, ranges) in child {
            let set = self.ranges_set(bdd, p, &ranges)?;
            let present = self.present(bdd, c)?;
            let part = bdd.and(set, present)?;
            out = bdd.or(out, part)?;
        }
        Ok(out)
    }

    /// The set where path `p` is in one of the merged-region ranges (sorted, disjoint).
    fn ranges_set(&self, bdd: &mut Bdd, p: usize, ranges: &[(usize, usize)]) -> Res<NodeId> {
        let Some(pd) = self.paths.get(p) else { return Ok(FALSE) };
        let n = pd.regions.len() as u64;
        let total: u64 = 1u64 << pd.bits;
        let mut codes: Vec<(u64, u64)> = Vec::new();
        for &(s0, e0) in ranges {
            let (lo, mut hi) = (s0 as u64, e0 as u64);
            if hi >= n {
                hi = total;
            }
            match codes.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => codes.push((lo, hi)),
            }
        }
        range_bdd(bdd, pd.first_var, 0, pd.bits, 0, total, &codes)
    }

    fn path_path(&mut self, bdd: &mut Bdd, op: AtomOp, p: usize, q: usize) -> Res<NodeId> {
        use AtomOp as O;
        let pp = self.present(bdd, p)?;
        let pq = self.present(bdd, q)?;
        let both = bdd.and(pp, pq)?;
        let key = match op {
            O::Eq | O::Ne => OpaqueKey::PathPath(O::Eq, p.min(q), p.max(q)),
            O::In | O::NotIn => OpaqueKey::PathPath(O::In, p, q),
            other => OpaqueKey::PathPath(other, p, q),
        };
        let v = self.opaque_var(key);
        let lit = if matches!(op, O::Ne | O::NotIn) { bdd.nvar(v)? } else { bdd.var(v)? };
        let typing = match op {
            O::Lt | O::Le | O::Gt | O::Ge => {
                let np = self.kind_set(bdd, p, |k| k == Kind::Number)?;
                let nq = self.kind_set(bdd, q, |k| k == Kind::Number)?;
                let sp = self.kind_set(bdd, p, Kind::is_string)?;
                let sq = self.kind_set(bdd, q, Kind::is_string)?;
                let nn = bdd.and(np, nq)?;
                let ss = bdd.and(sp, sq)?;
                bdd.or(nn, ss)?
            }
            O::In | O::NotIn => self.kind_set(bdd, q, Kind::is_list)?,
            O::StartsWith | O::EndsWith => {
                let sp = self.kind_set(bdd, p, Kind::is_string)?;
                let sq = self.kind_set(bdd, q, Kind::is_string)?;
                bdd.and(sp, sq)?
            }
            O::Contains => {
                let sp = self.kind_set(bdd, p, Kind::is_string)?;
                let sq = self.kind_set(bdd, q, Kind::is_string)?;
                let lp = self.kind_set(bdd, p, Kind::is_list)?;
                let op_ = self.kind_set(bdd, p, Kind::is_object)?;
                let strs = bdd.and(sp, sq)?;
                let keys = bdd.and(op_, sq)?;
                let x = bdd.or(strs, lp)?;
                bdd.or(x, keys)?
            }
            _ => TRUE,
        };
        let x = bdd.and(both, typing)?;
        bdd.and(x, lit)
    }

    /// The merged region of a concrete value at path `p` (`None` if it cannot be placed, which
    /// only weakens the constraints that use it).
    pub fn region_of(&self, p: usize, v: Option<&Value>) -> Option<usize> {
        let pd = self.paths.get(p)?;
        let raw = match v {
            None => 0,
            Some(Value::Null) => 1,
            Some(Value::Bool(false)) => 2,
            Some(Value::Bool(true)) => 3,
            Some(Value::Number(n)) => pd.num_base + numbers::classify(&pd.points, &pd.nums, n)?,
            Some(Value::String(s)) => {
                let info = &pd.strings;
                match &info.cells {
                    Some(index) => {
                        let key =
                            strings::key_of(s, &info.literals, &info.orders, &info.patterns, &info.used, &info.regexes);
                        *index.get(&key)?
                    }
                    None => match info.literals.binary_search(s) {
                        Ok(i) => info.base + i,
                        Err(_) => info.other,
                    },
                }
            }
            Some(Value::Array(_)) => {
                let v = v?;
                match pd.lists.iter().position(|l| deep_eq(l, v)) {
                    Some(i) => pd.list_base + i,
                    None => pd.list_base + pd.lists.len(),
                }
            }
            Some(Value::Object(_)) => {
                let v = v?;
                match pd.objs.iter().position(|o| deep_eq(o, v)) {
                    Some(i) => pd.obj_base + i,
                    None => pd.obj_base + pd.objs.len(),
                }
            }
        };
        pd.raw_to_merged.get(raw).copied()
    }

    /// The structure constraint: how the values of paths that are prefixes of one another fit.
    pub fn structure(&mut self, bdd: &mut Bdd) -> Res<NodeId> {
        let mut s = TRUE;
        let n = self.paths.len();
        for d in 0..n {
            let segs = self.paths.get(d).map(|pd| pd.segments.clone()).unwrap_or_default();
            for k in 1..segs.len().min(MAX_STRUCTURE_DEPTH) {
                let Some(&a) = segs.get(..k).and_then(|pre| self.path_ids.get(pre)) else { continue };
                let rest: Vec<String> = segs.get(k..).map(<[String]>::to_vec).unwrap_or_default();
                let first_digits = rest.first().is_some_and(|s| is_digits(s));
                let regions = self.paths.get(a).map(|pd| pd.regions.clone()).unwrap_or_default();
                let mut must_miss = Vec::new();
                let mut free = Vec::new();
                let mut fixed: Vec<(usize, usize)> = Vec::new();
                for (r, reg) in regions.iter().enumerate() {
                    match reg.kind {
                        Kind::ObjOther => free.push(r),
                        Kind::ListOther if first_digits => free.push(r),
                        Kind::ListConst | Kind::ObjConst => {
                            let child = reg.value.as_ref().and_then(|v| lookup(v, &rest));
                            match self.region_of(d, child) {
                                Some(cr) => fixed.push((r, cr)),
                                None => free.push(r),
                            }
                        }
                        _ => must_miss.push(r),
                    }
                }
                let miss_set = self.region_set(bdd, a, |r| must_miss.contains(&r))?;
                let d_missing = self.region_set(bdd, d, |r| self.paths.get(d).is_some_and(|pd| pd.missing == r))?;
                let mut c = bdd.and(miss_set, d_missing)?;
                let free_set = self.region_set(bdd, a, |r| free.contains(&r))?;
                c = bdd.or(c, free_set)?;
                for (r, cr) in fixed {
                    let ar = self.region_set(bdd, a, |x| x == r)?;
                    let dr = self.region_set(bdd, d, |x| x == cr)?;
                    let both = bdd.and(ar, dr)?;
                    c = bdd.or(c, both)?;
                }
                s = bdd.and(s, c)?;
            }
        }
        // In a list, an index present means every smaller index is.
        for a in 0..n {
            let Some(pd) = self.paths.get(a) else { continue };
            if !pd.has_children {
                continue;
            }
            let list_other: Vec<usize> =
                pd.regions.iter().enumerate().filter(|(_, r)| r.kind == Kind::ListOther).map(|(i, _)| i).collect();
            if list_other.is_empty() {
                continue;
            }
            let mut kids: Vec<(u64, usize)> = Vec::new();
            let base = pd.segments.clone();
            for (c, cd) in self.paths.iter().enumerate() {
                if cd.segments.len() == base.len() + 1
                    && cd.segments.starts_with(&base)
                    && let Some(last) = cd.segments.last().filter(|s| is_digits(s))
                    && let Ok(i) = last.parse::<u64>()
                {
                    kids.push((i, c));
                }
            }
            kids.sort();
            kids.dedup_by_key(|k| k.0);
            for pair in kids.windows(2) {
                let (Some(&(_, lo)), Some(&(_, hi))) = (pair.first(), pair.get(1)) else { continue };
                let is_list = self.region_set(bdd, a, |r| list_other.contains(&r))?;
                let hi_present = self.present(bdd, hi)?;
                let lo_present = self.present(bdd, lo)?;
                let bad = bdd.and(is_list, hi_present)?;
                let bad = bdd.diff(bad, lo_present)?;
                s = bdd.diff(s, bad)?;
            }
        }
        Ok(s)
    }

    /// The card scope of bundle `b` (TRUE without one).
    pub fn scope(&mut self, bdd: &mut Bdd, b: usize) -> Res<NodeId> {
        match self.scope_atoms.get(b).copied().flatten() {
            Some((v, a)) => {
                let x = self.atom_bdd(bdd, v)?;
                let y = self.atom_bdd(bdd, a)?;
                bdd.and(x, y)
            }
            None => Ok(TRUE),
        }
    }

    /// Decodes a satisfying path of a diagram into a region per path and a value per opaque
    /// variable (variables off the path are 0, which any completion allows).
    pub fn decode(&self, path: &[(u32, bool)]) -> Assignment {
        let mut bits: HashMap<u32, bool> = HashMap::new();
        for (v, b) in path {
            bits.insert(*v, *b);
        }
        let regions = self
            .paths
            .iter()
            .map(|pd| {
                let mut code: u64 = 0;
                for i in 0..pd.bits {
                    code = (code << 1) | u64::from(bits.get(&(pd.first_var + i)).copied().unwrap_or(false));
                }
                let n = pd.regions.len().max(1);
                usize::try_from(code).unwrap_or(usize::MAX).min(n - 1)
            })
            .collect();
        let opaque = self.opaque.iter().map(|(k, v)| (k.clone(), bits.get(v).copied().unwrap_or(false))).collect();
        Assignment { regions, opaque }
    }

    /// The truth of atom `a` (a path-vs-constant atom) on merged region `r` of its path.
    pub fn truth(&self, a: usize, r: usize) -> Option<&Truth> {
        let runs = self.truths.get(&a)?;
        let i = runs.partition_point(|x| x.1 <= r);
        runs.get(i).filter(|x| x.0 <= r).map(|x| &x.2)
    }

    /// All list and object constants a path is compared with.
    pub fn containers(&self, p: usize) -> (&[Value], &[Value]) {
        self.paths.get(p).map_or((&[][..], &[][..]), |pd| (pd.lists.as_slice(), pd.objs.as_slice()))
    }
}

/// A point of the abstract space: a merged region per path, a value per opaque variable.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub regions: Vec<usize>,
    pub opaque: BTreeMap<OpaqueKey, bool>,
}

fn range_bdd(
    bdd: &mut Bdd,
    first_var: u32,
    level: u32,
    bits: u32,
    lo: u64,
    hi: u64,
    ranges: &[(u64, u64)],
) -> Res<NodeId> {
    // INVARIANT: recursion depth is `bits` (at most 64).
    let clipped: Vec<(u64, u64)> = ranges.iter().map(|&(a, b)| (a.max(lo), b.min(hi))).filter(|(a, b)| a < b).collect();
    if clipped.is_empty() {
        return Ok(FALSE);
    }
    if clipped.len() == 1 && clipped.first() == Some(&(lo, hi)) {
        return Ok(TRUE);
    }
    if level >= bits {
        return Ok(TRUE);
    }
    let mid = lo + (hi - lo) / 2;
    let l = range_bdd(bdd, first_var, level + 1, bits, lo, mid, &clipped)?;
    let r = range_bdd(bdd, first_var, level + 1, bits, mid, hi, &clipped)?;
    bdd.branch(first_var + level, l, r)
}

/// A string that is none of the literals.
fn fresh_string(literals: &[String]) -> String {
    for c in ["other", "x", "y", "z", "zz"] {
        if literals.binary_search_by(|l| l.as_str().cmp(c)).is_err() {
            return c.to_owned();
        }
    }
    let mut s = "~".to_owned();
    while literals.binary_search(&s).is_ok() {
        s.push('~');
    }
    s
}

/// A list equal to none of the constants.
fn fresh_list(lists: &[Value]) -> Value {
    let mut v: Vec<Value> = Vec::new();
    loop {
        let cand = Value::Array(v.clone());
        if !lists.iter().any(|l| deep_eq(l, &cand)) {
            return cand;
        }
        v.push(Value::String("~".into()));
    }
}

/// An object equal to none of the constants.
fn fresh_object(objs: &[Value]) -> Value {
    let mut m = serde_json::Map::new();
    let mut k = String::from("~");
    loop {
        let cand = Value::Object(m.clone());
        if !objs.iter().any(|o| deep_eq(o, &cand)) {
            return cand;
        }
        m.insert(k.clone(), Value::Null);
        k.push('~');
    }
}
