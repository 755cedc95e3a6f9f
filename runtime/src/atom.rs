//! The atoms of the condition language and their total, two-valued semantics (LANGUAGE.md §2).
//!
//! Every backend — the reference interpreter, the VM, the JIT's host helpers — decides atoms
//! through [`eval`], so the semantics are written once. The atom kinds, their names and artifact
//! codes are the vocabulary's ([`verdict_vocab::AtomOp`]).

use crate::value::{deep_eq, order};
use serde_json::Value;
use std::cmp::Ordering;
use verdict_vocab::AtomOp;

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
        AtomOp::Lt => order(a, b) == Some(Ordering::Less),
        AtomOp::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        AtomOp::Gt => order(a, b) == Some(Ordering::Greater),
        AtomOp::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
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
