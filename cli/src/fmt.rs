//! `verdict fmt`: canonical layout of `.verdict` files.

use crate::render;
use std::path::PathBuf;
use verdict_compiler::format::format_verdict;

pub fn run(files: &[PathBuf], check: bool) -> u8 {
    let mut worst = 0u8;
    for path in files {
        let file = match render::read(path) {
            Ok(f) => f,
            Err(code) => {
                worst = worst.max(code);
                continue;
            }
        };
        match format_verdict(&file.text) {
            Err(diags) => {
                render::eprint_all(&file, &diags);
                worst = worst.max(2);
            }
            Ok(formatted) if formatted == file.text => {}
            Ok(formatted) => {
                if check {
                    eprintln!("{} is not formatted", path.display());
                    worst = worst.max(1);
                } else if let Err(e) = std::fs::write(path, formatted) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    worst = worst.max(2);
                }
            }
        }
    }
    worst
}
