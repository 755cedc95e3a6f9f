//! A stateful decision beside W52: a spend gate with two state reads (the day's sum and a sliding
//! hour) whose approvals hold their amount, on the in-memory store, per backend. Timed:
//! `evaluate_with_store` (the full result) and, on the VM and the JIT, `decide_with_store` (a
//! prepared request, a reused scratch, no result built); each hold is released untimed
//! afterwards, so the series keep their size (10 committed entries). Every timed decision has the
//! same id (`d-bench`), so the memory store replaces its registration in place; with a new id per
//! decision it would allocate the id once more. The clock's own cost per iteration is a row of
//! its own. `cargo bench -p verdict-bench --bench stateful`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};
use verdict_bench::compile;
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, Settled, StateStore, micros};
use verdict_runtime::vm::{Backend, Engine, PreparedRequest, Scratch};
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
    // Each run returns whether the decision allowed and the number of holds it made.
    type Run<'a> = Box<dyn Fn(&Env<'_>, &MemoryStore) -> (bool, usize) + 'a>;
    let full = |r: verdict_runtime::decision::EvaluationResult| (r.decision.kind == "allow", r.holds.len());
    let (vm_req, jit_req) = (vm.prepare(&req), jit.prepare(&req));
    let (vm_scratch, jit_scratch) = (RefCell::new(Scratch::default()), RefCell::new(Scratch::default()));
    let lean = |engine: &Engine,
                prepared: &PreparedRequest,
                scratch: &RefCell<Scratch>,
                env: &Env<'_>,
                store: &MemoryStore| {
        let mut scratch = scratch.borrow_mut();
        match engine.decide_with_store(prepared, env, store, &mut scratch) {
            Ok(o) => (engine.decision_ref(&o.outcome).kind == "allow", o.updates.iter().filter(|u| u.hold).count()),
            Err(_) => (false, 0),
        }
    };
    let runs: [(&str, Run<'_>); 5] = [
        ("interp", Box::new(|env, store| full(interp.evaluate_with_store(&req, env, Mode::PLAIN, store)))),
        ("vm", Box::new(|env, store| full(vm.evaluate_with_store(&req, env, Mode::PLAIN, store)))),
        ("jit", Box::new(|env, store| full(jit.evaluate_with_store(&req, env, Mode::PLAIN, store)))),
        ("vm-decide", Box::new(|env, store| lean(&vm, &vm_req, &vm_scratch, env, store))),
        ("jit-decide", Box::new(|env, store| lean(&jit, &jit_req, &jit_scratch, env, store))),
    ];
    for (label, run) in &runs {
        let store = MemoryStore::new();
        for i in 0..10 {
            let id = format!("seed-{i}");
            let env = Env { decision_id: Some(&id), ..Env::at(now) };
            assert_eq!(run(&env, &store), (true, 1), "{label}");
            assert_eq!(store.commit(&id, micros(now)), Ok(Settled::Committed));
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
    // What the timing itself costs per iteration (two clock reads): part of every row above.
    group.bench_function("2_reads_1_hold/clock-only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                black_box(&start);
                total += start.elapsed();
            }
            total
        })
    });
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
