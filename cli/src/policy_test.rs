//! `verdict test`: runs policy test files (`*.test.yaml`, [`verdict_compiler::testfile`]) on the
//! bytecode VM, compares each case's decision with its expectations, and measures coverage —
//! rules that decided their policy in some case, atoms seen both true and false — from the VM's
//! scratch, without traces ([`verdict_runtime::coverage`]). For every rule no case reaches, the
//! analysis ([`verdict_compiler::analysis::reach`]) writes a case that reaches it, or says why
//! none can. Output for people, as JSON, or as JUnit XML.

use crate::{load, render};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use verdict_compiler::analysis::reach::{self, Reach};
use verdict_compiler::diagnostic::{Diagnostic, Severity};
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_compiler::testfile::{self, Case, Expect, TestFile};
use verdict_runtime::coverage::Coverage;
use verdict_runtime::decision::EvaluationResult;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::externs::ExternTable;
use verdict_runtime::program::Program;
use verdict_runtime::request::Request;
use verdict_runtime::state::{MemoryStore, StateStore};
use verdict_runtime::vm::{self, Engine};

/// How `verdict test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    Human,
    Json,
    Junit,
}

/// What `verdict test` was asked for.
#[derive(Debug)]
pub struct Options<'a> {
    pub paths: &'a [PathBuf],
    pub coverage: bool,
    pub min_coverage: Option<f64>,
    pub format: TestFormat,
}

/// How deep `verdict test DIR` looks for test files.
const MAX_DEPTH: usize = 32;
/// How many rules an uncovered-rule list shows for people (JSON lists them all).
const MAX_LISTED: usize = 50;

/// A bundle under test, loaded once however many files test it.
struct Loaded {
    /// The bundle's path as the first test file naming it reaches it.
    path: String,
    file: SourceFile,
    bundle: Bundle,
    engine: Engine,
    coverage: Coverage,
    /// The first atom site of each atom: its text and position in the bundle file.
    atoms: Vec<Option<(String, u32, u32)>>,
    cases: usize,
}

/// The outcome of one case.
struct CaseRun {
    name: String,
    line: u32,
    seconds: f64,
    mismatches: Vec<Mismatch>,
    /// The result (as JSON; null when the context was not a request context).
    result: Value,
}

/// One expectation that did not hold.
struct Mismatch {
    field: &'static str,
    expected: Value,
    actual: Value,
}

/// The outcome of one test file.
struct FileRun {
    path: String,
    /// Its bundle's path (as the first test file naming it reaches it), once the bundle loaded.
    bundle: Option<String>,
    diagnostics: Vec<Value>,
    /// Why the file could not be run (bad test file, bundle that does not compile).
    error: Option<String>,
    cases: Vec<CaseRun>,
}

