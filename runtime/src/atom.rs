//! The atoms of the condition language and their total, two-valued semantics (LANGUAGE.md §2).
//!
//! Every backend — the reference interpreter, the VM, the JIT's host helpers — decides atoms
//! through [`eval`], so the semantics are written once. The atom kinds, their names and artifact
//! codes are the vocabulary's ([`verdict_vocab::AtomOp`]).

use crate::value::{deep_eq, order};
use serde_json::Value;
use std::cmp::Ordering;
use verdict_vocab::AtomOp;

/// How an ordering comparison (`<`, `<=`, `>`, `>=`) reads the order of its operands (`None`:
/// not ordered, as a number and a string); `false` for any other operator.
#[inline]
pub fn ordered(op: AtomOp, ord: Option<Ordering>) -> bool {
    match op {
        AtomOp::Lt => ord == Some(Ordering::Less),
        AtomOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        AtomOp::Gt => ord == Some(Ordering::Greater),
        AtomOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        _ => false,
    }
}

/// Whether `op` compares (`==`, `!=`, `<`, `<=`, `>`, `>=`): what [`compare_numbers`] decides.
pub fn compares(op: AtomOp) -> bool {
    matches!(op, AtomOp::Eq | AtomOp::Ne | AtomOp::Lt | AtomOp::Le | AtomOp::Gt | AtomOp::Ge)
}

/// [`eval`] of a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`) of two numbers, without making
/// them values (as arithmetic and state reads give them); `None` for any other operator.
#[inline]
pub fn compare_numbers(op: AtomOp, a: &serde_json::Number, b: &serde_json::Number) -> Option<bool> {
    let ord = || crate::value::cmp_numbers(a, b);
    Some(match op {
        // `deep_eq` of two numbers.
        AtomOp::Eq => ord() == Some(Ordering::Equal),
        AtomOp::Ne => ord() != Some(Ordering::Equal),
        AtomOp::Lt | AtomOp::Le | AtomOp::Gt | AtomOp::Ge => ordered(op, ord()),
        _ => return None,
    })
}

/// Decides an atom. `None` is a missing path. `regex` is the compiled pattern of a `Matches` atom.
///
/// Total: any operand missing makes every binary atom false; operand types outside an atom's
/// table make it false.
pub fn eval(op: AtomOp, lhs: Option<&Value>, rhs: Option<&Value>, regex: Option<&regex::Regex>) -> bool {
    match op {
        AtomOp::Exists => return lhs.is_some(),
        AtomOp::Missing => return lhs.is_none(),
        AtomOp::Holds => return matches!(lhs, Some(Value::Bool(true))),
        _ => {}
    }
    let (Some(a), Some(b)) = (lhs, rhs) else {
        return false;
    };
    match op {
        AtomOp::Eq => deep_eq(a, b),
        AtomOp::Ne => !deep_eq(a, b),
        AtomOp::Lt | AtomOp::Le | AtomOp::Gt | AtomOp::Ge => ordered(op, order(a, b)),
        AtomOp::In => match b {
            Value::Array(items) => items.iter().any(|x| deep_eq(a, x)),
            _ => false,
        },
        AtomOp::NotIn => match b {
            Value::Array(items) => !items.iter().any(|x| deep_eq(a, x)),
            _ => false,
        },
        AtomOp::Contains => contains(a, b),
        AtomOp::Matches => match (a, regex) {
            (Value::String(s), Some(re)) => re.is_match(s),
            _ => false,
        },
        AtomOp::StartsWith => match (a, b) {
            (Value::String(s), Value::String(p)) => s.starts_with(p.as_str()),
            _ => false,
        },
        AtomOp::EndsWith => match (a, b) {
            (Value::String(s), Value::String(p)) => s.ends_with(p.as_str()),
            _ => false,
        },
        AtomOp::Exists | AtomOp::Missing | AtomOp::Holds => false,
    }
}

/// `hay contains needle`: substring of a string, deep-equal element of a list, key of an object.
pub fn contains(hay: &Value, needle: &Value) -> bool {
    match (hay, needle) {
        (Value::String(s), Value::String(n)) => s.contains(n.as_str()),
        (Value::Array(items), n) => items.iter().any(|x| deep_eq(x, n)),
        (Value::Object(map), Value::String(k)) => map.contains_key(k),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The numbers' comparison decides as [`eval`] does on the same numbers as values, for every
    /// operator it takes (and takes every comparison).
    #[test]
    fn numbers_compare_as_values_do() {
        let numbers = [
            json!(0),
            json!(-1),
            json!(12.5),
            json!(100000),
            json!(99987.5),
            json!(100000.0),
            json!(9007199254740993u64),
            json!(9007199254740992.0),
            json!(-9223372036854775808i64),
            json!(18446744073709551615u64),
            json!(1e300),
        ];
        for &op in AtomOp::ALL {
            for a in &numbers {
                for b in &numbers {
                    let (Value::Number(x), Value::Number(y)) = (a, b) else { unreachable!() };
                    let fast = compare_numbers(op, x, y);
                    let comparison =
                        matches!(op, AtomOp::Eq | AtomOp::Ne | AtomOp::Lt | AtomOp::Le | AtomOp::Gt | AtomOp::Ge);
                    assert_eq!(fast.is_some(), comparison, "{op:?}");
                    if let Some(held) = fast {
                        assert_eq!(held, eval(op, Some(a), Some(b), None), "{a} {op:?} {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn missing_is_false_except_for_presence_atoms() {
        for &op in AtomOp::ALL {
            let r = eval(op, None, Some(&json!([1])), None);
            assert_eq!(r, op == AtomOp::Missing, "{op:?}");
        }
    }

    #[test]
    fn table() {
        assert!(eval(AtomOp::Contains, Some(&json!({"a": 1})), Some(&json!("a")), None));
        assert!(!eval(AtomOp::Contains, Some(&json!("abc")), Some(&json!(1)), None));
        assert!(eval(AtomOp::In, Some(&json!(1.0)), Some(&json!([2, 1])), None));
        assert!(!eval(AtomOp::In, Some(&json!(true)), Some(&json!([1])), None));
        assert!(eval(AtomOp::NotIn, Some(&json!(3)), Some(&json!([2, 1])), None));
        assert!(eval(AtomOp::Ne, Some(&json!(null)), Some(&json!(1)), None));
        assert!(!eval(AtomOp::Gt, Some(&json!(true)), Some(&json!(false)), None));
    }
}
