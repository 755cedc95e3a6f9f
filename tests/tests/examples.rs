//! The bundles under `examples/`: every bundle file of every example compiles without errors,
//! every case of its `cases.jsonl` gives the expected decision, the cases reach every rule and
//! every non-`none` default, and the source forms of one example are the same bundle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use verdict_compiler::diagnostic::Severity;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// The file names a bundle may be written in, in the order they are compiled.
const BUNDLE_FILES: [&str; 4] = ["bundle.yaml", "bundle.yml", "bundle.json", "bundle.verdict"];

/// The keys a request context may have.
const CONTEXT_KEYS: [&str; 4] = ["subject", "action", "resource", "data"];

struct Example {
    dir: PathBuf,
    name: String,
}

fn examples() -> Vec<Example> {
    let mut out: Vec<Example> = fs::read_dir(EXAMPLES)
        .unwrap_or_else(|e| panic!("cannot read {EXAMPLES}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.join("cases.jsonl").is_file())
        .map(|dir| Example { name: dir.file_name().unwrap().to_string_lossy().into_owned(), dir })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Compiles one bundle file; every error (and its line) goes into `failures`.
fn compile_file(path: &Path, failures: &mut Vec<String>) -> Option<Bundle> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(path).unwrap();
    let file = SourceFile::new(name, text);
    let compiled = verdict_compiler::compile(&file);
    let errors: Vec<String> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let (line, col) = file.line_col(d.span.start);
            format!("{}:{line}:{col}: error[{:?}]: {}", path.display(), d.code, d.message)
        })
        .collect();
    for d in compiled.diagnostics.iter().filter(|d| d.severity != Severity::Error) {
        let (line, col) = file.line_col(d.span.start);
        eprintln!("{}:{line}:{col}: {}[{:?}]: {}", path.display(), d.severity.as_str(), d.code, d.message);
    }
    if !errors.is_empty() {
        failures.extend(errors);
        return None;
    }
    match compiled.bundle {
        Some(b) => Some(b),
        None => {
            failures.push(format!("{}: no bundle and no error", path.display()));
            None
        }
    }
}

/// One line of `cases.jsonl`.
struct CaseLine {
    line: usize,
    context: Value,
    expect: Value,
}

fn cases(dir: &Path, failures: &mut Vec<String>) -> Vec<CaseLine> {
    let path = dir.join("cases.jsonl");
    let Ok(text) = fs::read_to_string(&path) else {
        failures.push(format!("{}: missing", path.display()));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}:{}: not JSON: {e}", path.display(), i + 1));
                continue;
            }
        };
        let (Some(context), Some(expect)) = (v.get("context"), v.get("expect")) else {
            failures.push(format!("{}:{}: needs `context` and `expect`", path.display(), i + 1));
            continue;
        };
        if let Some(ctx) = context.as_object()
            && let Some(k) = ctx.keys().find(|k| !CONTEXT_KEYS.contains(&k.as_str()))
        {
            failures.push(format!("{}:{}: context key `{k}` is not one of {CONTEXT_KEYS:?}", path.display(), i + 1));
        }
        if !expect["decision"].is_object() {
            failures.push(format!("{}:{}: `expect.decision` must be an object", path.display(), i + 1));
            continue;
        }
        out.push(CaseLine { line: i + 1, context: context.clone(), expect: expect.clone() });
    }
    if out.is_empty() {
        failures.push(format!("{}: no cases", path.display()));
    }
    out
}

/// Every field the expectation gives equals the actual one.
fn compare_fields(what: &str, actual: &Value, expect: &Value) -> Result<(), String> {
    let Some(fields) = expect.as_object() else {
        return Err(format!("{what}: expectation is not an object"));
    };
    for (k, want) in fields {
        let got = &actual[k.as_str()];
        if got != want {
            return Err(format!("{what}.{k}: got {got} want {want}"));
        }
    }
    Ok(())
}

fn check_case(actual: &Value, expect: &Value) -> Result<(), String> {
    compare_fields("decision", &actual["decision"], &expect["decision"])?;
    if let Some(want) = expect.get("policy_decisions") {
        let (Some(got), Some(want)) = (actual["policy_decisions"].as_array(), want.as_array()) else {
            return Err("policy_decisions: not a list".into());
        };
        if got.len() != want.len() {
            return Err(format!("policy_decisions: got {} decisions want {}", got.len(), want.len()));
        }
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            compare_fields(&format!("policy_decisions[{i}]"), g, w)?;
        }
    }
    Ok(())
}

