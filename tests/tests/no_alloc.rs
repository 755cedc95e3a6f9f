//! The untraced hot path allocates nothing: once a `Scratch` is warm, `Engine::decide` and
//! `Engine::decide_prepared` make no heap allocation (counted by dhat's heap profiler in testing
//! mode). This file is its own test binary because it installs a global allocator.

#![allow(clippy::indexing_slicing, reason = "indexing a serde_json::Value returns Null when absent")]
use verdict_compiler::source::SourceFile;
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Engine, Scratch};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn decide_allocates_nothing_once_warm() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let text = include_str!("../../examples/ai-inference/bundle.verdict");
    let bundle =
        verdict_compiler::compile(&SourceFile::new("b.verdict", text)).bundle.unwrap_or_else(|| unreachable!());
    let engine = Engine::new(verdict_compiler::codegen::program(&bundle)).unwrap_or_else(|e| unreachable!("{e}"));
    let requests: Vec<Request> = include_str!("../../examples/ai-inference/cases.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Request::from_value(v["context"].clone()).ok())
        .collect();
    assert!(requests.len() > 3);
    let prepared: Vec<_> = requests.iter().map(|r| engine.prepare(r)).collect();
    let now = jiff::Timestamp::now();
    let mut scratch = Scratch::default();
    for r in &requests {
        let _ = engine.decide(r, now, &mut scratch);
    }
    let before = dhat::HeapStats::get();
    let mut effects = 0usize;
    for _ in 0..100 {
        for (r, p) in requests.iter().zip(&prepared) {
            effects += engine.decide(r, now, &mut scratch).policies.len();
            effects += engine.decide_prepared(p, now, &mut scratch).policies.len();
        }
    }
    let after = dhat::HeapStats::get();
    assert!(effects > 0);
    dhat::assert_eq!(after.total_blocks, before.total_blocks);
}
