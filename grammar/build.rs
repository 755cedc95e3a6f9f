//! Generates the LR(1) parser from `src/verdict.lalrpop`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    lalrpop::Configuration::new().use_cargo_dir_conventions().emit_rerun_directives(true).process()?;
    Ok(())
}
