//! `verdict bench`: decisions per second and latency percentiles (an HDR histogram) of a bundle
//! on given requests, per backend — the JIT, the VM, the interpreter — for people or as JSON,
//! and a regression gate against a baseline file (`--compare BASELINE.json --max-regress PCT`).
//!
//! Each decision is timed on its own (`Instant` before and after) and the clock's own cost,
//! measured before the run, is subtracted from every sample, so a 40 ns decision does not read
//! as 60. A second, shorter phase times batches of decisions as a whole (no clock read per
//! decision, as criterion does), whose median per-decision mean is reported beside. Requests are cycled in file order for `--duration` per backend, after an untimed
//! warm-up. Stateful bundles decide against an in-memory store whose holds are released after
//! each decision (untimed), with a fresh store every [`STORE_RESET`] decisions.

use crate::Backend;
use crate::{card, load, render};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::externs::ExternTable;
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, StateStore};
use verdict_runtime::vm::{self, Engine, Scratch};

/// What each timed decision starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Input {
    /// The JSON bytes of the context: parsing (projected on the bundle's paths) is timed too.
    Json,
    /// A parsed request (`Request`): paths are resolved during the decision.
    Parsed,
    /// A prepared request (`PreparedRequest`): every path resolved beforehand (the interpreter
    /// takes the parsed request).
    Prepared,
}

impl Input {
    fn as_str(self) -> &'static str {
        match self {
            Input::Json => "json",
            Input::Parsed => "parsed",
            Input::Prepared => "prepared",
        }
    }
}

/// What `verdict bench` was asked for.
#[derive(Debug)]
pub struct Options<'a> {
    pub source: &'a Path,
    pub contexts: &'a Path,
    pub backends: &'a [Backend],
    pub duration: &'a str,
    pub input: Input,
    pub format: crate::Format,
    pub externs: Option<&'a Path>,
    pub now: Option<&'a str>,
    pub compare: Option<&'a Path>,
    pub max_regress: f64,
}

/// A stateful run starts a fresh store after this many decisions.
const STORE_RESET: u64 = 10_000;
/// The most requests a contexts file may hold.
const MAX_REQUESTS: usize = 1_000_000;
/// The percentiles reported, with their JSON names.
const QUANTILES: [(&str, f64); 5] = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999), ("max", 1.0)];

/// The measurement of one backend.
struct Row {
    backend: &'static str,
    /// Why the JIT was not used (the VM measured instead).
    fallback: Option<String>,
    decisions: u64,
    /// Decisions per second of decision time (the sum of the corrected samples).
    per_sec: f64,
    hist: Histogram<u64>,
    /// The median over batches of [`BATCH`] decisions of their mean time (stateless bundles):
    /// no clock read per decision, so comparable with criterion's per-iteration figures.
    batched: Option<u64>,
}

/// Decisions per batch of the batched phase.
const BATCH: u64 = 256;

