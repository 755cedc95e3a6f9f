//! Differential tests over LANGUAGE.md §5: random `.verdict` bundles with arithmetic, functions,
//! `now.*`, state reads, extern calls, reason templates and state updates (held and immediate),
//! run on the interpreter (the oracle), the VM and the JIT (both through artifact bytes).
//!
//! Two worlds per bundle:
//! - a drawn world (`verdict_tests::host::Drawn`): extern results of every type and failures,
//!   state reads that return sums or fail; decisions, traces, exhaustive results and the exact
//!   sequence of extern calls must be identical on every backend, and the exhaustive decision the
//!   same as the plain one;
//! - a sequence of events against one in-memory store per backend, with times crossing hours,
//!   days, a DST change and months, and commits and releases of earlier decisions: decisions
//!   (with `decision_id` and `holds`), traces, settlements and extern calls must be identical,
//!   and the VM's and the JIT's `decide_with_store` (prepared requests, one scratch per engine
//!   for the whole sequence, each on a store of its own) decide and hold as the interpreter.
//!
//! `VERDICT_HOST_DIFF_BUNDLES` scales the run (default 400 bundles).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "test failures")]

use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use verdict_compiler::SourceKind;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::externs::{ExternError, Externs};
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, StateStore};
use verdict_runtime::vm::{Backend, Engine, Scratch};
use verdict_tests::generate::Rng;
use verdict_tests::host::Drawn;

const EVENTS_PER_BUNDLE: usize = 14;

/// What the checked results contained, counted so a test can say the generator reaches every
/// feature: holds, extern errors, state errors, exhaustive errors, template renderings.
static SEEN: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];
const FEATURES: [&str; 5] = ["\"holds\"", "extern error", "state error", "\"error\"", " of "];

