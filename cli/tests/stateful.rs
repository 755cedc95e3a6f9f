//! The stateful and host-aware examples through `verdict eval`, against expected results
//! produced by independent models of the systems they replace (`examples/*/make_expected.py`):
//!
//! - `examples/spend`: paygraph's spend gate — kind, deciding rule, reason to the character,
//!   the checks passed (rules tried and not held) and the holds, over events crossing hour,
//!   day, Monday and month boundaries with commits, releases and expiring holds;
//! - `examples/abuse`: "more than 3 denies in the last hour", with reads at exactly 3599, 3600
//!   and 3601 seconds after a deny;
//! - `examples/guard`: a RuleGate-style ruleset with extern predicates (some raising), decided
//!   and exhaustively.
//!
//! Every example runs on the interpreter, the VM and the JIT, from the `.verdict` and the YAML
//! source, and the outputs (traces included) must be byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn verdict(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).current_dir(WORKSPACE).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(out.status.code().is_some_and(|c| c <= 1), "{args:?}: exit {:?}\n{stderr}", out.status.code());
    String::from_utf8(out.stdout).unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn expected(example: &str) -> Vec<Value> {
    let path = PathBuf::from(WORKSPACE).join("examples").join(example).join("expected.jsonl");
    lines(&std::fs::read_to_string(path).unwrap())
}

/// The result without what depends on where the source wrote things (trace spans).
fn sans_trace(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("trace");
    }
    v
}

/// Runs the events of an example on every backend with a trace, from both source forms: per
/// form, the outputs of the backends are byte-identical; across forms, the results without their
/// traces (whose spans point into each source) are equal. Returns the DSL's, parsed.
fn events(example: &str) -> Vec<Value> {
    let events = format!("examples/{example}/events.jsonl");
    let mut per_form: Vec<Vec<Value>> = Vec::new();
    for source in ["bundle.verdict", "bundle.yaml"] {
        let bundle = format!("examples/{example}/{source}");
        let mut first: Option<String> = None;
        for backend in ["interp", "vm", "jit"] {
            let out = verdict(&["eval", &bundle, "--events", &events, "--trace", "--backend", backend]);
            match &first {
                None => first = Some(out),
                Some(f) => assert!(*f == out, "{example}: {source} on {backend} differs from the interpreter"),
            }
        }
        per_form.push(lines(&first.unwrap_or_default()));
    }
    let [dsl, yaml] = per_form.as_slice() else { panic!("two forms") };
    let strip = |v: &[Value]| v.iter().map(sans_trace).collect::<Vec<_>>();
    assert_eq!(strip(dsl), strip(yaml), "{example}: the DSL and the YAML bundle decide differently");
    dsl.clone()
}

/// The rules a trace shows tried and not held (paygraph's "checks passed").
fn passed(result: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in result["trace"].as_array().into_iter().flatten() {
        for rule in entry["rules"].as_array().into_iter().flatten() {
            if rule["held"] == false && rule.get("error").is_none() {
                out.push(rule["rule"].clone());
            }
        }
    }
    out
}

#[test]
fn spend_matches_the_paygraph_model_on_every_backend() {
    let results = events("spend");
    let want = expected("spend");
    assert_eq!(results.len(), want.len());
    for (i, (r, e)) in results.iter().zip(&want).enumerate() {
        let d = &r["decision"];
        assert_eq!(d["kind"], e["kind"], "event {}", i + 1);
        assert_eq!(d["matched_rule_id"], e["rule"], "event {}", i + 1);
        assert_eq!(d["reason"], e["reason"], "event {}", i + 1);
        assert_eq!(Value::Array(passed(r)), e["checks_passed"], "event {}", i + 1);
        let holds = r.get("holds").cloned().unwrap_or(Value::Array(Vec::new()));
        assert_eq!(holds, e["holds"], "event {}", i + 1);
        assert_eq!(r["decision_id"], format!("e{}", i + 1), "event {}", i + 1);
        assert!(r.get("then_error").is_none(), "event {}: {r}", i + 1);
    }
}

#[test]
fn abuse_counts_denials_in_a_sliding_hour_on_every_backend() {
    let results = events("abuse");
    let want = expected("abuse");
    assert_eq!(results.len(), want.len());
    for (i, (r, e)) in results.iter().zip(&want).enumerate() {
        let d = &r["decision"];
        assert_eq!(d["kind"], e["kind"], "event {}", i + 1);
        assert_eq!(d["matched_rule_id"], e["rule"], "event {}", i + 1);
        assert_eq!(d["reason"], e["reason"], "event {}", i + 1);
    }
}

#[test]
fn guard_matches_the_rulegate_model_with_externs_and_exhaustive_results() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stateful-guard");
    std::fs::create_dir_all(&dir).unwrap();
    let requests =
        lines(&std::fs::read_to_string(PathBuf::from(WORKSPACE).join("examples/guard/requests.jsonl")).unwrap());
    let want = expected("guard");
    assert_eq!(requests.len(), want.len());
    for (i, (req, e)) in requests.iter().zip(&want).enumerate() {
        let ctx = dir.join(format!("ctx{i}.json"));
        let ext = dir.join(format!("ext{i}.json"));
        std::fs::write(&ctx, req["context"].to_string()).unwrap();
        std::fs::write(&ext, req["externs"].to_string()).unwrap();
        let now = req["now"].as_str().unwrap();
        let (ctx, ext) = (ctx.to_str().unwrap(), ext.to_str().unwrap());
        let mut outputs = Vec::new();
        for source in ["examples/guard/bundle.verdict", "examples/guard/bundle.yaml"] {
            for backend in ["interp", "vm", "jit"] {
                let base = ["eval", source, ctx, "--externs", ext, "--now", now, "--backend", backend];
                let plain: Value = serde_json::from_str(&verdict(&base)).unwrap();
                let all: Value =
                    serde_json::from_str(&verdict(&[&base[..], &["--exhaustive", "--trace"]].concat())).unwrap();
                let name = &e["name"];
                let d = &plain["decision"];
                let got = serde_json::json!({"kind": d["kind"], "matched_rule_id": d["matched_rule_id"], "reason": d["reason"]});
                assert_eq!(got, e["decision"], "{name} on {backend}");
                // Exhaustive: the same decision, every violation, every rule evaluated.
                assert_eq!(all["decision"], plain["decision"], "{name} on {backend}");
                let ex = serde_json::json!({"matches": all["matches"], "rules_evaluated": all["rules_evaluated"]});
                assert_eq!(ex, e["exhaustive"], "{name} on {backend}");
                outputs.push((source, all));
            }
        }
        for pair in outputs.windows(2) {
            let [(sa, a), (sb, b)] = pair else { continue };
            if sa == sb {
                assert_eq!(a, b, "{}: backends differ on {sa}", e["name"]);
            } else {
                assert_eq!(sans_trace(a), sans_trace(b), "{}: the source forms differ", e["name"]);
            }
        }
    }
}