pub fn run(opts: &Options<'_>) -> u8 {
    let duration = match parse_duration(opts.duration) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: `--duration {}`: {e}", opts.duration);
            return 2;
        }
    };
    if !(opts.max_regress >= 0.0 && opts.max_regress.is_finite()) {
        eprintln!("error: `--max-regress {}`: a percentage, 0 or more", opts.max_regress);
        return 2;
    }
    let now = match opts.now.map(str::parse::<jiff::Timestamp>).transpose() {
        Ok(t) => t.unwrap_or_else(jiff::Timestamp::now),
        Err(e) => {
            eprintln!("error: `--now`: not an RFC 3339 date-time with an offset: {e}");
            return 2;
        }
    };
    let externs = match opts.externs.map(mocks).transpose() {
        Ok(e) => e,
        Err(code) => return code,
    };
    let baseline = match opts.compare.map(read_baseline).transpose() {
        Ok(b) => b,
        Err(code) => return code,
    };
    let requests = match read_requests(opts.contexts) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bundle = match load(opts.source, now) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let backends: Vec<Backend> = if opts.backends.is_empty() {
        let mut all = vec![Backend::Jit, Backend::Vm];
        if bundle.ir.is_some() {
            all.push(Backend::Interp);
        }
        all
    } else {
        opts.backends.to_vec()
    };
    let env = Env { now, decision_id: None, state: None, externs: externs.as_ref().map(|e| e as _) };
    let overhead = timer_overhead();
    let mut rows = Vec::new();
    for backend in backends {
        let row = match backend {
            Backend::Interp => {
                let Some(ir) = &bundle.ir else {
                    eprintln!(
                        "error: {} is an artifact: the interpreter needs the bundle's source",
                        opts.source.display()
                    );
                    return 2;
                };
                let interp = match Interpreter::new(ir) {
                    Ok(i) => i,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                };
                let input = opts.input;
                let decide = |r: &Req, store: Option<&dyn StateStore>| match (store, input) {
                    (Some(s), _) => interp.evaluate_with_store(&r.parsed, &env, Mode::PLAIN, s).decision_id,
                    // From JSON bytes the interpreter parses the whole context.
                    (None, Input::Json) => {
                        if let Ok(req) = Request::from_json(&r.json) {
                            std::hint::black_box(interp.evaluate(&req, &env, Mode::PLAIN));
                        }
                        None
                    }
                    (None, _) => {
                        std::hint::black_box(interp.evaluate(&r.parsed, &env, Mode::PLAIN));
                        None
                    }
                };
                measure("interp", None, &requests, duration, overhead, bundle.stateful, decide, now)
            }
            Backend::Vm | Backend::Jit => {
                let wanted = if backend == Backend::Vm { vm::Backend::Vm } else { vm::Backend::Jit };
                let engine = match Engine::with_backend(bundle.program.clone(), wanted) {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                };
                let name = if backend == Backend::Vm { "vm" } else { "jit" };
                let fallback = engine.jit_fallback().map(ToString::to_string);
                // Prepared only when the decisions start from them (stateful runs take the parsed
                // request).
                let prepared: Vec<_> = if opts.input == Input::Prepared && !bundle.stateful {
                    requests.iter().map(|r| engine.prepare(&r.parsed)).collect()
                } else {
                    Vec::new()
                };
                let mut scratch = Scratch::default();
                let input = opts.input;
                let decide = |r: &Req, store: Option<&dyn StateStore>| {
                    if let Some(s) = store {
                        return engine.evaluate_with_store(&r.parsed, &env, Mode::PLAIN, s).decision_id;
                    }
                    match input {
                        Input::Json => {
                            std::hint::black_box(engine.decide_json(&r.json, &env, &mut scratch).is_ok());
                        }
                        Input::Parsed => {
                            std::hint::black_box(engine.decide(&r.parsed, &env, &mut scratch).bundle);
                        }
                        Input::Prepared => {
                            if let Some(p) = prepared.get(r.index) {
                                std::hint::black_box(engine.decide_prepared(p, &env, &mut scratch).bundle);
                            }
                        }
                    }
                    None
                };
                measure(name, fallback, &requests, duration, overhead, bundle.stateful, decide, now)
            }
        };
        match row {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    }
    let report = report_json(opts, &bundle, requests.len(), duration, overhead, &rows);
    let verdicts = baseline.as_ref().map(|b| compare(b, &report, opts.max_regress)).unwrap_or_default();
    let written = match opts.format {
        crate::Format::Json => {
            let mut out = report;
            if let (Value::Object(m), Some(_)) = (&mut out, &baseline) {
                m.insert("comparison".into(), Value::Array(verdicts.iter().map(Verdict::to_json).collect()));
            }
            render::stdout_line(&serde_json::to_string_pretty(&out).unwrap_or_default())
        }
        crate::Format::Human => {
            render::stdout_line(&human(opts, &bundle, requests.len(), duration, overhead, &rows, &verdicts))
        }
    };
    if let Err(code) = written {
        return code;
    }
    if verdicts.iter().any(|v| v.regressed) { 1 } else { 0 }
}

