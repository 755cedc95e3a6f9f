//! `verdict check` with the rule analysis and `verdict diff`, end to end: exit codes, the JSON
//! shape of findings (related locations, witness) and of change impact, and the human forms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("NO_COLOR", "1").output().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn scratch(name: &str, text: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("analysis-cli");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const SHADOWED: &str = r#"bundle "shadow" {}
policy p {
  default deny
  rule broad allow { when action == "read" }
  rule narrow deny { when action == "read" and subject.role == "guest" }
}
"#;

const AMBIGUOUS: &str = r#"bundle "tie" {}
policy p {
  default deny
  match priority
  rule a allow { when subject.role == "admin" }
  rule b deny { when action == "delete" }
}
"#;

#[test]
fn check_reports_findings_with_related_locations() {
    let f = scratch("shadowed.verdict", SHADOWED);
    let out = run(&["check", &f, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "warnings alone do not fail");
    let diags: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &diags[0];
    assert_eq!(d["code"], "V001");
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["rule"], "narrow");
    assert_eq!(d["line"], 5);
    assert_eq!(d["related"][0]["line"], 4);
    assert!(d["related"][0]["message"].as_str().unwrap().contains("covered by rule `broad`"));
    assert_eq!(d["witness"], Value::Null);
    assert_eq!(run(&["check", &f, "--deny", "warnings"]).status.code(), Some(1));
    let human = run(&["check", &f]);
    let text = String::from_utf8_lossy(&human.stderr);
    assert!(text.contains("V001") && text.contains("covered by rule `broad` here"), "{text}");
}

#[test]
fn ambiguity_is_an_error_and_its_witness_is_shown() {
    let f = scratch("ambiguous.verdict", AMBIGUOUS);
    let out = run(&["check", &f, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let diags: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = diags.as_array().unwrap().iter().find(|d| d["code"] == "V005").unwrap();
    assert_eq!(d["severity"], "error");
    let w = scratch("ambiguous-witness.json", &d["witness"].to_string());
    // An ambiguous bundle is refused wherever it is compiled for use: `eval` reports the same
    // finding with the same witness instead of deciding (the analysis tests confirm every V005
    // witness on the interpreter).
    let eval = run(&["eval", &f, &w]);
    assert_eq!(eval.status.code(), Some(2));
    assert!(eval.stdout.is_empty());
    let eval_err = String::from_utf8_lossy(&eval.stderr).into_owned();
    assert!(eval_err.contains("V005") && eval_err.contains(&d["witness"].to_string()), "{eval_err}");
    let human = String::from_utf8_lossy(&run(&["check", &f]).stderr).into_owned();
    assert!(human.contains("witness request: {"), "{human}");
}

#[test]
fn diff_reports_transitions_or_equivalence() {
    let old = scratch("old.verdict", SHADOWED);
    let new = scratch("new.verdict", &SHADOWED.replace("\"guest\"", "\"intern\""));
    let yaml = scratch("old.yaml", "");
    assert_eq!(run(&["convert", &old, "-o", &yaml]).status.code(), Some(0));

    let same = run(&["diff", &old, &yaml]);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).starts_with("equivalent"));

    // `narrow` is unreachable in both, so changing it changes no decision.
    let out = run(&["diff", &old, &new, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["equivalent"], true);
    assert_eq!(report["transitions"], serde_json::json!([]));
    assert_eq!(report["undecided"], false);

    let swapped = SHADOWED.replace(
        "  rule broad allow { when action == \"read\" }\n  rule narrow deny { when action == \"read\" and subject.role == \"guest\" }",
        "  rule narrow deny { when action == \"read\" and subject.role == \"guest\" }\n  rule broad allow { when action == \"read\" }",
    );
    let new = scratch("swapped.verdict", &swapped);
    let out = run(&["diff", &old, &new, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &report["transitions"][0];
    assert_eq!((t["from"].as_str(), t["to"].as_str()), (Some("allow"), Some("deny")));
    assert_eq!(t["old"]["rule"], "broad");
    assert_eq!(t["new"]["rule"], "narrow");
    assert_eq!(t["witness"]["subject"]["role"], "guest");
    let human = String::from_utf8_lossy(&run(&["diff", &old, &new]).stdout).into_owned();
    assert!(human.contains("allow → deny") && human.contains("rule `narrow` of policy `p`"), "{human}");
}

#[test]
fn diff_refuses_bad_input() {
    let old = scratch("good.verdict", SHADOWED);
    let bad = scratch("bad.verdict", "bundle \"x\" { policy }");
    assert_eq!(run(&["diff", &old, &bad]).status.code(), Some(2));
    assert_eq!(run(&["diff", &old, "/nonexistent/bundle.yaml"]).status.code(), Some(2));
}
