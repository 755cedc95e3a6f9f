//! A tiny decision service built on the runtime alone (no compiler, no grammar): it loads a
//! compiled `.vdc` artifact once, then answers one request context per line of standard input
//! with one decision per line of standard output.
//!
//! ```sh
//! cargo run -q -p verdict-cli -- compile examples/quickstart/bundle.verdict -o /tmp/quickstart.vdc
//! echo '{"subject": {"role": "admin"}, "action": "update"}' \
//!   | cargo run -q -p verdict-service-example -- /tmp/quickstart.vdc
//! ```
//!
//! The hot loop uses the allocation-free API: `Engine::decide` with a reused `Scratch`, reading
//! the decision from the engine's tables; only the printing allocates.

use serde_json::json;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use verdict_runtime::artifact;
use verdict_runtime::env::Env;
use verdict_runtime::request::Request;
use verdict_runtime::signature::TrustedKeys;
use verdict_runtime::vm::{Engine, Scratch};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: verdict-service-example ARTIFACT.vdc < requests.jsonl");
        return ExitCode::from(2);
    };
    let engine = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        // No trusted keys: signed and unsigned artifacts load on their checksum.
        .and_then(|bytes| artifact::read_trusted(&bytes, &TrustedKeys::none()).map_err(|e| e.to_string()))
        .map(|trusted| trusted.program)
        .and_then(|program| Engine::new(program).map_err(|e| e.to_string()))
    {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let program = engine.program();
    eprintln!("loaded bundle `{}` {} ({})", program.bundle_id, program.version, program.fingerprint);
    let mut scratch = Scratch::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match Request::from_json(line.as_bytes()) {
            Err(e) => json!({"line": n + 1, "error": e.to_string()}),
            Ok(req) => {
                let outcome = engine.decide(&req, &Env::at(jiff::Timestamp::now()), &mut scratch);
                let d = engine.decision_ref(&outcome);
                let (kind, policy, rule, reason) = (d.kind, d.policy_id, d.rule_id, d.reason);
                json!({"line": n + 1, "decision": kind, "policy": policy, "rule": rule, "reason": reason})
            }
        };
        if writeln!(out, "{answer}").is_err() {
            return ExitCode::from(2);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
