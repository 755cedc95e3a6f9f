//! Shared helpers of the data-driven tests: loading the vendored conformance corpus and
//! comparing decisions field by field.
#![allow(
    clippy::indexing_slicing,
    reason = "indexing a serde_json::Value by key returns Null when absent; it never panics"
)]

pub mod analysis;
pub mod families;
pub mod generate;
pub mod host;
pub mod hostile;
pub mod workloads;

use serde_json::Value;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;

/// One bundle of the seed-compat corpus with its cases.
pub struct Case {
    pub line: usize,
    pub bundle: Value,
    pub cases: Vec<(Value, Value)>,
}

/// Reads the vendored `seed-compat.jsonl`.
pub fn seed_compat() -> Vec<Case> {
    let text = include_str!("../conformance/seed-compat.jsonl");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            let cases = v["cases"]
                .as_array()
                .map(|a| a.iter().map(|c| (c["context"].clone(), c["expect"].clone())).collect())
                .unwrap_or_default();
            Case { line: i + 1, bundle: v["bundle"].clone(), cases }
        })
        .collect()
}

/// The reference's decision fields.
pub const FIELDS: [&str; 4] = ["kind", "matched_policy_id", "matched_rule_id", "reason"];

/// Compares `decision` and `policy_decisions` of a result with the reference's, field by field.
pub fn compare(actual: &Value, expect: &Value) -> Result<(), String> {
    for f in FIELDS {
        if actual["decision"][f] != expect["decision"][f] {
            return Err(format!("decision.{f}: got {} want {}", actual["decision"][f], expect["decision"][f]));
        }
    }
    let (Some(a), Some(e)) = (actual["policy_decisions"].as_array(), expect["policy_decisions"].as_array()) else {
        return Err("policy_decisions missing".into());
    };
    if a.len() != e.len() {
        return Err(format!("policy_decisions: got {} want {}", a.len(), e.len()));
    }
    for (i, (x, y)) in a.iter().zip(e).enumerate() {
        for f in FIELDS {
            if x[f] != y[f] {
                return Err(format!("policy_decisions[{i}].{f}: got {} want {}", x[f], y[f]));
            }
        }
    }
    Ok(())
}

/// Compiles a source text of a given form and evaluates a context now.
pub fn eval_source(name: &str, text: &str, kind: SourceKind, context: &Value) -> Result<Value, String> {
    let file = SourceFile::new(name, text);
    let compiled = compile_as(&file, kind);
    let Some(bundle) = compiled.bundle else {
        return Err(format!("compile failed: {:?}", compiled.diagnostics));
    };
    let interp = verdict_compiler::interp::Interpreter::new(&bundle).map_err(|e| e.to_string())?;
    let req = Request::from_value(context.clone()).map_err(|e| e.to_string())?;
    Ok(interp.evaluate(&req, &Env::at(jiff::Timestamp::now()), Mode::PLAIN).to_json())
}
