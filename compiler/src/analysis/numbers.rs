//! Number regions: the line of JSON numbers cut at every numeric constant a path is compared
//! with, into points `[c]` and open intervals `(c, d)`, each with a member to show.
//!
//! Comparisons are exact across integers and floats ([`verdict_runtime::value::cmp_numbers`]),
//! so the cut points are deduplicated numerically (`1` and `1.0` are one point) and an interval
//! is kept only when some JSON number (an `i64`, a `u64` or a finite `f64`) lies strictly inside
//! it. The search for that member is complete: it tries the least integer and the least float
//! above the lower bound (or the greatest below the upper bound when there is none), and when
//! neither is inside, no JSON number is.

use serde_json::Number;
use std::cmp::Ordering;
use verdict_runtime::value::cmp_numbers;

/// One number region: a point (a constant) or an open interval between consecutive points.
#[derive(Debug, Clone)]
pub struct NumRegion {
    /// A member of the region.
    pub witness: Number,
    /// `Point(k)`: the k-th cut point; `Below(k)`: the open interval just below the k-th point
    /// (`k == points.len()`: above every point).
    pub slot: Slot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Point(usize),
    Below(usize),
}

impl NumRegion {
    pub fn is_point(&self) -> bool {
        matches!(self.slot, Slot::Point(_))
    }
}

fn cmp(a: &Number, b: &Number) -> Ordering {
    cmp_numbers(a, b).unwrap_or(Ordering::Equal)
}

/// The distinct cut points, ascending.
pub fn sorted_points(mut points: Vec<Number>) -> Vec<Number> {
    points.sort_by(cmp);
    points.dedup_by(|a, b| cmp(a, b) == Ordering::Equal);
    points
}

fn from_i128(i: i128) -> Option<Number> {
    if let Ok(v) = i64::try_from(i) { Some(Number::from(v)) } else { u64::try_from(i).ok().map(Number::from) }
}

fn as_i128(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

fn float(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// Integral floats within ±2^100 convert to `i128` exactly.
fn integral(f: f64) -> Option<i128> {
    (f.is_finite() && f.abs() < 1.0e30 && f.fract() == 0.0).then_some(f as i128)
}

/// Candidates just above `lo`: the least integer and the least floats above it.
fn above(lo: &Number) -> Vec<Number> {
    let mut out = Vec::new();
    let least_int = match as_i128(lo) {
        Some(i) => Some(i + 1),
        None => integral(float(lo).floor()).map(|i| i + 1),
    };
    if let Some(n) = least_int.and_then(from_i128) {
        out.push(n);
    }
    let f = float(lo);
    for c in [f, f.next_up(), f.next_up().next_up()] {
        if let Some(n) = Number::from_f64(c) {
            out.push(n);
        }
    }
    out
}

/// Candidates just below `hi`: the greatest integer and the greatest floats below it.
fn below(hi: &Number) -> Vec<Number> {
    let mut out = Vec::new();
    let greatest_int = match as_i128(hi) {
        Some(i) => Some(i - 1),
        None => integral(float(hi).ceil()).map(|i| i - 1),
    };
    if let Some(n) = greatest_int.and_then(from_i128) {
        out.push(n);
    }
    let f = float(hi);
    for c in [f, f.next_down(), f.next_down().next_down()] {
        if let Some(n) = Number::from_f64(c) {
            out.push(n);
        }
    }
    out
}

/// A JSON number strictly between the bounds (an unbounded side is `None`), or `None` when the
/// interval holds none.
pub fn between(lo: Option<&Number>, hi: Option<&Number>) -> Option<Number> {
    let inside =
        |c: &Number| lo.is_none_or(|l| cmp(l, c) == Ordering::Less) && hi.is_none_or(|h| cmp(c, h) == Ordering::Less);
    let mut candidates: Vec<Number> = Vec::new();
    match (lo, hi) {
        (None, None) => candidates.push(Number::from(0)),
        (Some(l), Some(h)) => {
            // A round number first, when there is one.
            if let (Some(a), Some(b)) = (as_i128(l), as_i128(h))
                && let Some(n) = from_i128(a + (b - a) / 2)
            {
                candidates.push(n);
            }
            if let Some(n) = Number::from_f64((float(l) + float(h)) / 2.0) {
                candidates.push(n);
            }
            candidates.extend(above(l));
        }
        (Some(l), None) => candidates.extend(above(l)),
        (None, Some(h)) => candidates.extend(below(h)),
    }
    candidates.into_iter().find(inside)
}

/// The regions of a set of cut points (already sorted and distinct), ascending.
pub fn regions(points: &[Number]) -> Vec<NumRegion> {
    let mut out = Vec::new();
    let mut prev: Option<&Number> = None;
    for (k, p) in points.iter().enumerate() {
        if let Some(w) = between(prev, Some(p)) {
            out.push(NumRegion { witness: w, slot: Slot::Below(k) });
        }
        out.push(NumRegion { witness: p.clone(), slot: Slot::Point(k) });
        prev = Some(p);
    }
    if let Some(w) = between(prev, None) {
        out.push(NumRegion { witness: w, slot: Slot::Below(points.len()) });
    }
    out
}

/// The index of the region (in [`regions`]`(points)`) that holds `x`.
pub fn classify(points: &[Number], regions: &[NumRegion], x: &Number) -> Option<usize> {
    let slot = match points.binary_search_by(|p| cmp(p, x)) {
        Ok(k) => Slot::Point(k),
        Err(k) => Slot::Below(k),
    };
    // Regions are in slot order: below(k) < point(k) < below(k + 1).
    let key = |s: Slot| match s {
        Slot::Below(k) => (k, 0u8),
        Slot::Point(k) => (k, 1u8),
    };
    regions.binary_search_by_key(&key(slot), |r| key(r.slot)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn n(v: serde_json::Value) -> Number {
        match v {
            serde_json::Value::Number(n) => n,
            _ => Number::from(0),
        }
    }

    #[test]
    fn cuts_and_members() {
        let pts = sorted_points(vec![
            n(serde_json::json!(1.0)),
            n(serde_json::json!(1)),
            n(serde_json::json!(3)),
            n(serde_json::json!(2.5)),
        ]);
        assert_eq!(pts.len(), 3);
        let rs = regions(&pts);
        // (-inf,1) [1] (1,2.5) [2.5] (2.5,3) [3] (3,inf)
        assert_eq!(rs.len(), 7);
        for (i, x) in [0.0, 1.0, 2.0, 2.5, 2.75, 3.0, 10.0].into_iter().enumerate() {
            let x = Number::from_f64(x).unwrap();
            assert_eq!(classify(&pts, &rs, &x), Some(i), "{x}");
        }
        // No JSON number between two adjacent floats.
        let a = 1.0f64;
        let pts = sorted_points(vec![Number::from_f64(a).unwrap(), Number::from_f64(a.next_up()).unwrap()]);
        let rs = regions(&pts);
        assert_eq!(rs.iter().filter(|r| !r.is_point()).count(), 2);
        // Integers next to floats: 2^53 and 2^53 + 1 have nothing strictly between.
        let pts = sorted_points(vec![Number::from(9007199254740992u64), Number::from(9007199254740993u64)]);
        assert_eq!(regions(&pts).len(), 4);
        // The extremes.
        let pts = sorted_points(vec![Number::from_f64(f64::MAX).unwrap(), Number::from_f64(f64::MIN).unwrap()]);
        assert_eq!(regions(&pts).len(), 3);
        let pts = sorted_points(vec![Number::from(u64::MAX)]);
        let rs = regions(&pts);
        assert_eq!(rs.len(), 3, "{rs:?}");
    }
}
