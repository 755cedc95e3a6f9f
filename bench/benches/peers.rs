//! Verdict's backends against a hand-written function, Cedar and regorus (interpreter and RVM),
//! on W52 and the 10,000-rule bundle, each on a prepared request and from JSON bytes.
//!
//! `cargo bench -p verdict-bench --bench peers`, then `python3 scripts/bench_table.py` prints the
//! table (with ratios) that BENCHMARKS.md keeps. Cedar and regorus build for minutes: this bench
//! is not part of the root `cargo test`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use verdict_bench::*;
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine, Scratch};
use verdict_tests::workloads::*;

struct Peer {
    cedar: cedar_policy::PolicySet,
    rego: regorus::Engine,
    /// `None` when the RVM compiler refuses the policy (it has a 65,535-instruction limit).
    rvm: Option<Arc<regorus::rvm::program::Program>>,
    entry: String,
}

fn peer(cedar_src: &str, rego_files: &[String], entry: &str) -> Peer {
    let cedar: cedar_policy::PolicySet = cedar_src.parse().unwrap_or_else(|e| unreachable!("cedar: {e}"));
    let mut rego = regorus::Engine::new();
    for (i, file) in rego_files.iter().enumerate() {
        rego.add_policy(format!("policy{i}.rego"), file.clone()).unwrap_or_else(|e| unreachable!("rego: {e}"));
    }
    let compiled = rego.compile_with_entrypoint(&entry.into()).unwrap_or_else(|e| unreachable!("rego compile: {e}"));
    let rvm = match regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[entry]) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("note: regorus's RVM refuses {entry}: {e}; no rvm rows for it");
            None
        }
    };
    Peer { cedar, rego, rvm, entry: entry.into() }
}

fn cedar_request(json: &str) -> cedar_policy::Request {
    let ctx = cedar_policy::Context::from_json_value(cedar_context(json), None).unwrap_or_else(|e| unreachable!("{e}"));
    let uid = |s: &str| s.parse::<cedar_policy::EntityUid>().unwrap_or_else(|e| unreachable!("{e}"));
    cedar_policy::Request::new(uid("User::\"u\""), uid("Action::\"act\""), uid("Resource::\"r\""), ctx, None)
        .unwrap_or_else(|e| unreachable!("{e}"))
}

