//! State updates fail closed (LANGUAGE.md §5.2): a decision whose update cannot choose its series
//! (a key path missing or not a string, number or bool) or whose `add` term faults (an extern
//! that fails) decides the most severe effect with the reason and records nothing; an `add` that
//! is merely undefined makes no update and leaves the decision alone, as does a decision that
//! already decides the most severe effect (its update is dropped, its rule and reason stand). On the interpreter, the VM
//! and the JIT, against one in-memory store each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "test failures")]

use serde_json::{Value, json};
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, Range, Recording, StateStore};
use verdict_runtime::vm::{Backend, Engine, Scratch};

/// Allows by default without reading state, so nothing but the update can fail.
const BUNDLE: &str = r#"bundle "updates" {
  effects [deny, allow]
}
extern risk(any) -> number
state spend { add amount  key [subject.id]  on [allow] }
state scored { add risk(subject.id)  on [allow]  apply decision }
state denials { add 1  key [subject.id]  on [deny]  apply decision }
policy p {
  default allow
  rule blocked deny { when action == "blocked" }
}
"#;

/// What `spend` holds for `u-1` (all time) after the decisions.
fn spent(store: &MemoryStore) -> Value {
    let mut out = Value::Null;
    store
        .transact(&mut |v| {
            out = v.read("spend", &[json!("u-1")], Range::Total, 0).map_or(Value::Null, Value::Number);
            Recording { decision_id: "probe".into(), time: 0, hold_ttl: 0, updates: vec![] }
        })
        .unwrap();
    out
}

fn decide(context: Value, externs: &verdict_runtime::externs::ExternTable) -> Vec<(Value, Value)> {
    let ir = verdict_compiler::compile_for_use(&SourceFile::new("u.verdict", BUNDLE.to_owned())).bundle.unwrap();
    let interp = Interpreter::new(&ir).unwrap();
    let program = verdict_compiler::codegen::program(&ir);
    let vm = Engine::with_backend(program.clone(), Backend::Vm).unwrap();
    let jit = Engine::with_backend(program, Backend::Jit).unwrap();
    assert_eq!(jit.backend(), Backend::Jit);
    let req = Request::from_value(context).unwrap();
    let env = Env {
        now: "2026-06-01T12:00:00Z".parse().unwrap(),
        decision_id: Some("d-1"),
        state: None,
        externs: Some(externs),
    };
    let mut out = Vec::new();
    let stores = [MemoryStore::new(), MemoryStore::new(), MemoryStore::new()];
    let results = [
        interp.evaluate_with_store(&req, &env, Mode::PLAIN, &stores[0]).to_json(),
        vm.evaluate_with_store(&req, &env, Mode::PLAIN, &stores[1]).to_json(),
        jit.evaluate_with_store(&req, &env, Mode::PLAIN, &stores[2]).to_json(),
    ];
    for (result, store) in results.into_iter().zip(&stores) {
        out.push((result, spent(store)));
    }
    // The lean stateful entry point decides the same and records the same.
    for engine in [&vm, &jit] {
        let store = MemoryStore::new();
        let mut scratch = Scratch::default();
        let prepared = engine.prepare(&req);
        let o = engine.decide_with_store(&prepared, &env, &store, &mut scratch).unwrap();
        let d = engine.decision_ref(&o.outcome);
        let holds = o.updates.iter().filter(|u| u.hold).count();
        let full = &out[0].0["decision"];
        assert_eq!(
            (json!(d.kind), json!(d.rule_id), json!(d.reason)),
            (full["kind"].clone(), full["matched_rule_id"].clone(), full["reason"].clone()),
            "decide_with_store on {:?}",
            engine.backend()
        );
        assert_eq!(holds, out[0].0.get("holds").and_then(Value::as_array).map_or(0, Vec::len));
        assert_eq!(spent(&store), out[0].1);
    }
    out
}

fn risk(result: Result<Value, String>) -> verdict_runtime::externs::ExternTable {
    verdict_runtime::externs::ExternTable::new().bind("risk", move |_| result.clone())
}

#[test]
fn a_missing_key_refuses_the_decision_and_records_nothing() {
    let runs = decide(json!({"data": {"amount": 10}}), &risk(Ok(json!(0.5))));
    for (result, spent) in runs {
        assert_eq!(result["decision"]["kind"], "deny", "{result}");
        assert_eq!(result["decision"]["reason"], "state error: key subject.id of 'spend' is missing", "{result}");
        assert_eq!(result.get("holds"), None, "{result}");
        assert_eq!(spent, json!(0));
    }
}

#[test]
fn a_key_that_is_not_a_scalar_refuses_the_decision() {
    let runs = decide(json!({"subject": {"id": ["u-1"]}, "data": {"amount": 10}}), &risk(Ok(json!(0.5))));
    for (result, _) in runs {
        assert_eq!(result["decision"]["kind"], "deny", "{result}");
        assert_eq!(
            result["decision"]["reason"],
            "state error: key subject.id of 'spend' is list, not a string, number or bool",
            "{result}"
        );
    }
}

#[test]
fn an_add_term_that_faults_refuses_the_decision_and_records_nothing() {
    let runs = decide(json!({"subject": {"id": "u-1"}, "data": {"amount": 10}}), &risk(Err("timeout".into())));
    for (result, spent) in runs {
        assert_eq!(result["decision"]["kind"], "deny", "{result}");
        assert_eq!(result["decision"]["reason"], "extern error: risk: timeout", "{result}");
        assert_eq!(result.get("holds"), None, "{result}");
        assert_eq!(spent, json!(0));
    }
}

#[test]
fn an_undefined_add_makes_no_update_and_keeps_the_decision() {
    let runs = decide(json!({"subject": {"id": "u-1"}, "data": {"amount": "ten"}}), &risk(Ok(json!(0.5))));
    for (result, spent) in runs {
        assert_eq!(result["decision"]["kind"], "allow", "{result}");
        assert_eq!(result.get("holds"), None, "{result}");
        assert_eq!(spent, json!(0));
    }
    // And a defined one holds its amount.
    let runs = decide(json!({"subject": {"id": "u-1"}, "data": {"amount": 10}}), &risk(Ok(json!(0.5))));
    for (result, spent) in runs {
        assert_eq!(result["decision"]["kind"], "allow", "{result}");
        assert_eq!(result["holds"], json!([{"state": "spend", "key": ["u-1"], "amount": 10}]), "{result}");
        assert_eq!(spent, json!(10));
    }
}

#[test]
fn a_most_severe_decision_keeps_its_rule_when_its_update_cannot_be_made() {
    let runs = decide(json!({"action": "blocked", "data": {"amount": 10}}), &risk(Ok(json!(0.5))));
    for (result, spent) in runs {
        assert_eq!(result["decision"]["kind"], "deny", "{result}");
        assert_eq!(result["decision"]["matched_rule_id"], "blocked", "{result}");
        assert_eq!(result.get("holds"), None, "{result}");
        assert_eq!(spent, json!(0));
    }
}
