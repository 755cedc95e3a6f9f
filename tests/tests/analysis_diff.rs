//! `diff` on the conformance bundles (every third one): every bundle is equivalent to itself and to its `.verdict`
//! conversion, and against mutated copies (an effect flipped, a constant changed, a rule
//! removed, `eq` turned into `ne`, a default changed, rules reversed, `combine first`) every
//! reported transition is re-evaluated on both bundles by the interpreter; every "equivalent"
//! verdict survives a random search.
#![allow(clippy::panic, clippy::unwrap_used, clippy::indexing_slicing, reason = "test failures")]

use serde_json::{Value, json};
use verdict_compiler::analysis::{Options, diff};
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as, emit};
use verdict_tests::analysis::{Rng, check_equivalent, verify_diff};
use verdict_tests::seed_compat;

fn compile(v: &Value) -> Option<Bundle> {
    compile_as(&SourceFile::new("b.json", v.to_string()), SourceKind::Json).bundle
}

/// The first matcher with a `value` in a condition tree, depth first.
fn first_value(m: &mut Value) -> Option<&mut Value> {
    if m.get("value").is_some() {
        return m.get_mut("value");
    }
    if m.get("matcher").is_some() {
        return m.get_mut("matcher").and_then(first_value);
    }
    m.get_mut("matchers")?.as_array_mut()?.iter_mut().find_map(first_value)
}

fn first_kind(m: &mut Value, from: &str) -> Option<()> {
    if m["kind"] == from {
        m["kind"] = json!(if from == "eq" { "ne" } else { "eq" });
        return Some(());
    }
    if m.get("matcher").is_some() {
        return first_kind(&mut m["matcher"], from);
    }
    m.get_mut("matchers")?.as_array_mut()?.iter_mut().find_map(|x| first_kind(x, from))
}

/// One mutation of a reference-format bundle (kind `k`), at a random policy and rule.
fn mutate(b: &Value, k: usize, rng: &mut Rng) -> Value {
    let mut m = b.clone();
    let np = m["policies"].as_array().map_or(0, Vec::len);
    let p = rng.below(np);
    let nr = m["policies"][p]["rules"].as_array().map_or(0, Vec::len);
    let r = rng.below(nr);
    let rule = &mut m["policies"][p]["rules"][r];
    match k {
        0 => rule["effect"] = json!(if rule["effect"] == "allow" { "deny" } else { "allow" }),
        1 => {
            if let Some(v) = first_value(&mut rule["when"]) {
                *v = match v.clone() {
                    Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) + 1.0),
                    Value::String(s) => json!(format!("{s}x")),
                    Value::Array(mut a) => {
                        a.pop();
                        json!(a)
                    }
                    other => other,
                };
            }
        }
        2 => {
            if nr > 1
                && let Some(a) = m["policies"][p]["rules"].as_array_mut()
            {
                a.remove(r);
            }
        }
        3 => {
            let _ = first_kind(&mut rule["when"], "eq").or_else(|| first_kind(&mut rule["when"], "ne"));
        }
        4 => {
            let d = m["policies"][p]["default_effect"].clone();
            m["policies"][p]["default_effect"] = json!(match d.as_str() {
                Some("none") => "deny",
                Some("deny") | None => "allow",
                _ => "none",
            });
        }
        5 => {
            if let Some(a) = m["policies"][p]["rules"].as_array_mut() {
                a.reverse();
            }
        }
        _ => m["combine"] = json!("first"),
    }
    m
}

#[test]
fn diff_on_the_conformance_corpus() {
    let mut rng = Rng(42);
    let (mut transitions, mut equivalent, mut differ) = (0, 0, 0);
    for case in seed_compat().iter().step_by(3) {
        let Some(old) = compile(&case.bundle) else { continue };
        let same = diff(&old, &old, &Options::default());
        assert!(same.equivalent(), "line {}: a bundle differs from itself: {same:?}", case.line);
        let text = emit::to_dsl(&old);
        let dsl = compile_as(&SourceFile::new("b.verdict", text), SourceKind::Verdict).bundle.unwrap();
        assert!(diff(&old, &dsl, &Options::default()).equivalent(), "line {}: conversion changed it", case.line);
        for k in 0..7 {
            let mutated = mutate(&case.bundle, k, &mut rng);
            let Some(new) = compile(&mutated) else { continue };
            let report = diff(&old, &new, &Options::default());
            assert!(!report.undecided, "line {} mutation {k}: undecided", case.line);
            assert!(
                report.unverified.is_empty(),
                "line {} mutation {k}: unverified {:?}",
                case.line,
                report.unverified
            );
            verify_diff(&old, &new, &report).unwrap_or_else(|e| panic!("line {} mutation {k}: {e}", case.line));
            transitions += report.transitions.len();
            if report.equivalent() {
                equivalent += 1;
                check_equivalent(&old, &new, 300, case.line as u64)
                    .unwrap_or_else(|e| panic!("line {} mutation {k}: {e}", case.line));
            } else {
                differ += 1;
            }
        }
    }
    eprintln!("{transitions} transitions verified; {differ} mutated copies differ, {equivalent} are equivalent");
    assert!(transitions > 300 && equivalent > 50 && differ > 300);
}
