//! Decision rules shared by every backend: the effective-window and card-scope gates, reason
//! texts, and combining policy decisions into the bundle's. The interpreter and the VM both call
//! these, so the semantics of LANGUAGE.md §3–4 are written once.

use crate::pyrepr::repr;
use serde_json::Value;

/// The outcome of a condition: it holds, it does not, or it could not be decided — a *fault*
/// (an extern that failed, a state store that could not answer, a host callback that panicked).
/// A fault is never read as `false`: `not` keeps it, `and`/`or` stop at it, and the policy being
/// evaluated decides the bundle's most severe effect, naming the rule (fail closed).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    False = 0,
    True = 1,
    Fault = 2,
}

impl Truth {
    #[inline]
    pub fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    /// The code native code returns: anything but 0 and 1 is a fault.
    #[inline]
    pub fn from_code(c: u8) -> Truth {
        match c {
            0 => Truth::False,
            1 => Truth::True,
            _ => Truth::Fault,
        }
    }
}

impl std::ops::Not for Truth {
    type Output = Truth;

    /// `not`: flips a decided truth, keeps a fault.
    #[inline]
    fn not(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::True => Truth::False,
            Truth::Fault => Truth::Fault,
        }
    }
}

/// The reason of a policy decided by a fault in one of its rules.
pub const PANIC_FAULT: &str = "internal error: a condition could not be evaluated (a host callback panicked)";

/// A gate that decided before any policy ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    NotYetEffective,
    Ended,
    OutOfScope,
}

impl Gate {
    pub fn reason(self) -> &'static str {
        match self {
            Gate::NotYetEffective => "bundle is not yet effective",
            Gate::Ended => "bundle effective period has ended",
            Gate::OutOfScope => "request is outside Decision Card runtime scope",
        }
    }
}

/// The effective window at `now`: `from` is inclusive, `until` exclusive; `from` is checked first.
pub fn window_gate(
    from: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<Gate> {
    if from.is_some_and(|f| now < f) {
        return Some(Gate::NotYetEffective);
    }
    if until.is_some_and(|u| now >= u) {
        return Some(Gate::Ended);
    }
    None
}

/// The card scope: `resource.vendor_id` (of the request's own `resource`, not the merged view)
/// equals the scope's vendor and `action` is one of the allowed actions.
pub fn in_scope(
    vendor_id: &str,
    allowed_actions: &[String],
    action: Option<&Value>,
    resource_vendor: Option<&Value>,
) -> bool {
    let vendor_ok = matches!(resource_vendor, Some(Value::String(v)) if v == vendor_id);
    let action_ok = matches!(action, Some(Value::String(a)) if allowed_actions.iter().any(|x| x == a));
    vendor_ok && action_ok
}

/// The reason of a matched rule: its non-empty description, else `matched rule 'ID'`.
pub fn rule_reason(id: &str, description: Option<&str>) -> String {
    match description {
        Some(d) if !d.is_empty() => d.to_owned(),
        _ => format!("matched rule {}", repr(id)),
    }
}

/// The reason of a policy default (`None`: the `none` default).
pub fn default_reason(effect: Option<&str>) -> String {
    format!("no rule matched; policy default_effect={}", repr(effect.unwrap_or("none")))
}

/// The start of the reason of a request the run-time schema gate refuses (LANGUAGE.md §3),
/// followed by the path and what was wrong.
pub const SCHEMA_REASON: &str = "request does not match the schema: ";

/// The reason when no policy applied.
pub const NO_POLICY_APPLIED: &str = "no policy applied";

/// Which policy decision becomes the bundle's. `severities` gives each policy decision's effect
/// index (0 = most severe), `None` for not applicable. `overrides`: the most severe, ties to the
/// earlier; `first`: the first applicable.
pub fn winner(first: bool, severities: impl IntoIterator<Item = Option<u32>>) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, s) in severities.into_iter().enumerate() {
        let Some(s) = s else { continue };
        if first {
            return Some(i);
        }
        if best.is_none_or(|(_, b)| s < b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining() {
        assert_eq!(winner(false, [Some(1), None, Some(0), Some(0)]), Some(2));
        assert_eq!(winner(true, [None, Some(1), Some(0)]), Some(1));
        assert_eq!(winner(false, [None, None]), None);
        assert_eq!(default_reason(Some("deny")), "no rule matched; policy default_effect='deny'");
        assert_eq!(rule_reason("p0-r1", Some("")), "matched rule 'p0-r1'");
    }
}
