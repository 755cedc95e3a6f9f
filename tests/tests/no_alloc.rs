//! The untraced hot path allocates nothing: once a `Scratch` is warm, `Engine::decide` and
//! `Engine::decide_prepared` make no heap allocation (counted by dhat's heap profiler in testing
//! mode). This file is its own test binary because it installs a global allocator.

#![allow(clippy::indexing_slicing, reason = "indexing a serde_json::Value returns Null when absent")]
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::Env;
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine, Scratch};
use verdict_tests::workloads;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Decides every request many times on a warm scratch (both entry points, both backends) and
/// returns how many heap blocks that allocated.
fn blocks_allocated(what: &str, text: &str, contexts: &[String]) -> u64 {
    let bundle = verdict_compiler::compile(&SourceFile::new("b.verdict", text.to_owned()))
        .bundle
        .unwrap_or_else(|| unreachable!("{what} compiles"));
    let requests: Vec<Request> =
        contexts.iter().map(|c| Request::from_json(c.as_bytes()).unwrap_or_else(|e| unreachable!("{e}"))).collect();
    assert!(!requests.is_empty());
    let now = jiff::Timestamp::now();
    let mut total = 0;
    for backend in [Backend::Jit, Backend::Vm] {
        let engine = Engine::with_backend(verdict_compiler::codegen::program(&bundle), backend)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(engine.backend(), backend, "{what}");
        let prepared: Vec<_> = requests.iter().map(|r| engine.prepare(r)).collect();
        let mut scratch = Scratch::default();
        for (r, p) in requests.iter().zip(&prepared) {
            let _ = engine.decide(r, &Env::at(now), &mut scratch);
            let _ = engine.decide_prepared(p, &Env::at(now), &mut scratch);
        }
        let before = dhat::HeapStats::get();
        let mut effects = 0usize;
        for _ in 0..10 {
            for (r, p) in requests.iter().zip(&prepared) {
                effects += engine.decide(r, &Env::at(now), &mut scratch).policies.len();
                effects += engine.decide_prepared(p, &Env::at(now), &mut scratch).policies.len();
            }
        }
        let after = dhat::HeapStats::get();
        assert!(effects > 0);
        total += after.total_blocks - before.total_blocks;
    }
    total
}

/// A bundle that reads 200 distinct paths (more than the VM keeps on its stack).
fn paths_200() -> (String, Vec<String>) {
    let mut text = String::from("bundle wide {}\npolicy p {\n  default allow\n");
    for i in 0..200 {
        text.push_str(&format!("  rule r{i} deny {{ when data.f{i} == \"x{i}\" and data.g{i} > {i} }}\n"));
    }
    text.push_str("}\n");
    let hit = (0..100).map(|i| format!("\"f{i}\": \"y\", \"g{i}\": 0")).collect::<Vec<_>>().join(", ");
    let contexts =
        vec![format!("{{\"data\": {{{hit}, \"f199\": \"x199\", \"g199\": 500}}}}"), "{\"data\": {}}".to_owned()];
    (text, contexts)
}

#[test]
fn decide_allocates_nothing_once_warm_at_any_size() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let ai = include_str!("../../examples/ai-inference/bundle.verdict");
    let ai_contexts: Vec<String> = include_str!("../../examples/ai-inference/cases.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["context"].to_string())
        .collect();
    let w52: Vec<String> = workloads::w52_requests().iter().map(|(_, c)| (*c).to_owned()).collect();
    let big: Vec<String> = workloads::rules_10k_requests().iter().map(|(_, c)| (*c).to_owned()).collect();
    let (wide, wide_contexts) = paths_200();
    for (what, text, contexts) in [
        ("ai-inference", ai.to_owned(), ai_contexts),
        ("w52", workloads::w52_source(), w52),
        ("10k rules", workloads::rules_10k_source(), big),
        ("200 paths", wide, wide_contexts),
    ] {
        let blocks = blocks_allocated(what, &text, &contexts);
        dhat::assert_eq!(blocks, 0, "{what}");
    }
}
