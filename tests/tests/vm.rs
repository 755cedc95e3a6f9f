//! The VM and the JIT against the reference interpreter: every conformance case through
//! compile → artifact → load → VM and JIT gives the interpreter's result, traces included.

use serde_json::Value;
use verdict_compiler::SourceKind;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::artifact;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine};
use verdict_tests::{compare, seed_compat};

/// Compiles a source to an engine through the artifact bytes, as `verdict compile` + loading does.
fn engine_of(bundle: &verdict_compiler::ir::Bundle, backend: Backend) -> Engine {
    let bytes = artifact::write(&verdict_compiler::codegen::program(bundle));
    let program = artifact::read(&bytes).unwrap_or_else(|e| unreachable!("artifact: {e}"));
    let engine = Engine::with_backend(program, backend).unwrap_or_else(|e| unreachable!("engine: {e}"));
    assert_eq!(engine.backend(), backend, "{:?}", engine.jit_fallback());
    engine
}

#[test]
fn seed_compat_vm_equals_interpreter_with_traces() {
    let now = jiff::Timestamp::now();
    let mut checked = 0;
    for case in seed_compat() {
        let file = SourceFile::new("bundle.json", case.bundle.to_string());
        let bundle = verdict_compiler::compile_as(&file, SourceKind::Json).bundle.unwrap_or_else(|| unreachable!());
        let interp = Interpreter::new(&bundle).unwrap_or_else(|e| unreachable!("{e:?}"));
        for engine in [engine_of(&bundle, Backend::Vm), engine_of(&bundle, Backend::Jit)] {
            for (i, (ctx, expect)) in case.cases.iter().enumerate() {
                let req = Request::from_value(ctx.clone()).unwrap_or_default();
                for trace in [false, true] {
                    let want = interp.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
                    let got = engine.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
                    assert_eq!(got, want, "line {} case {i} trace={trace}", case.line);
                }
                let got = engine.evaluate(&req, &Env::at(now), Mode::PLAIN).to_json();
                compare(&got, expect).unwrap_or_else(|e| unreachable!("line {} case {i}: {e}", case.line));
                let prepared = engine.prepare(&req);
                let mut scratch = verdict_runtime::vm::Scratch::default();
                let outcome = engine.decide_prepared(&prepared, &Env::at(now), &mut scratch);
                let via_prepared: Value = engine.result(&outcome, None).to_json();
                assert_eq!(via_prepared, got, "prepared request, line {} case {i}", case.line);
                checked += 1;
            }
        }
    }
    assert!(checked > 5900);
}