fn workload(c: &mut Criterion, name: &str, source: &str, p: &mut Peer, requests: &[(&str, &str)], by_hand: bool) {
    let bundle = compile(name, source);
    let interp = Interpreter::new(&bundle).unwrap_or_else(|e| unreachable!("{e:?}"));
    let program = verdict_compiler::codegen::program(&bundle);
    let vm = Engine::with_backend(program.clone(), Backend::Vm).unwrap_or_else(|e| unreachable!("{e}"));
    let jit = Engine::with_backend(program, Backend::Jit).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(jit.backend(), Backend::Jit, "{:?}", jit.jit_fallback());
    let now = jiff::Timestamp::now();
    let authorizer = cedar_policy::Authorizer::new();
    let entities = cedar_policy::Entities::empty();
    let mut group = c.benchmark_group(name);
    for (label, json) in requests {
        let req = Request::from_json(json.as_bytes()).unwrap_or_default();
        let mut scratch = Scratch::default();
        // All engines must agree before they are timed.
        let want = interp.evaluate(&req, &Env::at(now), Mode::PLAIN).decision.kind == "allow";
        let cedar_req = cedar_request(json);
        let cedar_allow =
            authorizer.is_authorized(&cedar_req, &p.cedar, &entities).decision() == cedar_policy::Decision::Allow;
        let input = regorus::Value::from_json_str(json).unwrap_or_else(|e| unreachable!("{e}"));
        p.rego.set_input(input.clone());
        let rego_allow = p.rego.eval_rule(p.entry.clone()).map(|v| v == regorus::Value::from(true)).unwrap_or(false);
        let mut rvm = p.rvm.clone().map(|program| {
            let mut vm = regorus::rvm::vm::RegoVM::new();
            vm.load_program(program);
            vm
        });
        if let Some(vm) = rvm.as_mut() {
            vm.set_input(input.clone());
            let rvm_allow = vm.execute().map(|v| v == regorus::Value::from(true)).unwrap_or(false);
            assert_eq!(rvm_allow, want, "{name}/{label}: rvm");
        }
        assert_eq!((cedar_allow, rego_allow), (want, want), "{name}/{label}");
        if by_hand {
            let typed: W52Request<'_> = serde_json::from_str(json).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(w52_by_hand(&typed), want);
            group.bench_function(format!("hand-prepared/{label}"), |b| {
                b.iter(|| black_box(w52_by_hand(black_box(&typed))))
            });
            group.bench_function(format!("hand-json/{label}"), |b| {
                b.iter(|| {
                    let r: Result<W52Request<'_>, _> = serde_json::from_str(black_box(json));
                    black_box(r.map(|r| w52_by_hand(&r)))
                })
            });
        }
        let prepared = jit.prepare(&req);
        group.bench_function(format!("jit-prepared/{label}"), |b| {
            b.iter(|| black_box(jit.decide_prepared(black_box(&prepared), &Env::at(now), &mut scratch).bundle))
        });
        group.bench_function(format!("jit-json/{label}"), |b| {
            b.iter(|| {
                black_box(jit.decide_json(black_box(json.as_bytes()), &Env::at(now), &mut scratch).map(|o| o.bundle))
            })
        });
        // The full result (reasons, policy decisions) without and with the trace.
        group.bench_function(format!("jit-full/{label}"), |b| {
            b.iter(|| black_box(jit.evaluate(black_box(&req), &Env::at(now), Mode::PLAIN)))
        });
        group.bench_function(format!("jit-trace/{label}"), |b| {
            b.iter(|| black_box(jit.evaluate(black_box(&req), &Env::at(now), Mode::TRACE)))
        });
        group.bench_function(format!("vm-prepared/{label}"), |b| {
            b.iter(|| black_box(vm.decide_prepared(black_box(&prepared), &Env::at(now), &mut scratch).bundle))
        });
        group.bench_function(format!("vm-json/{label}"), |b| {
            b.iter(|| {
                black_box(vm.decide_json(black_box(json.as_bytes()), &Env::at(now), &mut scratch).map(|o| o.bundle))
            })
        });
        group.bench_function(format!("interp/{label}"), |b| {
            b.iter(|| black_box(interp.evaluate(black_box(&req), &Env::at(now), Mode::PLAIN)))
        });
        group.bench_function(format!("cedar-prepared/{label}"), |b| {
            b.iter(|| black_box(authorizer.is_authorized(black_box(&cedar_req), &p.cedar, &entities).decision()))
        });
        group.bench_function(format!("cedar-json/{label}"), |b| {
            b.iter(|| {
                let r = cedar_request(black_box(json));
                black_box(authorizer.is_authorized(&r, &p.cedar, &entities).decision())
            })
        });
        group.bench_function(format!("regorus-prepared/{label}"), |b| {
            b.iter(|| {
                p.rego.set_input(black_box(input.clone()));
                black_box(p.rego.eval_rule(p.entry.clone()).is_ok())
            })
        });
        let Some(rvm) = rvm.as_mut() else { continue };
        group.bench_function(format!("rvm-prepared/{label}"), |b| {
            b.iter(|| {
                rvm.set_input(black_box(input.clone()));
                black_box(rvm.execute().is_ok())
            })
        });
        group.bench_function(format!("rvm-json/{label}"), |b| {
            b.iter(|| {
                let v = regorus::Value::from_json_str(black_box(json)).unwrap_or(regorus::Value::Null);
                rvm.set_input(v);
                black_box(rvm.execute().is_ok())
            })
        });
    }
    group.finish();
}

/// What a service pays once per bundle: reading and verifying the artifact, and compiling it
/// with Cranelift (or only preparing the VM).
fn load(c: &mut Criterion, name: &str, source: &str) {
    let bytes = verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&compile(name, source)));
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for backend in [Backend::Jit, Backend::Vm] {
        let label = if backend == Backend::Jit { "load-jit" } else { "load-vm" };
        group.bench_function(label, |b| {
            b.iter(|| {
                let program =
                    verdict_runtime::artifact::read(black_box(&bytes)).unwrap_or_else(|e| unreachable!("{e}"));
                black_box(Engine::with_backend(program, backend).map(|e| e.backend()))
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let mut w52 = peer(&w52_cedar(), &[w52_rego()], "data.w52.allow");
    workload(c, "peers-w52", &w52_source(), &mut w52, &w52_requests(), true);
    let mut big = peer(&rules_10k_cedar(), &rules_10k_rego(), "data.big.allow");
    workload(c, "peers-rules10k", &rules_10k_source(), &mut big, &rules_10k_requests(), false);
    load(c, "peers-rules10k", &rules_10k_source());
}

criterion_group! {
    name = peers;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(peers);
