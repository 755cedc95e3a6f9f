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
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(total > 2900);
}
