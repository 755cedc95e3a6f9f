//! Hostile bundles and hosts: work stays linear in the bundle's size and faults fail closed.
//!
//! - Definitions that share sub-definitions (`let a{i} = a{i-1} and a{i-1}`, 34 levels: 2^34
//!   atom occurrences once expanded) are decided, traced, compiled, dispatched and analysed in
//!   linear time on every backend and entry point (each runs under a hang guard; before the
//!   memos, several did not answer within minutes).
//! - A host callback that panics inside native code is a fault that decides the most severe
//!   effect, never a `false` that `not` would turn into `true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::mpsc;
use std::time::Duration;
use verdict_compiler::analysis;
use verdict_compiler::diagnostic::Code;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_runtime::decision::{TraceEntry, TraceStep};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::jit::{Host, JitCode};
use verdict_runtime::policy::Truth;
use verdict_runtime::request::Request;
use verdict_runtime::symbols::Symbols;
use verdict_runtime::vm::{Backend, Engine, Scratch};

/// Levels of sharing: the condition expands to 2^LEVELS atom occurrences.
const LEVELS: usize = 34;

/// `let a0 = <base>`, `let a{i} = a{i-1} and a{i-1}`, and `rules` rules on `a{LEVELS}` (enough for
/// a dispatch table when each also fixes `action`).
fn shared_definitions(base: &str, rules: usize) -> String {
    let mut s = format!("bundle \"exp\" {{}}\nlet a0 = {base}\n");
    for i in 1..=LEVELS {
        s.push_str(&format!("let a{i} = a{} and a{}\n", i - 1, i - 1));
    }
    s.push_str("policy p {\n  default deny\n");
    for r in 0..rules {
        s.push_str(&format!("  rule r{r} allow {{ when action == \"act{r}\" and a{LEVELS} }}\n"));
    }
    s.push_str("}\n");
    s
}

/// Runs `f` on another thread and fails if it does not finish within a generous guard (the
/// work is linear; exponential work would take hours).
fn within_guard<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: no answer within the guard"))
}

fn compile(text: &str) -> verdict_compiler::ir::Bundle {
    let compiled = verdict_compiler::compile_for_use(&SourceFile::new("exp.verdict", text.to_owned()));
    compiled.bundle.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics))
}

