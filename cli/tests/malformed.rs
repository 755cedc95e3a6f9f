//! `verdict check` on malformed inputs: every file under `tests/malformed/` (and a few inputs
//! nested 10,000 deep, generated here rather than committed) fails cleanly: exit code 1 or 2, no
//! panic, and diagnostics that point into the file. The exact human and JSON output of each is a
//! reviewed insta snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const MALFORMED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/malformed");

/// Depth of the generated inputs.
const DEEP: usize = 10_000;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn exit_code(name: &str, out: &Output) -> i32 {
    match out.status.code() {
        Some(c) => c,
        None => panic!("{name}: `verdict check` was killed by a signal ({:?})", out.status),
    }
}

/// Runs `check` on `name` (relative to `dir`) in both formats, checks the invariants and returns
/// the snapshot text.
fn check_one(dir: &Path, name: &str) -> String {
    let human = run(dir, &["check", name]);
    let json = run(dir, &["check", name, "--format", "json"]);
    let code = exit_code(name, &human);
    let json_code = exit_code(name, &json);
    let stderr = String::from_utf8_lossy(&human.stderr).into_owned();
    let json_stderr = String::from_utf8_lossy(&json.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&json.stdout).into_owned();
    assert!(code == 1 || code == 2, "{name}: exit code {code}, expected 1 or 2\nstderr:\n{stderr}");
    assert_eq!(code, json_code, "{name}: the two formats disagree on the exit code");
    for (form, err) in [("human", &stderr), ("json", &json_stderr)] {
        assert!(!err.contains("panicked"), "{name}: panic in the {form} run:\n{err}");
    }
    assert!(human.stdout.is_empty(), "{name}: the human form printed on stdout");

    let diags: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{name}: `--format json` did not print JSON ({e}):\n{stdout}"));
    let diags = diags.as_array().unwrap_or_else(|| panic!("{name}: not a JSON array: {stdout}"));
    if code == 1 {
        assert!(!diags.is_empty(), "{name}: exit code 1 but no diagnostic");
    }
    assert!(
        diags.iter().any(|d| d["severity"] == "error") || code == 2,
        "{name}: exit code {code} without an error diagnostic"
    );
    for d in diags {
        assert_eq!(d["file"].as_str(), Some(name), "{name}: diagnostic without its file: {d}");
        let line = d["line"].as_u64().unwrap_or(0);
        let column = d["column"].as_u64().unwrap_or(0);
        assert!(line >= 1 && column >= 1, "{name}: diagnostic without a position: {d}");
        assert!(d["code"].as_str().is_some_and(|c| c.starts_with('V')), "{name}: diagnostic without a code: {d}");
    }
    let pretty = serde_json::to_string_pretty(&Value::Array(diags.clone())).unwrap();
    format!(
        "exit code: {code}\n\n--- stderr (human) ---\n{}\n\n--- stdout (--format json) ---\n{pretty}\n",
        stderr.trim_end()
    )
}

fn malformed_files() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(MALFORMED)
        .unwrap_or_else(|e| panic!("cannot read {MALFORMED}: {e}"))
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_malformed_file_fails_cleanly() {
    let names = malformed_files();
    assert!(names.len() >= 20, "expected at least 20 malformed inputs, found {}", names.len());
    let dir = PathBuf::from(MALFORMED);
    for name in &names {
        let text = check_one(&dir, name);
        insta::assert_snapshot!(name.as_str(), text);
    }
}

/// Inputs nested 10,000 deep, one per source form.
fn deep_inputs() -> Vec<(&'static str, String)> {
    let rule = |cond: &str| format!("bundle demo {{}}\n\npolicy p {{\n  rule r allow {{\n    when {cond}\n  }}\n}}\n");
    let nots = format!("{}true", "not\n".repeat(DEEP));
    let parens = format!("{}true{}", "(\n".repeat(DEEP), "\n)".repeat(DEEP));
    let mut json = String::from(
        r#"{"bundle_id": "demo", "policies": [{"id": "p", "rules": [{"id": "r", "effect": "allow", "when": "#,
    );
    json.push_str(&"{\"kind\": \"all_of\", \"matchers\": [\n".repeat(DEEP));
    json.push_str("{\"kind\": \"always\"}");
    json.push_str(&"]}\n".repeat(DEEP));
    json.push_str("}]}]}\n");
    let mut yaml = String::from(
        "bundle_id: demo\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: allow\n        when: ",
    );
    // Continuation lines of a flow collection must be indented past the key.
    yaml.push_str(&"[\n          ".repeat(DEEP));
    yaml.push_str(&"]\n          ".repeat(DEEP));
    let mut inputs = vec![
        ("deep-not.verdict", rule(&nots)),
        ("deep-parens.verdict", rule(&parens)),
        ("deep-all-of.json", json),
        ("deep-lists.yaml", yaml),
    ];
    inputs.extend(deep_obligations());
    inputs
}

