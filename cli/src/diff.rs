//! `verdict diff OLD NEW`: change impact between two bundles of any source form — per effect
//! transition one witness request and the rules that decide it on each side, or `equivalent`.
//!
//! Exit codes: 0 equivalent (proved), 1 the decisions differ (or equivalence could not be
//! proved: a transition without a verified witness, or a budget ran out), 2 bad input.

use crate::Format;
use crate::render;
use serde_json::{Value, json};
use std::path::Path;
use verdict_compiler::analysis::{self, Options, diff::Decider};
use verdict_compiler::source::SourceFile;

fn load(path: &Path) -> Result<(SourceFile, verdict_compiler::ir::Bundle), u8> {
    let file = render::read(path)?;
    let compiled = verdict_compiler::compile(&file);
    if compiled.has_errors() || compiled.bundle.is_none() {
        render::eprint_all(&file, &compiled.diagnostics);
        eprintln!("error: {} does not compile", file.name);
        return Err(2);
    }
    match compiled.bundle {
        Some(b) => Ok((file, b)),
        None => Err(2),
    }
}

fn where_(file: &SourceFile, d: &Decider) -> Value {
    let (line, column) = match d.span {
        Some(s) => {
            let (l, c) = file.line_col(s.start);
            (json!(l), json!(c))
        }
        None => (Value::Null, Value::Null),
    };
    json!({"policy": d.policy, "rule": d.rule, "file": file.name, "line": line, "column": column})
}

fn describe(file: &SourceFile, d: &Decider) -> String {
    let at = d.span.map(|s| {
        let (l, c) = file.line_col(s.start);
        format!(" ({}:{l}:{c})", file.name)
    });
    let at = at.unwrap_or_default();
    match (&d.policy, &d.rule) {
        (Some(p), Some(r)) => format!("rule `{r}` of policy `{p}`{at}"),
        (Some(p), None) => format!("the default of policy `{p}`{at}"),
        _ => "no policy (a gate, or none applies)".to_owned(),
    }
}

pub fn run(old: &Path, new: &Path, format: Format) -> u8 {
    let (old_file, old_b) = match load(old) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let (new_file, new_b) = match load(new) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let report = analysis::diff(&old_b, &new_b, &Options::default());
    let text = match format {
        Format::Json => {
            let transitions: Vec<Value> = report
                .transitions
                .iter()
                .map(|t| {
                    json!({
                        "from": t.from,
                        "to": t.to,
                        "witness": t.witness,
                        "old": where_(&old_file, &t.old),
                        "new": where_(&new_file, &t.new),
                    })
                })
                .collect();
            let unverified: Vec<Value> = report.unverified.iter().map(|(a, b)| json!({"from": a, "to": b})).collect();
            json!({
                "equivalent": report.equivalent(),
                "transitions": transitions,
                "unverified": unverified,
                "undecided": report.undecided,
                "faults": report.faults,
            })
            .to_string()
        }
        Format::Human => {
            let mut out = String::new();
            if report.equivalent() {
                out.push_str("equivalent: every request gets the same decision\n");
            }
            for t in &report.transitions {
                out.push_str(&format!("{} → {}\n", t.from, t.to));
                out.push_str(&format!("  witness: {}\n", t.witness));
                out.push_str(&format!("  old: {}\n", describe(&old_file, &t.old)));
                out.push_str(&format!("  new: {}\n", describe(&new_file, &t.new)));
            }
            for (a, b) in &report.unverified {
                out.push_str(&format!(
                    "{a} → {b}: possible, but no request could be confirmed (conditions the analysis does not model)\n"
                ));
            }
            if report.undecided {
                out.push_str("undecided: the analysis ran out of budget before proving equivalence\n");
            }
            if report.faults {
                out.push_str(
                    "not claimed equivalent: rules read state or call externs, and where they fail the most severe effect decides; the comparison covers decisions without failures\n",
                );
            }
            out.trim_end().to_owned()
        }
    };
    if let Err(code) = render::stdout_line(&text) {
        return code;
    }
    if report.equivalent() { 0 } else { 1 }
}
