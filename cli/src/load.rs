//! Loading the bundle a command names: the file is read once, a compiled artifact recognised by
//! its header (not its name), anything else taken as a source (or a Decision Card) within the
//! source size limit. Shared by `eval`, `bench`, `replay`, `push` and `test`, which then verify
//! the artifact or compile the source as each needs (trusted keys, cards, backends).

use crate::Backend;
use crate::render;
use std::io::Read;
use std::path::Path;
use verdict_compiler::ir;
use verdict_compiler::source::{MAX_SOURCE_BYTES, SourceFile};
use verdict_runtime::artifact;
use verdict_runtime::vm::{self, Engine};

/// What a bundle file holds.
pub enum Input {
    /// The bytes of a compiled artifact (not yet verified).
    Artifact(Vec<u8>),
    /// A source text: a `.verdict`, YAML or JSON bundle, or a Decision Card.
    Source(SourceFile),
}

impl Input {
    /// Sorts bytes read from `path`: an artifact by its header, anything else must be UTF-8 text
    /// (reported on standard error when it is not; the error is exit code 2).
    pub fn of_bytes(path: &Path, bytes: Vec<u8>) -> Result<Input, u8> {
        if artifact::is_artifact(&bytes) {
            return Ok(Input::Artifact(bytes));
        }
        render::text(path, bytes).map(Input::Source)
    }
}

/// Reads a bundle file once: an artifact whole, a source within
/// [`verdict_compiler::source::MAX_SOURCE_BYTES`] (as [`render::read`]). Problems are reported on
/// standard error; the error is exit code 2.
pub fn read(path: &Path) -> Result<Input, u8> {
    let cannot = |e: std::io::Error| {
        eprintln!("error: cannot read {}: {e}", path.display());
        2
    };
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut head = [0u8; 8];
    let n = read_prefix(&mut file, &mut head).map_err(cannot)?;
    let head = head.get(..n).unwrap_or_default().to_vec();
    if artifact::is_artifact(&head) {
        let mut bytes = head;
        file.read_to_end(&mut bytes).map_err(cannot)?;
        return Ok(Input::Artifact(bytes));
    }
    let bytes = render::read_rest(file, head, MAX_SOURCE_BYTES).map_err(|e| render::report(path, e))?;
    render::text(path, bytes).map(Input::Source)
}

/// Fills `buf` from the start of a file, or as much of it as the file holds; returns the count.
fn read_prefix(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match f.read(rest)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The bundle of a source compiled for use, or `None` when it has errors (its diagnostics then
/// printed on standard error; warnings of a bundle that compiles are not).
pub fn compile(file: &SourceFile) -> Option<ir::Bundle> {
    let compiled = verdict_compiler::compile_for_use(file);
    match compiled.bundle {
        Some(b) if !compiled.has_errors() => Some(b),
        _ => {
            render::eprint_all(file, &compiled.diagnostics);
            None
        }
    }
}

/// An engine on the chosen backend; a JIT that is unavailable falls back to the VM, said on stderr.
pub fn engine(
    program: verdict_runtime::program::Program,
    backend: Backend,
) -> Result<Engine, verdict_runtime::program::VerifyError> {
    let wanted = if backend == Backend::Vm { vm::Backend::Vm } else { vm::Backend::Jit };
    let engine = Engine::with_backend(program, wanted)?;
    if let Some(reason) = engine.jit_fallback() {
        eprintln!("warning: {reason}; evaluating on the VM");
    }
    Ok(engine)
}
