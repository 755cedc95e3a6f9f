//! `verdict compile`: a bundle (any source form, or a Decision Card with the trust flags) to a
//! `.vdc` artifact, signed with `--sign KEYFILE`, or its disassembly.

use crate::render;
use crate::{Emit, card, keys};
use std::path::Path;
use verdict_compiler::ir;
use verdict_runtime::{artifact, signature};

pub fn run(source: &Path, trust: &card::TrustArgs, output: Option<&Path>, emit: Emit, sign: Option<&Path>) -> u8 {
    if sign.is_some() && emit == Emit::Asm {
        eprintln!("error: `--sign` signs an artifact; it does not apply to `--emit asm`");
        return 2;
    }
    // The key is read first: a bad key file fails before any work.
    let key = match sign.map(keys::signing_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let file = match render::read(source) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bundle = match card::bundle_of(&file, trust, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(code) => return code,
    };
    write_signed(&bundle, output, emit, key.as_ref())
}

/// Compiles a checked bundle to bytecode and writes the artifact (or its disassembly) to
/// `output`. Standard output takes the disassembly without `-o`, and either with `-o -` (an
/// artifact only when standard output is not a terminal: it is binary).
pub fn write(bundle: &ir::Bundle, output: Option<&Path>, emit: Emit) -> u8 {
    write_signed(bundle, output, emit, None)
}

/// As [`write`], the artifact signed with `key` when one is given.
fn write_signed(bundle: &ir::Bundle, output: Option<&Path>, emit: Emit, key: Option<&ed25519_dalek::SigningKey>) -> u8 {
    let program = verdict_compiler::codegen::program(bundle);
    let bytes = match emit {
        Emit::Artifact => {
            let bytes = artifact::write(&program);
            match key.map(|k| signature::sign(&bytes, k)) {
                None => bytes,
                Some(Ok(signed)) => signed,
                Some(Err(e)) => {
                    eprintln!("error: cannot sign the artifact: {e}");
                    return 2;
                }
            }
        }
        Emit::Asm => artifact::disassemble(&program).into_bytes(),
    };
    match output {
        Some(out) if out == Path::new("-") && emit == Emit::Artifact => {
            use std::io::{IsTerminal, Write};
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                eprintln!("error: an artifact is binary: redirect standard output, or give `-o OUT.vdc`");
                return 2;
            }
            match stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
                Ok(()) => 0,
                Err(_) => 2,
            }
        }
        Some(out) if out == Path::new("-") => match render::stdout_line(String::from_utf8_lossy(&bytes).trim_end()) {
            Ok(()) => 0,
            Err(code) => code,
        },
        Some(out) => match std::fs::write(out, bytes) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", out.display());
                2
            }
        },
        None if emit == Emit::Asm => match render::stdout_line(String::from_utf8_lossy(&bytes).trim_end()) {
            Ok(()) => 0,
            Err(code) => code,
        },
        None => {
            eprintln!("error: give `-o OUT.vdc` (an artifact is binary)");
            2
        }
    }
}