/// A chain of 30,000 definitions, each one level deeper than the last: the depth through
/// definitions is found in one linear walk (a fixed point over the arena took one round per
/// level, quadratic work) and the bundle is refused with V107 naming the limit.
#[test]
fn a_long_chain_of_definitions_is_refused_in_linear_time() {
    let mut text = String::from("bundle \"chain\" {}\nlet a0 = x == 0\n");
    for i in 1..30_000 {
        text.push_str(&format!("let a{i} = a{} or x == {i}\n", i - 1));
    }
    text.push_str("policy p {\n  default deny\n  rule r allow { when a29999 }\n}\n");
    let diags = within_guard("compile", move || {
        verdict_compiler::compile_for_use(&SourceFile::new("chain.verdict", text)).diagnostics
    });
    assert!(
        diags.iter().any(|d| d.code == verdict_compiler::diagnostic::Code::TooDeep),
        "{:?}",
        diags.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
}

const CONTEXT: &str = r#"{"subject": {"role": "admin"}, "action": "act3"}"#;

#[test]
fn shared_definitions_decide_in_linear_time_everywhere() {
    let text = shared_definitions("subject.role == \"admin\"", 6);
    let bundle = within_guard("compile", move || compile(&text));
    let program = verdict_compiler::codegen::program(&bundle);
    assert!(program.policies[0].dispatch.is_some(), "the rules fix `action`: a dispatch table is built");
    let req = Request::from_json(CONTEXT.as_bytes()).unwrap();
    let now = jiff::Timestamp::now();

    let expected = {
        let (b, r) = (bundle.clone(), req.clone());
        within_guard("interpreter", move || {
            Interpreter::new(&b).unwrap().evaluate(&r, &Env::at(now), Mode::PLAIN).to_json()
        })
    };
    assert_eq!(expected["decision"]["kind"], "allow");
    assert_eq!(expected["decision"]["matched_rule_id"], "r3");
    let traced = {
        let (b, r) = (bundle.clone(), req.clone());
        within_guard("interpreter trace", move || {
            Interpreter::new(&b).unwrap().evaluate(&r, &Env::at(now), Mode::TRACE)
        })
    };
    // The trace is linear too: one atom, then each definition reused once.
    let steps: usize = traced
        .trace
        .iter()
        .flatten()
        .map(|e| match e {
            TraceEntry::Policy(p) => p.rules.iter().map(|r| r.atoms.len()).sum(),
            TraceEntry::Gate(_) => 0,
        })
        .sum();
    assert!(steps <= 6 * (LEVELS + 3), "{steps} trace steps");
    let traced = traced.to_json();

    for backend in [Backend::Jit, Backend::Vm] {
        let engine = Engine::with_backend(program.clone(), backend).unwrap();
        assert_eq!(engine.backend(), backend);
        let engine = std::sync::Arc::new(engine);
        let (e, r) = (engine.clone(), req.clone());
        let got = within_guard("evaluate", move || e.evaluate(&r, &Env::at(now), Mode::PLAIN).to_json());
        assert_eq!(got, expected, "{backend:?}");
        let (e, r) = (engine.clone(), req.clone());
        let got = within_guard("evaluate traced", move || e.evaluate(&r, &Env::at(now), Mode::TRACE).to_json());
        assert_eq!(got, traced, "{backend:?} trace");
        let e = engine.clone();
        let got = within_guard("evaluate_json", move || {
            e.evaluate_json(CONTEXT.as_bytes(), &Env::at(now), Mode::PLAIN).unwrap().to_json()
        });
        assert_eq!(got, expected, "{backend:?} from JSON");
        let (e, r) = (engine.clone(), req.clone());
        let kind = within_guard("decide", move || {
            let mut scratch = Scratch::default();
            let outcome = e.decide(&r, &Env::at(now), &mut scratch);
            e.decision_ref(&outcome).kind.to_owned()
        });
        assert_eq!(kind, "allow", "{backend:?}");
    }
}

#[test]
fn shared_definitions_are_analysed_in_linear_time() {
    // An unsatisfiable base: the analysis reports V002 with an unsatisfiable core, which walks
    // the definitions' conjuncts.
    let text = shared_definitions("subject.level > 5 and subject.level < 2", 2);
    let found = within_guard("analysis", move || {
        let compiled = verdict_compiler::compile(&SourceFile::new("exp.verdict", text));
        analysis::analyze(&compiled.bundle.unwrap())
    });
    assert!(found.iter().any(|d| d.code == Code::Unsatisfiable), "{found:?}");
}

/// A host whose every callback panics.
struct Panicking;

impl Host for Panicking {
    fn atom(&mut self, _atom: u32, _site: u32) -> Truth {
        panic!("the host failed")
    }
}

#[test]
fn a_panicking_callback_is_a_fault_not_false() {
    // `not (…)` around a called-back atom: reading the panic as `false` would make it hold.
    let text =
        "bundle b {}\npolicy p {\n  default allow\n  rule r deny { when not (subject.name matches \"^a\") }\n}\n";
    let program = verdict_compiler::codegen::program(&compile(text));
    let symbols = Symbols::new(&program);
    let jit = JitCode::compile(&program, &symbols).unwrap();
    assert_eq!(jit.native_atoms(), 0, "`matches` is called back");
    let syms = vec![verdict_runtime::symbols::UNRESOLVED; program.paths.len()];
    let mut memo = vec![[0u32; 2]; program.defs.len()];
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let got = jit.holds(0, 0, &mut Panicking, &syms, &mut memo, 1);
    std::panic::set_hook(previous);
    assert_eq!(got, Some(Truth::Fault));
}

#[test]
fn trace_steps_name_reused_definitions() {
    let text = "bundle b {}\nlet admin = subject.role == \"admin\"\npolicy p {\n  default deny\n  rule r1 allow { when admin and action == \"a\" }\n  rule r2 allow { when admin }\n}\n";
    let bundle = compile(text);
    let req = Request::from_json(br#"{"subject": {"role": "admin"}, "action": "b"}"#).unwrap();
    let now = jiff::Timestamp::now();
    let result = Interpreter::new(&bundle).unwrap().evaluate(&req, &Env::at(now), Mode::TRACE);
    let Some(TraceEntry::Policy(p)) = result.trace.as_ref().and_then(|t| t.first()) else { panic!("no trace") };
    assert!(matches!(p.rules[0].atoms[0], TraceStep::Atom(_)));
    assert!(matches!(&p.rules[1].atoms[..], [TraceStep::Let(l)] if l.name == "admin" && l.result));
    let vm = Engine::with_backend(verdict_compiler::codegen::program(&bundle), Backend::Vm).unwrap();
    assert_eq!(vm.evaluate(&req, &Env::at(now), Mode::TRACE).to_json(), result.to_json());
}

/// A rule of 40,000 atoms: too large for one native function (Cranelift's compile time grows
/// faster than linearly), so a JIT engine runs it on the bytecode and compiles the rest; the
/// engine loads within the guard and decides as the interpreter does.
#[test]
fn huge_conditions_stay_on_the_bytecode() {
    let atoms: Vec<String> = (0..40_000).map(|i| format!("data.x == {i}")).collect();
    let text = format!(
        "bundle big {{}}\npolicy p {{\n  default deny\n  rule small allow {{ when action == \"read\" }}\n  rule huge allow {{ when {} }}\n}}\n",
        atoms.join(" or ")
    );
    let bundle = within_guard("compile", move || compile(&text));
    let program = verdict_compiler::codegen::program(&bundle);
    let engine = within_guard("JIT", move || Engine::with_backend(program, Backend::Jit).unwrap());
    assert_eq!(engine.backend(), Backend::Jit);
    let interp = Interpreter::new(&bundle).unwrap();
    let now = jiff::Timestamp::now();
    for ctx in [r#"{"data": {"x": 39999}}"#, r#"{"data": {"x": -1}}"#, r#"{"action": "read"}"#] {
        let req = Request::from_json(ctx.as_bytes()).unwrap();
        assert_eq!(
            engine.evaluate(&req, &Env::at(now), Mode::PLAIN),
            interp.evaluate(&req, &Env::at(now), Mode::PLAIN),
            "{ctx}"
        );
    }
}

/// A tiered engine decides on the VM at once and switches to native code when it is compiled,
/// with the same decisions before and after.
#[test]
fn tiered_engines_switch_to_the_jit() {
    let text = shared_definitions("subject.role == \"admin\"", 6);
    let bundle = compile(&text);
    let engine = Engine::tiered(verdict_compiler::codegen::program(&bundle)).unwrap();
    let req = Request::from_json(CONTEXT.as_bytes()).unwrap();
    let now = jiff::Timestamp::now();
    let first = engine.evaluate(&req, &Env::at(now), Mode::PLAIN);
    let mut switched = false;
    for _ in 0..600 {
        if engine.backend() == Backend::Jit {
            switched = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(switched, "the JIT was not installed within the guard");
    assert_eq!(engine.evaluate(&req, &Env::at(now), Mode::PLAIN), first);
}
