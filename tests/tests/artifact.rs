//! Artifacts: every single-byte change and every truncation of sample artifacts is refused, a
#![allow(clippy::indexing_slicing, clippy::unwrap_used, reason = "test code over fixed, known-good data")]
//! different format version is refused by name, structurally invalid programs are refused by the
//! verifier, and the disassembly of every example is snapshot-tested.

use verdict_compiler::source::SourceFile;
use verdict_runtime::artifact::{self, ArtifactError, FORMAT_VERSION, MAGIC};
use verdict_runtime::bytecode::Op;
use verdict_runtime::program::{DefCode, Program, VerifyError};
use verdict_runtime::vm::{Backend, Engine};

/// The example bundles (one per folder), compiled to programs.
fn example_programs() -> Vec<(String, Program)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).into_iter().flatten().flatten().map(|e| e.path()).collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        for name in ["bundle.verdict", "bundle.yaml"] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let compiled = verdict_compiler::compile(&SourceFile::new(name, text));
            let bundle =
                compiled.bundle.unwrap_or_else(|| unreachable!("{}: {:?}", path.display(), compiled.diagnostics));
            let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((folder, verdict_compiler::codegen::program(&bundle)));
            break;
        }
    }
    assert!(out.len() >= 5, "examples found: {}", out.len());
    out
}

#[test]
fn roundtrip() {
    for (name, p) in example_programs() {
        let bytes = artifact::write(&p);
        assert!(artifact::is_artifact(&bytes));
        assert_eq!(artifact::read(&bytes).as_ref(), Ok(&p), "{name}");
    }
}

#[test]
fn every_byte_flip_and_truncation_is_refused() {
    let mut checked = 0;
    for (name, p) in example_programs() {
        let bytes = artifact::write(&p);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x ^= flip;
                }
                assert!(artifact::read(&b).is_err(), "{name}: flip {flip:#x} at byte {i} was accepted");
                checked += 1;
            }
        }
        for len in 0..bytes.len() {
            let r = artifact::read(bytes.get(..len).unwrap_or_default());
            assert!(r.is_err(), "{name}: truncation to {len} bytes was accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(artifact::read(&longer).is_err(), "{name}: a trailing byte was accepted");
    }
    assert!(checked > 1000);
}

/// Recomputes the checksum so that only the structure is wrong.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let n = bytes.len() - 32;
    let digest = sha2::Sha256::digest(&bytes[..n]);
    bytes[n..].copy_from_slice(&digest);
    bytes
}

#[test]
fn other_format_versions_are_refused_by_name() {
    let (_, p) = example_programs().remove(0);
    let mut bytes = artifact::write(&p);
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = artifact::read(&reseal(bytes)).unwrap_err();
    assert!(matches!(err, ArtifactError::WrongFormat { found, .. } if found == FORMAT_VERSION + 1));
    let msg = err.to_string();
    assert!(msg.contains(&format!("format version {}", FORMAT_VERSION + 1)) && msg.contains("recompile"), "{msg}");
    assert_eq!(artifact::read(b"{\"bundle_id\": 1}"), Err(ArtifactError::NotAnArtifact));
    assert!(MAGIC.starts_with(b"\x7f"));
}