#[test]
fn examples_give_their_expected_decisions() {
    let all = examples();
    assert!(all.len() >= 5, "expected the example folders under {EXAMPLES}, found {}", all.len());
    let mut failures: Vec<String> = Vec::new();
    let mut total = 0;
    for ex in &all {
        let files: Vec<PathBuf> = BUNDLE_FILES.iter().map(|f| ex.dir.join(f)).filter(|p| p.is_file()).collect();
        if files.is_empty() {
            failures.push(format!("{}: no bundle file", ex.name));
            continue;
        }
        let bundles: Vec<(String, Bundle)> = files
            .iter()
            .filter_map(|p| {
                let b = compile_file(p, &mut failures)?;
                Some((p.file_name().unwrap().to_string_lossy().into_owned(), b))
            })
            .collect();
        if bundles.len() != files.len() {
            continue;
        }
        let interps: Vec<(&str, Interpreter<'_>)> = bundles
            .iter()
            .filter_map(|(n, b)| match Interpreter::new(b) {
                Ok(i) => Some((n.as_str(), i)),
                Err(e) => {
                    failures.push(format!("{}/{n}: cannot prepare: {e}", ex.name));
                    None
                }
            })
            .collect();
        if interps.len() != bundles.len() {
            continue;
        }

        // The source forms of one example are one bundle.
        if let Some((first_name, first)) = interps.first() {
            for (n, i) in interps.iter().skip(1) {
                if i.fingerprint() != first.fingerprint() {
                    failures.push(format!(
                        "{}: {n} and {first_name} have different fingerprints ({} vs {})",
                        ex.name,
                        i.fingerprint(),
                        first.fingerprint()
                    ));
                }
            }
        }

        let cases = cases(&ex.dir, &mut failures);

        // `ctx.json`, when present, is one of the cases.
        let ctx_path = ex.dir.join("ctx.json");
        if ctx_path.is_file() {
            let ctx: Value = serde_json::from_str(&fs::read_to_string(&ctx_path).unwrap())
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", ctx_path.display()));
            if !cases.iter().any(|c| c.context == ctx) {
                failures.push(format!("{}: ctx.json is not among the cases of cases.jsonl", ex.name));
            }
        }

        // (policy, rule or None for the default) reached by some case, per bundle file.
        let mut reached: BTreeSet<(String, Option<String>)> = BTreeSet::new();
        for case in &cases {
            let req = match Request::from_value(case.context.clone()) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{}/cases.jsonl:{}: bad context: {e}", ex.name, case.line));
                    continue;
                }
            };
            for (n, interp) in &interps {
                total += 1;
                let actual = interp.evaluate(&req, &Env::at(jiff::Timestamp::now()), Mode::PLAIN).to_json();
                if let Err(e) = check_case(&actual, &case.expect) {
                    failures.push(format!(
                        "{}/cases.jsonl:{} with {n}: {e}\n  got decision {}",
                        ex.name, case.line, actual["decision"]
                    ));
                }
                for d in actual["policy_decisions"].as_array().into_iter().flatten() {
                    if let Some(p) = d["matched_policy_id"].as_str() {
                        reached.insert((p.to_owned(), d["matched_rule_id"].as_str().map(str::to_owned)));
                    }
                }
            }
        }

        // The cases cover every rule and every default that can decide.
        if let Some((_, b)) = bundles.first() {
            for p in &b.policies {
                for r in &p.rules {
                    if !reached.contains(&(p.id.clone(), Some(r.id.clone()))) {
                        failures.push(format!("{}: no case reaches rule `{}` of policy `{}`", ex.name, r.id, p.id));
                    }
                }
                if !reached.contains(&(p.id.clone(), None)) {
                    failures.push(format!("{}: no case reaches the default of policy `{}`", ex.name, p.id));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) in examples ({total} evaluations):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 0);
}

/// Every `.verdict` example is written in the canonical layout of `verdict fmt`
/// (`VERDICT_BLESS=1` rewrites them in it).
#[test]
fn verdict_examples_are_formatted() {
    let mut failures = Vec::new();
    for ex in examples() {
        let path = ex.dir.join("bundle.verdict");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let parsed = verdict_grammar::parse_file(&text);
        if !parsed.errors.is_empty() {
            failures.push(format!("{}: syntax errors", path.display()));
            continue;
        }
        let printed = verdict_grammar::printer::print_file(&parsed.tree, &parsed.comments);
        if printed != text {
            if std::env::var_os("VERDICT_BLESS").is_some() {
                fs::write(&path, &printed).unwrap();
                continue;
            }
            failures.push(format!("{} is not in canonical layout; `verdict fmt` gives:\n{printed}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
