//! Traces (LANGUAGE.md §4) and the injectable clock of effective windows.
#![allow(clippy::indexing_slicing, reason = "indexing a serde_json::Value returns Null when absent")]

use serde_json::{Value, json};
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;

fn evaluate(name: &str, text: &str, ctx: Value, now: &str, trace: bool) -> Value {
    let file = SourceFile::new(name, text);
    let compiled = verdict_compiler::compile(&file);
    let bundle = compiled.bundle.unwrap_or_else(|| unreachable!("{:?}", compiled.diagnostics));
    let interp = Interpreter::new(&bundle).unwrap_or_else(|e| unreachable!("{e:?}"));
    let req = Request::from_value(ctx).unwrap_or_default();
    let now = now.parse().unwrap_or_else(|e| unreachable!("{e}"));
    let mut v = interp.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("fingerprint".into(), json!("<fingerprint>"));
    }
    v
}

const QUICKSTART: &str = include_str!("../../examples/quickstart/bundle.verdict");

#[test]
fn trace_shows_every_rule_and_atom_in_order_with_short_circuits() {
    let ctx = json!({"subject": {"role": "viewer"}, "action": "read", "resource": {"tags": ["locked"]}});
    let v = evaluate("quickstart.verdict", QUICKSTART, ctx, "2026-01-01T00:00:00Z", true);
    insta::assert_json_snapshot!("quickstart_locked_read", v);
    // `action in [...]` is false, so `subject.role == "admin"` is never evaluated.
    let first_rule = &v["trace"][0]["rules"][0];
    assert_eq!(first_rule["atoms"].as_array().map(Vec::len), Some(1));
    assert_eq!(first_rule["held"], json!(false));
}

#[test]
fn trace_off_has_no_trace_key() {
    let v = evaluate("q.verdict", QUICKSTART, json!({}), "2026-01-01T00:00:00Z", false);
    assert!(v.get("trace").is_none());
}

#[test]
fn effective_window_uses_the_given_clock() {
    let text = r#"
bundle windowed {
  version "1"
  effective_from "2026-01-01T00:00:00Z"
  effective_until "2026-02-01T00:00:00+01:00"
}
policy p { rule r allow { when true } }
"#;
    let at = |now| evaluate("w.verdict", text, json!({}), now, true);
    assert_eq!(at("2025-12-31T23:59:59Z")["decision"]["reason"], json!("bundle is not yet effective"));
    assert_eq!(at("2026-01-01T00:00:00Z")["decision"]["kind"], json!("allow"));
    assert_eq!(at("2026-01-31T22:59:59Z")["decision"]["kind"], json!("allow"));
    let ended = at("2026-01-31T23:00:00Z");
    assert_eq!(ended["decision"]["reason"], json!("bundle effective period has ended"));
    assert_eq!(ended["decision"]["kind"], json!("deny"));
    assert_eq!(ended["policy_decisions"], json!([]));
    assert_eq!(ended["trace"], json!([{"gate": "effective_window", "passed": false}]));
}

#[test]
fn card_scope_gate_and_combining_modes() {
    let text = r#"
bundle scoped {
  version "1"
  effects [block, review, allow]
  combine first
  card_scope { vendor_id: "v-1", allowed_actions: ["use"] }
}
policy a { default none  rule r review { when subject.pii == true  codes ["PII"]  obligations { "ticket": "open" } } }
policy b { rule ok allow { when true } }
"#;
    let now = "2026-01-01T00:00:00Z";
    let out = evaluate("s.verdict", text, json!({"action": "use", "resource": {"vendor_id": "v-2"}}), now, false);
    assert_eq!(out["decision"]["kind"], json!("block"));
    assert_eq!(out["decision"]["reason"], json!("request is outside Decision Card runtime scope"));
    let ctx = json!({"action": "use", "resource": {"vendor_id": "v-1"}, "subject": {"pii": true}});
    let out = evaluate("s.verdict", text, ctx, now, false);
    assert_eq!(out["decision"]["kind"], json!("review"));
    assert_eq!(out["decision"]["codes"], json!(["PII"]));
    assert_eq!(out["decision"]["obligations"], json!({"ticket": "open"}));
    let out = evaluate("s.verdict", text, json!({"action": "use", "resource": {"vendor_id": "v-1"}}), now, false);
    assert_eq!(out["policy_decisions"][0]["kind"], json!("not_applicable"));
    assert_eq!(out["policy_decisions"][0]["reason"], json!("no rule matched; policy default_effect='none'"));
    assert_eq!(out["decision"]["matched_policy_id"], json!("b"));
}