pub fn run(opts: &Options<'_>) -> u8 {
    if let Some(min) = opts.min_coverage
        && !(0.0..=100.0).contains(&min)
    {
        eprintln!("error: `--min-coverage {min}`: a percentage from 0 to 100");
        return 2;
    }
    let roots: Vec<PathBuf> = if opts.paths.is_empty() { vec![PathBuf::from(".")] } else { opts.paths.to_vec() };
    let mut files = Vec::new();
    for root in &roots {
        if let Err(e) = collect(root, 0, &mut files) {
            eprintln!("error: cannot read {}: {e}", root.display());
            return 2;
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        let list = roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
        eprintln!("error: no test files (`*.test.yaml`, `*.test.yml`, `*.test.json`) under {list}");
        return 2;
    }
    let now = jiff::Timestamp::now();
    let mut loaded: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut runs = Vec::new();
    for path in &files {
        runs.push(run_file(path, now, opts.format, &mut loaded));
    }
    let want_coverage = opts.coverage || opts.min_coverage.is_some();
    let reports: Vec<BundleReport> = if want_coverage { loaded.values().map(report).collect() } else { Vec::new() };
    let (covered, total) = reports.iter().fold((0, 0), |(c, t), r| (c + r.rules_covered, t + r.rules_total));
    let rule_pct = percent(covered, total);
    let below = opts.min_coverage.is_some_and(|min| rule_pct < min);
    let written = match opts.format {
        TestFormat::Human => human(&runs, &reports, opts, rule_pct),
        TestFormat::Json => json_out(&runs, &reports, opts, rule_pct),
        TestFormat::Junit => junit(&runs, &reports, opts, rule_pct),
    };
    if let Err(code) = written {
        return code;
    }
    if runs.iter().any(|r| r.error.is_some()) {
        2
    } else if below || runs.iter().any(|r| r.cases.iter().any(|c| !c.mismatches.is_empty())) {
        1
    } else {
        0
    }
}

/// Test files under `path` (the file itself when it is one), hidden folders and `target`
/// skipped.
fn collect(path: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        if depth == 0 {
            // A file named on the command line is a test file whatever its name.
            std::fs::metadata(path)?;
            out.push(path.to_path_buf());
        } else if path.file_name().and_then(|n| n.to_str()).is_some_and(testfile::is_test_file) {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() && (name.starts_with('.') || name == "target" || name == "node_modules") {
            continue;
        }
        collect(&p, depth + 1, out)?;
    }
    Ok(())
}

/// Loads a test file and its bundle, checks the file against the bundle, and runs its cases.
fn run_file(path: &Path, now: jiff::Timestamp, format: TestFormat, loaded: &mut BTreeMap<PathBuf, Loaded>) -> FileRun {
    let mut out = FileRun {
        path: path.display().to_string(),
        bundle: None,
        diagnostics: Vec::new(),
        error: None,
        cases: Vec::new(),
    };
    let Ok(source) = render::read(path) else {
        out.error = Some(format!("cannot read {}", path.display()));
        return out;
    };
    let (parsed, mut diags) = testfile::parse(&source.text);
    let Some(file) = parsed.filter(|_| !has_errors(&diags)) else {
        report_diags(&source, &diags, format, &mut out);
        out.error = Some("the test file has errors".into());
        return out;
    };
    let bundle_path = path.parent().unwrap_or(Path::new("")).join(&file.bundle.value);
    let key = std::fs::canonicalize(&bundle_path).unwrap_or_else(|_| bundle_path.clone());
    if !loaded.contains_key(&key) {
        match load(&bundle_path) {
            Ok(l) => {
                loaded.insert(key.clone(), l);
            }
            Err(message) => {
                diags.push(Diagnostic::error(
                    verdict_compiler::diagnostic::Code::BadValue,
                    file.bundle.span,
                    message.clone(),
                ));
                report_diags(&source, &diags, format, &mut out);
                out.error = Some(message);
                return out;
            }
        }
    }
    let Some(l) = loaded.get_mut(&key) else { return out };
    diags.extend(testfile::check(&file, &l.bundle));
    report_diags(&source, &diags, format, &mut out);
    if has_errors(&diags) {
        out.error = Some("the test file does not match its bundle".into());
        return out;
    }
    out.bundle = Some(l.path.clone());
    for case in &file.cases {
        let started = Instant::now();
        let (result, mismatches) = run_case(l, &file, case, now);
        l.cases += 1;
        out.cases.push(CaseRun {
            name: case.name.value.clone(),
            line: source.line_col(case.span.start).0,
            seconds: started.elapsed().as_secs_f64(),
            mismatches,
            result,
        });
    }
    out
}

fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// Diagnostics go to standard error for people, and into the report as JSON.
fn report_diags(source: &SourceFile, diags: &[Diagnostic], format: TestFormat, out: &mut FileRun) {
    if diags.is_empty() {
        return;
    }
    if format == TestFormat::Human {
        render::eprint_all(source, diags);
    }
    out.diagnostics.extend(diags.iter().map(|d| verdict_compiler::diagnostic::to_json(source, d)));
}

/// Compiles a bundle for use and builds its VM engine.
fn load(path: &Path) -> Result<Loaded, String> {
    let file = match load::read(path) {
        Ok(load::Input::Source(f)) => f,
        Ok(load::Input::Artifact(_)) => {
            return Err(format!("{} is a compiled artifact: a test file names a bundle's source", path.display()));
        }
        Err(_) => return Err(format!("cannot read the bundle {}", path.display())),
    };
    let Some(bundle) = load::compile(&file) else {
        return Err(format!("the bundle {} does not compile", path.display()));
    };
    let program = verdict_compiler::codegen::program(&bundle);
    let atoms = atom_sites(&program, &file);
    let coverage = Coverage::new(&program);
    let engine = Engine::with_backend(program, vm::Backend::Vm).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Loaded { path: path.display().to_string(), file, bundle, engine, coverage, atoms, cases: 0 })
}