/// `obligations` nested 30,000 deep (objects) or 50,000 deep (lists), in every form: files of
/// 40–120 KB that overflowed the stack of `check`, `compile`, `convert` and `eval` before.
fn deep_obligations() -> Vec<(&'static str, String)> {
    const OBJECTS: usize = 30_000;
    const LISTS: usize = 50_000;
    let dsl = |value: &str| {
        format!(
            "bundle demo {{}}\n\npolicy p {{\n  rule r allow {{\n    when true\n    obligations {value}\n  }}\n}}\n"
        )
    };
    let yaml = |value: &str| {
        format!(
            "bundle_id: demo\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: allow\n        when: {{kind: always}}\n        obligations: {value}\n"
        )
    };
    let json = |value: &str| {
        format!(
            "{{\"bundle_id\": \"demo\", \"policies\": [{{\"id\": \"p\", \"rules\": [{{\"id\": \"r\", \"effect\": \"allow\", \"when\": {{\"kind\": \"always\"}}, \"obligations\": {value}}}]}}]}}\n"
        )
    };
    // One level per line, so the snapshots show short lines; YAML flow continuation lines are
    // indented past the key.
    let nest = |open: &str, inner: &str, close: &str, n: usize, indent: &str| {
        format!("{}{inner}{}", format!("{open}\n{indent}").repeat(n), format!("{close}\n{indent}").repeat(n))
    };
    let yaml_indent = " ".repeat(10);
    vec![
        ("deep-obligations-objects.verdict", dsl(&nest("{a:", "1", "}", OBJECTS, ""))),
        ("deep-obligations-lists.verdict", dsl(&format!("{{a: {}}}", nest("[", "", "]", LISTS, "")))),
        ("deep-obligations-objects.yaml", yaml(&nest("{a:", "1", "}", OBJECTS, &yaml_indent))),
        ("deep-obligations-lists.yaml", yaml(&format!("{{a: {}}}", nest("[", "", "]", LISTS, &yaml_indent)))),
        ("deep-obligations-objects.json", json(&nest("{\"a\":", "1", "}", OBJECTS, ""))),
        ("deep-obligations-lists.json", json(&format!("{{\"a\": {}}}", nest("[", "", "]", LISTS, "")))),
    ]
}

#[test]
fn inputs_nested_10000_deep_fail_cleanly() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("malformed-deep");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in deep_inputs() {
        fs::write(dir.join(name), text).unwrap();
        let text = check_one(&dir, name);
        insta::assert_snapshot!(name, text);
    }
}

/// Every command that reads a bundle fails cleanly on the deep inputs: exit code 1 or 2, never a
/// signal (a stack overflow aborts the process).
#[test]
fn every_command_fails_cleanly_on_deep_inputs() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("malformed-every-command");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ctx.json"), r#"{"action": "read"}"#).unwrap();
    for (name, text) in deep_inputs() {
        fs::write(dir.join(name), text).unwrap();
        let commands: Vec<Vec<&str>> = vec![
            vec!["check", name],
            vec!["compile", name, "-o", "out.vdc"],
            vec!["compile", name, "--emit", "asm"],
            vec!["convert", name, "-o", "out.json"],
            vec!["convert", name, "-o", "out.verdict"],
            vec!["eval", name, "ctx.json"],
            vec!["eval", name, "ctx.json", "--backend", "interp"],
            vec!["fmt", "--check", name],
        ];
        for args in commands {
            if args[0] == "fmt" && !name.ends_with(".verdict") {
                continue;
            }
            let out = run(&dir, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let code = out
                .status
                .code()
                .unwrap_or_else(|| panic!("{args:?}: killed by a signal ({:?})\n{stderr}", out.status));
            assert!(code == 1 || code == 2, "{args:?}: exit code {code}\n{stderr}");
            assert!(stderr.contains("V107"), "{args:?}: no V107\n{stderr}");
        }
    }
}

/// A source over the size limit (16 MiB) is refused with V112 before it is read, by every
/// command; the compiler would refuse it before parsing too.
#[test]
fn sources_over_the_size_limit_are_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("malformed-too-large");
    fs::create_dir_all(&dir).unwrap();
    let limit = verdict_compiler::source::MAX_SOURCE_BYTES;
    for name in ["huge.json", "huge.yaml", "huge.verdict"] {
        // A deep nest: were it parsed, it would say so; it must say "too large" instead.
        fs::write(dir.join(name), "[".repeat(limit + 1)).unwrap();
        for args in [
            vec!["check", name],
            vec!["eval", name, "ctx.json"],
            vec!["convert", name, "-o", "x.json"],
            vec!["compile", name, "-o", "x.vdc"],
        ] {
            let out = run(&dir, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}\n{stderr}");
            assert!(
                stderr.contains("V112") && stderr.contains("over the limit of 16777216 bytes"),
                "{args:?}\n{stderr}"
            );
        }
    }
}
