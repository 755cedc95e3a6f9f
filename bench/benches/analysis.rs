//! Benchmarks of the rule analysis (divan): the full `check` pipeline — compile, then analyse —
//! on generated ACL bundles of 1,000 and 10,000 rules (64 actions, 8 paths, 10% string/regex
//! atoms, 1% planted anomalies), the analysis alone, and `diff` between two 10,000-rule
//! versions that differ in 1% of the rules. Run with `cargo bench -p verdict-bench`; results
//! are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmarks: a failure should stop the run")]

use verdict_compiler::analysis::{Options, analyze, diff};
use verdict_compiler::source::SourceFile;

fn main() {
    divan::main();
}

fn source(rules: usize) -> SourceFile {
    SourceFile::new("large.verdict", verdict_bench::large(1, rules).text)
}

/// Compile and analyse: what `verdict check` does, minus printing.
#[divan::bench(args = [1_000, 10_000], sample_count = 10)]
fn check(bencher: divan::Bencher, rules: usize) {
    let file = source(rules);
    bencher.bench(|| {
        let compiled = verdict_compiler::compile(&file);
        analyze(compiled.bundle.as_ref().expect("compiles"))
    });
}

/// The analysis alone, on a compiled bundle.
#[divan::bench(args = [1_000, 10_000], sample_count = 10)]
fn analysis_only(bencher: divan::Bencher, rules: usize) {
    let file = source(rules);
    let bundle = verdict_compiler::compile(&file).bundle.expect("compiles");
    bencher.bench(|| analyze(&bundle));
}

/// Change impact between two 10,000-rule versions differing in 1% of the rules.
#[divan::bench(sample_count = 5)]
fn diff_10k(bencher: divan::Bencher) {
    let (old, new) = verdict_bench::change_pair(3, 10_000, 100);
    let old = verdict_compiler::compile(&SourceFile::new("old.verdict", old)).bundle.expect("compiles");
    let new = verdict_compiler::compile(&SourceFile::new("new.verdict", new)).bundle.expect("compiles");
    bencher.bench(|| diff(&old, &new, &Options::default()));
}
