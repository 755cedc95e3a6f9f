//! Symbols: request values reduced to one `u32` each, so that native code decides equality atoms
//! with integer compares.
//!
//! Every string constant of a program gets an id (`0..n`); `true`, `false` and `null` have
//! reserved ids; every other value (a string no constant spells, a number, a list, an object)
//! is [`OTHER`], and a missing path is [`MISSING`]. Two values that are both strings, booleans or
//! null are deep-equal exactly when their symbols are equal and not [`OTHER`], so an atom that
//! compares a path with such constants (`==`, `!=`, `in`, `not in`, `exists`, `missing`) is a
//! function of the path's symbol alone: [`fast_atom`] says which atoms are, and how. The JIT
//! compiles those atoms natively; the rest call back into [`crate::atom::eval`].

use crate::program::{Arg, AtomDef, Program};
use rustc_hash::FxHashMap;
use serde_json::Value;
use verdict_vocab::AtomOp;

/// Not looked up yet in this request (the host resolves it on first use).
pub const UNRESOLVED: u32 = u32::MAX;
/// The path is missing from the request.
pub const MISSING: u32 = u32::MAX - 1;
/// A value that no constant of the program equals, or that is not a string, boolean or null.
pub const OTHER: u32 = u32::MAX - 2;
pub const TRUE: u32 = u32::MAX - 3;
pub const FALSE: u32 = u32::MAX - 4;
pub const NULL: u32 = u32::MAX - 5;
/// String ids stay below this.
const FIRST_RESERVED: u32 = u32::MAX - 5;

/// Most constants an `in` list may have to be compiled to compares (longer lists use the hash
/// set of the shared evaluation).
pub const MAX_IN_LIST: usize = 16;

/// The interned string constants of one program.
#[derive(Debug, Default)]
pub struct Symbols {
    strings: FxHashMap<String, u32>,
}

impl Symbols {
    /// Interns every string constant of the program (top-level strings and the strings of
    /// constant lists).
    pub fn new(p: &Program) -> Symbols {
        let mut strings: FxHashMap<String, u32> = FxHashMap::default();
        let mut add = |s: &str| {
            let next = u32::try_from(strings.len()).unwrap_or(FIRST_RESERVED).min(FIRST_RESERVED);
            if next < FIRST_RESERVED && !strings.contains_key(s) {
                strings.insert(s.to_owned(), next);
            }
        };
        for c in &p.consts {
            match c {
                Value::String(s) => add(s),
                Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(&mut add),
                _ => {}
            }
        }
        Symbols { strings }
    }

    /// The id of a string constant of the program.
    pub fn string(&self, s: &str) -> Option<u32> {
        self.strings.get(s).copied()
    }

    /// The symbol of a request value (`None`: missing).
    #[inline]
    pub fn of(&self, v: Option<&Value>) -> u32 {
        match v {
            None => MISSING,
            Some(Value::String(s)) => self.string(s).unwrap_or(OTHER),
            Some(Value::Bool(true)) => TRUE,
            Some(Value::Bool(false)) => FALSE,
            Some(Value::Null) => NULL,
            Some(Value::Number(_) | Value::Array(_) | Value::Object(_)) => OTHER,
        }
    }

    /// The symbol of a constant, when equality with it is decided by symbols alone.
    fn constant(&self, v: &Value) -> Option<u32> {
        match v {
            Value::String(s) => self.string(s),
            Value::Bool(true) => Some(TRUE),
            Value::Bool(false) => Some(FALSE),
            Value::Null => Some(NULL),
            Value::Number(_) | Value::Array(_) | Value::Object(_) => None,
        }
    }
}

/// How a natively compiled atom decides from its path's symbol `s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `s == k`
    Eq(u32),
    /// `s != MISSING && s != k`
    Ne(u32),
    /// `s` is one of the constants
    In(Vec<u32>),
    /// `s != MISSING` and none of the constants
    NotIn(Vec<u32>),
    /// `s != MISSING`
    Exists,
    /// `s == MISSING`
    Missing,
}

