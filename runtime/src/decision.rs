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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceEntry>>,
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

/// A path an atom read, and its value (absent when the path is missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadTrace {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

impl EvaluationResult {
    /// The result as a JSON value, fields in the documented order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
