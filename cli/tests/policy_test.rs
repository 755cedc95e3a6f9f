//! `verdict test` (issue 14, item 1) on the real binary: every example's suite passes with full
//! rule coverage; failures show expected against actual; bad test files are refused with their
//! position; JUnit output is read back by a real XML parser into the JUnit structure; and on
//! generated bundles of hundreds of rules, every request the coverage report suggests for an
//! uncovered rule, fed back into `verdict eval`, decides by exactly that rule, every rule it
//! calls unreachable is one `verdict check` proves unreachable, and the suggested cases, added
//! to the suite, cover every reachable rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("policy-test-{name}"));
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

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn every_example_suite_passes_with_full_rule_coverage() {
    let out = verdict(Path::new(WORKSPACE), &["test", "examples", "--format", "json", "--min-coverage", "100"]);
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    let examples: BTreeSet<String> = std::fs::read_dir(Path::new(WORKSPACE).join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bundle.verdict").is_file() || p.join("bundle.yaml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let tested: BTreeSet<String> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            Path::new(f["file"].as_str().unwrap()).parent().unwrap().file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(tested, examples, "every example has a test suite");
    for cov in report["coverage"].as_array().unwrap() {
        assert_eq!(cov["rules"]["covered"], cov["rules"]["total"], "{cov:#}");
        assert!(cov["uncovered_rules"].as_array().unwrap().is_empty());
    }
    assert_eq!(report["summary"]["failed"], 0);
    assert!(report["summary"]["passed"].as_u64().unwrap() >= 60);
}

const QUICKSTART: &str = r#"bundle "edu-gate" { version "1.2.0" }
policy "writes-require-admin" {
  default deny
  rule "admin-writes" allow { when action in ["create", "update", "delete"] and subject.role == "admin" }
  rule reads allow { when action == "read" }
}
policy "locked-resources" {
  default allow
  rule locked deny {
    when resource.tags contains "locked"
    reason "blocked: locked resource"
    obligations { "notify": "owner" }
  }
}
"#;

#[test]
fn failures_show_expected_and_actual_and_set_the_exit_code() {
    let dir = scratch("failures");
    std::fs::write(dir.join("bundle.verdict"), QUICKSTART).unwrap();
    let suite = r#"bundle: bundle.verdict
now: "2026-01-05T10:00:00Z"
cases:
  - name: admins update
    context: {subject: {role: admin}, action: update}
    expect: {kind: allow, policy: writes-require-admin, rule: admin-writes, codes: []}
  - name: a wrong expectation
    context: {subject: {role: student}, action: update}
    expect: {kind: allow, rule: null}
  - name: locked
    context: {action: read, resource: {tags: [locked]}}
    expect: {kind: deny, reason: "blocked: locked resource", obligations: {notify: owner}}
"#;
    std::fs::write(dir.join("a.test.yaml"), suite).unwrap();
    let out = verdict(&dir, &["test", "a.test.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ok    admins update"), "{text}");
    assert!(text.contains("FAIL  a wrong expectation  (a.test.yaml:7)"), "{text}");
    assert!(text.contains("kind:\n          - expected \"allow\"\n          + actual   \"deny\""), "{text}");
    assert!(text.contains("2 passed, 1 failed"), "{text}");
    let out = verdict(&dir, &["test", "a.test.yaml", "--format", "json"]);
    let report = stdout_json(&out);
    let failed = &report["files"][0]["cases"][1];
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["failures"], json!([{"field": "kind", "expected": "allow", "actual": "deny"}]));
    assert!(report.get("coverage").is_none(), "coverage only when asked");
}

