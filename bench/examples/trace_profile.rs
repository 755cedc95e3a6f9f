//! A traced W52 evaluation in a loop, for profilers (`valgrind --tool=callgrind`): where a trace's
//! time goes. `cargo run --release -p verdict-bench --example trace_profile -- [N]`
use verdict_bench::*;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::Engine;
use verdict_tests::workloads::*;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let bundle = compile("w52", &w52_source());
    let Ok(engine) = Engine::new(verdict_compiler::codegen::program(&bundle)) else { return };
    let Some((_, json)) = w52_requests().into_iter().nth(1) else { return };
    let req = Request::from_json(json.as_bytes()).unwrap_or_default();
    let now = jiff::Timestamp::UNIX_EPOCH;
    let mut rules = 0;
    for _ in 0..n {
        let r = engine.evaluate(std::hint::black_box(&req), &Env::at(now), Mode::TRACE);
        rules += r.trace.map_or(0, |t| t.len());
    }
    println!("{rules}");
}
