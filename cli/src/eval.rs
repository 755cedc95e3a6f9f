//! `verdict eval`: one decision, one per line of a JSON Lines file, or a stateful run of events
//! against a store (TOOLCHAIN.md), with extern mocks and exhaustive results on request.

use crate::Backend;
use crate::{card, keys, load, render};
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::Path;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::testfile::Then;
use verdict_runtime::artifact;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::externs::ExternTable;
use verdict_runtime::request::Request;
use verdict_runtime::state::StateStore;
use verdict_runtime::vm::Engine;

/// What `verdict eval` was asked for, besides the bundle.
#[derive(Debug)]
pub struct Options<'a> {
    pub context: Option<&'a Path>,
    pub contexts: Option<&'a Path>,
    pub events: Option<&'a Path>,
    pub store: Option<&'a str>,
    pub externs: Option<&'a Path>,
    pub trace: bool,
    pub exhaustive: bool,
    pub backend: Backend,
    pub now: Option<&'a str>,
    /// Public key files of the artifact signers to trust (with any, only artifacts signed by one
    /// of them are evaluated).
    pub trusted_keys: &'a [std::path::PathBuf],
}

/// The interpreter or an engine: what decides in this run.
enum Evaluator<'b> {
    Interp(Interpreter<'b>),
    Engine(Box<Engine>),
}

impl Evaluator<'_> {
    fn evaluate(&self, req: &Request, env: &Env<'_>, mode: Mode) -> EvaluationResult {
        match self {
            Evaluator::Interp(i) => i.evaluate(req, env, mode),
            Evaluator::Engine(e) => e.evaluate(req, env, mode),
        }
    }

    fn evaluate_with_store(
        &self,
        req: &Request,
        env: &Env<'_>,
        mode: Mode,
        store: &dyn StateStore,
    ) -> EvaluationResult {
        match self {
            Evaluator::Interp(i) => i.evaluate_with_store(req, env, mode, store),
            Evaluator::Engine(e) => e.evaluate_with_store(req, env, mode, store),
        }
    }
}

/// The run's environment: the time, the extern mocks, the mode and the state store.
struct Run<'a> {
    now: jiff::Timestamp,
    externs: Option<&'a ExternTable>,
    mode: Mode,
    store: &'a dyn StateStore,
}

impl Run<'_> {
    /// One decision; stateful bundles decide against the store.
    fn decide(
        &self,
        ev: &Evaluator<'_>,
        stateful: bool,
        req: &Request,
        now: jiff::Timestamp,
        id: Option<&str>,
    ) -> EvaluationResult {
        let env = Env { now, decision_id: id, state: None, externs: self.externs.map(|e| e as _) };
        if stateful {
            ev.evaluate_with_store(req, &env, self.mode, self.store)
        } else {
            ev.evaluate(req, &env, self.mode)
        }
    }
}

