//! The example service answers decisions from an artifact the CLI compiled.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
#![allow(clippy::indexing_slicing, reason = "test code over fixed data")]

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn answers_decisions_from_an_artifact() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let source = root.join("examples/quickstart/bundle.verdict");
    let text = std::fs::read_to_string(source).unwrap();
    let file = verdict_compiler::source::SourceFile::new("bundle.verdict", text);
    let bundle = verdict_compiler::compile(&file).bundle.unwrap();
    let dir = std::env::temp_dir().join(format!("verdict-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let artifact = dir.join("quickstart.vdc");
    std::fs::write(&artifact, verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&bundle))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict-service-example"))
        .arg(&artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = concat!(
        "{\"subject\": {\"role\": \"admin\"}, \"action\": \"update\", \"resource\": {\"tags\": []}}\n",
        "{\"subject\": {\"role\": \"viewer\"}, \"action\": \"read\", \"resource\": {\"tags\": [\"locked\"]}}\n",
        "not json\n",
    );
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["rule"], "admin-writes");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["reason"], "blocked: locked resource");
    assert!(lines[2]["error"].is_string());
}
