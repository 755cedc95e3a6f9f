//! The region model the analysis rests on, checked against the runtime's semantics: every value
//! (and "missing") at every path of a bundle falls in exactly one region, and every atom the
//! model calls exact on that region has, on the value, the truth the model gives it —
//! [`verdict_runtime::atom::eval`] decides. If a region were not uniform for an atom, universal
//! claims could be wrong; this test looks for such a region with values aimed at the cut points
//! (the bundle's constants, their neighbours, random strings built from their pieces).
#![allow(clippy::panic, clippy::indexing_slicing, reason = "test failures")]

use serde_json::{Value, json};
use verdict_compiler::analysis::Options;
use verdict_compiler::analysis::domain::{Domain, Side, Truth};
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};
use verdict_tests::analysis::{Rng, interesting_values};
use verdict_tests::families;
use verdict_tests::seed_compat;

fn random_strings(rng: &mut Rng, pieces: &[String], n: usize) -> Vec<Value> {
    let alphabet = ["a", "b", "z", "0", "9", "-", "/", ".", "_", "A", "é", "中", " ", "x", "@"];
    let mut out = Vec::new();
    for _ in 0..n {
        let mut s = String::new();
        for _ in 0..1 + rng.below(3) {
            if !pieces.is_empty() && rng.chance(60) {
                let p: Vec<char> = pieces[rng.below(pieces.len())].chars().collect();
                let a = rng.below(p.len() + 1);
                let b = a + rng.below(p.len() + 1 - a);
                s.extend(&p[a..b]);
            } else {
                s.push_str(alphabet[rng.below(alphabet.len())]);
            }
        }
        out.push(json!(s));
    }
    out
}

fn check_bundle(name: &str, b: &Bundle, seed: u64) -> usize {
    let dom = Domain::build(&[b], &Options::default().domain_limits());
    let mut rng = Rng(seed);
    let common = interesting_values(b);
    let pieces: Vec<String> = common.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let regexes: std::collections::HashMap<String, regex::Regex> = dom
        .consts
        .iter()
        .filter_map(|c| c.as_str())
        .filter_map(|p| regex::Regex::new(p).ok().map(|r| (p.to_owned(), r)))
        .collect();
    let mut checked = 0;
    for (p, pd) in dom.paths.iter().enumerate() {
        let mut values: Vec<Option<Value>> = vec![None];
        values.extend(common.iter().cloned().map(Some));
        values.extend(pd.regions.iter().filter_map(|r| r.value.clone()).map(Some));
        values.extend(random_strings(&mut rng, &pieces, 200).into_iter().map(Some));
        for _ in 0..50 {
            let x = (rng.below(2001) as f64 - 1000.0) / 8.0;
            values.push(Some(json!(x)));
            values.push(Some(json!(x as i64)));
        }
        for v in &values {
            let Some(r) = dom.region_of(p, v.as_ref()) else {
                panic!("{name}: `{}` = {v:?} falls in no region", dom.show_path(p));
            };
            for &a in &pd.atoms {
                let Some(t) = dom.truth(a, r) else { panic!("{name}: atom {a} has no truth on region {r}") };
                let expected = match t {
                    Truth::T => true,
                    Truth::F => false,
                    _ => continue,
                };
                let def = dom.atoms[a];
                let operand = |s: Side| match s {
                    Side::Path(_) => v.as_ref(),
                    Side::Const(c) => dom.consts.get(c),
                    Side::Term(_) | Side::None => None,
                };
                let re = match dom.constant_of(def.rhs) {
                    Some(Value::String(pat)) if def.op == verdict_compiler::ir::AtomOp::Matches => regexes.get(pat),
                    _ => None,
                };
                let actual = verdict_runtime::atom::eval(def.op, operand(def.lhs), operand(def.rhs), re);
                assert_eq!(
                    actual,
                    expected,
                    "{name}: at `{}` = {v:?} (region {r}: {:?}), atom {def:?} with {:?}/{:?} is {actual}, the model says {expected}",
                    dom.show_path(p),
                    pd.regions[r],
                    dom.constant_of(def.lhs),
                    dom.constant_of(def.rhs),
                );
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn regions_agree_with_the_runtime_on_the_seed_corpus() {
    let mut checked = 0;
    for case in seed_compat() {
        let file = SourceFile::new("bundle.json", case.bundle.to_string());
        let Some(b) = compile_as(&file, SourceKind::Json).bundle else { continue };
        checked += check_bundle(&format!("line {}", case.line), &b, case.line as u64);
    }
    eprintln!("{checked} atom truths checked");
    assert!(checked > 100_000);
}

#[test]
fn regions_agree_with_the_runtime_on_the_families() {
    let families = [
        families::strings(1, 12),
        families::acl(2, 200, 16, 30),
        families::nesting(3, 20, 5),
        families::dmn(4, 2, 5, true, true),
    ];
    for f in &families {
        let file = SourceFile::new(format!("{}.verdict", f.name), f.text.clone());
        let b = verdict_compiler::compile(&file).bundle.unwrap_or_else(|| panic!("{} compiles", f.name));
        check_bundle(&f.name, &b, 11);
    }
}
