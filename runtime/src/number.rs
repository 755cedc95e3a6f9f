//! Arithmetic on JSON numbers with Python's number semantics (LANGUAGE.md §5.1), shared by
//! terms (`amount * 1.2`) and state sums (LANGUAGE.md §5.2), so both agree to the bit.
//!
//! - Integer op integer is an integer when the exact result fits `i64`, otherwise the `f64` of
//!   the exact result (Python would keep a big integer; the spec rounds it once).
//! - With a float operand the operation is IEEE-754 on the two values as `f64`.
//! - `/` always gives a float; division by zero and non-finite results are undefined (`None`).

use crate::value::{Num, widen};
use serde_json::Number;
use verdict_vocab::Arith;

/// The `f64` nearest an exact integer (what Python's `float(int)` gives).
#[inline]
fn float_of(i: i128) -> f64 {
    // The same rounding either way; from an `i64` it is one instruction rather than a call.
    match i64::try_from(i) {
        Ok(small) => small as f64,
        Err(_) => i as f64,
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => float_of(i),
        Num::Float(f) => f,
    }
}

/// An exact integer result: an integer when it fits `i64`, else its nearest float.
fn int_result(i: i128) -> Option<Number> {
    match i64::try_from(i) {
        Ok(v) => Some(Number::from(v)),
        Err(_) => Number::from_f64(float_of(i)),
    }
}

/// A float result; `None` when it is not finite.
fn float_result(f: f64) -> Option<Number> {
    if f.is_finite() { Number::from_f64(f) } else { None }
}

/// `a op b` for the binary operators; `None` when undefined.
#[inline]
pub fn binary(op: Arith, a: &Number, b: &Number) -> Option<Number> {
    let (x, y) = (widen(a), widen(b));
    match (op, x, y) {
        (Arith::Div, _, _) => {
            let d = as_f64(y);
            if d == 0.0 {
                return None;
            }
            // Python's int / int divides the exact integers, correctly rounded: for operands
            // that are exact in f64 (|i| ≤ 2^53) f64 division is the correctly rounded quotient.
            float_result(as_f64(x) / d)
        }
        (Arith::Add, Num::Int(i), Num::Int(j)) => int_result(i + j),
        (Arith::Sub, Num::Int(i), Num::Int(j)) => int_result(i - j),
        (Arith::Mul, Num::Int(i), Num::Int(j)) => match i.checked_mul(j) {
            Some(p) => int_result(p),
            None => float_result(float_of(i) * float_of(j)),
        },
        (Arith::Add, _, _) => float_result(as_f64(x) + as_f64(y)),
        (Arith::Sub, _, _) => float_result(as_f64(x) - as_f64(y)),
        (Arith::Mul, _, _) => float_result(as_f64(x) * as_f64(y)),
        (Arith::Neg, _, _) => None,
    }
}

/// `-a`.
pub fn neg(a: &Number) -> Option<Number> {
    match widen(a) {
        Num::Int(i) => int_result(-i),
        Num::Float(f) => float_result(-f),
    }
}

/// `abs(a)`.
pub fn abs(a: &Number) -> Option<Number> {
    match widen(a) {
        Num::Int(i) => int_result(i.abs()),
        Num::Float(f) => float_result(f.abs()),
    }
}

/// The sum of `amounts` in order, starting from the integer 0: how a state read adds up its
/// updates (every store gives the same value for the same sequence). `None` when it is not finite.
pub fn sum<'a>(amounts: impl IntoIterator<Item = &'a Number>) -> Option<Number> {
    let mut sum = Sum::default();
    for a in amounts {
        sum.add(a);
    }
    sum.value()
}

/// A running [`sum`]: each step is `binary(Add, sum, amount)`, kept unboxed (an `i64` while every
/// step's exact result fits, then an `f64`). A step that `binary` would call undefined (not
/// finite) leaves the sum not finite for good (infinities and NaN stay so under addition), so
/// it is checked once, at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sum(Acc);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Acc {
    Int(i64),
    Float(f64),
}