/// `5s`, `500ms`, `1m` (jiff's friendly or ISO 8601 durations), or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => return Ok(Duration::from_secs_f64(secs)),
        Ok(_) => return Err("a positive number of seconds, at most a day".into()),
        Err(_) => text.trim().parse::<jiff::SignedDuration>().map_err(|e| e.to_string())?,
    };
    let d = Duration::try_from(d).map_err(|_| "a duration must be positive".to_owned())?;
    if d.is_zero() || d > Duration::from_secs(86_400) {
        return Err("a positive duration, at most a day".into());
    }
    Ok(d)
}

fn mocks(path: &Path) -> Result<ExternTable, u8> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })?;
    let value = verdict_runtime::json::from_slice(&bytes).map_err(|e| {
        eprintln!("error: {}: invalid JSON: {e}", path.display());
        2
    })?;
    ExternTable::mocks(&value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        2
    })
}

fn read_baseline(path: &Path) -> Result<Value, u8> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        eprintln!("error: {}: not JSON: {e}", path.display());
        2
    })?;
    if !v.get("backends").is_some_and(Value::is_array) {
        eprintln!("error: {}: not a `verdict bench --format json` report (no `backends`)", path.display());
        return Err(2);
    }
    Ok(v)
}

/// One request, in every form a backend takes.
struct Req {
    index: usize,
    json: Vec<u8>,
    parsed: Request,
}

/// The requests of a JSON Lines file: each line a request context, or an object with a
/// `context` (the lines of `cases.jsonl`, `requests.jsonl` and `events.jsonl`).
fn read_requests(path: &Path) -> Result<Vec<Req>, u8> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = verdict_runtime::json::from_str(line).map_err(|e| {
            eprintln!("error: {}:{}: invalid JSON: {e}", path.display(), i + 1);
            2
        })?;
        // A request context has no key `context` (`Request::from_value` refuses unknown keys): an
        // object with one is a case or an event, whose `context` is the request.
        let ctx = match v {
            Value::Object(mut m) => match m.remove("context") {
                Some(ctx) => ctx,
                None => Value::Object(m),
            },
            other => other,
        };
        let parsed = Request::from_value(ctx.clone()).map_err(|e| {
            eprintln!("error: {}:{}: {e}", path.display(), i + 1);
            2
        })?;
        if out.len() == MAX_REQUESTS {
            eprintln!("error: {}: more than {MAX_REQUESTS} requests", path.display());
            return Err(2);
        }
        out.push(Req { index: out.len(), json: ctx.to_string().into_bytes(), parsed });
    }
    if out.is_empty() {
        eprintln!("error: {}: no requests", path.display());
        return Err(2);
    }
    Ok(out)
}

/// The bundle under test: its program, and its IR when it came as source.
struct Loaded {
    id: String,
    program: verdict_runtime::program::Program,
    ir: Option<verdict_compiler::ir::Bundle>,
    stateful: bool,
}

fn load(source: &Path, now: jiff::Timestamp) -> Result<Loaded, u8> {
    let file = match load::read(source)? {
        load::Input::Source(file) => file,
        load::Input::Artifact(bytes) => {
            let keys = verdict_runtime::signature::TrustedKeys::none();
            let trusted = verdict_runtime::artifact::read_trusted(&bytes, &keys).map_err(|e| {
                eprintln!("error: {}: {e}", source.display());
                2
            })?;
            let program = trusted.program;
            return Ok(Loaded {
                id: program.bundle_id.clone(),
                stateful: !program.series.is_empty(),
                program,
                ir: None,
            });
        }
    };
    let bundle = card::bundle_of(&file, &card::TrustArgs::default(), now)?;
    Ok(Loaded {
        id: bundle.id.clone(),
        program: verdict_compiler::codegen::program(&bundle),
        stateful: !bundle.states.is_empty(),
        ir: Some(bundle),
    })
}

