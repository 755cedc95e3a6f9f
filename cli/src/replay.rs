//! `verdict replay AUDIT.jsonl CANDIDATE`: change impact on real traffic. Every evaluation line
//! of an audit log written by `verdict serve` records what its decision read — the request
//! pruned to the bundle's paths (`input`), the evaluation time (`time`) and, for a stateful
//! bundle, the state reads with their values (`state_reads`). Each is evaluated again on the
//! candidate bundle (source or artifact), and the decisions are compared by effect, as
//! `verdict diff` and shadow evaluation compare them: transitions such as `allow -> deny`, with
//! counts and the first correlation ids.
//!
//! What a line cannot answer is said, never guessed:
//! - A candidate that reads a path the logged version did not read sees it missing (the line
//!   has only what the logged version read). The `evaluation_inputs` event of each logged
//!   version lists its paths; lines of a version whose event is not in the log (a rotated log)
//!   are counted as unchecked.
//! - A stateful candidate that reads a series or window the live decision did not read cannot
//!   be answered: the line is not replayed (counted, with the reason).
//! - The service binds no externs: their calls fail alike in the service and here.
//!
//! Exit codes, as `verdict diff`: 0 no decision changed, 1 some changed, 2 bad input (an
//! unreadable log or candidate, or no evaluation of the bundle that could be replayed).

use crate::Format;
use crate::{load, render};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::{Request, split_field};
use verdict_runtime::signature::TrustedKeys;
use verdict_runtime::state::{Read, Replayed, StateView};
use verdict_server::audit::StateRead;
use verdict_server::engine::Engine;

/// Correlation ids kept per transition.
const EXAMPLES: usize = 10;
/// Line numbers of malformed lines kept for the report.
const MALFORMED_EXAMPLES: usize = 10;

/// The candidate, ready to evaluate.
struct Candidate {
    engine: Engine,
    /// The paths it reads, as segments.
    paths: Vec<Vec<String>>,
    stateful: bool,
}

fn load(path: &Path) -> Result<Candidate, u8> {
    let engine = match load::read(path)? {
        load::Input::Artifact(bytes) => Engine::from_artifact(&bytes, &TrustedKeys::none()).map(|(e, _)| e),
        load::Input::Source(file) => {
            let Some(bundle) = load::compile(&file) else {
                eprintln!("error: {} does not compile", file.name);
                return Err(2);
            };
            Engine::new(bundle)
        }
    };
    let engine = engine.map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        2
    })?;
    let paths = engine.inputs().texts().iter().map(|t| split_field(t)).collect();
    let stateful = engine.is_stateful();
    Ok(Candidate { engine, paths, stateful })
}

/// One line of the log, read.
enum Line {
    Json(Value),
    Malformed,
    Blank,
}

/// Calls `each` with every line of the log (numbered from 1).
fn lines(path: &Path, mut each: impl FnMut(usize, Line)) -> Result<(), u8> {
    let file = std::fs::File::open(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| {
            eprintln!("error: cannot read {}: {e}", path.display());
            2
        })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let line = if buf.iter().all(u8::is_ascii_whitespace) {
            Line::Blank
        } else {
            serde_json::from_slice::<Value>(&buf).map_or(Line::Malformed, Line::Json)
        };
        each(number, line);
    }
}

/// What the replay found.
#[derive(Default)]
struct Report {
    evaluations: u64,
    replayed: u64,
    unchanged: u64,
    /// `"allow -> deny"` → how many, and the first correlation ids.
    transitions: BTreeMap<String, (u64, Vec<String>)>,
    not_replayed: BTreeMap<&'static str, u64>,
    /// Candidate paths the logged version did not read, and the lines replayed without them.
    unrecorded: BTreeSet<String>,
    unrecorded_lines: u64,
    /// Lines whose version's `evaluation_inputs` event is not in the log.
    unchecked: u64,
    other_bundles: BTreeMap<String, u64>,
    malformed: u64,
    malformed_first: Vec<usize>,
}

impl Report {
    fn changed(&self) -> u64 {
        self.transitions.values().map(|(n, _)| n).sum()
    }

    fn skip(&mut self, why: &'static str) {
        *self.not_replayed.entry(why).or_default() += 1;
    }
}

