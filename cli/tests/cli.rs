//! What a new user tries first (issue 10, item 9): the README's commands work from the repository
//! root, `compile -o -` prints instead of writing a file named `-`, `serve --help` names every
//! form the watched directory loads, and a policy without rules decides its default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn verdict(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

/// Every `verdict` command of the README's shell blocks runs from the repository root (with
/// `/tmp/` moved to a scratch directory) and does not fail on its input (exit code 2).
#[test]
fn the_readme_commands_work_from_the_repository_root() {
    let tmp = scratch("readme");
    let readme = std::fs::read_to_string(PathBuf::from(WORKSPACE).join("README.md")).unwrap();
    let mut ran = 0;
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        // The key generation of the signed-artifacts section runs too (CI installs openssl).
        let (program, rest) = match (line.strip_prefix("verdict "), line.strip_prefix("openssl ")) {
            (Some(rest), _) => ("verdict", rest),
            (_, Some(rest)) => ("openssl", rest),
            _ => continue,
        };
        // The service runs in the background; `tests/serve.rs` covers it.
        if !in_sh || rest.starts_with("serve") {
            continue;
        }
        let command = rest.split(" #").next().unwrap().trim().replace("/tmp/", &format!("{}/", tmp.display()));
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = if program == "verdict" {
            verdict(std::path::Path::new(WORKSPACE), &args)
        } else {
            std::process::Command::new("openssl")
                .args(&args)
                .current_dir(WORKSPACE)
                .output()
                .expect("openssl must be installed (.ci/run installs it)")
        };
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "`{program} {command}` exited with {code:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 4, "only {ran} README commands found");
}

/// `-o -` is standard output: the disassembly is printed, an artifact is written to a pipe, and
/// no file named `-` appears.
#[test]
fn compile_to_dash_writes_standard_output() {
    let dir = scratch("dash");
    let bundle = PathBuf::from(WORKSPACE).join("examples/quickstart/bundle.verdict");
    let bundle = bundle.to_str().unwrap();
    let asm = verdict(&dir, &["compile", bundle, "--emit", "asm", "-o", "-"]);
    assert_eq!(asm.status.code(), Some(0), "{}", String::from_utf8_lossy(&asm.stderr));
    let text = String::from_utf8(asm.stdout).unwrap();
    assert!(text.contains("writes-require-admin"), "{text}");
    let artifact = verdict(&dir, &["compile", bundle, "-o", "-"]);
    assert_eq!(artifact.status.code(), Some(0), "{}", String::from_utf8_lossy(&artifact.stderr));
    assert!(verdict_runtime::artifact::is_artifact(&artifact.stdout));
    assert!(verdict_runtime::artifact::read(&artifact.stdout).is_ok());
    assert!(!dir.join("-").exists(), "a file named `-` was written");
}

/// `serve --help` lists every form the watched directory loads, `.vdc` artifacts included.
#[test]
fn serve_help_names_every_watched_form() {
    let out = verdict(std::path::Path::new(WORKSPACE), &["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for ext in verdict_server::reload::EXTENSIONS {
        assert!(help.contains(&format!(".{ext}")), "`serve --help` does not mention .{ext}:\n{help}");
    }
}

/// A policy without rules decides its default on every backend, traced or not, in the DSL and
/// in YAML (it was refused, V108, and the catch-all rule written instead drew V009 and V003).
#[test]
fn a_policy_without_rules_decides_its_default_on_every_backend() {
    let dir = scratch("rule-less");
    std::fs::write(dir.join("b.verdict"), "bundle b {}\n\npolicy baseline {\n  default deny\n}\n\npolicy reads {\n  default none\n\n  rule read allow {\n    when action == \"read\"\n  }\n}\n").unwrap();
    std::fs::write(dir.join("b.yaml"), "bundle_id: b\npolicies:\n  - {id: baseline, default_effect: deny, rules: []}\n  - id: reads\n    default_effect: none\n    rules: [{id: read, effect: allow, when: {kind: eq, field: action, value: read}}]\n").unwrap();
    std::fs::write(dir.join("ctx.json"), r#"{"action": "read"}"#).unwrap();
    for bundle in ["b.verdict", "b.yaml"] {
        let check = verdict(&dir, &["check", bundle, "--deny", "warnings"]);
        assert_eq!(check.status.code(), Some(0), "{bundle}: {}", String::from_utf8_lossy(&check.stderr));
        for trace in [false, true] {
            let mut results = Vec::new();
            for backend in ["interp", "vm", "jit"] {
                let mut args = vec!["eval", bundle, "ctx.json", "--backend", backend, "--now", "2026-01-01T00:00:00Z"];
                if trace {
                    args.push("--trace");
                }
                let out = verdict(&dir, &args);
                assert_eq!(out.status.code(), Some(1), "{bundle} {backend}: {}", String::from_utf8_lossy(&out.stderr));
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(v["decision"]["kind"], "deny", "{bundle} {backend}: {v}");
                assert_eq!(v["decision"]["matched_policy_id"], "baseline", "{bundle} {backend}: {v}");
                assert_eq!(v["decision"]["matched_rule_id"], serde_json::Value::Null, "{bundle} {backend}: {v}");
                results.push(v);
            }
            assert!(results.windows(2).all(|w| w[0] == w[1]), "{bundle}: the backends differ: {results:#?}");
        }
    }
}
