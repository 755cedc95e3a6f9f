//! The seed-compat corpus of the reference engine: every case, field by field.

use verdict_compiler::SourceKind;
use verdict_tests::{compare, eval_source, seed_compat};

#[test]
fn seed_compat_json_bundles() {
    let mut failures = Vec::new();
    let mut total = 0;
    for case in seed_compat() {
        let text = case.bundle.to_string();
        for (i, (ctx, expect)) in case.cases.iter().enumerate() {
            total += 1;
            match eval_source("bundle.json", &text, SourceKind::Json, ctx) {
                Ok(actual) => {
                    if let Err(e) = compare(&actual, expect) {
                        failures.push(format!("line {} case {i}: {e}", case.line));
                    }
                }
                Err(e) => failures.push(format!("line {} case {i}: {e}", case.line)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(total > 2900);
}

/// Converts a corpus bundle to another form through the IR, as `verdict convert` does.
fn convert(bundle: &serde_json::Value, to: SourceKind) -> String {
    let file = verdict_compiler::source::SourceFile::new("bundle.json", bundle.to_string());
    let compiled = verdict_compiler::compile_as(&file, SourceKind::Json);
    let Some(b) = compiled.bundle else { return String::new() };
    match to {
        SourceKind::Verdict => verdict_compiler::emit::to_dsl(&b),
        SourceKind::Yaml => verdict_compiler::emit::yaml(&verdict_compiler::emit::to_json(&b)),
        SourceKind::Json => verdict_compiler::emit::to_json(&b).to_string(),
    }
}

fn check_converted(to: SourceKind, name: &str) {
    let mut failures = Vec::new();
    for case in seed_compat() {
        let text = convert(&case.bundle, to);
        for (i, (ctx, expect)) in case.cases.iter().enumerate() {
            match eval_source(name, &text, to, ctx) {
                Ok(actual) => {
                    if let Err(e) = compare(&actual, expect) {
                        failures.push(format!("line {} case {i}: {e}\n{text}", case.line));
                    }
                }
                Err(e) => failures.push(format!("line {} case {i}: {e}\n{text}", case.line)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn seed_compat_converted_to_verdict() {
    check_converted(SourceKind::Verdict, "bundle.verdict");
}

#[test]
fn seed_compat_converted_to_yaml() {
    check_converted(SourceKind::Yaml, "bundle.yaml");
}

#[test]
fn fmt_is_idempotent_and_fingerprints_survive_conversion() {
    for case in seed_compat() {
        let text = convert(&case.bundle, SourceKind::Verdict);
        let once = verdict_compiler::format::format_verdict(&text).unwrap_or_default();
        assert_eq!(once, text, "canonical output is already formatted (line {})", case.line);
        let twice = verdict_compiler::format::format_verdict(&once).unwrap_or_default();
        assert_eq!(once, twice, "fmt is idempotent (line {})", case.line);
        let fp = |name: &str, t: &str, kind| {
            let f = verdict_compiler::source::SourceFile::new(name, t);
            verdict_compiler::compile_as(&f, kind).bundle.map(|b| verdict_compiler::emit::fingerprint(&b))
        };
        let a = fp("b.json", &case.bundle.to_string(), SourceKind::Json);
        let b = fp("b.verdict", &text, SourceKind::Verdict);
        assert!(a.is_some());
        assert_eq!(a, b, "equal bundles give equal fingerprints (line {})", case.line);
    }
}