/// The text and position of each atom's first site in the bytecode.
fn atom_sites(p: &Program, file: &SourceFile) -> Vec<Option<(String, u32, u32)>> {
    let mut out = vec![None; p.atoms.len()];
    for (_, op) in verdict_runtime::bytecode::decode_all(&p.code).unwrap_or_default() {
        if let verdict_runtime::bytecode::Op::Atom { atom, site } = op
            && let (Some(slot), Some(s)) = (out.get_mut(atom as usize), p.sites.get(site as usize))
            && slot.is_none()
        {
            let (line, col) = file.line_col(s.span[0]);
            *slot = Some((s.text.clone(), line, col));
        }
    }
    out
}

/// Runs one case: its events on a fresh store, then the case itself with coverage.
fn run_case(l: &mut Loaded, file: &TestFile, case: &Case, start: jiff::Timestamp) -> (Value, Vec<Mismatch>) {
    let now = case.now.as_ref().or(file.now.as_ref()).map_or(start, |t| t.value);
    let mocks = match (&file.externs, &case.externs) {
        (None, None) => None,
        (a, b) => {
            let mut m = Map::new();
            for v in [a, b].into_iter().flatten() {
                if let Value::Object(o) = &v.value {
                    m.extend(o.clone());
                }
            }
            // Checked when the file was parsed.
            ExternTable::mocks(&Value::Object(m)).ok()
        }
    };
    let externs = mocks.as_ref().map(|e| e as &dyn verdict_runtime::externs::Externs);
    let store = MemoryStore::new();
    let stateful = l.engine.is_stateful();
    for (k, ev) in case.events.iter().enumerate() {
        let at = ev.now.as_ref().map_or(now, |t| t.value);
        let id = format!("e{}", k + 1);
        let Ok(req) = Request::from_value(ev.context.value.clone()) else { continue };
        let env = Env { now: at, decision_id: Some(&id), state: None, externs };
        let r = if stateful {
            l.engine.evaluate_with_store(&req, &env, Mode::PLAIN, &store)
        } else {
            l.engine.evaluate(&req, &env, Mode::PLAIN)
        };
        // A failed commit or release shows in the case's decision, which the expectations judge.
        let _ = crate::eval::settle(&store, &id, &r, ev.then, at);
    }
    let env = Env { now, decision_id: Some("case"), state: None, externs };
    let mode = Mode { trace: false, exhaustive: case.expect.exhaustive() };
    let result = match Request::from_value(case.context.value.clone()) {
        Ok(req) => {
            let store = stateful.then_some(&store as &dyn StateStore);
            l.engine.evaluate_covered(&req, &env, mode, store, &mut l.coverage)
        }
        // Checked against the bundle before any case runs: not reached.
        Err(e) => {
            let m = Mismatch { field: "context", expected: json!("a request context"), actual: json!(e.to_string()) };
            return (Value::Null, vec![m]);
        }
    };
    let mismatches = compare(&case.expect, &result);
    (result.to_json(), mismatches)
}

/// The expectations that do not hold on a result.
fn compare(e: &Expect, r: &EvaluationResult) -> Vec<Mismatch> {
    let d = &r.decision;
    let mut out = Vec::new();
    let mut check = |field: &'static str, expected: Option<Value>, actual: Value| {
        if let Some(expected) = expected
            && expected != actual
        {
            out.push(Mismatch { field, expected, actual });
        }
    };
    check("kind", e.kind.as_ref().map(|k| json!(k.value)), json!(d.kind));
    check("policy", e.policy.as_ref().map(|p| json!(p.value)), json!(d.matched_policy_id));
    check("rule", e.rule.as_ref().map(|p| json!(p.value)), json!(d.matched_rule_id));
    check("reason", e.reason.as_ref().map(|p| json!(p.value)), json!(d.reason));
    check("codes", e.codes.as_ref().map(|p| json!(p.value)), json!(d.codes));
    check(
        "obligations",
        e.obligations.as_ref().map(|p| Value::Object(p.value.clone())),
        Value::Object(d.obligations.clone()),
    );
    if let Some(expected) = &e.matches {
        let actual: Vec<Value> =
            r.matches.iter().flatten().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)).collect();
        let same = expected.value.len() == actual.len()
            && expected.value.iter().zip(&actual).all(|(x, a)| x.value.iter().all(|(k, v)| a.get(k) == Some(v)));
        if !same {
            out.push(Mismatch {
                field: "matches",
                expected: Value::Array(expected.value.iter().map(|m| Value::Object(m.value.clone())).collect()),
                actual: Value::Array(actual),
            });
        }
    }
    out
}

