//! Decisions, bundle results and traces: the JSON of LANGUAGE.md §4.

use serde::Serialize;
use serde_json::{Map, Value};

/// The kind of a decision that no policy made.
pub const NOT_APPLICABLE: &str = "not_applicable";

/// One decision: a policy's, or the bundle's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// An effect name or `not_applicable`.
    pub kind: String,
    pub matched_policy_id: Option<String>,
    pub matched_rule_id: Option<String>,
    pub reason: String,
    pub codes: Vec<String>,
    pub obligations: Map<String, Value>,
}

impl Decision {
    /// A decision no policy made (`not_applicable`, window and scope gates).
    pub fn bare(kind: &str, reason: &str) -> Decision {
        Decision {
            kind: kind.to_owned(),
            matched_policy_id: None,
            matched_rule_id: None,
            reason: reason.to_owned(),
            codes: Vec::new(),
            obligations: Map::new(),
        }
    }
}

/// The result of evaluating a bundle on one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationResult {
    pub bundle_id: String,
    pub bundle_version: String,
    pub fingerprint: String,
    pub decision: Decision,
    pub policy_decisions: Vec<Decision>,
    /// The decision's id: stateful bundles (LANGUAGE.md §5.2), and every response of a service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// The holds the decision made (committed or released by `decision_id`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Hold>,
    /// Exhaustive results: every rule whose condition holds, in policy then rule order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<Match>>,
    /// Exhaustive results: how many rule conditions were evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_evaluated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceEntry>>,
    /// The updates to record in the state store (holds and permanent updates); not part of the
    /// JSON (the holds are).
    #[serde(skip)]
    pub updates: Vec<crate::state::Update>,
}

/// A hold a decision made: `amount` added to series `state`/`key` until committed or released.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hold {
    pub state: String,
    pub key: Vec<Value>,
    pub amount: serde_json::Number,
}

/// A rule whose condition held (or failed) in an exhaustive evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub policy_id: String,
    pub rule_id: String,
    /// The rule's effect, when its condition held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// What failed, when its condition could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Match {
    /// The entry of a rule in an exhaustive result: one that held (with its effect) or failed
    /// (with what failed); none for a rule that did not hold.
    pub fn of(
        held: crate::policy::Truth,
        policy_id: &str,
        rule_id: &str,
        effect: Option<&str>,
        error: Option<&String>,
    ) -> Option<Match> {
        use crate::policy::Truth;
        let (effect, error) = match held {
            Truth::True => (effect.map(str::to_owned), None),
            Truth::Fault => (None, error.cloned()),
            Truth::False => return None,
        };
        Some(Match { policy_id: policy_id.to_owned(), rule_id: rule_id.to_owned(), effect, error })
    }
}

/// One entry of a trace: a gate the bundle checks before its policies, or a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TraceEntry {
    Gate(GateTrace),
    Policy(PolicyTrace),
}

/// The effective window or the card scope, and whether the request passed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateTrace {
    /// `effective_window` or `card_scope`.
    pub gate: String,
    pub passed: bool,
}

/// A policy: every rule tried, in order, and the policy's decision kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyTrace {
    pub policy: String,
    pub rules: Vec<RuleTrace>,
    pub decision: String,
}

/// A rule tried: whether its condition held, and every step of its evaluation, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub held: bool,
    /// What failed when the condition could not be decided (the policy then decides its most
    /// severe effect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub atoms: Vec<TraceStep>,
}

/// One step of a rule's evaluation: an atom evaluated, or a definition reused.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TraceStep {
    Atom(AtomTrace),
    Let(LetTrace),
}

/// A `let` definition referenced again in the same request: it is not evaluated again (its
/// steps were traced where it was first evaluated), so a trace stays linear in the bundle's
/// size however much definitions share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LetTrace {
    #[serde(rename = "let")]
    pub name: String,
    pub result: bool,
}

/// An atom evaluated: its text, where it is written, what it read, and its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtomTrace {
    pub atom: String,
    /// Byte range in the source file.
    pub span: [u32; 2],
    /// 1-based line and column (in characters) of the span's start.
    pub line: u32,
    pub column: u32,
    pub read: Vec<ReadTrace>,
    pub result: bool,
}

/// What an atom read: a request path (`missing` when it does not resolve), or a state read or
/// extern call (by its term text, e.g. `spend.day` or `no_pii(query)`), with its value or what
/// failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadTrace {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReadTrace {
    /// A request path and its value (`None`: missing).
    pub fn path(path: String, value: Option<&Value>) -> ReadTrace {
        ReadTrace { path, value: value.cloned(), missing: value.is_none(), error: None }
    }

    /// A state read or extern call and its result.
    pub fn host(what: String, result: Result<Value, String>) -> ReadTrace {
        match result {
            Ok(v) => ReadTrace { path: what, value: Some(v), missing: false, error: None },
            Err(e) => ReadTrace { path: what, value: None, missing: false, error: Some(e) },
        }
    }
}

impl EvaluationResult {
    /// Whether a decision of `kind` keeps its own rule and reason when its updates are refused:
    /// it already decides the most severe effect (the first failure stands). Every backend and
    /// entry point asks this.
    pub fn refusal_stands_aside(kind: &str, most_severe: &str) -> bool {
        kind == most_severe
    }

    /// A stateful decision whose updates cannot be made (a key path missing, an `add` term that
    /// faults) records nothing and, unless it already decides `most_severe` (a rule's deny, or a
    /// read of the same missing key that failed first: the first failure stands), decides
    /// `most_severe` with `reason`, so a spend that cannot be counted is never allowed
    /// (LANGUAGE.md §5.2, "failure closes"). Whether the decision changed.
    pub fn refuse_updates(&mut self, most_severe: &str, reason: &str) -> bool {
        self.holds.clear();
        self.updates.clear();
        if EvaluationResult::refusal_stands_aside(&self.decision.kind, most_severe) {
            return false;
        }
        self.decision = Decision::bare(most_severe, reason);
        true
    }

    /// The result as a JSON value, fields in the documented order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
