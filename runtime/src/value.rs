//! Value semantics over JSON: exact numeric comparison and deep equality (LANGUAGE.md §1–2).

use serde_json::{Number, Value};
use std::cmp::Ordering;

/// A JSON number widened without loss: every `i64`/`u64` fits an `i128`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

pub(crate) fn widen(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Compares an integer with a float exactly (no rounding of the integer to a float).
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    // An integer of at most 53 bits is exact as a float: the float order is the exact one (and
    // `None` for NaN).
    if let Ok(small) = i64::try_from(i)
        && small.unsigned_abs() <= 1 << 53
    {
        return (small as f64).partial_cmp(&f);
    }
    cmp_int_float_wide(i, f)
}

/// [`cmp_int_float`] for any integer below 2^64 in magnitude.
fn cmp_int_float_wide(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Integers here are below 2^64 in magnitude; floats beyond ±2^100 are decided by sign.
    const BIG: f64 = 1.267_650_600_228_229_4e30; // 2^100
    if f >= BIG {
        return Some(Ordering::Less);
    }
    if f <= -BIG {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // `t` is integral and within ±2^100, so the conversion is exact.
    let ti = t as i128;
    match i.cmp(&ti) {
        Ordering::Equal => {
            if f > t {
                Some(Ordering::Less)
            } else if f < t {
                Some(Ordering::Greater)
            } else {
                Some(Ordering::Equal)
            }
        }
        other => Some(other),
    }
}

/// Numeric order, exact across integers and floats (`1 == 1.0`, `2^53 + 1 != 2^53 as float`).
pub fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (widen(a), widen(b)) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).map(Ordering::reverse),
    }
}

/// Deep JSON equality: numbers numerically, bool only equals bool (at every depth), lists
/// element-wise, objects key-wise.
///
/// Iterative, so equality of deeply nested request values cannot overflow the stack.
pub fn deep_eq(a: &Value, b: &Value) -> bool {
    // Scalars (the common case) are compared without touching the heap.
    match (a, b) {
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {}
        (Value::Null, Value::Null) => return true,
        (Value::Bool(p), Value::Bool(q)) => return p == q,
        (Value::Number(p), Value::Number(q)) => return cmp_numbers(p, q) == Some(Ordering::Equal),
        (Value::String(p), Value::String(q)) => return p == q,
        _ => return false,
    }
    let mut work: Vec<(&Value, &Value)> = vec![(a, b)];
    while let Some((x, y)) = work.pop() {
        let same = match (x, y) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(p), Value::Bool(q)) => p == q,
            (Value::Number(p), Value::Number(q)) => cmp_numbers(p, q) == Some(Ordering::Equal),
            (Value::String(p), Value::String(q)) => p == q,
            (Value::Array(p), Value::Array(q)) => {
                if p.len() != q.len() {
                    return false;
                }
                work.extend(p.iter().zip(q.iter()));
                true
            }
            (Value::Object(p), Value::Object(q)) => {
                if p.len() != q.len() {
                    return false;
                }
                for (k, v) in p {
                    match q.get(k) {
                        Some(w) => work.push((v, w)),
                        None => return false,
                    }
                }
                true
            }
            _ => false,
        };
        if !same {
            return false;
        }
    }
    true
}

/// The order used by `<`, `<=`, `>`, `>=`: numbers (not bools) numerically, strings by code point.
/// `None` when the operands are not both numbers or both strings.
pub fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(p), Value::Number(q)) => cmp_numbers(p, q),
        (Value::String(p), Value::String(q)) => Some(p.as_str().cmp(q.as_str())),
        _ => None,
    }
}

/// The JSON type name of a value, as diagnostics and traces name it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A declared type: of a schema path (LANGUAGE.md §3) or of an extern's parameter or result
/// (§5.3). The compiler checks with it at compile time, the runtime at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Object,
    Any,
}

impl Type {
    /// The type as the language writes it (`list<string>`).
    pub fn name(&self) -> String {
        match self {
            Type::List(t) => format!("list<{}>", t.name()),
            other => other.head().name().to_owned(),
        }
    }