/// The median cost of reading the clock twice around nothing, in nanoseconds.
fn timer_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..20_001)
        .map(|_| {
            let t = Instant::now();
            u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}

/// Runs `decide` over the requests for `duration` (after a warm-up) and records each
/// decision's corrected latency. `decide` gets the store for stateful bundles and returns the
/// decision's id, whose holds are then released (untimed).
#[allow(clippy::too_many_arguments)]
fn measure(
    backend: &'static str,
    fallback: Option<String>,
    requests: &[Req],
    duration: Duration,
    overhead: u64,
    stateful: bool,
    mut decide: impl FnMut(&Req, Option<&dyn StateStore>) -> Option<String>,
    now: jiff::Timestamp,
) -> Result<Row, String> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).map_err(|e| e.to_string())?;
    let mut store = MemoryStore::new();
    let at = verdict_runtime::state::micros(now);
    let warmup = (duration / 10).min(Duration::from_secs(1));
    for timed in [false, true] {
        let span = if timed { duration } else { warmup };
        let start = Instant::now();
        let mut n = 0u64;
        let mut total = 0u128;
        'run: loop {
            for r in requests {
                let t = Instant::now();
                let id = decide(r, stateful.then_some(&store as &dyn StateStore));
                let took = t.elapsed();
                if let Some(id) = id {
                    let _ = store.release(&id, at);
                }
                if timed {
                    let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).saturating_sub(overhead).max(1);
                    hist.saturating_record(ns);
                    total += u128::from(ns);
                }
                n += 1;
                if stateful && n.is_multiple_of(STORE_RESET) {
                    store = MemoryStore::new();
                }
                if start.elapsed() >= span {
                    break 'run;
                }
            }
        }
        if timed {
            let per_sec = if total == 0 { 0.0 } else { n as f64 * 1e9 / total as f64 };
            let batched = if stateful { None } else { batches(requests, duration / 5, &mut decide) };
            return Ok(Row { backend, fallback, decisions: n, per_sec, hist, batched });
        }
    }
    Err("no measurement".into())
}

/// The batched phase: for `span`, batches of [`BATCH`] decisions timed as a whole; the median of
/// their per-decision means.
fn batches(
    requests: &[Req],
    span: Duration,
    decide: &mut impl FnMut(&Req, Option<&dyn StateStore>) -> Option<String>,
) -> Option<u64> {
    let mut means = Vec::new();
    let start = Instant::now();
    let mut next = requests.iter().cycle();
    while start.elapsed() < span.max(Duration::from_millis(50)) && means.len() < 1_000_000 {
        let t = Instant::now();
        for _ in 0..BATCH {
            let r = next.next()?;
            std::hint::black_box(decide(r, None));
        }
        means.push(u64::try_from(t.elapsed().as_nanos() / u128::from(BATCH)).unwrap_or(u64::MAX));
    }
    means.sort_unstable();
    means.get(means.len() / 2).copied()
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("min".into(), json!(h.min()));
    for (name, q) in QUANTILES {
        let v = if q >= 1.0 { h.max() } else { h.value_at_quantile(q) };
        m.insert(name.into(), json!(v));
    }
    m.insert("mean".into(), json!((h.mean() * 10.0).round() / 10.0));
    Value::Object(m)
}

fn report_json(
    opts: &Options<'_>,
    bundle: &Loaded,
    requests: usize,
    duration: Duration,
    overhead: u64,
    rows: &[Row],
) -> Value {
    let backends: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!({
                "backend": r.backend,
                "decisions": r.decisions,
                "decisions_per_sec": r.per_sec.round(),
                "latency_ns": latency_json(&r.hist),
            });
            if let (Some(b), Value::Object(m)) = (r.batched, &mut v) {
                m.insert("batched_median_ns".into(), json!(b));
            }
            if let (Some(f), Value::Object(m)) = (&r.fallback, &mut v) {
                m.insert("jit_fallback".into(), json!(f));
            }
            v
        })
        .collect();
    json!({
        "bundle": opts.source.display().to_string(),
        "bundle_id": bundle.id,
        "requests": requests,
        "input": if bundle.stateful { "parsed" } else { opts.input.as_str() },
        "stateful": bundle.stateful,
        "duration_s": duration.as_secs_f64(),
        "timer_overhead_ns": overhead,
        "toolchain": env!("CARGO_PKG_VERSION"),
        "backends": backends,
    })
}