// ---- coverage ------------------------------------------------------------------------------

/// What one bundle's coverage amounts to, with a suggestion for every rule no case reached.
struct BundleReport {
    path: String,
    bundle_id: String,
    cases: usize,
    rules_covered: usize,
    rules_total: usize,
    atoms_covered: usize,
    atoms_total: usize,
    uncovered_rules: Vec<Uncovered>,
    /// Policies whose default never applied (`none` defaults included).
    defaults: Vec<String>,
    /// Atoms not seen both ways: text, line, column, seen true, seen false.
    atoms: Vec<(String, u32, u32, bool, bool)>,
}

struct Uncovered {
    policy: String,
    rule: String,
    line: u32,
    column: u32,
    reach: Reach,
    /// The decision of the suggested request (to write its expectation).
    decision: Option<verdict_runtime::decision::Decision>,
}

fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 { 100.0 } else { covered as f64 * 100.0 / total as f64 }
}

fn report(l: &Loaded) -> BundleReport {
    let b = &l.bundle;
    let cov = &l.coverage;
    let mut targets = Vec::new();
    let mut total = 0;
    for (pi, pol) in b.policies.iter().enumerate() {
        for ri in 0..pol.rules.len() {
            total += 1;
            if !cov.rule(pi, ri) {
                targets.push((pi, ri));
            }
        }
    }
    let answers = reach::reach(b, &targets, &verdict_compiler::analysis::Options::default());
    let mut uncovered = Vec::new();
    for (&(pi, ri), reach) in targets.iter().zip(answers) {
        let (Some(pol), Some(rule)) = (b.policies.get(pi), b.policies.get(pi).and_then(|p| p.rules.get(ri))) else {
            continue;
        };
        let (line, column) = l.file.line_col(rule.span.start);
        let decision = match &reach {
            // What the case would decide in `verdict test`: on a fresh store when stateful.
            Reach::Request { context, now, .. } => Request::from_value(context.clone()).ok().map(|req| {
                let env = Env::at(now.unwrap_or_else(jiff::Timestamp::now));
                if l.engine.is_stateful() {
                    l.engine.evaluate_with_store(&req, &env, Mode::PLAIN, &MemoryStore::new()).decision
                } else {
                    l.engine.evaluate(&req, &env, Mode::PLAIN).decision
                }
            }),
            _ => None,
        };
        uncovered.push(Uncovered { policy: pol.id.clone(), rule: rule.id.clone(), line, column, reach, decision });
    }
    let defaults =
        b.policies.iter().enumerate().filter(|(pi, _)| !cov.default(*pi)).map(|(_, p)| p.id.clone()).collect();
    let mut atoms = Vec::new();
    let mut atoms_covered = 0;
    for (i, site) in l.atoms.iter().enumerate() {
        let (t, f) = cov.atom(i);
        if t && f {
            atoms_covered += 1;
        } else if let Some((text, line, col)) = site {
            atoms.push((text.clone(), *line, *col, t, f));
        }
    }
    BundleReport {
        path: l.path.clone(),
        bundle_id: b.id.clone(),
        cases: l.cases,
        rules_covered: total - targets.len(),
        rules_total: total,
        atoms_covered,
        atoms_total: l.atoms.len(),
        uncovered_rules: uncovered,
        defaults,
        atoms,
    }
}

/// A suggested case as YAML lines (flow-style JSON values are YAML), ready to paste into
/// `cases:`.
fn suggestion_yaml(u: &Uncovered, indent: &str) -> Vec<String> {
    let Reach::Request { context, now, bundle } = &u.reach else { return Vec::new() };
    let mut lines = vec![format!("{indent}- name: {}", json!(format!("reaches {}/{}", u.policy, u.rule)))];
    lines.push(format!("{indent}  context: {context}"));
    if let Some(t) = now {
        lines.push(format!("{indent}  now: \"{t}\""));
    }
    if let Some(d) = &u.decision {
        if !bundle {
            lines.push(format!(
                "{indent}  # `{}` decides policy `{}`; the bundle's decision comes from another policy",
                u.rule, u.policy
            ));
        }
        lines.push(format!(
            "{indent}  expect: {}",
            json!({"kind": d.kind, "policy": d.matched_policy_id, "rule": d.matched_rule_id})
        ));
    }
    lines
}