#[test]
fn bad_test_files_are_refused_with_their_position() {
    let dir = scratch("bad");
    std::fs::write(dir.join("bundle.verdict"), QUICKSTART).unwrap();
    // The same bundle compiled: a test file names a source, whose spans its reports point into.
    let out = verdict(&dir, &["compile", "bundle.verdict", "-o", "bundle.vdc"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let cases = [
        (
            "unknown-key",
            "bundle: bundle.verdict\ncases:\n  - name: x\n    context: {action: read}\n    colour: red\n",
            "unknown key `colour`",
        ),
        (
            "unknown-rule",
            "bundle: bundle.verdict\ncases:\n  - name: x\n    context: {action: read}\n    expect: {policy: writes-require-admin, rule: writes}\n",
            "policy `writes-require-admin` has no rule `writes`",
        ),
        (
            "unknown-effect",
            "bundle: bundle.verdict\ncases:\n  - name: x\n    context: {action: read}\n    expect: {kind: permit}\n",
            "`permit` is not an effect",
        ),
        (
            "bad-context",
            "bundle: bundle.verdict\ncases:\n  - name: x\n    context: {verb: read}\n",
            "not a request context",
        ),
        ("missing-bundle", "bundle: nowhere.verdict\ncases: []\n", "cannot read the bundle"),
        ("artifact-bundle", "bundle: bundle.vdc\ncases: []\n", "bundle.vdc is a compiled artifact"),
        ("no-cases", "bundle: bundle.verdict\n", "needs `cases`"),
    ];
    for (name, text, message) in cases {
        let file = format!("{name}.test.yaml");
        std::fs::write(dir.join(&file), text).unwrap();
        let out = verdict(&dir, &["test", &file, "--format", "json"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let report = stdout_json(&out);
        let diags = report["files"][0]["diagnostics"].as_array().unwrap();
        assert!(
            diags.iter().any(|d| d["message"].as_str().unwrap().contains(message) && d["line"].as_u64().unwrap() >= 1),
            "{name}: {diags:#?}"
        );
        // People see the diagnostic with its source line on standard error.
        let out = verdict(&dir, &["test", &file]);
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{name}");
    }
}

// ---- JUnit ---------------------------------------------------------------------------------

/// The JUnit structure (the attributes and elements Jenkins' schema gives them).
#[derive(Debug, serde::Deserialize)]
struct TestSuites {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(rename = "@errors")]
    errors: usize,
    #[serde(rename = "@time")]
    time: f64,
    #[serde(rename = "testsuite", default)]
    suites: Vec<TestSuite>,
}

#[derive(Debug, serde::Deserialize)]
struct TestSuite {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(rename = "@errors")]
    errors: usize,
    #[serde(rename = "@skipped")]
    skipped: usize,
    #[serde(rename = "@time")]
    time: f64,
    properties: Option<Properties>,
    #[serde(rename = "testcase", default)]
    cases: Vec<TestCase>,
}

#[derive(Debug, serde::Deserialize)]
struct Properties {
    #[serde(rename = "property", default)]
    items: Vec<Property>,
}

#[derive(Debug, serde::Deserialize)]
struct Property {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@value")]
    value: String,
}

#[derive(Debug, serde::Deserialize)]
struct TestCase {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@classname")]
    classname: String,
    #[serde(rename = "@time")]
    time: f64,
    failure: Option<Problem>,
    error: Option<Problem>,
    #[serde(rename = "system-out")]
    system_out: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Problem {
    #[serde(rename = "@message")]
    message: String,
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "$text", default)]
    text: String,
}

#[test]
fn junit_output_is_read_back_by_an_xml_parser() {
    let dir = scratch("junit");
    std::fs::write(dir.join("bundle.verdict"), QUICKSTART).unwrap();
    // Names with XML's special characters and a control character must survive escaping.
    let suite = "bundle: bundle.verdict\ncases:\n  - name: \"admins <update> & \\\"quote\\\" 'it'\"\n    context: {subject: {role: admin}, action: update}\n    expect: {kind: allow}\n  - name: \"wrong \\u0001 one\"\n    context: {action: share, resource: {tags: [locked]}}\n    expect: {kind: allow, reason: \"a < b\"}\n";
    std::fs::write(dir.join("a.test.yaml"), suite).unwrap();
    std::fs::write(
        dir.join("b.test.yaml"),
        "bundle: bundle.verdict\ncases:\n  - name: x\n    context: {action: read}\n    expect: {rule: nope}\n",
    )
    .unwrap();
    let out = verdict(&dir, &["test", ".", "--format", "junit", "--min-coverage", "100"]);
    assert_eq!(out.status.code(), Some(2), "a file with errors is bad input");
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), "{xml}");
    let doc: TestSuites = quick_xml::de::from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(doc.name, "verdict test");
    let names: Vec<&str> = doc.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["./a.test.yaml", "./b.test.yaml", "coverage"], "{xml}");
    for s in &doc.suites {
        assert_eq!(s.tests, s.cases.len(), "{xml}");
        assert_eq!(s.failures, s.cases.iter().filter(|c| c.failure.is_some()).count());
        assert_eq!(s.errors, s.cases.iter().filter(|c| c.error.is_some()).count());
        assert_eq!(s.skipped, 0);
        assert!(s.time >= 0.0 && s.cases.iter().all(|c| c.time >= 0.0));
    }
    assert_eq!(doc.tests, doc.suites.iter().map(|s| s.tests).sum::<usize>());
    assert_eq!(doc.failures, doc.suites.iter().map(|s| s.failures).sum::<usize>());
    assert_eq!(doc.errors, doc.suites.iter().map(|s| s.errors).sum::<usize>());
    assert!(doc.time >= 0.0);
    let a = &doc.suites[0];
    assert_eq!(a.cases[0].name, "admins <update> & \"quote\" 'it'");
    assert_eq!(a.cases[0].classname, "edu-gate");
    assert!(a.cases[0].failure.is_none());
    assert_eq!(a.cases[1].name, "wrong \u{FFFD} one");
    let failure = a.cases[1].failure.as_ref().unwrap();
    assert_eq!(failure.kind, "mismatch");
    assert!(failure.message.contains("kind: expected \"allow\", got \"deny\""), "{failure:?}");
    assert!(failure.message.contains("reason: expected \"a < b\""), "{failure:?}");
    assert!(failure.text.contains("decision: {"), "{failure:?}");
    let b = &doc.suites[1];
    let error = b.cases[0].error.as_ref().unwrap();
    assert!(error.text.contains("has no rule `nope`"), "{error:?}");
    let cov = &doc.suites[2];
    let props = cov.properties.as_ref().unwrap();
    assert!(props.items.iter().any(|p| p.name == "min_coverage" && p.value == "100"));
    assert!(props.items.iter().any(|p| p.name == "rule_coverage"));
    assert_eq!(cov.failures, 1, "coverage below the minimum fails");
    let c = &cov.cases[0];
    assert_eq!(c.failure.as_ref().unwrap().kind, "coverage");
    assert!(c.system_out.as_ref().unwrap().contains("writes-require-admin/reads"), "{c:?}");
}

