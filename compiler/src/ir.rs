//! The typed intermediate representation every source form lowers to, and every backend consumes.
//!
//! Paths and constants are interned (one [`PathId`] per distinct path, one [`ConstId`] per
//! distinct constant); conditions live in one arena, children before parents, with `let`
//! definitions kept as named nodes ([`Cond::Ref`]) rather than inlined.
//!
//! INVARIANTS (established by [`crate::lower`]): every id is in range; definitions are acyclic;
//! the nesting of any condition, counted through definitions, is at most
//! [`verdict_grammar::ast::MAX_DEPTH`]; every `Matches` atom's right operand is a constant string
//! that compiles as a Rust regex; `effects` is non-empty and duplicate-free.

use serde_json::{Map, Value};
use verdict_grammar::ast::Span;
pub use verdict_vocab::AtomOp;
use verdict_vocab::{Arith, Func, NowField, Window};

macro_rules! id {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id!(PathId);
id!(ConstId);
id!(CondId);
id!(DefId);
id!(EffectId);
id!(TermId);
id!(ExternId);
id!(StateId);

/// A compiled bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub id: String,
    pub version: String,
    pub description: Option<String>,
    pub source: Option<String>,
    /// Effect names, most severe first.
    pub effects: Vec<String>,
    pub combine: Combine,
    pub effective_from: Option<Instant>,
    pub effective_until: Option<Instant>,
    pub card_scope: Option<CardScope>,
    pub schema: Option<Vec<SchemaEntry>>,
    pub paths: Vec<Vec<String>>,
    pub consts: Vec<Value>,
    pub conds: Vec<CondNode>,
    pub defs: Vec<Def>,
    pub policies: Vec<Policy>,
    /// Terms (LANGUAGE.md §5.1), operands before the terms that use them.
    pub terms: Vec<TermNode>,
    pub externs: Vec<ExternDecl>,
    pub states: Vec<StateDecl>,
    /// The IANA timezone of calendar windows and `now.*` (default UTC).
    pub timezone: Option<String>,
    /// Seconds an uncommitted hold counts (default 10 minutes).
    pub hold_ttl: Option<u64>,
    /// Paths every request must have (checked at run time with the schema).
    pub required: Vec<(PathId, Span)>,
    /// The names of every `let`, state and extern: a request path whose first segment is one of
    /// them is printed `input.…` (derived from `defs`, `states` and `externs`; a set so printing
    /// stays linear however many there are).
    pub roots: std::collections::HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Overrides,
    First,
}

impl Combine {
    pub fn as_str(self) -> &'static str {
        match self {
            Combine::Overrides => "overrides",
            Combine::First => "first",
        }
    }
}

/// A point in time as written, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Instant {
    pub text: String,
    pub at: jiff::Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CardScope {
    pub vendor_id: String,
    pub allowed_actions: Vec<String>,
    pub condition_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaEntry {
    pub path: PathId,
    pub ty: Type,
    pub span: Span,
}

/// A declared type: one definition, the runtime's, which checks it at run time too.
pub use verdict_runtime::value::Type;

#[derive(Debug, Clone, PartialEq)]
pub struct CondNode {
    pub cond: Cond,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Const(bool),
    Atom(Atom),
    Not(CondId),
    All(Vec<CondId>),
    Any(Vec<CondId>),
    Ref(DefId),
}

/// An atom: an operator and its operands (`rhs` is unused by `exists`/`missing`).
#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    pub op: AtomOp,
    pub lhs: Operand,
    pub rhs: Operand,
    /// Canonical DSL text, shown in traces.
    pub text: String,
    /// 1-based line and column of the atom in its source.
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    Path(PathId),
    Const(ConstId),
    /// A term that is not a plain path or constant (arithmetic, a function, a state read, an
    /// extern call, a time field).
    Term(TermId),
    /// No operand (the right side of `exists`/`missing`).
    None,
}

/// A term with where it is written and its canonical DSL text.
#[derive(Debug, Clone, PartialEq)]
pub struct TermNode {
    pub term: Term,
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Term {
    /// `lhs op rhs`; unary minus has `Operand::None` on the right.
    Arith(Arith, Operand, Operand),
    Func(Func, Operand),
    Now(NowField),
    /// A read of a state series; `seconds` is the length of a sliding window (`last`), else 0.
    State {
        state: StateId,
        window: Window,
        seconds: u32,
    },
    Extern(ExternId, Vec<Operand>),
}

/// `extern name(params) -> returns`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternDecl {
    pub name: String,
    pub params: Vec<Type>,
    pub returns: Type,
    pub span: Span,
}

/// When a state update counts for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Held until the caller commits the decision (the default).
    Commit,
    /// Recorded at once.
    Decision,
}

impl Apply {
    pub fn as_str(self) -> &'static str {
        match self {
            Apply::Commit => "commit",
            Apply::Decision => "decision",
        }
    }
}

/// A state series declaration (LANGUAGE.md §5.2).
#[derive(Debug, Clone, PartialEq)]
pub struct StateDecl {
    pub name: String,
    /// What one decision adds (a term).
    pub add: Operand,
    pub key: Vec<PathId>,
    /// The bundle decision kinds that update it.
    pub on: Vec<EffectId>,
    pub apply: Apply,
    pub span: Span,
}