fn reach_json(u: &Uncovered) -> Value {
    match &u.reach {
        Reach::Request { context, now, bundle } => {
            let mut m = Map::new();
            m.insert("context".into(), context.clone());
            if let Some(t) = now {
                m.insert("now".into(), json!(t.to_string()));
            }
            m.insert("decides".into(), json!(if *bundle { "bundle" } else { "policy" }));
            if let Some(d) = &u.decision {
                m.insert(
                    "expect".into(),
                    json!({"kind": d.kind, "policy": d.matched_policy_id, "rule": d.matched_rule_id}),
                );
            }
            json!({"suggestion": m})
        }
        Reach::Unreachable(why) => json!({"unreachable": why.describe()}),
        Reach::Unknown => json!({"unknown": "the analysis found no request that reaches it"}),
    }
}

fn report_json(r: &BundleReport) -> Value {
    let rules: Vec<Value> = r
        .uncovered_rules
        .iter()
        .map(|u| {
            let mut v = json!({"policy": u.policy, "rule": u.rule, "line": u.line, "column": u.column});
            if let (Value::Object(m), Value::Object(extra)) = (&mut v, reach_json(u)) {
                m.extend(extra);
            }
            v
        })
        .collect();
    let atoms: Vec<Value> = r
        .atoms
        .iter()
        .map(|(text, line, col, t, f)| json!({"atom": text, "line": line, "column": col, "seen_true": t, "seen_false": f}))
        .collect();
    json!({
        "bundle": r.path,
        "bundle_id": r.bundle_id,
        "cases": r.cases,
        "rules": {"covered": r.rules_covered, "total": r.rules_total, "percent": round(percent(r.rules_covered, r.rules_total))},
        "atoms": {"covered": r.atoms_covered, "total": r.atoms_total, "percent": round(percent(r.atoms_covered, r.atoms_total))},
        "uncovered_rules": rules,
        "defaults_not_applied": r.defaults,
        "uncovered_atoms": atoms,
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---- output --------------------------------------------------------------------------------

fn counts(runs: &[FileRun]) -> (usize, usize, usize) {
    let cases = runs.iter().map(|r| r.cases.len()).sum();
    let failed = runs.iter().map(|r| r.cases.iter().filter(|c| !c.mismatches.is_empty()).count()).sum();
    let errors = runs.iter().filter(|r| r.error.is_some()).count();
    (cases, failed, errors)
}

fn human(runs: &[FileRun], reports: &[BundleReport], opts: &Options<'_>, rule_pct: f64) -> Result<(), u8> {
    let mut s = String::new();
    for r in runs {
        s.push_str(&format!("{}\n", r.path));
        if let Some(e) = &r.error {
            s.push_str(&format!("  error: {e}\n"));
        }
        for c in &r.cases {
            if c.mismatches.is_empty() {
                s.push_str(&format!("  ok    {}\n", c.name));
                continue;
            }
            s.push_str(&format!("  FAIL  {}  ({}:{})\n", c.name, r.path, c.line));
            for m in &c.mismatches {
                s.push_str(&format!(
                    "        {}:\n          - expected {}\n          + actual   {}\n",
                    m.field, m.expected, m.actual
                ));
            }
            if let Some(d) = c.result.get("decision") {
                s.push_str(&format!("        decision: {d}\n"));
            }
        }
    }
    for rep in reports {
        s.push_str(&format!(
            "\ncoverage of {} (bundle `{}`, {} cases): rules {}/{} ({:.1}%), atoms {}/{} seen true and false ({:.1}%)\n",
            rep.path,
            rep.bundle_id,
            rep.cases,
            rep.rules_covered,
            rep.rules_total,
            percent(rep.rules_covered, rep.rules_total),
            rep.atoms_covered,
            rep.atoms_total,
            percent(rep.atoms_covered, rep.atoms_total),
        ));
        for u in rep.uncovered_rules.iter().take(MAX_LISTED) {
            let at = format!("line {}:{}", u.line, u.column);
            match &u.reach {
                Reach::Request { .. } => {
                    s.push_str(&format!(
                        "  rule `{}` of policy `{}` ({at}) is not covered; a case that reaches it:\n",
                        u.rule, u.policy
                    ));
                    for line in suggestion_yaml(u, "      ") {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
                Reach::Unreachable(why) => s.push_str(&format!(
                    "  rule `{}` of policy `{}` ({at}) is not covered, and no request can reach it: {}\n",
                    u.rule,
                    u.policy,
                    why.describe()
                )),
                Reach::Unknown => s.push_str(&format!(
                    "  rule `{}` of policy `{}` ({at}) is not covered; the analysis found no request that reaches it\n",
                    u.rule, u.policy
                )),
            }
        }
        if rep.uncovered_rules.len() > MAX_LISTED {
            s.push_str(&format!(
                "  … and {} more rules (all in `--format json`)\n",
                rep.uncovered_rules.len() - MAX_LISTED
            ));
        }
        if !rep.defaults.is_empty() {
            let list = rep.defaults.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
            s.push_str(&format!("  the default of {list} never applied\n"));
        }
        for (text, line, col, t, f) in rep.atoms.iter().take(MAX_LISTED) {
            let seen = match (t, f) {
                (true, _) => "never false",
                (_, true) => "never true",
                _ => "never evaluated",
            };
            s.push_str(&format!("  atom `{text}` (line {line}:{col}): {seen}\n"));
        }
        if rep.atoms.len() > MAX_LISTED {
            s.push_str(&format!("  … and {} more atoms (all in `--format json`)\n", rep.atoms.len() - MAX_LISTED));
        }
    }
    let (cases, failed, errors) = counts(runs);
    if let Some(min) = opts.min_coverage
        && rule_pct < min
    {
        s.push_str(&format!("\nrule coverage {rule_pct:.1}% is below the minimum of {min}%\n"));
    }
    s.push_str(&format!("\n{} passed, {failed} failed", cases - failed));
    if errors > 0 {
        s.push_str(&format!(", {errors} test file{} with errors", if errors == 1 { "" } else { "s" }));
    }
    render::stdout_line(&s)
}

fn json_out(runs: &[FileRun], reports: &[BundleReport], opts: &Options<'_>, rule_pct: f64) -> Result<(), u8> {
    let files: Vec<Value> = runs
        .iter()
        .map(|r| {
            let cases: Vec<Value> = r
                .cases
                .iter()
                .map(|c| {
                    let failures: Vec<Value> = c
                        .mismatches
                        .iter()
                        .map(|m| json!({"field": m.field, "expected": m.expected, "actual": m.actual}))
                        .collect();
                    json!({
                        "name": c.name,
                        "line": c.line,
                        "passed": c.mismatches.is_empty(),
                        "failures": failures,
                        "result": c.result,
                    })
                })
                .collect();
            json!({"file": r.path, "bundle": r.bundle, "error": r.error, "diagnostics": r.diagnostics, "cases": cases})
        })
        .collect();
    let (cases, failed, errors) = counts(runs);
    let mut summary = json!({"cases": cases, "passed": cases - failed, "failed": failed, "file_errors": errors});
    let mut out = json!({"files": files});
    if !reports.is_empty() || opts.coverage || opts.min_coverage.is_some() {
        if let Value::Object(m) = &mut summary {
            m.insert("rule_coverage".into(), json!(round(rule_pct)));
            if let Some(min) = opts.min_coverage {
                m.insert("min_coverage".into(), json!(min));
            }
        }
        if let Value::Object(m) = &mut out {
            m.insert("coverage".into(), Value::Array(reports.iter().map(report_json).collect()));
        }
    }
    if let Value::Object(m) = &mut out {
        m.insert("summary".into(), summary);
    }
    render::stdout_line(&serde_json::to_string_pretty(&out).unwrap_or_default())
}

/// Escapes text for XML attribute values and content; characters XML 1.0 cannot hold become
/// U+FFFD.
fn xml(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            '\t' | '\n' | '\r' => s.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => s.push('\u{FFFD}'),
            c => s.push(c),
        }
    }
    s
}

/// JUnit XML as Jenkins, GitLab and the `junitparser` package read it: one `testsuite` per test
/// file, one `testcase` per case (`classname` the bundle id), a `failure` per failing case, an
/// `error` for a file that could not run; with coverage, a `coverage` suite with one case per
/// bundle, failing when `--min-coverage` is not met.
fn junit(runs: &[FileRun], reports: &[BundleReport], opts: &Options<'_>, rule_pct: f64) -> Result<(), u8> {
    let (cases, failed, errors) = counts(runs);
    let below = opts.min_coverage.is_some_and(|m| rule_pct < m);
    let cov_cases = reports.len();
    let cov_failed = if below { cov_cases } else { 0 };
    let total_time: f64 = runs.iter().flat_map(|r| &r.cases).map(|c| c.seconds).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<testsuites name=\"verdict test\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\" time=\"{total_time:.6}\">\n",
        cases + errors + cov_cases,
        failed + cov_failed
    ));
    for r in runs {
        let suite_failed = r.cases.iter().filter(|c| !c.mismatches.is_empty()).count();
        let suite_errors = usize::from(r.error.is_some());
        let time: f64 = r.cases.iter().map(|c| c.seconds).sum();
        s.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{suite_failed}\" errors=\"{suite_errors}\" skipped=\"0\" time=\"{time:.6}\">\n",
            xml(&r.path),
            r.cases.len() + suite_errors
        ));
        let class = r
            .cases
            .first()
            .and_then(|c| c.result.get("bundle_id"))
            .and_then(Value::as_str)
            .unwrap_or(&r.path)
            .to_owned();
        if let Some(e) = &r.error {
            let details: Vec<String> = r
                .diagnostics
                .iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}: {}",
                        d.get("file").and_then(Value::as_str).unwrap_or_default(),
                        d.get("line").and_then(Value::as_u64).unwrap_or(0),
                        d.get("column").and_then(Value::as_u64).unwrap_or(0),
                        d.get("message").and_then(Value::as_str).unwrap_or_default()
                    )
                })
                .collect();
            s.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"0\">\n      <error message=\"{}\" type=\"error\">{}</error>\n    </testcase>\n",
                xml(&r.path),
                xml(&class),
                xml(e),
                xml(&details.join("\n"))
            ));
        }
        for c in &r.cases {
            s.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\"",
                xml(&c.name),
                xml(&class),
                c.seconds
            ));
            if c.mismatches.is_empty() {
                s.push_str("/>\n");
                continue;
            }
            let message: Vec<String> = c
                .mismatches
                .iter()
                .map(|m| format!("{}: expected {}, got {}", m.field, m.expected, m.actual))
                .collect();
            let body = format!(
                "{}:{}\n{}\ndecision: {}",
                r.path,
                c.line,
                message.join("\n"),
                c.result.get("decision").map(Value::to_string).unwrap_or_default()
            );
            s.push_str(&format!(
                ">\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>\n",
                xml(&message.join("; ")),
                xml(&body)
            ));
        }
        s.push_str("  </testsuite>\n");
    }
    if !reports.is_empty() {
        s.push_str(&format!(
            "  <testsuite name=\"coverage\" tests=\"{cov_cases}\" failures=\"{cov_failed}\" errors=\"0\" skipped=\"0\" time=\"0\">\n"
        ));
        s.push_str(&format!("    <properties>\n      <property name=\"rule_coverage\" value=\"{:.2}\"/>\n", rule_pct));
        if let Some(min) = opts.min_coverage {
            s.push_str(&format!("      <property name=\"min_coverage\" value=\"{min}\"/>\n"));
        }
        s.push_str("    </properties>\n");
        for rep in reports {
            let text = format!(
                "rules {}/{} ({:.1}%), atoms {}/{} ({:.1}%)",
                rep.rules_covered,
                rep.rules_total,
                percent(rep.rules_covered, rep.rules_total),
                rep.atoms_covered,
                rep.atoms_total,
                percent(rep.atoms_covered, rep.atoms_total)
            );
            let uncovered: Vec<String> =
                rep.uncovered_rules.iter().map(|u| format!("{}/{}: {}", u.policy, u.rule, reach_json(u))).collect();
            s.push_str(&format!("    <testcase name=\"{}\" classname=\"coverage\" time=\"0\">\n", xml(&rep.path)));
            if below {
                s.push_str(&format!(
                    "      <failure message=\"{}\" type=\"coverage\"/>\n",
                    xml(&format!(
                        "rule coverage {rule_pct:.1}% is below the minimum of {}%",
                        opts.min_coverage.unwrap_or(0.0)
                    ))
                ));
            }
            s.push_str(&format!(
                "      <system-out>{}</system-out>\n    </testcase>\n",
                xml(&format!("{text}\n{}", uncovered.join("\n")))
            ));
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>");
    render::stdout_line(&s)
}
