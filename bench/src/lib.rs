//! What the benchmarks share beyond the workloads (W52 and the 10,000-rule bundle live in
//! `verdict_tests::workloads`, where the tests use them too): compiling, and the peers' forms
//! of the workloads (Cedar, Rego) and the hand-written W52.

use std::fmt::Write;
use verdict_compiler::source::SourceFile;

/// Compiles a DSL source (panics on error: workloads are fixed and known good).
pub fn compile(name: &str, text: &str) -> verdict_compiler::ir::Bundle {
    let compiled = verdict_compiler::compile(&SourceFile::new(name, text));
    match compiled.bundle {
        Some(b) => b,
        None => unreachable!("workload {name} does not compile: {:?}", compiled.diagnostics),
    }
}

/// W52 in Cedar: one `permit` per allow rule, a `forbid` for the locked deny (Cedar denies by
/// default and forbid overrides permit, which is W52's meaning). Request data is in `context`.
pub fn w52_cedar() -> String {
    let mut s = String::from(
        "permit(principal, action, resource) when { [\"create\", \"update\", \"delete\"].contains(context.action) && context.subject.role == \"admin\" };\n",
    );
    for i in 0..50 {
        let _ = writeln!(
            s,
            "permit(principal, action, resource) when {{ context.action == \"act{i}\" && context.subject.role == \"viewer\" }};"
        );
    }
    s.push_str("forbid(principal, action, resource) when { context.resource.tags.contains(\"locked\") };\n");
    s
}

/// W52 in Rego (`data.w52.allow`).
pub fn w52_rego() -> String {
    let mut s = String::from(
        "package w52\nimport rego.v1\ndefault allow := false\nwrites if {\n  input.action in {\"create\", \"update\", \"delete\"}\n  input.subject.role == \"admin\"\n}\n",
    );
    for i in 0..50 {
        let _ = writeln!(s, "writes if {{\n  input.action == \"act{i}\"\n  input.subject.role == \"viewer\"\n}}");
    }
    s.push_str("locked if \"locked\" in input.resource.tags\nallow if {\n  writes\n  not locked\n}\n");
    s
}

/// The 10,000-rule bundle in Cedar.
pub fn rules_10k_cedar() -> String {
    let roles = ["admin", "editor", "viewer", "auditor", "guest"];
    let mut s = String::new();
    for a in 0..1000 {
        for r in 0..10 {
            let role = roles.get((a + r) % roles.len()).copied().unwrap_or("guest");
            let _ = writeln!(
                s,
                "permit(principal, action, resource) when {{ context.action == \"act{a}\" && context.subject.role == \"{role}\" && context.subject.level >= {r} && context.region != \"blocked-{r}\" }};"
            );
        }
    }
    s.push_str("forbid(principal, action, resource) when { context.resource.tags.contains(\"locked\") };\n");
    s
}

/// The 10,000-rule bundle in Rego (`data.big.allow`), as files of one package: regorus refuses a
/// policy file over 1 MiB, so every 100 actions (1,000 rules) start a new file.
pub fn rules_10k_rego() -> Vec<String> {
    let roles = ["admin", "editor", "viewer", "auditor", "guest"];
    let mut files = Vec::new();
    let mut s = String::from("package big\nimport rego.v1\ndefault allow := false\n");
    for a in 0..1000 {
        if a > 0 && a % 100 == 0 {
            files.push(std::mem::replace(&mut s, String::from("package big\nimport rego.v1\n")));
        }
        for r in 0..10 {
            let role = roles.get((a + r) % roles.len()).copied().unwrap_or("guest");
            let _ = writeln!(
                s,
                "main if {{\n  input.action == \"act{a}\"\n  input.subject.role == \"{role}\"\n  input.subject.level >= {r}\n  input.data.region != \"blocked-{r}\"\n}}"
            );
        }
    }
    s.push_str("locked if \"locked\" in input.resource.tags\nallow if {\n  main\n  not locked\n}\n");
    files.push(s);
    files
}

/// The Cedar context of a request context (the merged fields the policies read).
pub fn cedar_context(request_json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(request_json).unwrap_or_default();
    serde_json::json!({
        "action": v.get("action").cloned().unwrap_or_default(),
        "subject": v.get("subject").cloned().unwrap_or_else(|| serde_json::json!({})),
        "resource": v.get("resource").cloned().unwrap_or_else(|| serde_json::json!({})),
        "region": v.pointer("/data/region").cloned().unwrap_or_else(|| serde_json::json!("")),
    })
}

/// W52 written by hand over a typed request: the practical lower bound.
#[derive(Debug, serde::Deserialize)]
pub struct W52Request<'a> {
    #[serde(borrow)]
    pub action: &'a str,
    #[serde(borrow)]
    pub subject: W52Subject<'a>,
    #[serde(borrow)]
    pub resource: W52Resource<'a>,
}

#[derive(Debug, serde::Deserialize)]
pub struct W52Subject<'a> {
    #[serde(borrow)]
    pub role: &'a str,
}

#[derive(Debug, serde::Deserialize)]
pub struct W52Resource<'a> {
    #[serde(borrow)]
    pub tags: Vec<&'a str>,
}

/// The hand-written W52 decision: `true` is allow.
#[inline(never)]
pub fn w52_by_hand(r: &W52Request<'_>) -> bool {
    let admin_write = matches!(r.action, "create" | "update" | "delete") && r.subject.role == "admin";
    let filler = r.subject.role == "viewer"
        && r.action
            .strip_prefix("act")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n < 50 && r.action.len() <= 5);
    (admin_write || filler) && !r.resource.tags.contains(&"locked")
}
