//! Interpreter vs VM on W52 and on 10,000 rules: prepared requests and from JSON bytes.
//!
//! `cargo bench -p verdict-bench --bench decide`, then `python3 scripts/bench_table.py` prints
//! the table with ratios that BENCHMARKS.md keeps.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use verdict_bench::compile;
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Engine, Scratch};
use verdict_tests::workloads::{rules_10k_requests, rules_10k_source, w52_requests, w52_source};

fn workload(c: &mut Criterion, name: &str, source: &str, requests: &[(&str, &str)]) {
    let bundle = compile(name, source);
    let interp = Interpreter::new(&bundle).unwrap_or_else(|e| unreachable!("{e:?}"));
    let engine = Engine::new(verdict_compiler::codegen::program(&bundle)).unwrap_or_else(|e| unreachable!("{e}"));
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group(name);
    for (label, json) in requests {
        let req = Request::from_json(json.as_bytes()).unwrap_or_default();
        let prepared = engine.prepare(&req);
        let mut scratch = Scratch::default();
        group.bench_function(format!("interp/{label}"), |b| {
            b.iter(|| black_box(interp.evaluate(black_box(&req), &Env::at(now), Mode::PLAIN)))
        });
        group.bench_function(format!("vm-request/{label}"), |b| {
            b.iter(|| black_box(engine.decide(black_box(&req), &Env::at(now), &mut scratch).bundle))
        });
        group.bench_function(format!("vm-prepared/{label}"), |b| {
            b.iter(|| black_box(engine.decide_prepared(black_box(&prepared), &Env::at(now), &mut scratch).bundle))
        });
        group.bench_function(format!("vm-json/{label}"), |b| {
            b.iter(|| {
                black_box(engine.decide_json(black_box(json.as_bytes()), &Env::at(now), &mut scratch).map(|o| o.bundle))
            })
        });
        group.bench_function(format!("vm-json-full/{label}"), |b| {
            b.iter(|| {
                let req = Request::from_json(black_box(json.as_bytes())).unwrap_or_default();
                black_box(engine.decide(&req, &Env::at(now), &mut scratch).bundle)
            })
        });
        group.bench_function(format!("vm-trace/{label}"), |b| {
            b.iter(|| black_box(engine.evaluate(black_box(&req), &Env::at(now), Mode::TRACE)))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    workload(c, "w52", &w52_source(), &w52_requests());
    workload(c, "rules10k", &rules_10k_source(), &rules_10k_requests());
}

criterion_group! {
    name = decide;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(decide);