// ---- generated bundles ---------------------------------------------------------------------

/// splitmix64: a deterministic generator for the bundles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const ROLES: [&str; 4] = ["admin", "editor", "viewer", "guest"];
const ACTIONS: [&str; 4] = ["read", "write", "delete", "share"];
const TAGS: [&str; 3] = ["x", "y", "z"];

fn atom(r: &mut Rng) -> String {
    let a = match r.below(8) {
        0 => format!("subject.role == \"{}\"", r.pick(&ROLES)),
        1 => format!("action == \"{}\"", r.pick(&ACTIONS)),
        2 => format!("action in [\"{}\", \"{}\"]", r.pick(&ACTIONS), r.pick(&ACTIONS)),
        3 => format!("resource.level {} {}", r.pick(&[">", ">=", "<", "<=", "=="]), r.below(10)),
        4 => format!("resource.tags contains \"{}\"", r.pick(&TAGS)),
        5 => format!("subject.name starts_with \"{}\"", r.pick(&["a", "ab", "b"])),
        6 => format!("data.region matches \"^{}-[0-9]$\"", r.pick(&["eu", "us", "(eu|us)"])),
        _ => "exists(resource.owner)".to_owned(),
    };
    if r.below(5) == 0 { format!("not ({a})") } else { a }
}

