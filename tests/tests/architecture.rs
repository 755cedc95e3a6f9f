//! The dependency rules of ARCHITECTURE.md, checked on every workspace member's dependencies (after
//! rust-analyzer's `tidy`): `runtime` depends on neither `grammar` nor `compiler`; `grammar`
//! depends on no other Verdict crate but the vocabulary, which depends on nothing; only `cli`
//! parses flags (clap); only `lsp` speaks LSP and hosts the salsa database (the `bench` crate's
//! benchmarks use salsa and lsp-types as dev-dependencies); only `cli` depends on the service
//! crate `server`. The members are read with `cargo metadata`, so every one is checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// One workspace member: its directory relative to the workspace root (`examples/service`) and
/// the names of its normal and dev dependencies.
struct Member {
    dir: String,
    deps: Vec<String>,
    dev_deps: Vec<String>,
}

/// Every workspace member, as `cargo metadata` reads the manifests (so a member added to the
/// workspace is checked without being listed here).
fn members() -> Vec<Member> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let workspace = Path::new(v["workspace_root"].as_str().unwrap());
    let names = |p: &Value, kind: Option<&str>| -> Vec<String> {
        let deps = p["dependencies"].as_array().unwrap();
        deps.iter().filter(|d| d["kind"].as_str() == kind).map(|d| d["name"].as_str().unwrap().to_owned()).collect()
    };
    let members: Vec<Member> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let dir = manifest.parent().unwrap().strip_prefix(workspace).unwrap();
            Member { dir: dir.display().to_string(), deps: names(p, None), dev_deps: names(p, Some("dev")) }
        })
        .collect();
    assert!(members.len() >= 12, "{} workspace members", members.len());
    members
}

/// The names in a member's `[dependencies]` table.
fn dependencies(members: &[Member], dir: &str) -> Vec<String> {
    members.iter().find(|m| m.dir == dir).unwrap_or_else(|| panic!("no workspace member `{dir}`")).deps.clone()
}

#[test]
fn runtime_links_neither_grammar_nor_compiler() {
    let deps = dependencies(&members(), "runtime");
    assert!(!deps.iter().any(|d| d == "verdict-grammar" || d == "verdict-compiler"), "{deps:?}");
}

#[test]
fn grammar_depends_on_no_verdict_crate_but_the_vocabulary() {
    let members = members();
    let deps = dependencies(&members, "grammar");
    assert!(!deps.iter().any(|d| d.starts_with("verdict-") && d != "verdict-vocab"), "{deps:?}");
    assert!(dependencies(&members, "vocab").is_empty(), "the vocabulary depends on nothing");
    for krate in ["grammar", "runtime"] {
        assert!(
            dependencies(&members, krate).iter().any(|d| d == "verdict-vocab"),
            "{krate} derives from the vocabulary"
        );
    }
}

#[test]
fn only_cli_parses_flags_and_only_lsp_speaks_lsp() {
    let members = members();
    let lsp_crate = |d: &String| d.starts_with("lsp-") || d == "tower-lsp" || d == "salsa";
    for m in &members {
        if m.dir != "cli" {
            assert!(!m.deps.iter().any(|d| d == "clap"), "{} must not depend on clap", m.dir);
        }
        if m.dir != "lsp" {
            assert!(
                !m.deps.iter().any(lsp_crate),
                "{} must not speak LSP nor host the salsa database: {:?}",
                m.dir,
                m.deps
            );
        }
        // The language-server benchmark drives the server in process with salsa and LSP types.
        if m.dir != "lsp" && m.dir != "bench" {
            assert!(!m.dev_deps.iter().any(lsp_crate), "{}: {:?}", m.dir, m.dev_deps);
        }
    }
    let lsp = dependencies(&members, "lsp");
    assert!(lsp.iter().any(|d| d == "salsa") && lsp.iter().any(|d| d == "lsp-server"), "{lsp:?}");
}

#[test]
fn the_example_service_links_only_the_runtime() {
    let deps = dependencies(&members(), "examples/service");
    assert!(deps.iter().any(|d| d == "verdict-runtime"), "{deps:?}");
    assert!(!deps.iter().any(|d| d == "verdict-compiler" || d == "verdict-grammar"), "{deps:?}");
}

#[test]
fn only_cli_links_the_service() {
    // The Python package reaches Redis through `store-redis`, a thin layer: neither links HTTP.
    let members = members();
    for m in members.iter().filter(|m| m.dir != "cli" && m.dir != "server") {
        assert!(!m.deps.iter().any(|d| d == "verdict-server"), "{} must not depend on the server: {:?}", m.dir, m.deps);
        assert!(
            !m.deps.iter().any(|d| d == "axum" || d == "tokio" || d == "hyper"),
            "{} must not depend on the HTTP stack: {:?}",
            m.dir,
            m.deps
        );
    }
    let server = dependencies(&members, "server");
    assert!(server.iter().any(|d| d == "verdict-runtime") && server.iter().any(|d| d == "verdict-compiler"));
}