    /// The type of a head with no element type (`list` is a list of `any`).
    pub fn of_head(head: verdict_vocab::TypeName) -> Type {
        use verdict_vocab::TypeName as T;
        match head {
            T::String => Type::String,
            T::Number => Type::Number,
            T::Bool => Type::Bool,
            T::List => Type::List(Box::new(Type::Any)),
            T::Object => Type::Object,
            T::Any => Type::Any,
        }
    }

    /// `element` wrapped in `lists` lists (`list<list<element>>` for 2).
    pub fn nested(element: Type, lists: usize) -> Type {
        (0..lists).fold(element, |t, _| Type::List(Box::new(t)))
    }

    /// A type as the language writes it (`string`, `list<number>`, `boolean` for `bool`), nested
    /// at most `max_lists` lists deep; `None` for anything else.
    pub fn parse(text: &str, max_lists: usize) -> Option<Type> {
        let mut t = text.trim();
        let mut lists = 0usize;
        while let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
            lists += 1;
            if lists > max_lists {
                return None;
            }
            t = inner.trim();
        }
        let head = if t == "boolean" { verdict_vocab::TypeName::Bool } else { verdict_vocab::TypeName::from_name(t)? };
        Some(Type::nested(Type::of_head(head), lists))
    }

    /// The vocabulary entry of the type's head (`list` for `list<string>`).
    pub fn head(&self) -> verdict_vocab::TypeName {
        use verdict_vocab::TypeName as T;
        match self {
            Type::String => T::String,
            Type::Number => T::Number,
            Type::Bool => T::Bool,
            Type::List(_) => T::List,
            Type::Object => T::Object,
            Type::Any => T::Any,
        }
    }

    /// Whether a value has the type (a list's elements each have the element type). Recursion
    /// follows the type's nesting, which the compiler bounds.
    pub fn admits(&self, v: &Value) -> bool {
        match (self, v) {
            (Type::Any, _) => true,
            (Type::String, Value::String(_)) | (Type::Number, Value::Number(_)) | (Type::Bool, Value::Bool(_)) => true,
            (Type::Object, Value::Object(_)) => true,
            (Type::List(t), Value::Array(items)) => items.iter().all(|x| t.admits(x)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_exactly() {
        assert!(deep_eq(&json!(1), &json!(1.0)));
        assert!(!deep_eq(&json!(9007199254740993u64), &json!(9007199254740992.0)));
        assert!(deep_eq(&json!(9007199254740992u64), &json!(9007199254740992.0)));
        assert_eq!(order(&json!(-1), &json!(-0.5)), Some(Ordering::Less));
        assert_eq!(order(&json!(u64::MAX), &json!(1.8446744073709552e19)), Some(Ordering::Less));
        assert!(!deep_eq(&json!(true), &json!(1)));
        assert!(!deep_eq(&json!([true]), &json!([1])));
        assert!(deep_eq(&json!({"a": [1, {"b": 2.0}]}), &json!({"a": [1.0, {"b": 2}]})));
        assert_eq!(order(&json!(true), &json!(false)), None);
        assert_eq!(order(&json!("b"), &json!("a")), Some(Ordering::Greater));
    }

    /// The float comparison of small integers is the exact one, around 2^53 and everywhere else.
    #[test]
    fn small_integers_compare_with_floats_exactly() {
        let edge = 1i128 << 53;
        let ints = [0, 1, -1, 7, 100_000, -100_000, edge - 1, edge, -edge, 1 - edge, 123_456_789_012_345];
        for i in ints {
            let x = i as f64;
            for f in [
                x,
                x.next_up(),
                x.next_down(),
                x + 0.5,
                x - 0.5,
                -x,
                0.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                1e300,
                -1e300,
            ] {
                assert_eq!(cmp_int_float(i, f), cmp_int_float_wide(i, f), "{i} {f}");
            }
        }
    }
}
