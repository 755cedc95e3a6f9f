//! Hostile programs (`verdict_tests::hostile`, the generator the `hostile_program` fuzz target
//! also runs): built directly as `Program` values — self-calls behind jumps, exponential call
//! trees 34 deep, jumps into the middle of instructions, everything out of range — each is
//! refused by `Program::verify` (and every loader), or the VM, the JIT and the traced VM decide it
//! alike within bounded work. Bounded work is checked by a hang guard: a case that does not finish
//! within [`HANG_GUARD`] (milliseconds are expected) fails; a stack overflow aborts the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "test failures")]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use verdict_runtime::program::{Program, VerifyError};
use verdict_runtime::request::Request;
use verdict_tests::hostile::{self, Checked};

/// Far beyond what a linear evaluation of any generated program takes, far below 2^34 steps.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Runs [`hostile::check`] on a worker thread under the hang guard.
fn check_bounded(p: Program, requests: Vec<Request>) -> Result<Checked, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let asm = verdict_runtime::artifact::disassemble(&p);
    std::thread::spawn(move || {
        let _ = tx.send(hostile::check(&p, &requests));
    });
    match rx.recv_timeout(HANG_GUARD) {
        Ok(r) => r,
        Err(_) => Err(format!("no decision within {HANG_GUARD:?}: unbounded work\n{asm}")),
    }
}

/// Requests that make `subject.role == "admin"` true and false.
fn admin_and_other() -> Vec<Request> {
    ["{}", r#"{"subject": {"role": "admin"}}"#, r#"{"subject": {"role": "student"}, "action": "read"}"#]
        .iter()
        .filter_map(|t| Request::from_json(t.as_bytes()).ok())
        .collect()
}

#[test]
fn generated_hostile_programs_are_refused_or_decided_alike() {
    let cases: u32 = std::env::var("VERDICT_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let mut runner = TestRunner::new(Config { cases, max_shrink_iters: 0, ..Config::default() });
    let (refused, decided) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
        let mut u = arbitrary::Unstructured::new(&bytes);
        let Ok(p) = hostile::program(&mut u) else { return Ok(()) };
        let requests = hostile::requests(&mut u).unwrap_or_default();
        match check_bounded(p, requests).map_err(TestCaseError::fail)? {
            Checked::Refused => refused.fetch_add(1, Ordering::Relaxed),
            Checked::Decided => decided.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    });
    if let Err(e) = result {
        unreachable!("{e}");
    }
    // Neither side may be vacuous: the generator reaches past the verifier, and the verifier
    // has hostile programs to refuse.
    let (refused, decided) = (refused.into_inner(), decided.into_inner());
    let total = (refused + decided).max(1);
    assert!(decided * 4 >= total, "only {decided} of {total} programs verified");
    assert!(refused * 10 >= total, "only {refused} of {total} programs refused");
}

#[test]
fn a_self_call_behind_a_jump_never_runs() {
    let p = hostile::self_call_behind_a_jump();
    assert_eq!(p.verify(), Err(VerifyError::CallCycle));
    assert_eq!(check_bounded(p, admin_and_other()), Ok(Checked::Refused));
}

/// Issue 10's shared definitions as a program: `d{i} = d{i-1} and d{i-1}`, 34 deep. For an admin
/// every call holds, so anyone who does not share a definition's value within a request makes
/// 2^34 calls (the JIT and the traced VM did, before definitions became linear).
#[test]
fn an_exponential_call_tree_decides_in_bounded_work() {
    let p = hostile::and_tree(hostile::MAX_TREE_DEPTH);
    assert_eq!(p.verify(), Ok(()));
    assert_eq!(check_bounded(p, admin_and_other()), Ok(Checked::Decided));
}

/// A dispatch table is part of a program's meaning: a crafted one that leaves out a rule that
/// holds must not make a traced evaluation (which explains the decision) decide otherwise than the
/// untraced one (which is served). Either the verifier refuses such a table, or every run honours it.
#[test]
fn a_lying_dispatch_table_decides_alike_traced_and_untraced() {
    let read = Request::from_json(br#"{"action": "read"}"#).into_iter().collect();
    if let Err(e) = check_bounded(hostile::lying_dispatch(), read) {
        unreachable!("{e}");
    }
}

/// Found by the `load_artifact` fuzz target: an artifact whose timezone is not a timezone passed
/// `Program::verify` (so `artifact::read` accepted it), and then every engine refused it. What
/// loads must run: the verifier refuses it, as it refuses every other invalid table.
#[test]
fn an_unknown_timezone_is_refused_by_the_verifier() {
    let mut p = hostile::and_tree(2);
    p.timezone = "U ".into();
    if let Err(e) = check_bounded(p, admin_and_other()) {
        unreachable!("{e}");
    }
}

/// A dispatch table may leave a rule out only where the rule's code proves it cannot hold, and
/// never a rule that may call an extern or read state: skipping it would skip the calls (and the
/// faults) the interpreter makes before its ruling-out conjunct. A crafted table that leaves out
/// `risk(subject.id) > 0.5 and action == "delete"` for `read` is refused, as codegen never
/// builds one.
#[test]
fn a_dispatch_table_that_skips_a_fallible_rule_is_refused() {
    let source = r#"bundle "d" { effects [deny, allow] }
extern risk(any) -> number
policy p {
  default deny
  match first
  rule a allow { when action == "read" }
  rule b allow { when action == "write" }
  rule c allow { when action == "list" }
  rule r deny { when risk(subject.id) > 0.5 and action == "delete" }
}
"#;
    let file = verdict_compiler::source::SourceFile::new("d.verdict", source.to_owned());
    let ir = verdict_compiler::compile_for_use(&file).bundle.unwrap();
    let mut p = verdict_compiler::codegen::program(&ir);
    assert_eq!(p.verify(), Ok(()));
    let d = p.policies[0].dispatch.as_mut().expect("codegen builds a dispatch table");
    let risky = 3;
    assert!(d.keys.iter().all(|(_, l)| l.contains(&risky)), "codegen never skips the fallible rule");
    for (k, list) in &mut d.keys {
        if k == "read" {
            list.retain(|&i| i != risky);
        }
    }
    assert!(matches!(p.verify(), Err(VerifyError::Policy { .. })), "{:?}", p.verify());
}
