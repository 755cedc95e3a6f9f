//! `verdict eval`: one decision, or one per line of a JSON Lines file.

use crate::Backend;
use crate::{card, keys, render};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use verdict_compiler::interp::Interpreter;
use verdict_runtime::artifact;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{self, Engine};

/// What `eval` trusts: the card trust flags, and the artifact signers' public key files.
pub struct Trust<'a> {
    pub card: &'a card::TrustArgs,
    pub trusted_keys: &'a [PathBuf],
}

pub fn run(
    source: &Path,
    context: Option<&Path>,
    contexts: Option<&Path>,
    trace: bool,
    backend: Backend,
    now: Option<&str>,
    trust: Trust<'_>,
) -> u8 {
    let keys = match keys::trusted_keys(trust.trusted_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let now = match now {
        None => jiff::Timestamp::now(),
        Some(t) => match t.parse::<jiff::Timestamp>() {
            Ok(ts) => ts,
            Err(e) => {
                eprintln!("error: `--now {t}` is not an RFC 3339 date-time with an offset: {e}");
                return 2;
            }
        },
    };
    let bytes = match std::fs::read(source) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", source.display());
            return 2;
        }
    };
    // An artifact is recognised by its header, not its name.
    if artifact::is_artifact(&bytes) {
        if backend == Backend::Interp {
            eprintln!(
                "error: {} is a compiled artifact; the interpreter needs the bundle's source (use `--backend jit` or `vm`)",
                source.display()
            );
            return 2;
        }
        let engine = match artifact::read_trusted(&bytes, &keys) {
            Ok(trusted) => engine(trusted.program, backend).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let engine = match engine {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {}: {e}", source.display());
                return 2;
            }
        };
        return dispatch(&|r, n, t| engine.evaluate(r, &Env::at(n), Mode::traced(t)), context, contexts, trace, now);
    }
    if !keys.is_empty() {
        eprintln!(
            "error: {}: not a signed artifact: with trusted keys only artifacts signed by one of them are evaluated (compile with `verdict compile --sign KEY`)",
            source.display()
        );
        return 2;
    }
    let file = match render::read(source) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bundle = match card::bundle_of(&file, trust.card, now) {
        Ok(b) => b,
        // A refused card or a bundle that does not compile is bad input for `eval`.
        Err(_) => return 2,
    };
    match backend {
        Backend::Interp => match Interpreter::new(&bundle) {
            Ok(i) => dispatch(&|r, n, t| i.evaluate(r, &Env::at(n), Mode::traced(t)), context, contexts, trace, now),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Backend::Vm | Backend::Jit => match engine(verdict_compiler::codegen::program(&bundle), backend) {
            Ok(engine) => {
                dispatch(&|r, n, t| engine.evaluate(r, &Env::at(n), Mode::traced(t)), context, contexts, trace, now)
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
    }
}

/// An engine on the chosen backend; a JIT that is unavailable falls back to the VM, said on stderr.
fn engine(
    program: verdict_runtime::program::Program,
    backend: Backend,
) -> Result<Engine, verdict_runtime::program::VerifyError> {
    let wanted = if backend == Backend::Vm { vm::Backend::Vm } else { vm::Backend::Jit };
    let engine = Engine::with_backend(program, wanted)?;
    if let Some(reason) = engine.jit_fallback() {
        eprintln!("warning: {reason}; evaluating on the VM");
    }
    Ok(engine)
}

type Evaluate<'a> = dyn Fn(&Request, jiff::Timestamp, bool) -> EvaluationResult + 'a;

fn dispatch(
    eval: &Evaluate<'_>,
    context: Option<&Path>,
    contexts: Option<&Path>,
    trace: bool,
    now: jiff::Timestamp,
) -> u8 {
    match (context, contexts) {
        (_, Some(lines)) => batch(eval, lines, trace, now),
        (Some(ctx), None) => single(eval, ctx, trace, now),
        (None, None) => {
            eprintln!("error: give a CONTEXT file or `--contexts FILE.jsonl`");
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
    r.map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })
}

fn single(interp: &Evaluate<'_>, ctx: &Path, trace: bool, now: jiff::Timestamp) -> u8 {
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
    let result = interp(&req, now, trace);
    let text = serde_json::to_string_pretty(&result.to_json()).unwrap_or_default();
    if let Err(code) = render::stdout_line(&text) {
        return code;
    }
    match result.decision.kind.as_str() {
        "allow" | verdict_runtime::decision::NOT_APPLICABLE => 0,
        _ => 1,
    }
}

fn batch(interp: &Evaluate<'_>, path: &Path, trace: bool, now: jiff::Timestamp) -> u8 {
    let bytes = match read_bytes(path) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all_ok = true;
    for (i, line) in bytes.lines().enumerate() {
        let line_no = i + 1;
        let value = match line {
            Err(e) => {
                all_ok = false;
                json!({"error": format!("line {line_no}: {e}"), "line": line_no})
            }
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => match Request::from_json(l.as_bytes()) {
                Ok(req) => interp(&req, now, trace).to_json(),
                Err(e) => {
                    all_ok = false;
                    json!({"error": format!("line {line_no}: {e}"), "line": line_no})
                }
            },
        };
        if writeln!(out, "{value}").is_err() {
            return 2;
        }
    }
    if out.flush().is_err() {
        return 2;
    }
    if all_ok { 0 } else { 2 }
}
