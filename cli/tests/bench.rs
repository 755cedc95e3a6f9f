//! `verdict bench` on the real binary (issue 14, item 2): the JSON report's shape (every backend,
//! every percentile, in order), artifacts and sources, stateful bundles, and the regression gate
//! of `--compare` — judged against baselines made far better or far worse than any machine, so
//! no assertion depends on how fast this one is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn verdict(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn report(args: &[&str]) -> Value {
    let out = verdict(args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_shape(r: &Value, backends: &[&str]) {
    let rows = r["backends"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|b| b["backend"].as_str().unwrap()).collect();
    assert_eq!(names, backends);
    for b in rows {
        assert!(b["decisions"].as_u64().unwrap() > 0, "{b}");
        assert!(b["decisions_per_sec"].as_f64().unwrap() > 0.0, "{b}");
        let l = &b["latency_ns"];
        let q: Vec<u64> = ["min", "p50", "p95", "p99", "p99_9", "max"].iter().map(|k| l[k].as_u64().unwrap()).collect();
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "percentiles in order: {l}");
        assert!(q[0] >= 1);
        if r["stateful"] == false {
            assert!(b["batched_median_ns"].as_u64().unwrap() >= 1, "{b}");
        }
    }
    assert!(r["timer_overhead_ns"].is_u64());
}

#[test]
fn reports_every_backend_of_a_source_and_the_engines_of_an_artifact() {
    let r = report(&[
        "bench",
        "bench/w52/bundle.verdict",
        "bench/w52/requests.jsonl",
        "--duration",
        "200ms",
        "--format",
        "json",
    ]);
    check_shape(&r, &["jit", "vm", "interp"]);
    assert_eq!(
        (r["bundle_id"].as_str(), r["requests"].as_u64(), r["input"].as_str()),
        (Some("w52"), Some(3), Some("json"))
    );
    for input in ["parsed", "prepared"] {
        let r = report(&[
            "bench",
            "bench/w52/bundle.verdict",
            "bench/w52/requests.jsonl",
            "--duration",
            "100ms",
            "--format",
            "json",
            "--input",
            input,
            "--backend",
            "vm",
            "--backend",
            "interp",
        ]);
        check_shape(&r, &["vm", "interp"]);
        assert_eq!(r["input"], input);
    }
    let dir = scratch("artifact");
    let vdc = dir.join("w52.vdc");
    assert_eq!(verdict(&["compile", "bench/w52/bundle.verdict", "-o", vdc.to_str().unwrap()]).status.code(), Some(0));
    let r = report(&[
        "bench",
        vdc.to_str().unwrap(),
        "bench/w52/requests.jsonl",
        "--duration",
        "100ms",
        "--format",
        "json",
    ]);
    check_shape(&r, &["jit", "vm"]);
    let out = verdict(&[
        "bench",
        vdc.to_str().unwrap(),
        "bench/w52/requests.jsonl",
        "--backend",
        "interp",
        "--duration",
        "100ms",
    ]);
    assert_eq!(out.status.code(), Some(2), "the interpreter needs the source");
}

#[test]
fn stateful_and_extern_bundles_are_measured_from_their_example_files() {
    let r = report(&[
        "bench",
        "examples/spend/bundle.yaml",
        "examples/spend/events.jsonl",
        "--duration",
        "100ms",
        "--format",
        "json",
        "--now",
        "2025-03-20T10:00:00Z",
    ]);
    check_shape(&r, &["jit", "vm", "interp"]);
    assert_eq!(r["stateful"], true);
    let dir = scratch("externs");
    let mocks = dir.join("externs.json");
    std::fs::write(&mocks, r#"{"no_pii": true, "safe_path": true, "within_quota": true, "toxicity": 0.1}"#).unwrap();
    let r = report(&[
        "bench",
        "examples/guard/bundle.yaml",
        "examples/guard/requests.jsonl",
        "--duration",
        "100ms",
        "--format",
        "json",
        "--externs",
        mocks.to_str().unwrap(),
        "--backend",
        "vm",
    ]);
    check_shape(&r, &["vm"]);
    // People get a table with every percentile.
    let out = verdict(&[
        "bench",
        "examples/quickstart/bundle.verdict",
        "examples/quickstart/cases.jsonl",
        "--duration",
        "100ms",
        "--backend",
        "vm",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("decisions/s")
            && text.contains("p99.9")
            && text.contains("batched")
            && text.lines().any(|l| l.starts_with("vm ")),
        "{text}"
    );
}

#[test]
fn compare_fails_on_regressions_beyond_the_allowance() {
    let dir = scratch("compare");
    let args =
        ["bench", "bench/w52/bundle.verdict", "bench/w52/requests.jsonl", "--duration", "100ms", "--backend", "vm"];
    let mut current = report(&[&args[..], &["--format", "json"]].concat());
    // A baseline no machine can match: every latency 1 ns.
    for b in current["backends"].as_array_mut().unwrap() {
        for v in b["latency_ns"].as_object_mut().unwrap().values_mut() {
            *v = json!(1);
        }
    }
    let fast = dir.join("fast.json");
    std::fs::write(&fast, current.to_string()).unwrap();
    let out = verdict(&[&args[..], &["--compare", fast.to_str().unwrap(), "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cmp = r["comparison"].as_array().unwrap();
    assert_eq!(cmp.len(), 2, "p50 and p99 of the one backend: {cmp:?}");
    assert!(cmp.iter().all(|c| c["regressed"] == true && c["backend"] == "vm"));
    let out = verdict(&[&args[..], &["--compare", fast.to_str().unwrap()]].concat());
    assert!(String::from_utf8_lossy(&out.stdout).contains("REGRESSION"));
    // A baseline no machine can miss: every latency an hour.
    for b in current["backends"].as_array_mut().unwrap() {
        for v in b["latency_ns"].as_object_mut().unwrap().values_mut() {
            *v = json!(3_600_000_000_000u64);
        }
    }
    let slow = dir.join("slow.json");
    std::fs::write(&slow, current.to_string()).unwrap();
    let out = verdict(&[&args[..], &["--compare", slow.to_str().unwrap(), "--max-regress", "0"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Bad input.
    std::fs::write(dir.join("not-a-report.json"), "{}").unwrap();
    for bad in [
        vec!["--compare", dir.join("not-a-report.json").to_str().unwrap()],
        vec!["--duration", "0s"],
        vec!["--duration", "soon"],
        vec!["--max-regress", "-1"],
    ] {
        let out = verdict(&[&args[..], &bad.iter().map(|s| &**s).collect::<Vec<_>>()[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    assert_eq!(verdict(&["bench", "bench/w52/bundle.verdict", empty.to_str().unwrap()]).status.code(), Some(2));
}