impl Default for Sum {
    fn default() -> Sum {
        Sum(Acc::Int(0))
    }
}

impl Sum {
    #[inline]
    pub fn add(&mut self, a: &Number) {
        self.0 = match (self.0, widen(a)) {
            (Acc::Int(i), Num::Int(j)) => {
                let exact = i128::from(i) + j;
                match i64::try_from(exact) {
                    Ok(v) => Acc::Int(v),
                    Err(_) => Acc::Float(float_of(exact)),
                }
            }
            (Acc::Int(i), y) => Acc::Float(float_of(i128::from(i)) + as_f64(y)),
            (Acc::Float(x), y) => Acc::Float(x + as_f64(y)),
        };
    }

    /// The sum; `None` when it is not finite.
    pub fn value(self) -> Option<Number> {
        match self.0 {
            Acc::Int(i) => Some(Number::from(i)),
            Acc::Float(f) => float_result(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: serde_json::Value) -> Number {
        match v {
            serde_json::Value::Number(n) => n,
            _ => Number::from(0),
        }
    }

    #[test]
    fn python_semantics() {
        use serde_json::json;
        let op = |o, a, b| binary(o, &n(a), &n(b)).map(serde_json::Value::Number);
        assert_eq!(op(Arith::Add, json!(1), json!(2)), Some(json!(3)));
        assert_eq!(op(Arith::Add, json!(1), json!(2.5)), Some(json!(3.5)));
        assert_eq!(op(Arith::Div, json!(1), json!(2)), Some(json!(0.5)));
        assert_eq!(op(Arith::Div, json!(4), json!(2)), Some(json!(2.0)));
        assert_eq!(op(Arith::Div, json!(1), json!(0)), None);
        assert_eq!(op(Arith::Div, json!(1.0), json!(0.0)), None);
        assert_eq!(op(Arith::Mul, json!(i64::MAX), json!(2)), Some(json!(1.8446744073709552e19)));
        assert_eq!(op(Arith::Add, json!(i64::MAX), json!(1)), Some(json!(9.223372036854776e18)));
        assert_eq!(op(Arith::Sub, json!(0.1), json!(0.3)), Some(json!(0.1 - 0.3)));
        assert_eq!(op(Arith::Mul, json!(1e308), json!(10)), None);
        assert_eq!(neg(&n(json!(i64::MIN))).map(serde_json::Value::Number), Some(json!(9.223372036854776e18)));
        assert_eq!(abs(&n(json!(-2))).map(serde_json::Value::Number), Some(json!(2)));
        let amounts = [n(json!(10)), n(json!(0.1)), n(json!(0.2))];
        assert_eq!(sum(&amounts).map(serde_json::Value::Number), Some(json!((10.0 + 0.1) + 0.2)));
        assert_eq!(sum(&[]).map(serde_json::Value::Number), Some(json!(0)));
    }

    /// The unboxed sum is the fold of `binary(Add, …)` from 0, on sequences that cross every
    /// boundary (integers past `i64`, `u64` amounts, floats, overflow to infinity).
    #[test]
    fn sum_is_the_fold_of_add() {
        use serde_json::json;
        let values = [
            json!(1),
            json!(-7),
            json!(0.1),
            json!(2.5),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(9_007_199_254_740_993u64),
            json!(1e308),
            json!(-0.0),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 6) as usize;
            let amounts: Vec<Number> = (0..len)
                .map(|k| n(values.get(((seed >> (8 * k)) % 10) as usize).cloned().unwrap_or_default()))
                .collect();
            let folded = amounts.iter().try_fold(Number::from(0), |acc, a| binary(Arith::Add, &acc, a));
            assert_eq!(sum(&amounts), folded, "{amounts:?}");
        }
    }
}
