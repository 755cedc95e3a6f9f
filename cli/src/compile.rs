//! `verdict compile`: a bundle (any source form, or a Decision Card with the trust flags) to a
//! `.vdc` artifact, or its disassembly.

use crate::render;
use crate::{Emit, card};
use std::path::Path;
use verdict_compiler::ir;
use verdict_runtime::artifact;

pub fn run(source: &Path, trust: &card::TrustArgs, output: Option<&Path>, emit: Emit) -> u8 {
    let file = match render::read(source) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bundle = match card::bundle_of(&file, trust, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(code) => return code,
    };
    write(&bundle, output, emit)
}

/// Compiles a checked bundle to bytecode and writes the artifact (or its disassembly) to
/// `output`. Standard output takes the disassembly without `-o`, and either with `-o -` (an
/// artifact only when standard output is not a terminal: it is binary).
pub fn write(bundle: &ir::Bundle, output: Option<&Path>, emit: Emit) -> u8 {
    let program = verdict_compiler::codegen::program(bundle);
    let bytes = match emit {
        Emit::Artifact => artifact::write(&program),
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