/// A bundle of `policies` × `rules` first-match rules over a small domain, so that many rules
/// are shadowed by earlier ones.
fn generated_bundle(seed: u64, policies: usize, rules: usize) -> String {
    let mut r = Rng(seed);
    let mut s = format!("bundle \"gen-{seed}\" {{ version \"1.0.0\" }}\n");
    for p in 0..policies {
        s.push_str(&format!("policy \"p{p}\" {{\n  default {}\n", r.pick(&["deny", "allow", "none"])));
        for i in 0..rules {
            let n = 1 + r.below(3);
            let joiner = if r.below(4) == 0 { " or " } else { " and " };
            let cond: Vec<String> = (0..n).map(|_| atom(&mut r)).collect();
            s.push_str(&format!("  rule r{i} {} {{ when {} }}\n", r.pick(&["deny", "allow"]), cond.join(joiner)));
        }
        s.push_str("}\n");
    }
    s
}

fn random_context(r: &mut Rng) -> Value {
    json!({
        "subject": {"role": r.pick(&ROLES), "name": r.pick(&["alice", "bob", "abe"])},
        "action": r.pick(&ACTIONS),
        "resource": {"level": r.below(10), "tags": [r.pick(&TAGS)]},
        "data": {"region": r.pick(&["eu-1", "us-2", "ap-3"])},
    })
}

