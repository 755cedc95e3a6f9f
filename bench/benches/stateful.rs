//! A stateful decision beside W52: a spend gate with two state reads (the day's sum and a sliding
//! hour) whose approvals hold their amount, on the in-memory store, per backend. Only
//! `evaluate_with_store` is timed; each hold is released untimed afterwards, so the series keep
//! their size (10 committed entries). `cargo bench -p verdict-bench --bench stateful`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use verdict_bench::compile;
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, StateStore, micros};
use verdict_runtime::vm::{Backend, Engine, Scratch};
use verdict_tests::workloads::{w52_requests, w52_source};

/// The stateful bundle: a per-transaction cap, a daily budget and a sliding hourly budget.
pub const SPEND: &str = r#"bundle "spend" {
  effects [deny, allow]
  timezone "UTC"
}
state spend { add amount  key [subject.id]  on [allow]  apply commit }
policy budget {
  default allow
  rule daily deny { when spend.day + amount > 100000 }
  rule hourly deny { when spend.last("1h") + amount > 50000 }
}
"#;

const REQUEST: &str = r#"{"subject": {"id": "agent-1"}, "data": {"amount": 12.5}}"#;

fn stateful(c: &mut Criterion) {
    let bundle = compile("spend", SPEND);
    let interp = Interpreter::new(&bundle).unwrap_or_else(|e| unreachable!("{e:?}"));
    let program = verdict_compiler::codegen::program(&bundle);
    let vm = Engine::with_backend(program.clone(), Backend::Vm).unwrap_or_else(|e| unreachable!("{e}"));
    let jit = Engine::with_backend(program, Backend::Jit).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(jit.backend(), Backend::Jit, "{:?}", jit.jit_fallback());
    let req = Request::from_json(REQUEST.as_bytes()).unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group("stateful");
    type Run<'a> = Box<dyn Fn(&Env<'_>, &MemoryStore) -> bool + 'a>;
    let runs: [(&str, Run<'_>); 3] = [
        ("interp", Box::new(|env, store| interp.evaluate_with_store(&req, env, Mode::PLAIN, store).holds.is_empty())),
        ("vm", Box::new(|env, store| vm.evaluate_with_store(&req, env, Mode::PLAIN, store).holds.is_empty())),
        ("jit", Box::new(|env, store| jit.evaluate_with_store(&req, env, Mode::PLAIN, store).holds.is_empty())),
    ];
    for (label, run) in &runs {
        let store = MemoryStore::new();
        for i in 0..10 {
            let id = format!("seed-{i}");
            let env = Env { decision_id: Some(&id), ..Env::at(now) };
            run(&env, &store);
            let _ = store.commit(&id, micros(now));
        }
        group.bench_function(format!("2_reads_1_hold/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let env = Env { decision_id: Some("d-bench"), ..Env::at(now) };
                    let start = Instant::now();
                    black_box(run(black_box(&env), &store));
                    total += start.elapsed();
                    let _ = store.release("d-bench", micros(now));
                }
                total
            })
        });
    }
    // W52 on the JIT in the same run, for the ratio.
    let w52 = compile("w52", &w52_source());
    let engine = Engine::with_backend(verdict_compiler::codegen::program(&w52), Backend::Jit)
        .unwrap_or_else(|e| unreachable!("{e}"));
    if let Some((_, json)) = w52_requests().first() {
        let prepared = engine.prepare(&Request::from_json(json.as_bytes()).unwrap_or_default());
        let mut scratch = Scratch::default();
        group.bench_function("w52/jit-prepared", |b| {
            b.iter(|| black_box(engine.decide_prepared(black_box(&prepared), &Env::at(now), &mut scratch).bundle))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = stateful
}
criterion_main!(benches);