impl Test {
    /// The result for a symbol: what the native code [`crate::jit`] emits for the test computes
    /// (the tests hold this to `atom::eval`).
    pub fn holds(&self, s: u32) -> bool {
        match self {
            Test::Eq(k) => s == *k,
            Test::Ne(k) => s != MISSING && s != *k,
            Test::In(ks) => ks.contains(&s),
            Test::NotIn(ks) => s != MISSING && !ks.contains(&s),
            Test::Exists => s != MISSING,
            Test::Missing => s == MISSING,
        }
    }
}

/// The path and test of an atom that symbols decide, or `None` when it needs the shared
/// evaluation (orderings, strings patterns, numbers, containers, path-vs-path).
pub fn fast_atom(def: &AtomDef, p: &Program, symbols: &Symbols) -> Option<(u32, Test)> {
    let Arg::Path(path) = def.lhs else { return None };
    let constant = || match def.rhs {
        Arg::Const(c) => p.consts.get(c as usize),
        Arg::Path(_) | Arg::Term(_) | Arg::None => None,
    };
    let list = || -> Option<Vec<u32>> {
        match constant()? {
            Value::Array(items) if items.len() <= MAX_IN_LIST => {
                items.iter().map(|v| symbols.constant(v)).collect::<Option<Vec<u32>>>()
            }
            _ => None,
        }
    };
    let test = match def.op {
        AtomOp::Eq => Test::Eq(symbols.constant(constant()?)?),
        AtomOp::Ne => Test::Ne(symbols.constant(constant()?)?),
        AtomOp::In => Test::In(list()?),
        AtomOp::NotIn => Test::NotIn(list()?),
        AtomOp::Exists => Test::Exists,
        AtomOp::Missing => Test::Missing,
        AtomOp::Lt
        | AtomOp::Le
        | AtomOp::Gt
        | AtomOp::Ge
        | AtomOp::Contains
        | AtomOp::Matches
        | AtomOp::StartsWith
        | AtomOp::EndsWith
        | AtomOp::Holds => return None,
    };
    Some((path, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{AtomDef, Program};
    use serde_json::json;

    /// Every atom kind against every kind of value: where symbols decide an atom, they decide it
    /// as the shared evaluation does.
    #[test]
    fn symbol_tests_agree_with_the_atom_semantics() {
        let consts = vec![
            json!("a"),
            json!("b"),
            json!(true),
            json!(false),
            json!(null),
            json!(1),
            json!(["a", "b"]),
            json!(["a", true, null]),
            json!(["a", 1]),
            json!([]),
        ];
        let p = Program {
            paths: vec![vec!["x".into()]],
            path_texts: vec!["x".into()],
            consts: consts.clone(),
            ..Program::default()
        };
        let symbols = Symbols::new(&p);
        let values = [
            None,
            Some(json!("a")),
            Some(json!("b")),
            Some(json!("c")),
            Some(json!(true)),
            Some(json!(false)),
            Some(json!(null)),
            Some(json!(1)),
            Some(json!(1.0)),
            Some(json!(["a"])),
            Some(json!({"a": 1})),
            Some(json!("")),
        ];
        let mut decided = 0;
        for &op in AtomOp::ALL {
            for rhs in (0..consts.len()).map(|c| Arg::Const(c as u32)).chain([Arg::None]) {
                let def = AtomDef { op, lhs: Arg::Path(0), rhs };
                let Some((path, test)) = fast_atom(&def, &p, &symbols) else { continue };
                assert_eq!(path, 0);
                let r = match rhs {
                    Arg::Const(c) => consts.get(c as usize),
                    _ => None,
                };
                for v in &values {
                    let want = crate::atom::eval(op, v.as_ref(), r, None);
                    assert_eq!(test.holds(symbols.of(v.as_ref())), want, "{op:?} {v:?} {r:?}");
                    decided += 1;
                }
            }
        }
        assert!(decided > 100, "{decided}");
    }
}
