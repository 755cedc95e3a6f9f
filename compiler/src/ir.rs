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

/// A declared path type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Object,
    Any,
}

impl Type {
    pub fn name(&self) -> String {
        match self {
            Type::String => "string".into(),
            Type::Number => "number".into(),
            Type::Bool => "bool".into(),
            Type::List(t) => format!("list<{}>", t.name()),
            Type::Object => "object".into(),
            Type::Any => "any".into(),
        }
    }
}

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
    /// No operand (the right side of `exists`/`missing`).
    None,
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

    pub fn effect(&self, id: EffectId) -> &str {
        self.effects.get(id.index()).map_or("", String::as_str)
    }

    /// The most severe effect: what gates and the default default decide.
    pub fn most_severe(&self) -> &str {
        self.effects.first().map_or("deny", String::as_str)
    }
}
