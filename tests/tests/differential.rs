//! Differential tests: random bundles and requests, the VM and the JIT (through artifact bytes)
//! against the reference interpreter, decisions and traces. `VERDICT_DIFF_BUNDLES` scales the run
//! (default 5,000 bundles × 20 requests = 100,000 pairs).

use proptest::prelude::*;
use verdict_compiler::SourceKind;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine, Scratch};
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
    let engine = Engine::with_backend(program.clone(), Backend::Vm).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let jit = Engine::with_backend(program, Backend::Jit).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(jit.backend(), Backend::Jit, "{:?}", jit.jit_fallback());
    let now = "2026-06-01T00:00:00Z".parse().map_err(|_| TestCaseError::fail("time"))?;
    let mut scratch = Scratch::default();
    // A prepared request that is reused: each request's values are `set` into it (the symbols
    // of changed paths are resolved again by the JIT).
    let mut reused = jit.prepare(&Request::default());
    for i in 0..REQUESTS_PER_BUNDLE {
        let ctx = request(&mut rng);
        let req = Request::from_value(ctx.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let trace = i % 4 == 0;
        let want = interp.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
        let got = engine.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
        prop_assert_eq!(&got, &want, "seed {} request {}\nbundle {}\ncontext {}", seed, i, b, ctx);
        let native = jit.evaluate(&req, &Env::at(now), Mode::traced(trace)).to_json();
        prop_assert_eq!(&native, &want, "JIT: seed {} request {}\nbundle {}\ncontext {}", seed, i, b, ctx);
        // The JIT's other entry points: a prepared request (symbols computed once), and one
        // updated path by path.
        let untraced = if trace { interp.evaluate(&req, &Env::at(now), Mode::PLAIN).to_json() } else { want.clone() };
        let prepared = jit.prepare(&req);
        let outcome = jit.decide_prepared(&prepared, &Env::at(now), &mut scratch);
        let native = jit.result(&outcome, None).to_json();
        prop_assert_eq!(&native, &untraced, "JIT prepared: seed {} request {}\nbundle {}\ncontext {}", seed, i, b, ctx);
        for (p, segments) in jit.program().paths.iter().enumerate() {
            reused.set(p as u32, req.lookup(segments).cloned());
        }
        reused.set_scope(req.action.clone(), req.resource.as_ref().and_then(|r| r.get("vendor_id")).cloned());
        let outcome = jit.decide_prepared(&reused, &Env::at(now), &mut scratch);
        let native = jit.result(&outcome, None).to_json();
        prop_assert_eq!(
            &native,
            &untraced,
            "JIT reused prepared: seed {} request {}\nbundle {}\ncontext {}",
            seed,
            i,
            b,
            ctx
        );
        // From JSON bytes through the projection parser, with noise the bundle never reads.
        let mut noisy = ctx.clone();
        if let Some(data) = noisy.get_mut("data").and_then(|d| d.as_object_mut()) {
            data.insert("noise".into(), verdict_tests::generate::value(&mut rng, 0));
        }
        if let Some(subject) = noisy.get_mut("subject").and_then(|d| d.as_object_mut()) {
            subject.insert("extra".into(), serde_json::json!({"deep": [1, {"x": "y"}], "s": "t"}));
        }
        let bytes = noisy.to_string();
        let projected = engine
            .evaluate_json(bytes.as_bytes(), &Env::at(now), Mode::traced(trace))
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .to_json();
        prop_assert_eq!(&projected, &want, "projection: seed {} request {}\nbundle {}\ncontext {}", seed, i, b, noisy);
        let native = jit
            .evaluate_json(bytes.as_bytes(), &Env::at(now), Mode::traced(trace))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &native.to_json(),
            &want,
            "JIT projection: seed {} request {}\nbundle {}\ncontext {}",
            seed,
            i,
            b,
            noisy
        );
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The projection parser accepts and refuses exactly what the full parser does.
    #[test]
    fn projection_validates_like_the_full_parser(seed in any::<u64>(), cut in 0usize..400, junk in any::<u8>()) {
        let mut rng = Rng::new(seed);
        let ir = loop {
            let b = bundle(&mut rng);
            if let Some(ir) = verdict_compiler::compile_as(&SourceFile::new("g.json", b.to_string()), SourceKind::Json).bundle {
                break ir;
            }
        };
        let engine = Engine::new(verdict_compiler::codegen::program(&ir)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let req = request(&mut rng);
        let mut text = req.to_string().into_bytes();
        match seed % 6 {
            0 => text.truncate(cut.min(text.len())),
            1 => { let at = cut % text.len().max(1); if let Some(b) = text.get_mut(at) { *b = junk; } }
            2 => text = format!("{{\"extra\": 1, \"data\": {}}}", String::from_utf8_lossy(&text)).into_bytes(),
            // A key repeated at the top level, or inside one of the context's objects (read by
            // the bundle or skipped): both readers must refuse it.
            3 | 4 => {
                let target = if seed % 6 == 3 { Some(&req) } else { req.as_object().and_then(|o| o.values().find(|v| v.as_object().is_some_and(|m| !m.is_empty()))) };
                if let Some(key) = target.and_then(|t| t.as_object()).and_then(|o| o.keys().nth(cut % o.len().max(1))) {
                    let inner = target.map(ToString::to_string).unwrap_or_default();
                    let doubled = format!("{}, {}: {}}}", inner.strip_suffix('}').unwrap_or(&inner), serde_json::Value::from(key.as_str()), junk);
                    text = String::from_utf8_lossy(&text).replacen(&inner, &doubled, 1).into_bytes();
                    prop_assert!(Request::from_json(&text).is_err(), "duplicate `{}` accepted in {}", key, String::from_utf8_lossy(&text));
                }
            }
            _ => {}
        }
        let full = Request::from_json(&text);
        let now = jiff::Timestamp::now();
        let projected = engine.evaluate_json(&text, &Env::at(now), Mode::PLAIN);
        prop_assert_eq!(full.is_ok(), projected.is_ok(), "{:?} vs {:?} on {}", full.as_ref().err(), projected.as_ref().err(), String::from_utf8_lossy(&text));
        if let (Ok(req), Ok(p)) = (full, projected) {
            prop_assert_eq!(engine.evaluate(&req, &Env::at(now), Mode::PLAIN).to_json(), p.to_json());
        }
    }
}

#[test]
fn most_generated_bundles_compile() {
    let compiled = (0..500u64).filter(|s| matches!(check(*s), Ok(true))).count();
    assert!(compiled > 400, "only {compiled} of 500 generated bundles compiled");
}

/// The generated bundles exercise both kinds of JIT atoms: native (symbol compares) and
/// called back.
#[test]
fn generated_bundles_have_native_and_called_back_atoms() {
    let (mut native, mut all) = (0usize, 0usize);
    for seed in 0..300u64 {
        let b = bundle(&mut Rng::new(seed));
        let Some(ir) = verdict_compiler::compile_as(&SourceFile::new("g.json", b.to_string()), SourceKind::Json).bundle
        else {
            continue;
        };
        let Ok(jit) = Engine::with_backend(verdict_compiler::codegen::program(&ir), Backend::Jit) else { continue };
        native += jit.native_atoms();
        all += jit.program().atoms.len();
    }
    assert!(native * 10 > all && native * 10 < all * 9, "{native} native of {all} atoms");
}