/// A reason template (LANGUAGE.md §5.5): its text as written, and its pieces.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub text: String,
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// `{term}` or `{term:.Nf}`.
    Term {
        operand: Operand,
        decimals: Option<u8>,
    },
}

/// A named condition (`let` / `definitions`).
#[derive(Debug, Clone, PartialEq)]
pub struct Def {
    pub name: String,
    pub cond: CondId,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    First,
    Priority,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: String,
    pub span: Span,
    pub description: Option<String>,
    pub card_derived: bool,
    pub match_mode: MatchMode,
    /// `None` is the `none` default: not applicable.
    pub default: Option<EffectId>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub span: Span,
    pub effect: EffectId,
    pub cond: CondId,
    pub description: Option<String>,
    pub codes: Vec<String>,
    pub obligations: Map<String, Value>,
    pub priority: i64,
    pub tags: Option<Vec<String>>,
    /// A reason template (instead of `description`).
    pub template: Option<Template>,
}

/// Which terms, conditions and definitions may **fault** (LANGUAGE.md §5.2, §5.3): a state read
/// or an extern call, or anything built on one. The one definition codegen (fallible rules are
/// never skipped by dispatch) and the analysis (a fallible rule may decide by its fault) share.
#[derive(Debug, Clone)]
pub struct Fallibility {
    terms: Vec<bool>,
    defs: Vec<Option<bool>>,
}

impl Fallibility {
    pub fn new(b: &Bundle) -> Fallibility {
        let mut terms: Vec<bool> = Vec::with_capacity(b.terms.len());
        for t in &b.terms {
            // INVARIANT: operands come before the terms that use them, so `terms` holds them.
            let operand = |o: &Operand, terms: &Vec<bool>| match o {
                Operand::Term(t) => terms.get(t.index()).copied().unwrap_or(true),
                _ => false,
            };
            let f = match &t.term {
                Term::State { .. } | Term::Extern(..) => true,
                Term::Now(_) => false,
                Term::Arith(_, l, r) => operand(l, &terms) || operand(r, &terms),
                Term::Func(_, a) => operand(a, &terms),
            };
            terms.push(f);
        }
        Fallibility { terms, defs: vec![None; b.defs.len()] }
    }

    /// Whether term `t` may fault.
    pub fn term(&self, t: TermId) -> bool {
        self.terms.get(t.index()).copied().unwrap_or(true)
    }

    /// Whether an operand may fault.
    pub fn operand(&self, o: Operand) -> bool {
        matches!(o, Operand::Term(t) if self.term(t))
    }

    /// Whether a decision's state updates may fail (LANGUAGE.md §5.2), which decides the most
    /// severe effect whatever the rules decided: some series' `add` term may fault, or one of its
    /// key paths may be missing or not a string, number or bool (only a `required` path declared
    /// `string`, `number` or `bool` in the schema is sure to choose a series).
    pub fn updates(&self, b: &Bundle) -> bool {
        let sure_key = |k: &PathId| {
            b.required.iter().any(|(p, _)| p == k)
                && b.schema
                    .iter()
                    .flatten()
                    .any(|e| e.path == *k && matches!(e.ty, Type::String | Type::Number | Type::Bool))
        };
        b.states.iter().any(|s| !s.on.is_empty() && (self.operand(s.add) || !s.key.iter().all(sure_key)))
    }

    /// Whether condition `id` may fault somewhere (each definition is walked once).
    pub fn cond(&mut self, b: &Bundle, id: CondId) -> bool {
        self.cond_at(b, id, 0)
    }

    fn cond_at(&mut self, b: &Bundle, id: CondId, depth: usize) -> bool {
        // INVARIANT: the IR's depth bound holds; past it, answer the safe "may fault".
        if depth > verdict_grammar::ast::MAX_DEPTH + 1 {
            return true;
        }
        let Some(node) = b.cond(id) else { return false };
        match &node.cond {
            Cond::Const(_) => false,
            Cond::Atom(a) => self.operand(a.lhs) || self.operand(a.rhs),
            Cond::Not(c) => self.cond_at(b, *c, depth + 1),
            Cond::All(v) | Cond::Any(v) => v.iter().any(|c| self.cond_at(b, *c, depth + 1)),
            Cond::Ref(d) => {
                if let Some(known) = self.defs.get(d.index()).copied().flatten() {
                    return known;
                }
                let f = b.defs.get(d.index()).is_some_and(|def| self.cond_at(b, def.cond, depth + 1));
                if let Some(slot) = self.defs.get_mut(d.index()) {
                    *slot = Some(f);
                }
                f
            }
        }
    }
}

impl Bundle {
    pub fn cond(&self, id: CondId) -> Option<&CondNode> {
        self.conds.get(id.index())
    }

    pub fn path(&self, id: PathId) -> &[String] {
        self.paths.get(id.index()).map_or(&[], Vec::as_slice)
    }

    pub fn constant(&self, id: ConstId) -> Option<&Value> {
        self.consts.get(id.index())
    }

    pub fn term(&self, id: TermId) -> Option<&TermNode> {
        self.terms.get(id.index())
    }

    pub fn effect(&self, id: EffectId) -> &str {
        self.effects.get(id.index()).map_or("", String::as_str)
    }

    /// The most severe effect: what gates and the default default decide.
    pub fn most_severe(&self) -> &str {
        self.effects.first().map_or("deny", String::as_str)
    }
}