fn count(v: &Value) {
    let text = v.to_string();
    for (seen, what) in SEEN.iter().zip(FEATURES) {
        if text.contains(what) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn bundles() -> u32 {
    std::env::var("VERDICT_HOST_DIFF_BUNDLES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items.get(rng.below(items.len())).copied().unwrap_or("x")
}

const PATHS: [&str; 8] = ["amount", "x", "s", "subject.role", "subject.id", "l", "o.k", "input.calls"];
const NUMBERS: [&str; 10] = ["0", "1", "2", "3", "-1", "0.1", "2.5", "10", "100", "9007199254740993"];
const STRINGS: [&str; 6] = ["\"\"", "\"a\"", "\"A\"", "\"ab\"", "\"é\"", "\"x-1\""];
const READS: [&str; 10] = [
    "spend.hour",
    "spend.day",
    "spend.week",
    "spend.month",
    "spend.year",
    "spend.total",
    "spend.last(\"1h\")",
    "spend.last(\"90s\")",
    "calls.last(\"1h\")",
    "calls.day",
];

/// A term of depth at most `depth`: paths, literals, arithmetic, functions, time, state reads and
/// extern calls.
fn term(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(40) {
        return match rng.below(12) {
            0..=2 => pick(rng, &PATHS).to_owned(),
            3 | 4 => pick(rng, &NUMBERS).to_owned(),
            5 => pick(rng, &READS).to_owned(),
            6 => pick(rng, &["now.hour", "now.weekday", "now.day", "now.month", "now.minute", "now.epoch"]).to_owned(),
            7 => format!("risk({})", pick(rng, &PATHS)),
            8 => format!("len({})", pick(rng, &PATHS)),
            9 => format!("lower({})", pick(rng, &PATHS)),
            10 => format!("upper({})", pick(rng, &PATHS)),
            _ => format!("tag({})", pick(rng, &PATHS)),
        };
    }
    match rng.below(7) {
        0 => format!("{} + {}", term(rng, depth - 1), term(rng, depth - 1)),
        1 => format!("{} - {}", term(rng, depth - 1), term(rng, depth - 1)),
        2 => format!("{} * {}", term(rng, depth - 1), term(rng, depth - 1)),
        3 => format!("{} / {}", term(rng, depth - 1), term(rng, depth - 1)),
        4 => format!("-({})", term(rng, depth - 1)),
        5 => format!("abs({})", term(rng, depth - 1)),
        _ => format!("({})", term(rng, depth - 1)),
    }
}

fn atom(rng: &mut Rng) -> String {
    let cmp = pick(rng, &["==", "!=", "<", "<=", ">", ">="]);
    match rng.below(12) {
        0..=3 => format!("{} {cmp} {}", term(rng, 2), term(rng, 2)),
        4 => format!("{} in [{}, {}]", term(rng, 1), pick(rng, &NUMBERS), pick(rng, &STRINGS)),
        5 => format!("lower({}) contains {}", pick(rng, &PATHS), pick(rng, &STRINGS)),
        6 => format!("{} starts_with {}", term(rng, 1), pick(rng, &STRINGS)),
        7 => format!("ok({})", pick(rng, &PATHS)),
        8 => format!("not ok({})", term(rng, 1)),
        9 => format!("{} > {}", pick(rng, &READS), pick(rng, &NUMBERS)),
        10 => format!("exists({})", pick(rng, &PATHS)),
        _ => format!("{} {cmp} {}", pick(rng, &PATHS), pick(rng, &NUMBERS)),
    }
}

fn formula(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(40) {
        return atom(rng);
    }
    match rng.below(3) {
        0 => format!("not ({})", formula(rng, depth - 1)),
        1 => format!("({} and {})", formula(rng, depth - 1), formula(rng, depth - 1)),
        _ => format!("({} or {})", formula(rng, depth - 1), formula(rng, depth - 1)),
    }
}

/// A term that can stand inside a template's quotes.
fn template_term(rng: &mut Rng) -> String {
    let t = term(rng, 1);
    if t.contains('"') {
        pick(rng, &["amount", "spend.day", "calls.hour", "risk(s)", "tag(x)", "now.hour", "x / 3"]).to_owned()
    } else {
        t
    }
}

fn reason(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => String::new(),
        1 => "    reason \"fixed text\"\n".to_owned(),
        2 => format!("    reason f\"got {{{}}} and {{{{braces}}}}\"\n", template_term(rng)),
        _ => format!("    reason f\"{{{}:.{}f}} of {{{}}}\"\n", template_term(rng), rng.below(4), template_term(rng)),
    }
}

const EFFECTS: [&str; 3] = ["deny", "review", "allow"];

fn bundle(rng: &mut Rng) -> String {
    let mut out = String::from("bundle \"host\" {\n  effects [deny, review, allow]\n");
    out.push_str(if rng.chance(50) { "  combine overrides\n" } else { "  combine first\n" });
    out.push_str(&format!(
        "  timezone {}\n  hold_ttl {}\n}}\n",
        pick(rng, &["\"UTC\"", "\"Europe/Paris\"", "\"America/New_York\""]),
        pick(rng, &["\"90s\"", "\"10m\"", "\"2h\""])
    ));
    out.push_str("extern ok(any) -> bool\nextern risk(any) -> number\nextern tag(any) -> string\n");
    let spend_on = pick(rng, &["[allow]", "[allow, review]", "[review]"]);
    let spend_apply = pick(rng, &["commit", "decision"]);
    let spend_add = pick(rng, &["amount", "amount * 2", "1"]);
    let spend_key = pick(rng, &["[subject.role]", "[subject.id]", "[]"]);
    out.push_str(&format!("state spend {{ add {spend_add}  key {spend_key}  on {spend_on}  apply {spend_apply} }}\n"));
    out.push_str("state calls { add 1  on [deny]  apply decision }\n");
    for p in 0..1 + rng.below(2) {
        let default = if rng.chance(30) { "none" } else { pick(rng, &EFFECTS) };
        out.push_str(&format!("policy p{p} {{\n  default {default}\n"));
        for r in 0..1 + rng.below(4) {
            out.push_str(&format!(
                "  rule r{r} {} {{\n    when {}\n{}  }}\n",
                pick(rng, &EFFECTS),
                formula(rng, 2),
                reason(rng)
            ));
        }
        out.push_str("}\n");
    }
    out
}

fn request(rng: &mut Rng) -> Value {
    let mut subject = serde_json::Map::new();
    if rng.chance(85) {
        subject.insert("role".into(), json!(pick(rng, &["admin", "dev", "Admin"])));
    }
    if rng.chance(85) {
        subject.insert("id".into(), if rng.chance(90) { json!(pick(rng, &["u-1", "u-2"])) } else { json!([1]) });
    }
    let mut data = serde_json::Map::new();
    let amount = [json!(10), json!(2.5), json!(60), json!(0), json!(-3), json!(0.1), json!("10"), json!(true)];
    let fields: [(&str, Value); 5] = [
        ("amount", amount.get(rng.below(amount.len())).cloned().unwrap_or(Value::Null)),
        (
            "x",
            [json!(0), json!(1), json!(2.5), json!(-1), json!(1e300)].get(rng.below(5)).cloned().unwrap_or(Value::Null),
        ),
        ("s", json!(pick(rng, &["", "a", "A", "ab", "É", "x-1"]))),
        ("l", [json!([]), json!([1, 2]), json!("ab")].get(rng.below(3)).cloned().unwrap_or(Value::Null)),
        ("o", json!({ "k": ([json!(1), json!("a"), Value::Null].get(rng.below(3)).cloned()) })),
    ];
    for (k, v) in fields {
        if rng.chance(85) {
            data.insert(k.into(), v);
        }
    }
    if rng.chance(20) {
        data.insert("calls".into(), json!(7));
    }
    json!({ "subject": subject, "action": "pay", "data": data })
}

/// Externs of a drawn world that record every call, in order.
struct Recorder {
    world: Drawn,
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn new(salt: u64) -> Recorder {
        Recorder { world: Drawn { salt }, calls: Mutex::new(Vec::new()) }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Externs for Recorder {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, ExternError> {
        self.calls.lock().unwrap().push(format!("{name}{}", Value::from(args.to_vec())));
        self.world.call(name, args)
    }
}

/// A backend under test: the oracle or an engine.
#[allow(clippy::large_enum_variant, reason = "three values in a test")]
enum Backend3 {
    Interp(Interpreter<'static>),
    Engine(Engine),
}

impl Backend3 {
    fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> Value {
        match self {
            Backend3::Interp(i) => i.evaluate(req, env, mode).to_json(),
            Backend3::Engine(e) => e.evaluate(req, env, mode).to_json(),
        }
    }

    fn with_store(&self, req: &Request, env: &Env<'_>, mode: Mode, store: &dyn StateStore) -> Value {
        match self {
            Backend3::Interp(i) => i.evaluate_with_store(req, env, mode, store).to_json(),
            Backend3::Engine(e) => e.evaluate_with_store(req, env, mode, store).to_json(),
        }
    }
}

const MODES: [Mode; 4] = [
    Mode { trace: false, exhaustive: false },
    Mode { trace: true, exhaustive: false },
    Mode { trace: false, exhaustive: true },
    Mode { trace: true, exhaustive: true },
];

/// The decision without what only exhaustive mode adds.
fn decision_only(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("matches");
        o.remove("rules_evaluated");
    }
    v
}

/// Seconds between consecutive events: the same instant, window edges, days, weeks, a month.
const STEPS: [i64; 10] = [0, 1, 59, 90, 3599, 3600, 3601, 86_400, 7 * 86_400, 31 * 86_400];

/// Checks one bundle; `Ok(false)` when it did not compile (counted, not a failure).
fn check(seed: u64) -> Result<bool, TestCaseError> {
    let mut rng = Rng::new(seed);
    let text = bundle(&mut rng);
    let file = SourceFile::new("gen.verdict", text.clone());
    let compiled = verdict_compiler::compile_as(&file, SourceKind::Verdict);
    let Some(ir) = compiled.bundle else { return Ok(false) };
    let ir: &'static _ = Box::leak(Box::new(ir));
    let fail = |e: String| TestCaseError::fail(format!("{e}\nbundle:\n{text}"));
    let interp = Interpreter::new(ir).map_err(|e| fail(format!("{e:?}")))?;
    let bytes = verdict_runtime::artifact::write(&verdict_compiler::codegen::program(ir));
    let program = verdict_runtime::artifact::read(&bytes).map_err(|e| fail(e.to_string()))?;
    let vm = Engine::with_backend(program.clone(), Backend::Vm).map_err(|e| fail(e.to_string()))?;
    let jit = Engine::with_backend(program, Backend::Jit).map_err(|e| fail(e.to_string()))?;
    prop_assert_eq!(jit.backend(), Backend::Jit, "{:?}", jit.jit_fallback());
    let backends =
        [("interpreter", Backend3::Interp(interp)), ("vm", Backend3::Engine(vm)), ("jit", Backend3::Engine(jit))];

    // The drawn world: reads and calls answered by hashing the question.
    let start: jiff::Timestamp = "2026-03-28T22:30:00Z".parse().map_err(|_| fail("time".into()))?;
    for i in 0..EVENTS_PER_BUNDLE {
        let ctx = request(&mut rng);
        let req = Request::from_value(ctx.clone()).map_err(|e| fail(e.to_string()))?;
        let salt = rng.next_u64();
        let world = Drawn { salt };
        let now = start + jiff::SignedDuration::from_secs(rng.below(90 * 86_400) as i64);
        let mut plain: Option<Value> = None;
        for mode in MODES {
            let mut oracle: Option<(Value, Vec<String>)> = None;
            for (name, b) in &backends {
                let rec = Recorder::new(salt);
                let env = Env { now, decision_id: Some("d-drawn"), state: Some(&world), externs: Some(&rec) };
                let got = b.evaluate(&req, &env, mode);
                let calls = rec.take();
                let Some((want, want_calls)) = &oracle else {
                    count(&got);
                    oracle = Some((got, calls));
                    continue;
                };
                // Every backend in one mode gives the interpreter's full result (traces and
                // exhaustive lists included) and makes the same calls in the same order.
                prop_assert_eq!(
                    &got,
                    want,
                    "{} {:?} vs the interpreter (event {})\nrequest {} at {}\nbundle:\n{}",
                    name,
                    mode,
                    i,
                    ctx,
                    now,
                    text
                );
                prop_assert_eq!(
                    &calls,
                    want_calls,
                    "{} {:?}: extern calls\nrequest {}\nbundle:\n{}",
                    name,
                    mode,
                    ctx,
                    text
                );
            }
            // The decision is the same in every mode (exhaustive results only add lists).
            let decided = oracle.map(|(v, _)| decision_only(strip_trace(v)));
            match (&plain, decided) {
                (None, d) => plain = d,
                (Some(want), Some(got)) => prop_assert_eq!(
                    &got,
                    want,
                    "{:?} decides otherwise\nrequest {} at {}\nbundle:\n{}",
                    mode,
                    ctx,
                    now,
                    text
                ),
                (Some(_), None) => {}
            }
        }
    }

    // A sequence of events against one store per backend, and per lean run of an engine.
    let engines: Vec<(&str, &Engine)> = backends
        .iter()
        .filter_map(|(name, b)| match b {
            Backend3::Engine(e) => Some((*name, e)),
            Backend3::Interp(_) => None,
        })
        .collect();
    let stores: Vec<MemoryStore> = (0..backends.len() + engines.len()).map(|_| MemoryStore::new()).collect();
    let mut scratches: Vec<Scratch> = engines.iter().map(|_| Scratch::default()).collect();
    let mut now = start;
    let mut ids: Vec<String> = Vec::new();
    let salt = rng.next_u64();
    for i in 0..EVENTS_PER_BUNDLE {
        now += jiff::SignedDuration::from_secs(STEPS[rng.below(STEPS.len())]);
        if !ids.is_empty() && rng.chance(40) {
            let id = ids[rng.below(ids.len())].clone();
            let commit = rng.chance(60);
            let micros = verdict_runtime::state::micros(now);
            let settled: Vec<String> = stores
                .iter()
                .map(|s| format!("{:?}", if commit { s.commit(&id, micros) } else { s.release(&id, micros) }))
                .collect();
            prop_assert!(
                settled.windows(2).all(|w| w[0] == w[1]),
                "settlement of {} differs: {:?}\nbundle:\n{}",
                id,
                settled,
                text
            );
        }
        let ctx = request(&mut rng);
        let req = Request::from_value(ctx.clone()).map_err(|e| fail(e.to_string()))?;
        let mode = MODES[rng.below(MODES.len())];
        let id = format!("d-{i}");
        let mut results = Vec::new();
        for ((name, b), store) in backends.iter().zip(&stores) {
            let rec = Recorder::new(salt);
            let env = Env { now, decision_id: Some(&id), state: None, externs: Some(&rec) };
            results.push((name, b.with_store(&req, &env, mode, store), rec.take()));
        }
        let Some((_, want, want_calls)) = results.first() else { continue };
        count(want);
        let lean_stores = stores.iter().skip(backends.len());
        for (((name, engine), store), scratch) in engines.iter().zip(lean_stores).zip(&mut scratches) {
            let rec = Recorder::new(salt);
            let env = Env { now, decision_id: Some(&id), state: None, externs: Some(&rec) };
            let got = lean(engine, &req, &env, store, scratch);
            let decision = &want["decision"];
            let expected = json!({
                "kind": decision["kind"],
                "policy": decision["matched_policy_id"],
                "rule": decision["matched_rule_id"],
                "reason": decision["reason"],
                "holds": want.get("holds").cloned().unwrap_or_else(|| json!([])),
            });
            prop_assert_eq!(
                &got,
                &expected,
                "{} decide_with_store (event {})\nrequest {} at {}\nbundle:\n{}",
                name,
                i,
                ctx,
                now,
                text
            );
            // A plain decision makes the calls of the oracle's when that was plain too (a trace
            // or exhaustive results evaluate more).
            if mode == Mode::PLAIN {
                prop_assert_eq!(
                    &rec.take(),
                    want_calls,
                    "{} decide_with_store: extern calls (event {})\nbundle:\n{}",
                    name,
                    i,
                    text
                );
            }
        }
        for (name, got, calls) in &results {
            prop_assert_eq!(
                got,
                want,
                "{} with a store (event {}, {:?})\nrequest {} at {}\nbundle:\n{}",
                name,
                i,
                mode,
                ctx,
                now,
                text
            );
            prop_assert_eq!(calls, want_calls, "{} with a store: extern calls (event {})\nbundle:\n{}", name, i, text);
        }
        ids.push(id);
    }
    Ok(true)
}

/// A decision of `Engine::decide_with_store` as the parts of the full result it gives: the
/// decision and the holds (the store's error as a reason, as `evaluate_with_store` puts it).
fn lean(engine: &Engine, req: &Request, env: &Env<'_>, store: &dyn StateStore, scratch: &mut Scratch) -> Value {
    let prepared = engine.prepare(req);
    match engine.decide_with_store(&prepared, env, store, scratch) {
        Ok(o) => {
            let d = engine.decision_ref(&o.outcome);
            let p = engine.program();
            let holds: Vec<Value> = o
                .updates
                .iter()
                .filter(|u| u.hold)
                .map(|u| {
                    let s = &p.series[u.series as usize];
                    let key: Vec<Value> =
                        s.key.iter().filter_map(|k| req.lookup(&p.paths[*k as usize]).cloned()).collect();
                    json!({"state": s.name, "key": key, "amount": u.amount})
                })
                .collect();
            json!({"kind": d.kind, "policy": d.policy_id, "rule": d.rule_id, "reason": d.reason, "holds": holds})
        }
        Err(e) => {
            json!({"kind": most_severe(engine), "policy": null, "rule": null, "reason": format!("state error: {e}"), "holds": []})
        }
    }
}

fn most_severe(engine: &Engine) -> String {
    engine.program().effects.first().cloned().unwrap_or_else(|| "deny".into())
}

/// A result without its trace (the plain and traced runs of one backend decide the same).
fn strip_trace(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("trace");
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: bundles(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_on_terms_state_and_externs(seed in any::<u64>()) {
        check(seed)?;
    }
}

/// The generator is useful: most bundles compile, and they read state, call externs, hold and
/// fail in both worlds.
#[test]
fn most_generated_host_bundles_compile() {
    let compiled = (0..200u64).filter(|s| matches!(check(*s), Ok(true))).count();
    assert!(compiled > 150, "only {compiled} of 200 generated bundles compiled");
    for (seen, what) in SEEN.iter().zip(FEATURES) {
        let n = seen.load(Ordering::Relaxed);
        eprintln!("{n} results with {what}");
        assert!(n > 20, "only {n} results with {what}");
    }
}