/// `(policy, rule)` pairs `verdict check` proves unreachable (V001) or unsatisfiable (V002).
fn proved_unreachable(dir: &Path) -> BTreeSet<(String, String)> {
    let out = verdict(dir, &["check", "bundle.verdict", "--format", "json"]);
    let diags = stdout_json(&out);
    diags
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| matches!(d["code"].as_str(), Some("V001" | "V002")) && d["rule"].is_string())
        .map(|d| (d["policy"].as_str().unwrap().to_owned(), d["rule"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn suggested_requests_decide_by_the_uncovered_rules_on_generated_bundles() {
    for seed in [1u64, 2, 3] {
        let dir = scratch(&format!("generated-{seed}"));
        let (policies, rules) = (3, 100);
        std::fs::write(dir.join("bundle.verdict"), generated_bundle(seed, policies, rules)).unwrap();
        // A deliberately incomplete suite: a few random requests without expectations.
        let mut r = Rng(seed ^ 0xABCD);
        let mut suite = String::from("bundle: bundle.verdict\ncases:\n");
        for k in 0..5 {
            suite.push_str(&format!("  - name: random {k}\n    context: {}\n", random_context(&mut r)));
        }
        std::fs::write(dir.join("suite.test.yaml"), &suite).unwrap();
        let out = verdict(&dir, &["test", "suite.test.yaml", "--coverage", "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report = stdout_json(&out);
        let cov = &report["coverage"][0];
        let total = cov["rules"]["total"].as_u64().unwrap() as usize;
        assert_eq!(total, policies * rules);
        let uncovered = cov["uncovered_rules"].as_array().unwrap();
        assert_eq!(uncovered.len(), total - cov["rules"]["covered"].as_u64().unwrap() as usize);
        assert!(uncovered.len() > 100, "seed {seed}: the suite should leave most rules uncovered");

        let mut suggested = Vec::new();
        let mut unreachable = BTreeSet::new();
        for u in uncovered {
            let key = (u["policy"].as_str().unwrap().to_owned(), u["rule"].as_str().unwrap().to_owned());
            if let Some(s) = u.get("suggestion") {
                assert!(s.get("now").is_none(), "no effective window, no time");
                suggested.push((key, s.clone()));
            } else if u.get("unreachable").is_some() {
                unreachable.insert(key);
            } else {
                panic!("seed {seed}: the analysis decides every rule of these bundles: {u}");
            }
        }
        assert!(!suggested.is_empty() && !unreachable.is_empty(), "seed {seed}: both kinds of answers");

        // Every suggestion, evaluated by `verdict eval` on the default backend, decides by its rule.
        let lines: Vec<String> = suggested.iter().map(|(_, s)| s["context"].to_string()).collect();
        std::fs::write(dir.join("suggested.jsonl"), lines.join("\n") + "\n").unwrap();
        let out = verdict(&dir, &["eval", "bundle.verdict", "--contexts", "suggested.jsonl"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let results: Vec<Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(results.len(), suggested.len());
        for (((policy, rule), s), result) in suggested.iter().zip(&results) {
            let by_policy = result["policy_decisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["matched_policy_id"] == json!(policy))
                .unwrap_or_else(|| panic!("seed {seed}: {policy} did not decide on {s}"));
            assert_eq!(by_policy["matched_rule_id"], json!(rule), "seed {seed}: {policy}/{rule} on {s}: {result}");
            if s["decides"] == "bundle" {
                assert_eq!(result["decision"]["matched_policy_id"], json!(policy), "{s}: {result}");
                assert_eq!(result["decision"]["matched_rule_id"], json!(rule), "{s}: {result}");
            }
            let e = &s["expect"];
            assert_eq!(e["kind"], result["decision"]["kind"]);
            assert_eq!(e["rule"], result["decision"]["matched_rule_id"]);
        }

        // What the report calls unreachable, `verdict check` proves unreachable, and the reverse.
        let proved = proved_unreachable(&dir);
        assert_eq!(unreachable, proved, "seed {seed}");

        // The suggested cases, added to the suite, cover every reachable rule.
        for (k, ((policy, rule), s)) in suggested.iter().enumerate() {
            suite.push_str(&format!(
                "  - name: suggested {k} for {policy}/{rule}\n    context: {}\n    expect: {}\n",
                s["context"], s["expect"]
            ));
        }
        std::fs::write(dir.join("suite.test.yaml"), &suite).unwrap();
        let reachable = total - unreachable.len();
        let min = format!("{}", (reachable * 100 / total).saturating_sub(1));
        let out = verdict(&dir, &["test", "suite.test.yaml", "--format", "json", "--min-coverage", &min]);
        let report = stdout_json(&out);
        assert_eq!(out.status.code(), Some(0), "seed {seed}: {:#}", report["summary"]);
        let cov = &report["coverage"][0];
        assert_eq!(cov["rules"]["covered"].as_u64().unwrap() as usize, reachable, "seed {seed}");
        let left: BTreeSet<(String, String)> = cov["uncovered_rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["policy"].as_str().unwrap().to_owned(), u["rule"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(left, unreachable, "seed {seed}");
    }
}

#[test]
fn min_coverage_below_the_threshold_fails_the_run() {
    let dir = scratch("min");
    std::fs::write(dir.join("bundle.verdict"), QUICKSTART).unwrap();
    let suite = "bundle: bundle.verdict\ncases:\n  - name: admins update\n    context: {subject: {role: admin}, action: update}\n    expect: {kind: allow}\n";
    std::fs::write(dir.join("a.test.yaml"), suite).unwrap();
    // One rule of three: 33.3%.
    let out = verdict(&dir, &["test", "a.test.yaml", "--min-coverage", "34"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("rule coverage 33.3% is below the minimum of 34%"), "{text}");
    assert!(text.contains("rule `reads` of policy `writes-require-admin`"), "{text}");
    let out = verdict(&dir, &["test", "a.test.yaml", "--min-coverage", "33"]);
    assert_eq!(out.status.code(), Some(0));
    let out = verdict(&dir, &["test", "a.test.yaml", "--min-coverage", "101"]);
    assert_eq!(out.status.code(), Some(2));
}
