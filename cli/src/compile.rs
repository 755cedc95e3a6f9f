//! `verdict compile`: a bundle to a `.vdc` artifact, or its disassembly.

use crate::Emit;
use crate::render;
use std::path::Path;
use verdict_runtime::artifact;

pub fn run(source: &Path, output: Option<&Path>, emit: Emit) -> u8 {
    let file = match render::read(source) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let compiled = verdict_compiler::compile(&file);
    render::eprint_all(&file, &compiled.diagnostics);
    let Some(bundle) = compiled.bundle else {
        return 1;
    };
    let program = verdict_compiler::codegen::program(&bundle);
    let bytes = match emit {
        Emit::Artifact => artifact::write(&program),
        Emit::Asm => artifact::disassemble(&program).into_bytes(),
    };
    match output {
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