/// One comparison with the baseline.
struct Verdict {
    backend: String,
    metric: &'static str,
    baseline: f64,
    current: f64,
    /// The change in percent, positive when worse.
    worse_pct: f64,
    regressed: bool,
}

impl Verdict {
    fn to_json(&self) -> Value {
        json!({
            "backend": self.backend,
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "worse_pct": (self.worse_pct * 10.0).round() / 10.0,
            "regressed": self.regressed,
        })
    }
}

/// Compares the median and p99 latency of every backend both reports measured: worse by more
/// than `max` percent is a regression.
fn compare(baseline: &Value, current: &Value, max: f64) -> Vec<Verdict> {
    let mut out = Vec::new();
    let rows = |v: &Value| v.get("backends").and_then(Value::as_array).cloned().unwrap_or_default();
    let old = rows(baseline);
    for row in rows(current) {
        let Some(name) = row.get("backend").and_then(Value::as_str) else { continue };
        let Some(before) = old.iter().find(|r| r.get("backend").and_then(Value::as_str) == Some(name)) else {
            continue;
        };
        for metric in ["p50", "p99"] {
            let get = |r: &Value| r.get("latency_ns").and_then(|l| l.get(metric)).and_then(Value::as_f64);
            let (Some(b), Some(c)) = (get(before), get(&row)) else { continue };
            let worse_pct = if b > 0.0 { (c - b) * 100.0 / b } else { 0.0 };
            out.push(Verdict {
                backend: name.to_owned(),
                metric,
                baseline: b,
                current: c,
                worse_pct,
                regressed: worse_pct > max,
            });
        }
    }
    out
}

/// Nanoseconds for people: `812 ns`, `12.3 µs`, `4.56 ms`.
fn ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v} ns")
    } else if v < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

fn human(
    opts: &Options<'_>,
    bundle: &Loaded,
    requests: usize,
    duration: Duration,
    overhead: u64,
    rows: &[Row],
    verdicts: &[Verdict],
) -> String {
    let input = match (bundle.stateful, opts.input) {
        (true, _) => "parsed requests, against an in-memory store",
        (false, Input::Json) => "JSON bytes",
        (false, Input::Parsed) => "parsed requests",
        (false, Input::Prepared) => "prepared requests",
    };
    let mut s = format!(
        "{} (bundle `{}`): {requests} requests from {input}, {:.1} s per backend; clock overhead of {overhead} ns subtracted\n\n",
        opts.source.display(),
        bundle.id,
        duration.as_secs_f64()
    );
    s.push_str(&format!(
        "{:<8} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "backend", "decisions/s", "decisions", "p50", "p95", "p99", "p99.9", "max", "batched"
    ));
    for r in rows {
        let q = |x: f64| ns(if x >= 1.0 { r.hist.max() } else { r.hist.value_at_quantile(x) });
        s.push_str(&format!(
            "{:<8} {:>12.0} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            r.backend,
            r.per_sec,
            r.decisions,
            q(0.5),
            q(0.95),
            q(0.99),
            q(0.999),
            q(1.0),
            r.batched.map_or_else(|| "-".to_owned(), ns)
        ));
        if let Some(f) = &r.fallback {
            s.push_str(&format!("         (the JIT is unavailable: {f}; the VM was measured)\n"));
        }
    }
    if !verdicts.is_empty() {
        s.push_str(&format!("\nagainst the baseline (a regression is over {}% worse):\n", opts.max_regress));
        for v in verdicts {
            s.push_str(&format!(
                "  {:<8} {:<4} {:>10} -> {:>10} ({:+.1}%){}\n",
                v.backend,
                v.metric,
                ns(v.baseline as u64),
                ns(v.current as u64),
                v.worse_pct,
                if v.regressed { "  REGRESSION" } else { "" }
            ));
        }
    }
    s.push_str(&format!(
        "\n`batched`: the median of the mean time of batches of {BATCH} decisions (no clock read per decision)"
    ));
    s.trim_end().to_owned()
}