#[test]
fn the_verifier_refuses_broken_programs_even_with_a_valid_checksum() {
    let (_, good) = example_programs().remove(0);
    let mut cases: Vec<(&str, Program)> = Vec::new();
    let mut p = good.clone();
    p.code.push(99);
    cases.push(("unknown opcode", p));
    let mut p = good.clone();
    p.code.pop();
    cases.push(("no final Ret", p));
    let mut p = good.clone();
    let mut code = Vec::new();
    Op::JumpIfTrue { target: 0 }.encode(&mut code);
    Op::Ret {}.encode(&mut code);
    p.code = code;
    cases.push(("backward jump", p));
    let mut p = good.clone();
    if let Some(a) = p.atoms.first_mut() {
        a.lhs = verdict_runtime::program::Arg::Path(10_000);
    }
    cases.push(("path out of range", p));
    let mut p = good.clone();
    if let Some(r) = p.policies.first_mut().and_then(|pol| pol.rules.first_mut()) {
        r.entry = 1;
    }
    cases.push(("entry inside an instruction", p));
    let mut p = good.clone();
    if let Some(pol) = p.policies.first_mut() {
        pol.order.reverse();
        pol.order.push(0);
    }
    cases.push(("order not a permutation", p));
    let mut p = good.clone();
    p.defs = vec![DefCode { name: "d".into(), entry: 0 }];
    let mut code = Vec::new();
    Op::Call { def: 0 }.encode(&mut code);
    Op::Ret {}.encode(&mut code);
    p.code = code;
    cases.push(("recursive definition", p));
    let mut p = good;
    if let Some(r) = p.policies.first_mut().and_then(|pol| pol.rules.first_mut()) {
        r.effect = 7;
    }
    cases.push(("effect out of range", p));
    for (what, p) in cases {
        let r = artifact::read(&artifact::write(&p));
        assert!(matches!(r, Err(ArtifactError::Invalid(_))), "{what}: {r:?}");
    }
}

/// A definition whose self-call hides behind a jump past a `Ret`:
/// `d0: True; JumpIfTrue @4; Ret; @4: Call d0; Ret`, and one rule `Call d0; Ret`. Every reader
/// of the code must see the same segment (up to the last `Ret`), so the cycle is found at load
/// and never reaches the JIT (where it was a native self-call without a depth guard).
fn self_call_behind_a_jump() -> Program {
    let (_, mut p) = example_programs().remove(0);
    let mut code = Vec::new();
    for op in [Op::True {}, Op::JumpIfTrue { target: 4 }, Op::Ret {}, Op::Call { def: 0 }, Op::Ret {}] {
        op.encode(&mut code);
    }
    let rule_entry = u32::try_from(code.len()).unwrap();
    Op::Call { def: 0 }.encode(&mut code);
    Op::Ret {}.encode(&mut code);
    p.code = code;
    p.defs = vec![DefCode { name: "d".into(), entry: 0 }];
    p.policies.truncate(1);
    let pol = &mut p.policies[0];
    pol.rules.truncate(1);
    pol.rules[0].entry = rule_entry;
    pol.order = vec![0];
    pol.dispatch = None;
    p
}

#[test]
fn a_self_call_behind_a_jump_is_refused_at_load() {
    let p = self_call_behind_a_jump();
    let bytes = artifact::write(&p);
    let err = artifact::read(&bytes).unwrap_err();
    assert_eq!(err, ArtifactError::Invalid(VerifyError::CallCycle));
    assert_eq!(err.to_string(), "artifact refused by the verifier: definitions call each other in a cycle");
    // The engine refuses the program too, whatever the backend.
    for backend in [Backend::Jit, Backend::Vm] {
        assert!(matches!(Engine::with_backend(p.clone(), backend), Err(VerifyError::CallCycle)));
    }
}

#[test]
fn segments_that_overlap_are_refused() {
    let (_, mut p) = example_programs().remove(0);
    let entries: Vec<u32> = p.policies.iter().flat_map(|pol| pol.rules.iter().map(|r| r.entry)).collect();
    assert!(entries.len() >= 2);
    if let Some(r) = p.policies.last_mut().and_then(|pol| pol.rules.last_mut()) {
        r.entry = entries[0];
    }
    let err = artifact::read(&artifact::write(&p)).unwrap_err();
    assert!(matches!(err, ArtifactError::Invalid(VerifyError::OverlappingSegments { .. })), "{err:?}");
}

#[test]
fn disassembly_of_the_examples() {
    for (name, p) in example_programs() {
        insta::assert_snapshot!(format!("asm_{name}"), artifact::disassemble(&p));
    }
}
