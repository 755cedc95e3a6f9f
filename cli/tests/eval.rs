//! `verdict eval` end to end: exit codes for allow, deny and unreadable contexts, and JSON Lines
//! batches with a bad line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BUNDLE: &str = "examples/quickstart/bundle.yaml";

fn eval(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("eval")
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A scratch file under the target directory, named per test.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("eval-cli");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn quickstart_allow_exits_0() {
    let out = eval(&[BUNDLE, "examples/quickstart/ctx.json"]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["kind"], "allow", "{v:#}");
    assert_eq!(v["decision"]["matched_rule_id"], "admin-writes", "{v:#}");
}

#[test]
fn deny_exits_1() {
    let ctx = scratch(
        "deny.json",
        r#"{"subject": {"id": "u-42", "role": "student"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": []}, "data": {}}"#,
    );
    let out = eval(&[BUNDLE, arg(&ctx)]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["kind"], "deny", "{v:#}");
}

#[test]
fn malformed_context_exits_2() {
    let ctx = scratch("malformed.json", r#"{"subject": {"id": "u-1", "#);
    let out = eval(&[BUNDLE, arg(&ctx)]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(out.stdout.is_empty(), "printed a decision for a malformed context");
    let err = stderr(&out);
    assert!(err.contains("malformed.json"), "the error does not name the file:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_context_exits_2() {
    let out = eval(&[BUNDLE, "examples/quickstart/no-such-ctx.json"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
}

#[test]
fn contexts_with_a_bad_line_report_it_and_go_on() {
    let lines = [
        r#"{"subject": {"id": "u-17", "role": "admin"}, "action": "update", "resource": {"tags": []}, "data": {}}"#,
        r#"{"subject": {"id": "u-42", "role": "#,
        r#"{"subject": {"id": "u-42", "role": "student"}, "action": "update", "resource": {"tags": []}, "data": {}}"#,
    ];
    let file = scratch("batch.jsonl", &(lines.join("\n") + "\n"));
    let out = eval(&[BUNDLE, "--contexts", arg(&file)]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 3, "one output line per input line:\n{stdout}");
    assert_eq!(results[0]["decision"]["kind"], "allow", "{stdout}");
    let err = results[1]["error"].as_str().unwrap_or_else(|| panic!("no error on line 2:\n{stdout}"));
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(results[1]["line"], 2);
    assert!(results[1].get("decision").is_none());
    assert_eq!(results[2]["decision"]["kind"], "deny", "{stdout}");
}

#[test]
fn closed_stdout_is_not_a_crash() {
    use std::process::{Command, Stdio};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .current_dir(&root)
        .args(["eval", "examples/quickstart/bundle.yaml", "examples/quickstart/ctx.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(out.status.code(), Some(0 | 2)), "{:?}", out.status);
}

#[test]
fn tampered_and_truncated_artifacts_exit_2() {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("verdict-tamper-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.vdc");
    let out = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .current_dir(&root)
        .args(["compile", "examples/quickstart/bundle.verdict", "-o"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ctx = root.join("examples/quickstart/ctx.json");
    let run = |artifact: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_verdict")).arg("eval").arg(artifact).arg(&ctx).output().unwrap()
    };
    assert_eq!(run(&good).status.code(), Some(0));
    let bytes = fs::read(&good).unwrap();
    let bad = dir.join("bad.vdc");
    // A sample of positions through the header, body and checksum (every byte is covered by the
    // library-level test in tests/tests/artifact.rs).
    for i in (0..bytes.len()).step_by(37).chain([0, 8, 12, bytes.len() - 1]) {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        fs::write(&bad, &b).unwrap();
        let out = run(&bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "flip at {i}: {stderr}");
        assert!(!stderr.contains("panicked") && out.stdout.is_empty(), "flip at {i}: {stderr}");
    }
    for len in [0, 7, 12, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&bad, &bytes[..len]).unwrap();
        let out = run(&bad);
        assert_eq!(out.status.code(), Some(2), "truncated to {len}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn ambiguous_bundles_are_refused_by_compile_and_eval() {
    let amb = scratch(
        "amb.verdict",
        "bundle amb {}\npolicy p {\n  match priority\n  rule a allow { when subject.role == \"admin\"  priority 1 }\n  rule d deny { when action == \"update\"  priority 1 }\n}\n",
    );
    let out = eval(&[arg(&amb), "examples/quickstart/ctx.json"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("V005"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let artifact = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("eval-cli/amb.vdc");
    let out = Command::new(BIN).args(["compile", arg(&amb), "-o", arg(&artifact)]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("V005") && !artifact.exists(), "{}", stderr(&out));
}

/// `let a{i} = a{i-1} and a{i-1}` 34 levels deep: every backend, traced or not, answers (the
/// process runs under a hang guard; before definitions were memoised it ran for hours).
#[test]
fn shared_definitions_answer_on_every_backend() {
    let mut text = String::from("bundle exp {}\nlet a0 = subject.role == \"admin\"\n");
    for i in 1..=34 {
        text.push_str(&format!("let a{i} = a{} and a{}\n", i - 1, i - 1));
    }
    text.push_str("policy p { rule r allow { when a34 } }\n");
    let bundle = scratch("shared.verdict", &text);
    for backend in ["jit", "vm", "interp"] {
        for trace in [false, true] {
            let mut cmd = Command::new(BIN);
            cmd.args(["eval", arg(&bundle), "examples/quickstart/ctx.json", "--backend", backend])
                .current_dir(WORKSPACE);
            if trace {
                cmd.arg("--trace");
            }
            let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
            let mut finished = None;
            for _ in 0..600 {
                if let Some(status) = child.try_wait().unwrap() {
                    finished = Some(status);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let Some(status) = finished else {
                let _ = child.kill();
                panic!("{backend} (trace {trace}) did not answer within the guard");
            };
            assert_eq!(status.code(), Some(0), "{backend} (trace {trace})");
        }
    }
    let out = Command::new(BIN).args(["check", arg(&bundle)]).current_dir(WORKSPACE).output().unwrap();
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", stderr(&out));
}
