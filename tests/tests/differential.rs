//! Differential tests: random bundles and requests, the VM (through artifact bytes) against the
//! reference interpreter, decisions and traces. `VERDICT_DIFF_BUNDLES` scales the run
//! (default 5,000 bundles × 20 requests = 100,000 pairs).

use proptest::prelude::*;
use verdict_compiler::SourceKind;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::request::Request;
use verdict_runtime::vm::Engine;
use verdict_tests::generate::{Rng, bundle, request};

const REQUESTS_PER_BUNDLE: usize = 20;

fn bundles() -> u32 {
    std::env::var("VERDICT_DIFF_BUNDLES").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000)
}

/// Checks one generated bundle against `REQUESTS_PER_BUNDLE` requests; `Ok(false)` when the
/// bundle did not compile (counted, not a failure).
fn check(seed: u64) -> Result<bool, TestCaseError> {
    let mut rng = Rng::new(seed);
    let b = bundle(&mut rng);
    let file = SourceFile::new("gen.json", b.to_string());
    let compiled = verdict_compiler::compile_as(&file, SourceKind::Json);
    let Some(ir) = compiled.bundle else { return Ok(false) };
    let interp = Interpreter::new(&ir).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let bytes = verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&ir));
    let program = verdict_runtime::artifact::read(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let engine = Engine::new(program).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let now = "2026-06-01T00:00:00Z".parse().map_err(|_| TestCaseError::fail("time"))?;
    for i in 0..REQUESTS_PER_BUNDLE {
        let ctx = request(&mut rng);
        let req = Request::from_value(ctx.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let trace = i % 4 == 0;
        let want = interp.evaluate(&req, now, trace).to_json();
        let got = engine.evaluate(&req, now, trace).to_json();
        prop_assert_eq!(&got, &want, "seed {} request {}\nbundle {}\ncontext {}", seed, i, b, ctx);
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: bundles(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn vm_equals_interpreter(seed in any::<u64>()) {
        check(seed)?;
    }
}

#[test]
fn most_generated_bundles_compile() {
    let compiled = (0..500u64).filter(|s| matches!(check(*s), Ok(true))).count();
    assert!(compiled > 400, "only {compiled} of 500 generated bundles compiled");
}
