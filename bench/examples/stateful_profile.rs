//! The stateful benchmark's `decide_with_store` loop (the spend gate, 10 committed entries, each
//! decision's hold released afterwards) for profilers: `cargo build --release -p verdict-bench
//! --example stateful_profile`, then `valgrind --tool=callgrind
//! target/release/examples/stateful_profile [jit|vm] [N]` (N decisions), or `... jit N time` for
//! N batches of 1,000 decisions timed one by one as the benchmark times them (median, p10).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "a development aid"
)]
use verdict_runtime::env::Env;
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, StateStore, micros};
use verdict_runtime::vm::{Backend, Engine, Scratch};

/// The benchmark's bundle (`benches/stateful.rs`'s `SPEND`).
const SPEND: &str = r#"bundle "spend" {
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

fn main() {
    let backend = match std::env::args().nth(1).as_deref() {
        Some("vm") => Backend::Vm,
        _ => Backend::Jit,
    };
    let n: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(10000);
    let bundle = verdict_bench::compile("spend", SPEND);
    let engine = Engine::with_backend(verdict_compiler::codegen::program(&bundle), backend).unwrap();
    let req = Request::from_json(REQUEST.as_bytes()).unwrap_or_default();
    let prepared = engine.prepare(&req);
    let now = jiff::Timestamp::from_second(1_764_500_000).unwrap();
    let store = MemoryStore::new();
    let mut scratch = Scratch::default();
    for i in 0..10 {
        let id = format!("seed-{i}");
        let env = Env { decision_id: Some(&id), ..Env::at(now) };
        let o = engine.decide_with_store(&prepared, &env, &store, &mut scratch).unwrap();
        assert_eq!(engine.decision_ref(&o.outcome).kind, "allow");
        store.commit(&id, micros(now)).unwrap();
    }
    let mut allowed = 0;
    if std::env::args().nth(3).as_deref() == Some("w52") {
        let w52 = verdict_bench::compile("w52", &verdict_tests::workloads::w52_source());
        let engine = Engine::with_backend(verdict_compiler::codegen::program(&w52), backend).unwrap();
        let (_, json) = verdict_tests::workloads::w52_requests().into_iter().next().unwrap();
        let prepared = engine.prepare(&Request::from_json(json.as_bytes()).unwrap());
        for _ in 0..n {
            let o = engine.decide_prepared(std::hint::black_box(&prepared), &Env::at(now), &mut scratch);
            allowed += usize::from(engine.decision_ref(&o).kind == "allow");
        }
        println!("{allowed}");
        return;
    }
    if std::env::args().nth(3).as_deref() == Some("time") {
        let mut batches = Vec::new();
        for _ in 0..n {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..1000 {
                let env = Env { decision_id: Some("d-bench"), ..Env::at(now) };
                let start = std::time::Instant::now();
                let o = engine
                    .decide_with_store(
                        std::hint::black_box(&prepared),
                        std::hint::black_box(&env),
                        &store,
                        &mut scratch,
                    )
                    .unwrap();
                allowed += usize::from(engine.decision_ref(&o.outcome).kind == "allow" && o.updates.len() == 1);
                total += start.elapsed();
                let _ = store.release("d-bench", micros(now));
            }
            batches.push(total.as_nanos() as f64 / 1000.0);
        }
        batches.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("median {:.0} ns, p10 {:.0} ns ({allowed})", batches[batches.len() / 2], batches[batches.len() / 10]);
        return;
    }
    for _ in 0..n {
        let env = Env { decision_id: Some("d-bench"), ..Env::at(now) };
        let o = engine
            .decide_with_store(std::hint::black_box(&prepared), std::hint::black_box(&env), &store, &mut scratch)
            .unwrap();
        allowed += usize::from(engine.decision_ref(&o.outcome).kind == "allow" && o.updates.len() == 1);
        let _ = store.release("d-bench", micros(now));
    }
    println!("{allowed}");
}
