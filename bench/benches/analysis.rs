//! The rule analysis (issue 5): the full `check` pipeline — compile, then analyse — on generated
//! ACL bundles of 1,000 and 10,000 rules (64 actions, 8 paths, 10% string/regex atoms, 1% planted
//! anomalies), the analysis alone, and `diff` between two 10,000-rule versions that differ in 1%
//! of the rules. `cargo bench -p verdict-bench --bench analysis`; results in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use verdict_compiler::analysis::{Options, analyze, diff};
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_tests::families;

fn source(rules: usize) -> SourceFile {
    SourceFile::new("large.verdict", families::large(1, rules).text)
}

fn compiled(file: &SourceFile) -> Bundle {
    verdict_compiler::compile(file).bundle.unwrap_or_else(|| unreachable!("the generated bundle compiles"))
}

fn analysis(c: &mut Criterion) {
    let mut group = c.benchmark_group("analysis");
    group.sample_size(10);
    for rules in [1_000, 10_000] {
        let file = source(rules);
        group.bench_function(format!("check/{rules}"), |b| {
            b.iter(|| {
                let compiled = verdict_compiler::compile(black_box(&file));
                compiled.bundle.as_ref().map(analyze)
            })
        });
        let bundle = compiled(&file);
        group.bench_function(format!("analysis_only/{rules}"), |b| b.iter(|| analyze(black_box(&bundle))));
    }
    let (old, new) = families::change_pair(3, 10_000, 100);
    let old = compiled(&SourceFile::new("old.verdict", old));
    let new = compiled(&SourceFile::new("new.verdict", new));
    group.bench_function("diff/10000", |b| b.iter(|| diff(black_box(&old), black_box(&new), &Options::default())));
    group.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);