/// Replays one evaluation line on the candidate; a replayed line is counted by the digest of its
/// bundle version (`digests`), whose recorded paths are compared with the candidate's when the
/// whole log has been read (a version's `evaluation_inputs` event may come after its lines).
fn replay_line(cand: &Candidate, digests: &mut HashMap<String, u64>, line: &Value, report: &mut Report) {
    let Some(input) = line.get("input") else {
        return report.skip("no input recorded (a line written before audit lines recorded inputs)");
    };
    let Ok(req) = Request::from_value(input.clone()) else {
        return report.skip("the recorded input is not a request context");
    };
    let Some(now) = line.get("time").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return report.skip("no valid time");
    };
    let Some(logged) = line.get("decision").and_then(Value::as_str) else {
        return report.skip("no decision");
    };
    let reads = match line.get("state_reads") {
        None => Vec::new(),
        Some(Value::Array(items)) => match items.iter().map(StateRead::from_json).collect::<Option<Vec<Read>>>() {
            Some(r) => r,
            None => return report.skip("invalid state reads"),
        },
        Some(_) => return report.skip("invalid state reads"),
    };
    // A read the line does not record fails, and the line is not replayed.
    let view = Replayed::new(&reads);
    let decision_id = line.get("decision_id").and_then(Value::as_str);
    let env = Env { now, decision_id, state: cand.stateful.then_some(&view as &dyn StateView), externs: None };
    let result = cand.engine.evaluate(&req, &env, Mode::PLAIN);
    if view.missed() {
        return report.skip("the candidate reads state the line does not record");
    }
    report.replayed += 1;
    match line.get("bundle_digest").and_then(Value::as_str) {
        None => report.unchecked += 1,
        Some(d) => *digests.entry(d.to_owned()).or_default() += 1,
    }
    let kind = result.decision.kind.as_str();
    if kind == logged {
        report.unchanged += 1;
        return;
    }
    let (n, ids) = report.transitions.entry(format!("{logged} -> {kind}")).or_default();
    *n += 1;
    if ids.len() < EXAMPLES {
        let id = line.get("correlation_id").and_then(Value::as_str).unwrap_or_default();
        ids.push(id.to_owned());
    }
}

pub fn run(audit: &Path, candidate: &Path, bundle: Option<&str>, format: Format) -> u8 {
    let cand = match load(candidate) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bundle_id = bundle.unwrap_or(cand.engine.id()).to_owned();
    // One pass over the log: the paths each logged bundle version's lines record (by the digest
    // of the bytes it was loaded from), and every evaluation of the bundle replayed.
    let mut recorded: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut digests: HashMap<String, u64> = HashMap::new();
    let mut report = Report::default();
    let read = lines(audit, |number, line| match line {
        Line::Blank => {}
        Line::Malformed => {
            report.malformed += 1;
            if report.malformed_first.len() < MALFORMED_EXAMPLES {
                report.malformed_first.push(number);
            }
        }
        Line::Json(v) => match v.get("event").and_then(Value::as_str) {
            Some("evaluation") => match v.get("bundle_id").and_then(Value::as_str) {
                Some(id) if id == bundle_id => {
                    report.evaluations += 1;
                    replay_line(&cand, &mut digests, &v, &mut report);
                }
                Some(other) => *report.other_bundles.entry(other.to_owned()).or_default() += 1,
                None => {}
            },
            Some(verdict_server::audit::INPUTS_EVENT) => {
                let (Some(digest), Some(Value::Array(paths))) =
                    (v.get("bundle_digest").and_then(Value::as_str), v.get("paths"))
                else {
                    return;
                };
                let paths = paths.iter().filter_map(Value::as_str).map(split_field).collect();
                recorded.insert(digest.to_owned(), paths);
            }
            _ => {}
        },
    });
    if let Err(code) = read {
        return code;
    }
    // The candidate's paths against what each version recorded: once per version.
    for (digest, n) in &digests {
        let Some(paths) = recorded.get(digest) else {
            report.unchecked += n;
            continue;
        };
        let missing: Vec<&Vec<String>> =
            cand.paths.iter().filter(|p| !paths.iter().any(|r| p.starts_with(r))).collect();
        if !missing.is_empty() {
            report.unrecorded_lines += n;
            report.unrecorded.extend(missing.iter().map(|p| verdict_runtime::request::join_field(p)));
        }
    }
    if report.replayed == 0 {
        let why = if report.evaluations == 0 {
            let others: Vec<String> = report.other_bundles.keys().map(|k| format!("`{k}`")).collect();
            let others = if others.is_empty() { "none".to_owned() } else { others.join(", ") };
            format!("no evaluation of bundle `{bundle_id}` in {} (bundles evaluated there: {others})", audit.display())
        } else {
            let reasons: Vec<String> = report.not_replayed.iter().map(|(r, n)| format!("{n}: {r}")).collect();
            format!(
                "none of the {} evaluations of bundle `{bundle_id}` in {} can be replayed ({})",
                report.evaluations,
                audit.display(),
                reasons.join("; ")
            )
        };
        eprintln!("error: {why}");
        return 2;
    }
    let text = match format {
        Format::Json => json_report(&cand, &bundle_id, &report).to_string(),
        Format::Human => human_report(&cand, &bundle_id, &report),
    };
    if let Err(code) = render::stdout_line(&text) {
        return code;
    }
    if report.changed() == 0 { 0 } else { 1 }
}

