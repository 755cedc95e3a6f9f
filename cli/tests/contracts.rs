//! The frozen contracts (issue 14, item 3): `verdict schema NAME` prints `contracts/NAME.schema.json`
//! byte for byte, every file is a valid JSON Schema 2020-12, and what the toolchain produces
//! validates against them — every example's requests, decisions (plain, traced, exhaustive,
//! stateful, gated) and test suite, every example and conformance bundle (as written and as the
//! compiler emits it), and every audit line `verdict serve` writes — while instances that break
//! a contract are refused, so the schemas are not vacuous.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CONTRACTS: [&str; 5] = ["request", "decision", "audit-event", "bundle", "test"];

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("contracts-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn verdict(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn contract_text(name: &str) -> String {
    std::fs::read_to_string(Path::new(WORKSPACE).join("contracts").join(format!("{name}.schema.json"))).unwrap()
}

fn validator(name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&contract_text(name)).unwrap();
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts that `instance` satisfies the contract, listing every violation otherwise.
fn valid(v: &jsonschema::Validator, what: &str, instance: &Value) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{instance:#}");
}

fn invalid(v: &jsonschema::Validator, what: &str, instance: &Value) {
    assert!(!v.is_valid(instance), "{what} should break the contract: {instance}");
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(Path::new(WORKSPACE).join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bundle.verdict").is_file() || p.join("bundle.yaml").is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn schema_prints_the_committed_files_and_they_are_2020_12_schemas() {
    for name in CONTRACTS {
        let out = verdict(Path::new(WORKSPACE), &["schema", name]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let committed = contract_text(name);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            committed,
            "`verdict schema {name}` differs from contracts/"
        );
        let schema: Value = serde_json::from_str(&committed).unwrap();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"));
        assert!(schema["title"].is_string() && schema["description"].is_string(), "{name}");
    }
    let listed: Vec<String> = std::fs::read_dir(Path::new(WORKSPACE).join("contracts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed.len(), CONTRACTS.len(), "every contract file has a `verdict schema` name: {listed:?}");
    assert_eq!(verdict(Path::new(WORKSPACE), &["schema", "policy"]).status.code(), Some(2));
}

/// Every request context of the examples (cases, requests, events, test suites).
fn example_contexts() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in examples() {
        for file in ["cases.jsonl", "requests.jsonl", "events.jsonl"] {
            let path = dir.join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                for (i, line) in json_lines(&bytes).into_iter().enumerate() {
                    out.push((format!("{}:{}", path.display(), i + 1), line["context"].clone()));
                }
            }
        }
    }
    out
}

#[test]
fn requests_validate_and_malformed_ones_do_not() {
    let v = validator("request");
    let contexts = example_contexts();
    assert!(contexts.len() > 100);
    for (what, ctx) in &contexts {
        valid(&v, what, ctx);
    }
    valid(&v, "empty", &json!({}));
    valid(&v, "nulls", &json!({"subject": null, "action": null, "resource": null}));
    invalid(&v, "an unknown key", &json!({"subject": {}, "verb": "read"}));
    invalid(&v, "a number action", &json!({"action": 3}));
    invalid(&v, "a list data", &json!({"data": []}));
}

/// A bundle every gate of a trace can show: an effective window, a card scope and a schema.
const GATED: &str = r#"bundle_id: gated
effective_from: "2026-01-01T00:00:00Z"
effective_until: "2027-01-01T00:00:00Z"
card_scope: {vendor_id: v-1, allowed_actions: [use], condition_ids: [dpa]}
schema: {amount: number, conditions_satisfied.dpa: bool}
required: [amount]
definitions:
  big: "amount > 100"
policies:
  - id: p
    default_effect: allow
    rules:
      - {id: big, effect: deny, when: "big and big", codes: [BIG], obligations: {notify: owner}}
      - {id: dpa, effect: deny, when: {kind: not, matcher: {kind: eq, field: conditions_satisfied.dpa, value: true}}}
"#;

#[test]
fn decisions_traces_and_exhaustive_results_validate() {
    let v = validator("decision");
    let mut checked = 0;
    let mut run = |dir: &Path, args: &[&str], what: &str| {
        let out = verdict(dir, args);
        assert!(out.status.code().is_some_and(|c| c < 2), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        for (i, r) in json_lines(&out.stdout).into_iter().enumerate() {
            valid(&v, &format!("{what} line {}", i + 1), &r);
            checked += 1;
        }
    };
    for dir in examples() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let bundle = if dir.join("bundle.yaml").is_file() { "bundle.yaml" } else { "bundle.verdict" };
        // Requests and cases are written as bare contexts; guard's requests bind externs per
        // line: the first line's mocks serve for all.
        let scratch_dir = scratch(&format!("eval-{name}"));
        let mut flags: Vec<String> = Vec::new();
        let lines = ["requests.jsonl", "cases.jsonl"]
            .iter()
            .find_map(|f| std::fs::read(dir.join(f)).ok())
            .map(|b| json_lines(&b));
        if let Some(lines) = lines {
            let contexts = scratch_dir.join("contexts.jsonl");
            let text: Vec<String> = lines.iter().map(|l| l["context"].to_string()).collect();
            std::fs::write(&contexts, text.join("\n")).unwrap();
            flags = vec!["--contexts".into(), contexts.display().to_string()];
            if !lines[0]["externs"].is_null() {
                let mocks = scratch_dir.join("externs.json");
                std::fs::write(&mocks, lines[0]["externs"].to_string()).unwrap();
                flags.extend(["--externs".into(), mocks.display().to_string()]);
            }
        } else if dir.join("events.jsonl").is_file() {
            flags = vec!["--events".into(), "events.jsonl".into()];
        }
        for mode in
            [&[][..], &["--trace"][..], &["--exhaustive"][..], &["--trace", "--exhaustive", "--backend", "interp"][..]]
        {
            let mut args = vec!["eval", bundle];
            args.extend(flags.iter().map(String::as_str));
            args.extend(mode);
            run(&dir, &args, &format!("{name} {mode:?}"));
        }
    }
    // Every gate, and the schema gate's refusal.
    let dir = scratch("gated");
    std::fs::write(dir.join("bundle.yaml"), GATED).unwrap();
    let contexts = [
        json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"amount": 500, "conditions_satisfied": {"dpa": true}}}),
        json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"amount": "500"}}),
        json!({"action": "use", "resource": {"vendor_id": "v-2"}, "data": {"amount": 5}}),
        json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"amount": 5}}),
    ];
    let text: Vec<String> = contexts.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("c.jsonl"), text.join("\n")).unwrap();
    for now in ["2025-06-01T00:00:00Z", "2026-06-01T00:00:00Z"] {
        for backend in ["jit", "vm", "interp"] {
            let args = [
                "eval",
                "bundle.yaml",
                "--contexts",
                "c.jsonl",
                "--trace",
                "--exhaustive",
                "--now",
                now,
                "--backend",
                backend,
            ];
            run(&dir, &args, &format!("gated {now} {backend}"));
        }
    }
    // The results `verdict test` reports are decisions too.
    let out = verdict(Path::new(WORKSPACE), &["test", "examples", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in report["files"].as_array().unwrap() {
        for c in f["cases"].as_array().unwrap() {
            valid(&v, c["name"].as_str().unwrap(), &c["result"]);
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");

    let good = json!({"bundle_id": "b", "bundle_version": "1", "fingerprint": format!("sha256:{}", "0".repeat(64)),
        "decision": {"kind": "allow", "matched_policy_id": null, "matched_rule_id": null, "reason": "r", "codes": [], "obligations": {}},
        "policy_decisions": []});
    valid(&v, "minimal", &good);
    let mut bad = good.clone();
    bad["decision"].as_object_mut().unwrap().remove("kind");
    invalid(&v, "a decision without kind", &bad);
    let mut bad = good.clone();
    bad["matches"] = json!([{"policy_id": "p", "rule_id": "r"}]);
    invalid(&v, "a match with neither effect nor error", &bad);
    let mut bad = good;
    bad["trace"] = json!([{"gate": "moon", "passed": true}]);
    invalid(&v, "an unknown gate", &bad);
}

#[test]
fn bundles_validate_as_written_and_as_emitted() {
    let v = validator("bundle");
    let mut checked = 0;
    for dir in examples() {
        for name in ["bundle.yaml", "bundle.verdict"] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let file = verdict_compiler::source::SourceFile::new(path.display().to_string(), text.clone());
            let compiled = verdict_compiler::compile(&file);
            let bundle = compiled.bundle.unwrap_or_else(|| panic!("{}", path.display()));
            valid(&v, &format!("{} emitted", path.display()), &verdict_compiler::emit::to_json(&bundle));
            if name == "bundle.yaml" {
                let doc = verdict_compiler::yaml::load_yaml(&text).unwrap().to_json().unwrap();
                valid(&v, &path.display().to_string(), &doc);
            }
            checked += 1;
        }
    }
    let corpus = std::fs::read(Path::new(WORKSPACE).join("tests/conformance/seed-compat.jsonl")).unwrap();
    let r = validator("request");
    for (i, line) in json_lines(&corpus).into_iter().enumerate() {
        valid(&v, &format!("seed-compat.jsonl:{}", i + 1), &line["bundle"]);
        for c in line["cases"].as_array().unwrap() {
            valid(&r, &format!("seed-compat.jsonl:{} context", i + 1), &c["context"]);
        }
        checked += 1;
    }
    let gated = verdict_compiler::yaml::load_yaml(GATED).unwrap().to_json().unwrap();
    valid(&v, "gated", &gated);
    assert!(checked > 400, "{checked}");

    let mut bad = gated.clone();
    bad["colour"] = json!("red");
    invalid(&v, "an unknown bundle key", &bad);
    let mut bad = gated.clone();
    bad["policies"][0]["rules"][0].as_object_mut().unwrap().remove("when");
    invalid(&v, "a rule without `when`", &bad);
    let mut bad = gated.clone();
    bad["policies"][0]["rules"][1]["when"]["matcher"] = json!({"kind": "eq", "field": "x"});
    invalid(&v, "an `eq` without a value", &bad);
    let mut bad = gated;
    bad["schema"]["amount"] = json!("numeric");
    invalid(&v, "an unknown type", &bad);
}

#[test]
fn test_files_validate() {
    let v = validator("test");
    let mut n = 0;
    for dir in examples() {
        let path = dir.join("bundle.test.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../contracts/test.schema.json\n"),
            "{}: the modeline",
            path.display()
        );
        let doc = verdict_compiler::yaml::load_yaml(&text).unwrap().to_json().unwrap();
        valid(&v, &path.display().to_string(), &doc);
        n += 1;
    }
    assert!(n >= 8);
    invalid(&v, "no cases", &json!({"bundle": "b.yaml"}));
    invalid(
        &v,
        "an unknown expectation",
        &json!({"bundle": "b", "cases": [{"name": "x", "context": {}, "expect": {"colour": 1}}]}),
    );
    invalid(
        &v,
        "a bad `then`",
        &json!({"bundle": "b", "cases": [{"name": "x", "context": {}, "events": [{"context": {}, "then": "keep"}]}]}),
    );
}

// ---- audit lines ---------------------------------------------------------------------------

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";

fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn every_audit_line_and_served_bundle_validates() {
    let dir = scratch("audit");
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let quickstart = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    std::fs::write(watched.join("quickstart.yaml"), &quickstart).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--audit", audit.to_str().unwrap(), "--poll-ms", "100"])
        .args(["--watch", watched.to_str().unwrap()])
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        if let Some(a) = line.strip_prefix("verdict serve: listening on http://") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let decisions = validator("decision");
    let bundles = validator("bundle");
    // Registrations, a replacement, evaluations of every kind, a condition assertion.
    let gated = verdict_compiler::yaml::load_yaml(GATED).unwrap().to_json().unwrap().to_string();
    let (status, body) = http(addr, "POST", "/bundles", Some(ADMIN), &gated);
    assert_eq!(status, 201, "{body}");
    let (status, _) = http(addr, "PUT", "/bundles/gated", Some(ADMIN), &gated);
    assert!(status == 200 || status == 201, "{status}");
    let until = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
    let (status, body) = http(
        addr,
        "PUT",
        "/bundles/gated/conditions/dpa",
        Some(ADMIN),
        &json!({"satisfied": true, "valid_until": until.to_string()}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    for ctx in example_contexts().iter().take(40) {
        for path in ["/bundles/edu-gate/evaluate", "/bundles/gated/evaluate"] {
            let (status, body) = http(addr, "POST", path, Some(EVAL), &ctx.1.to_string());
            if status == 200 {
                valid(&decisions, &format!("{path} on {}", ctx.0), &body);
            }
        }
    }
    let (status, body) = http(
        addr,
        "POST",
        "/evaluate",
        Some(ADMIN),
        &json!({"bundle": verdict_compiler::yaml::load_yaml(&quickstart).unwrap().to_json().unwrap(), "context": {"action": "read"}})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    valid(&decisions, "/evaluate", &body);
    for id in ["edu-gate", "gated"] {
        let (status, body) = http(addr, "GET", &format!("/bundles/{id}"), Some(ADMIN), "");
        assert_eq!(status, 200);
        valid(&bundles, &format!("GET /bundles/{id}"), &body);
    }
    // A reload, a rejected file and a removal.
    std::fs::write(watched.join("quickstart.yaml"), quickstart.replace("1.2.0", "1.3.0")).unwrap();
    std::fs::write(watched.join("broken.yaml"), "bundle_id: broken\npolicies: []\n").unwrap();
    let mut seen = Vec::new();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        seen = std::fs::read_to_string(&audit).unwrap_or_default().lines().map(str::to_owned).collect();
        if seen.iter().any(|l| l.contains("bundle_reloaded")) && seen.iter().any(|l| l.contains("bundle_rejected")) {
            break;
        }
    }
    std::fs::remove_file(watched.join("quickstart.yaml")).unwrap();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        if std::fs::read_to_string(&audit).unwrap_or_default().contains("bundle_removed") {
            break;
        }
    }
    let _ = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", child.id())).status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let v = validator("audit-event");
    let lines = json_lines(&std::fs::read(&audit).unwrap());
    let mut events: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        valid(&v, &format!("audit line {}", i + 1), line);
        events.push(line["event"].as_str().unwrap().to_owned());
    }
    events.sort();
    events.dedup();
    let expected = [
        "bundle_loaded",
        "bundle_registered",
        "bundle_rejected",
        "bundle_reloaded",
        "bundle_removed",
        "bundle_replaced",
        "condition_asserted",
        "evaluation",
        "evaluation_inputs",
    ];
    assert_eq!(events, expected, "{seen:#?}");
    let evaluation = lines.iter().find(|l| l["event"] == "evaluation").unwrap().clone();
    let mut bad = evaluation.clone();
    bad.as_object_mut().unwrap().remove("correlation_id");
    invalid(&v, "an evaluation without a correlation id", &bad);
    let mut bad = evaluation.clone();
    bad["caller"] = json!("root");
    invalid(&v, "an unknown caller", &bad);
    let mut bad = evaluation;
    bad.as_object_mut().unwrap().remove("input");
    invalid(&v, "an evaluation without its input", &bad);
    let mut bad = lines.iter().find(|l| l["event"] == "evaluation_inputs").unwrap().clone();
    bad["paths"] = json!("subject.role");
    invalid(&v, "inputs whose paths are not a list", &bad);
    invalid(&v, "no event", &json!({"time": "2026-01-01T00:00:00Z"}));
}