pub fn run(source: &Path, opts: &Options<'_>, trust: &card::TrustArgs) -> u8 {
    let keys = match keys::trusted_keys(opts.trusted_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let now = match opts.now {
        None => jiff::Timestamp::now(),
        Some(t) => match t.parse::<jiff::Timestamp>() {
            Ok(ts) => ts,
            Err(e) => {
                eprintln!("error: `--now {t}` is not an RFC 3339 date-time with an offset: {e}");
                return 2;
            }
        },
    };
    let externs = match opts.externs.map(mocks).transpose() {
        Ok(e) => e,
        Err(code) => return code,
    };
    let store: Box<dyn StateStore> = match crate::store::parse(opts.store) {
        Ok(s) => s.boxed(),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mode = Mode { trace: opts.trace, exhaustive: opts.exhaustive };
    let run = Run { now, externs: externs.as_ref(), mode, store: store.as_ref() };
    let file = match load::read(source) {
        Ok(load::Input::Source(file)) => file,
        Ok(load::Input::Artifact(bytes)) => {
            if opts.backend == Backend::Interp {
                eprintln!(
                    "error: {} is a compiled artifact; the interpreter needs the bundle's source (use `--backend jit` or `vm`)",
                    source.display()
                );
                return 2;
            }
            let engine = match artifact::read_trusted(&bytes, &keys) {
                Ok(trusted) => load::engine(trusted.program, opts.backend).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let engine = match engine {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {}: {e}", source.display());
                    return 2;
                }
            };
            let stateful = engine.is_stateful();
            return dispatch(&Evaluator::Engine(Box::new(engine)), stateful, opts, &run);
        }
        Err(code) => return code,
    };
    if !keys.is_empty() {
        eprintln!(
            "error: {}: not a signed artifact: with trusted keys only artifacts signed by one of them are evaluated (compile with `verdict compile --sign KEY`)",
            source.display()
        );
        return 2;
    }
    let bundle = match card::bundle_of(&file, trust, now) {
        Ok(b) => b,
        // A refused card or a bundle that does not compile is bad input for `eval`.
        Err(_) => return 2,
    };
    let stateful = !bundle.states.is_empty();
    match opts.backend {
        Backend::Interp => match Interpreter::new(&bundle) {
            Ok(i) => dispatch(&Evaluator::Interp(i), stateful, opts, &run),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Backend::Vm | Backend::Jit => match load::engine(verdict_compiler::codegen::program(&bundle), opts.backend) {
            Ok(engine) => dispatch(&Evaluator::Engine(Box::new(engine)), stateful, opts, &run),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
    }
}

/// Extern mocks from a JSON file: `{"name": RESULT}` or `{"name": {"error": "msg"}}`.
fn mocks(path: &Path) -> Result<ExternTable, u8> {
    let bytes = read_bytes(path)?;
    let value = verdict_runtime::json::from_slice(&bytes).map_err(|e| {
        eprintln!("error: {}: invalid JSON: {e}", path.display());
        2
    })?;
    ExternTable::mocks(&value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        2
    })
}

fn dispatch(ev: &Evaluator<'_>, stateful: bool, opts: &Options<'_>, run: &Run<'_>) -> u8 {
    match (opts.context, opts.contexts, opts.events) {
        (_, _, Some(lines)) => events(ev, stateful, lines, run),
        (_, Some(lines), None) => batch(ev, stateful, lines, run),
        (Some(ctx), None, None) => single(ev, stateful, ctx, run),
        (None, None, None) => {
            eprintln!("error: give a CONTEXT file, `--contexts FILE.jsonl` or `--events FILE.jsonl`");
            2
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, u8> {
    let r = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    // A leading byte-order mark is skipped, as in every source text the toolchain reads.
    r.map(|mut bytes| {
        if bytes.starts_with(verdict_compiler::source::BOM.as_bytes()) {
            bytes.drain(..verdict_compiler::source::BOM.len());
        }
        bytes
    })
    .map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })
}

fn single(ev: &Evaluator<'_>, stateful: bool, ctx: &Path, run: &Run<'_>) -> u8 {
    let bytes = match read_bytes(ctx) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let req = match Request::from_json(&bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", ctx.display());
            return 2;
        }
    };
    let result = run.decide(ev, stateful, &req, run.now, None);
    let text = serde_json::to_string_pretty(&result.to_json()).unwrap_or_default();
    if let Err(code) = render::stdout_line(&text) {
        return code;
    }
    match result.decision.kind.as_str() {
        "allow" | verdict_runtime::decision::NOT_APPLICABLE => 0,
        _ => 1,
    }
}

/// Writes one JSON line per input line: `line` turns a non-empty input line into its output
/// (an `Err` is a bad line: reported on its line, and the run goes on).
fn lines(path: &Path, mut line: impl FnMut(usize, &str) -> Result<Value, String>) -> u8 {
    let bytes = match read_bytes(path) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all_ok = true;
    for (i, text) in bytes.lines().enumerate() {
        let line_no = i + 1;
        let value = match text {
            Err(e) => Err(e.to_string()),
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => line(line_no, &l),
        };
        let value = value.unwrap_or_else(|e| {
            all_ok = false;
            json!({"error": format!("line {line_no}: {e}"), "line": line_no})
        });
        if writeln!(out, "{value}").is_err() {
            return 2;
        }
    }
    if out.flush().is_err() {
        return 2;
    }
    if all_ok { 0 } else { 2 }
}

fn batch(ev: &Evaluator<'_>, stateful: bool, path: &Path, run: &Run<'_>) -> u8 {
    lines(path, |_, l| {
        let req = Request::from_json(l.as_bytes()).map_err(|e| e.to_string())?;
        Ok(run.decide(ev, stateful, &req, run.now, None).to_json())
    })
}

/// A stateful run: each line `{"now", "context", "then"}` is decided at its `now` against the
/// store under the id `e<line>`, then its holds are committed (the default), released or left.
fn events(ev: &Evaluator<'_>, stateful: bool, path: &Path, run: &Run<'_>) -> u8 {
    lines(path, |line_no, l| {
        let v = verdict_runtime::json::from_str(l).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(mut event) = v else { return Err("an event must be a JSON object".into()) };
        for key in event.keys() {
            if !matches!(key.as_str(), "now" | "context" | "then") {
                return Err(format!("unknown key `{key}` in an event; expected `now`, `context` or `then`"));
            }
        }
        let now = match event.remove("now") {
            None => run.now,
            Some(Value::String(t)) => {
                t.parse::<jiff::Timestamp>().map_err(|e| format!("`now` is not an RFC 3339 date-time: {e}"))?
            }
            Some(_) => return Err("`now` must be an RFC 3339 string".into()),
        };
        let then = match event.remove("then") {
            None => Then::Commit,
            Some(other) => match other.as_str().and_then(Then::parse) {
                Some(t) => t,
                None => return Err(format!("`then` must be `commit`, `release` or `hold`, not {other}")),
            },
        };
        let context = event.remove("context").ok_or("an event needs a `context`")?;
        let req = Request::from_value(context).map_err(|e| e.to_string())?;
        let id = format!("e{line_no}");
        let result = run.decide(ev, stateful, &req, now, Some(&id));
        let mut out = result.to_json();
        if let (Err(e), Value::Object(m)) = (settle(run.store, &id, &result, then, now), &mut out) {
            m.insert("then_error".into(), Value::String(e));
        }
        Ok(out)
    })
}

/// Commits, releases (or, for `hold`, leaves) the holds of a decision made under `id`; only a
/// decision that made holds has anything to settle.
pub(crate) fn settle(
    store: &dyn StateStore,
    id: &str,
    result: &EvaluationResult,
    then: Then,
    now: jiff::Timestamp,
) -> Result<(), String> {
    if result.holds.is_empty() {
        return Ok(());
    }
    let at = verdict_runtime::state::micros(now);
    let settled = match then {
        Then::Commit => store.commit(id, at),
        Then::Release => store.release(id, at),
        Then::Hold => return Ok(()),
    };
    settled.map(|_| ()).map_err(|e| e.to_string())
}