fn json_report(cand: &Candidate, bundle_id: &str, r: &Report) -> Value {
    let transitions: Map<String, Value> =
        r.transitions.iter().map(|(k, (n, ids))| (k.clone(), json!({"count": n, "correlation_ids": ids}))).collect();
    let reasons: Map<String, Value> = r.not_replayed.iter().map(|(k, n)| ((*k).to_owned(), json!(n))).collect();
    json!({
        "bundle_id": bundle_id,
        "candidate": {
            "bundle_id": cand.engine.id(),
            "bundle_version": cand.engine.version(),
            "fingerprint": cand.engine.fingerprint(),
        },
        "evaluations": r.evaluations,
        "replayed": r.replayed,
        "unchanged": r.unchanged,
        "changed": r.changed(),
        "transitions": transitions,
        "not_replayed": {"count": r.not_replayed.values().sum::<u64>(), "reasons": reasons},
        "unrecorded_paths": {"paths": r.unrecorded, "lines": r.unrecorded_lines},
        "unchecked": r.unchecked,
        "other_bundles": r.other_bundles,
        "malformed_lines": {"count": r.malformed, "first": r.malformed_first},
    })
}

fn human_report(cand: &Candidate, bundle_id: &str, r: &Report) -> String {
    let mut out = format!(
        "replayed {} of {} evaluations of bundle `{bundle_id}` on the candidate (version {}, {})\n",
        r.replayed,
        r.evaluations,
        cand.engine.version(),
        cand.engine.fingerprint()
    );
    if r.changed() == 0 {
        out.push_str("no change: every replayed decision is the same\n");
    }
    for (t, (n, ids)) in &r.transitions {
        out.push_str(&format!("{t}: {n} (e.g. {})\n", ids.join(", ")));
    }
    if r.changed() > 0 {
        out.push_str(&format!("unchanged: {}\n", r.unchanged));
    }
    for (why, n) in &r.not_replayed {
        out.push_str(&format!("warning: {n} not replayed: {why}\n"));
    }
    if !r.unrecorded.is_empty() {
        let paths: Vec<String> = r.unrecorded.iter().map(|p| format!("`{p}`")).collect();
        out.push_str(&format!(
            "warning: the candidate reads paths the logged decisions did not record ({}): {} lines were replayed with them missing\n",
            paths.join(", "),
            r.unrecorded_lines
        ));
    }
    if r.unchecked > 0 {
        out.push_str(&format!(
            "warning: {} lines come from bundle versions whose `evaluation_inputs` event is not in the log: whether the candidate reads paths they do not record is unchecked\n",
            r.unchecked
        ));
    }
    if r.malformed > 0 {
        let first: Vec<String> = r.malformed_first.iter().map(usize::to_string).collect();
        out.push_str(&format!("warning: {} lines are not JSON (lines {})\n", r.malformed, first.join(", ")));
    }
    out.trim_end().to_owned()
}
